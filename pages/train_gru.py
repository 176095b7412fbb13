"""train_gru (to come)."""

import streamlit as st

st.title("train_gru")
