"""Home: what FaceLab does, a three-step quick start, the device and the data credit."""

import streamlit as st

from facelab import OLIVETTI_CREDIT
from pages import ui

st.title("FaceLab")
st.markdown(
    "An interactive face-recognition lab. Bring faces, train **GRU classifiers** that read a face row by "
    "row and **autoencoders** whose codes identify people, watch them learn, and name the people in your "
    "photos. Everything runs here, in your browser session; every finished model is saved to the model "
    "folder in the sidebar."
)

st.subheader("Quick start")
steps = st.columns(3)
with steps[0]:
    st.markdown("**1. Data**  \nLoad the synthetic set (offline), the Olivetti faces, LFW, or your own zip of "
                "one folder per person.")
    st.page_link(ui.PAGE_DATA, label="Choose data", icon=":material/database:")
with steps[1]:
    st.markdown("**2. Train**  \nPick a preset, move the sliders, press Train and watch the curves grow. "
                "Stop whenever you like: the best model so far is kept.")
    st.page_link(ui.PAGE_TRAIN_GRU, label="Train a GRU", icon=":material/model_training:")
    st.page_link(ui.PAGE_TRAIN_AE, label="Train an autoencoder", icon=":material/compress:")
with steps[2]:
    st.markdown("**3. Use**  \nEvaluate on held-out faces, look at reconstructions and the latent space, and "
                "identify the people in an uploaded photo.")
    st.page_link("pages/evaluate.py", label="Evaluate", icon=":material/analytics:")
    st.page_link("pages/identify.py", label="Identify", icon=":material/person_search:")

st.subheader("This machine")
st.write(ui.device_label())
st.caption(f"{OLIVETTI_CREDIT}. Synthetic faces are drawn by FaceLab and are cartoons, not photos.")
