"""reconstructions (to come)."""

import streamlit as st

st.title("reconstructions")
