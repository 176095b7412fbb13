"""Train autoencoder: a preset, a widget for every config field, training with live curves."""

import streamlit as st

from facelab import registry
from pages import ui

st.title("Train an autoencoder")
ds = ui.require_dataset()
st.caption(f"Data: {ds.source} · {ds.n_people} {ds.label_plural} · {len(ds.images)} faces. The code in the bottleneck is "
           "the face embedding; people are named by their nearest codes in a gallery of the training faces.")

PRESETS = {"ae-dense": "Seed network (dense, 64-number code, as in the seed)",
           "ae-conv": "Convolutional (plain reconstruction)",
           "ae-metric": "Convolutional + metric-learning term (best at naming people)"}
kind = st.radio("Preset", list(PRESETS), format_func=PRESETS.get, index=1, horizontal=True, key=ui.kept("ae.preset"))
st.caption(registry.KIND_LABELS[kind])

ui.training_section(kind, ds, key="ae", page="autoencoder")
