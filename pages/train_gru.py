"""Train GRU: a preset, a widget for every config field, the seed's cell beside the LSTM and the true GRU, training."""

import streamlit as st

from facelab.classifier import GRU_EQUATIONS, LSTM_EQUATIONS, SEED_CELL_EQUATIONS
from pages import ui

st.title("Train a GRU classifier")
ds = ui.require_dataset()
st.caption(f"Data: {ds.source} · {ds.n_people} {ds.label_plural} · {len(ds.images)} faces. Each face's rows are read as a "
           "sequence, top to bottom.")

PRESETS = {"gru": "Seed network (GRU 128 → GRU 128 → softmax, as in the seed)",
           "cnn-gru": "Recommended: CNN → GRU hybrid"}
kind = st.radio("Preset", list(PRESETS), format_func=PRESETS.get, index=1, horizontal=True, key=ui.kept("gru.preset"))

with st.expander("The seed's \"GRU\", Keras' LSTM and the true GRU, side by side", expanded=False):
    # The two equal cells side by side; three columns are narrower than the equations' longest lines at 1280 px.
    seed, lstm = st.columns(2)
    seed.markdown("**The seed's cell** (`cell=seed`): update gate z, forget gate f, output gate o and a cell state.")
    seed.latex(SEED_CELL_EQUATIONS)
    lstm.markdown("**LSTM** (`cell=lstm`, `keras.layers.LSTM`): the same maths with the input gate called i; the "
                  "tests check that both give the same outputs with the same weights.")
    lstm.latex(LSTM_EQUATIONS)
    st.markdown("**GRU, Cho et al. 2014** (`cell=gru`, `keras.layers.GRU`): a reset gate r and an update gate z, "
                "no separate cell state.")
    st.latex(GRU_EQUATIONS)

ui.training_section(kind, ds, key="gru", page="gru")
