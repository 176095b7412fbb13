"""evaluate (to come)."""

import streamlit as st

st.title("evaluate")
