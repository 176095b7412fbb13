"""identify (to come)."""

import streamlit as st

st.title("identify")
