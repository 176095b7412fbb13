"""Data: pick a face source, look at it (grid, counts, problems), preview preprocessing on a photo."""

import os

import numpy as np
import pandas as pd
import streamlit as st

from facelab import OLIVETTI_CREDIT, plots, ui
from facelab.errors import FaceLabError

st.title("Data")
SOURCES = ["Synthetic (offline)", "Olivetti", "LFW", "Zip upload", "FER2013 CSV upload", "Folder path"]
source = st.radio("Source", SOURCES, horizontal=True, key="data.source")

spec, upload = None, None
if source == SOURCES[0]:
    c = st.columns(3)
    people = c[0].slider("people", 2, 40, 12, key="data.syn_people")
    per = c[1].slider("images per person", 4, 40, 20, key="data.syn_per")
    seed = c[2].number_input("seed", 0, 10_000, 0, key="data.syn_seed")
    spec = f"synthetic:people={people},per_person={per},seed={seed}"
elif source == SOURCES[1]:
    folder = st.text_input("Local folder (faces.npy + labels.npy or olivettifaces.mat); empty = scikit-learn's cache",
                           os.environ.get("FACELAB_OLIVETTI_DIR", ""), key="data.olivetti_dir")
    spec = f"olivetti:{folder.strip()}" if folder.strip() else "olivetti"
    st.caption(OLIVETTI_CREDIT)
elif source == SOURCES[2]:
    min_faces = st.slider("people with at least this many images", 10, 100, 20, key="data.lfw_min")
    spec = f"lfw:min_faces={min_faces}"
    st.caption("Downloaded once by scikit-learn into its cache (about 200 MB); $FACELAB_DATA_HOME moves the cache.")
elif source == SOURCES[3]:
    upload = st.file_uploader("Zip with one folder per person", type=["zip"], key="data.zip")
elif source == SOURCES[4]:
    upload = st.file_uploader("FER2013 CSV (emotion, pixels, Usage)", type=["csv"], key="data.csv")
else:
    spec = st.text_input("Folder with one sub-folder per person", key="data.folder").strip() or None

if st.button("Load", key="data.load", type="primary", disabled=spec is None and upload is None):
    if upload is not None:
        ds = ui.load_with_progress(ui.load_upload, upload.name, upload.getvalue())
    else:
        ds = ui.load_with_progress(ui.load_spec, spec)
    if ds is not None:
        ui.set_dataset(ds)

ds = ui.dataset()
if ds is None:
    st.info("No data set loaded yet: choose a source and press Load.")
    st.stop()

st.subheader(ds.source)
c = st.columns(3)
c[0].metric("people", ds.n_people)
c[1].metric("images", len(ds.images))
c[2].metric("image size", f"{ds.image_size[0]}x{ds.image_size[1]}")
if ds.skipped:
    with st.expander(f"{len(ds.skipped)} file(s) skipped", expanded=True):
        st.dataframe(pd.DataFrame([{"file": s.path, "reason": s.reason} for s in ds.skipped]), hide_index=True)

left, right = st.columns([1, 2])
left.dataframe(pd.DataFrame({"person": list(ds.counts()), "images": list(ds.counts().values())}),
               hide_index=True, height=360)
with right:
    chosen = st.multiselect("People to show", ds.names, default=ds.names[: min(4, ds.n_people)], key="data.people")
    per_person = st.slider("faces per person", 1, 10, 8, key="data.grid_n")
    idx = [i for name in chosen for i in np.flatnonzero(ds.labels == ds.names.index(name))[:per_person]]
    if idx:
        st.plotly_chart(plots.face_grid(ds.images[idx], [ds.names[ds.labels[i]] for i in idx], cols=per_person),
                        key="data.grid")

st.subheader("Preprocessing preview")
st.caption("Upload a photo: faces are detected (boxes), levelled by the eyes and cropped, then shrunk to the "
           "64x64 grey input the models see.")
photo = st.file_uploader("Photo", type=["jpg", "jpeg", "png", "bmp", "webp", "pgm", "tif", "tiff"], key="data.photo")
if photo is not None:
    from facelab.images import read_image
    from facelab.preprocess import FaceDetector, align_face, extract_faces

    try:
        img = read_image(photo.getvalue(), name=photo.name)
        found = extract_faces(img, FaceDetector())
    except FaceLabError as err:
        ui.show_error(err)
        st.stop()
    labels = [f"face {i + 1}" + (" (eyes levelled)" if f.aligned else "") for i, f in enumerate(found)]
    st.plotly_chart(plots.photo_with_boxes(img, [f.box for f in found], labels), key="data.preview")
    if not found:
        st.warning(f"{photo.name}: no face found. Faces need to be frontal and at least 40 pixels wide.")
    else:
        detector = FaceDetector()
        crops = np.stack([align_face(img, f.box, detector, size=160)[0] for f in found])
        c = st.columns(2)
        c[0].plotly_chart(plots.face_grid(crops, labels, cols=4, title="aligned crops"), key="data.crops")
        c[1].plotly_chart(plots.face_grid(np.stack([f.face for f in found]), cols=4, title="model input (64x64)"),
                          key="data.inputs")
