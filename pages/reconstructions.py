"""Reconstructions: originals beside reconstructions, PSNR, error maps, the latent space, a morph."""

import numpy as np
import streamlit as st

from facelab import plots, reconstruction, registry
from facelab.errors import FaceLabError
from facelab.preprocess import as_faces
from pages import ui

st.title("Reconstructions")
name, model = ui.pick_model("Autoencoder", "recon.model", registry.is_autoencoder, "autoencoder",
                            train_pages=(ui.PAGE_TRAIN_AE,), kinds=registry.AUTOENCODER_KINDS)
ds = ui.require_dataset()

people = ui.pick_people(ds, "People", 3, key="recon.people")
per_person = st.slider("faces per person", 1, 10, 4, key="recon.n")
idx = ds.first_per_person(people, per_person)
if not len(idx):
    st.info("Choose at least one person.")
    st.stop()
# At the model's own input size (the Train page lets it differ from the data's): the originals beside their
# reconstructions and the error maps compare like with like.
faces = as_faces(ds.images[idx], model.config.image_size)
try:
    recon = model.reconstruct(faces)
except FaceLabError as err:
    ui.show_error(err)
    st.stop()
psnr = reconstruction.psnr_per_image(faces, recon)
st.plotly_chart(plots.reconstruction_strip(faces, recon, psnr), key="recon.strip")
st.caption(f"Mean PSNR {psnr.mean():.2f} dB, SSIM {reconstruction.ssim_per_image(faces, recon).mean():.3f}")
if reconstruction.variety_kept(faces, recon) < 0.15:  # NaN (one face) is not below
    # Measured on saved Olivetti models: 0.00-0.03 after 3-4 epochs, 0.06-0.08 for ae-metric at 10-15, 0.34-0.42 at
    # 20-30. The codes may already name people (ae-metric's head learns first); it is the decoder that lags.
    st.warning(f"{name} rebuilds these faces as nearly the same image: its decoder has not learnt their differences "
               "yet. Train it for more epochs (its preset's budget) to see faces here.")
st.plotly_chart(plots.error_maps(reconstruction.error_map(faces, recon), cols=len(idx)), key="recon.errors")

st.subheader("Latent space")
ui.embedding_space(name, model, ds, model.encode, "codes", key="recon.latent")

st.subheader("Morph one face into another")
c = st.columns(2)
a = c[0].selectbox("From", range(len(ds.images)), format_func=lambda i: f"{ds.names[ds.labels[i]]} #{i}",
                   key=f"recon.morph_a.{ui.data_key(ds)}")
b = c[1].selectbox("To", range(len(ds.images)), index=len(ds.images) - 1,
                   format_func=lambda i: f"{ds.names[ds.labels[i]]} #{i}", key=f"recon.morph_b.{ui.data_key(ds)}")
ends = as_faces(ds.images[[a, b]], model.config.image_size)
steps = model.interpolate(ends[0], ends[1], steps=11)
t = st.slider("mix", 0.0, 1.0, 0.5, 0.1, key="recon.mix")
st.plotly_chart(plots.face_grid(np.stack([ends[0], steps[int(round(t * 10))], ends[1]]),
                                ["from", f"{t:.1f}", "to"], cols=3), key="recon.morph")
