"""models (to come)."""

import streamlit as st

st.title("models")
