"""Train GRU: a preset, a widget for every config field, the seed's cell beside the true GRU, training."""

import streamlit as st

from facelab import ui

st.title("Train a GRU classifier")
ds = ui.require_dataset()
st.caption(f"Data: {ds.source} · {ds.n_people} people · {len(ds.images)} faces. Each face's rows are read as a "
           "sequence, top to bottom.")

PRESETS = {"gru": "Seed network (GRU 128 → GRU 128 → softmax, as in the seed)",
           "cnn-gru": "Recommended: CNN → GRU hybrid"}
kind = st.radio("Preset", list(PRESETS), format_func=PRESETS.get, index=1, horizontal=True, key="gru.preset")

with st.expander("The seed's \"GRU\" and the true GRU, side by side", expanded=False):
    left, right = st.columns(2)
    left.markdown("**The seed's cell** (`cell_type=seed`): update gate z, forget gate f, output gate o and a cell "
                  "state — an LSTM under another name.")
    left.latex(r"""\begin{aligned}
z_t &= \sigma(W_z[h_{t-1}, x_t] + b_z)\\
f_t &= \sigma(W_f[h_{t-1}, x_t] + b_f)\\
o_t &= \sigma(W_o[h_{t-1}, x_t] + b_o)\\
c_t &= f_t \odot c_{t-1} + z_t \odot \tanh(W_h[h_{t-1}, x_t] + b_h)\\
h_t &= o_t \odot \tanh(c_t)
\end{aligned}""")
    right.markdown("**GRU, Cho et al. 2014** (`cell_type=gru`, `keras.layers.GRU`): a reset gate r and an update "
                   "gate z, no separate cell state.")
    right.latex(r"""\begin{aligned}
r_t &= \sigma(W_r[h_{t-1}, x_t] + b_r)\\
z_t &= \sigma(W_z[h_{t-1}, x_t] + b_z)\\
\tilde h_t &= \tanh(W_h[r_t \odot h_{t-1}, x_t] + b_h)\\
h_t &= z_t \odot h_{t-1} + (1 - z_t) \odot \tilde h_t
\end{aligned}""")

ui.training_section(kind, ds, key="gru", page="gru")
