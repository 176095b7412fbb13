"""train_autoencoder (to come)."""

import streamlit as st

st.title("train_autoencoder")
