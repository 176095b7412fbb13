"""Data: pick a face source (or collect faces from the webcam), look at it (grid, counts, problems), preview
preprocessing on a photo."""

import os

import numpy as np
import pandas as pd
import streamlit as st

from facelab import OLIVETTI_CREDIT, plots
from facelab.errors import FaceLabError
from pages import ui

SOURCES = ["Synthetic (offline)", "Olivetti", "LFW", "Zip upload", "FER2013 CSV upload", "Folder path", "Webcam"]
COLLECTION = "data.webcam.collection"  # FaceCollection: the crops gathered so far, per person
CAPTURE = "data.webcam.face_capture"  # the FaceCapture being filled from the stream
CAPTURE_SHOWN = "data.webcam.capture_shown"
STREAM = "data.webcam.stream"  # LiveRecognizer without a model: detection and alignment only
ADDED_SHOT = "data.webcam.added_shot"  # file id of the snapshot whose face was added last


def webcam_section() -> None:
    """Collect checked face crops of several people from the camera, then use them as the data set or save them."""
    from facelab.enrol import EnrolConfig, FaceCapture, FaceCollection, crops_from_photos
    from facelab.live import LiveRecognizer, rtc_configuration

    collection: FaceCollection = st.session_state.setdefault(COLLECTION, FaceCollection())
    st.caption("Type a name, let the camera see that person's face, and capture crops; repeat for everyone. "
               "Turn the head a little and vary the light between captures: varied crops train better models.")
    c = st.columns(2)
    person = c[0].text_input("Person's name", key=ui.kept("data.webcam.name"))
    config = EnrolConfig(n_faces=int(c[1].number_input("Face crops per capture", 3, 50, 10, key="data.webcam.n")))
    mode = st.radio("Camera", ["Live video (WebRTC)", "Snapshot (one photo)"], horizontal=True, key="data.webcam.mode")
    faces, shot = None, None
    if mode.startswith("Live"):
        stream: LiveRecognizer = st.session_state.setdefault(STREAM, LiveRecognizer())
        playing = ui.camera_stream("data.webrtc", stream.recv, rtc_configuration(""))

        @st.fragment(run_every=0.5 if playing else None)
        def capture_status() -> None:
            # Always one block of its own: a fragment that draws nothing leaves its place on the page to the next
            # element, and its next run wiped that element (seen in CI: the crops showed, their caption did not).
            with st.container():
                capture = st.session_state.get(CAPTURE)
                if capture is not None:
                    ui.capture_caption(capture)
                    ui.capture_progress(capture, CAPTURE_SHOWN)

        if st.button(f"Capture {config.n_faces} frames", key="data.webcam.capture", icon=":material/photo_camera:",
                     disabled=not playing, help="press START on the video first"):
            st.session_state[CAPTURE] = FaceCapture(config)
            stream.start_capture(st.session_state[CAPTURE])
        capture = st.session_state.get(CAPTURE)
        ui.mark_capture_shown(capture, CAPTURE_SHOWN)
        capture_status()
        if capture is not None and capture.done:
            faces = capture.faces()
    else:
        shot = st.camera_input("Take a photo", key="data.webcam.snapshot")
        if shot is not None and shot.file_id == st.session_state.get(ADDED_SHOT):
            st.caption("This photo's face was added: take the next photo.")  # not offered twice
        elif shot is not None:
            crop = crops_from_photos([("camera photo", shot.getvalue())], config)[0]
            if crop.ok:
                faces = crop.face[None]
            else:
                st.warning(crop.reason)
    if faces is not None and len(faces):
        chosen = faces[ui.pick_crops(faces, "data.webcam.keep")]
        if st.button(f"Add {len(chosen)} crop(s) of {person.strip() or 'the person'}", key="data.webcam.add",
                     type="primary", icon=":material/person_add:", disabled=not len(chosen)):
            try:
                name = collection.add(person, chosen)
                st.session_state.pop(CAPTURE, None)
                st.session_state[ADDED_SHOT] = shot.file_id if shot is not None else None
                if STREAM in st.session_state:
                    st.session_state[STREAM].start_capture(None)
                ui.rerun_with_message("data.webcam", f"{name}: {collection.counts()[name]} crops collected.",
                                      forget="data.webcam.keep.")
            except FaceLabError as err:
                ui.show_error(err)
    ui.show_message("data.webcam")

    counts = collection.counts()
    if not counts:
        st.info("No crops collected yet.")
        return
    st.dataframe(pd.DataFrame({"person": list(counts), "crops": list(counts.values())}), hide_index=True)
    c = st.columns([2, 1, 1])
    gone = c[0].selectbox("Person", list(counts), key="data.webcam.person", label_visibility="collapsed")
    if c[1].button(f"Remove {gone}", key="data.webcam.remove", icon=":material/person_remove:"):
        ui.ask_confirmation("data.webcam.remove", gone)
    if c[2].button("Use as data set", key="data.webcam.use", type="primary"):
        try:
            ui.set_dataset(collection.dataset())
        except FaceLabError as err:
            ui.show_error(err)
    if ui.confirmed("data.webcam.remove", gone, f"Drop the {counts[gone]} crops of {gone} collected so far?",
                    yes=f"Remove {gone}"):
        collection.remove(gone)
        st.rerun()
    # A key keeps it open across reruns that add or drop an element above it (the "crops collected" message is
    # shown once): without one, Streamlit drew it anew, collapsed, hiding what Save said.
    with st.expander("Save the crops as a folder (one sub-folder per person; the Folder path source reads it)",
                     key="data.webcam.save_box"):
        folder = st.text_input("Folder (people already in it stay; each person is saved once)",
                               str(ui.model_dir().parent / "webcam-faces"), key="data.webcam.folder")
        if st.button("Save", key="data.webcam.save", icon=":material/save:"):
            try:
                st.success(f"Saved {sum(counts.values())} crops to {collection.save(folder)}.")
            except FaceLabError as err:
                ui.show_error(err)


st.title("Data")
source = st.radio("Source", SOURCES, horizontal=True, key="data.source")

spec, upload = None, None
if source == SOURCES[0]:
    c = st.columns(3)
    people = c[0].slider("people", 2, 40, 12, key="data.syn_people")
    per = c[1].slider("images per person", 4, 40, 20, key="data.syn_per")
    seed = c[2].number_input("seed", 0, 10_000, 0, key="data.syn_seed")
    spec = f"synthetic:people={people},per_person={per},seed={seed}"
elif source == SOURCES[1]:
    folder = st.text_input("Local folder (faces.npy + labels.npy or olivettifaces.mat); empty = $FACELAB_OLIVETTI_DIR, else "
                           "scikit-learn's cache",
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
elif source == SOURCES[5]:
    spec = st.text_input("Folder with one sub-folder per person", key="data.folder").strip() or None
else:
    webcam_section()

if source != SOURCES[6] and st.button("Load", key="data.load", type="primary", disabled=spec is None and upload is None):
    if upload is not None:
        ds = ui.load_with_progress(ui.load_upload, upload.name, upload.getvalue())
    else:
        ds = ui.load_with_progress(ui.load_spec, spec)
    if ds is not None:
        ui.set_dataset(ds)

ds = ui.dataset()
if ds is None:
    st.info("No data set loaded yet: " + ("collect crops of at least two people and press Use as data set."
                                          if source == SOURCES[6] else "choose a source and press Load."))
    st.stop()

st.subheader(ds.source)
c = st.columns(3)
c[0].metric(ds.label_plural, ds.n_people)
c[1].metric("images", len(ds.images))
c[2].metric("image size", f"{ds.image_size[0]}x{ds.image_size[1]}")
if ds.skipped:
    with st.expander(f"{len(ds.skipped)} file(s) skipped", expanded=True):
        st.dataframe(pd.DataFrame([{"file": s.path, "reason": s.reason} for s in ds.skipped]), hide_index=True)

left, right = st.columns([1, 2])
left.dataframe(pd.DataFrame({ds.label_kind: list(ds.counts()), "images": list(ds.counts().values())}),
               hide_index=True, height=240)
with right:
    chosen = ui.pick_people(ds, f"{ds.label_plural.capitalize()} to show", 4, key="data.people")
    per_person = st.slider(f"faces per {ds.label_kind}", 1, 10, 8, key="data.grid_n")
groups = [ds.images[ds.first_per_person([name], per_person)] for name in chosen]
if any(len(g) for g in groups):  # the page's full width: in the column, faces were a few pixels wide at 800 px
    st.plotly_chart(plots.people_grid(groups, chosen), key="data.grid")

st.subheader("Preprocessing preview")
st.caption("Upload a photo: faces are detected (boxes), levelled by the eyes and cropped, then shrunk to the "
           "64x64 grey input the models see.")
photo = st.file_uploader("Photo", type=["jpg", "jpeg", "png", "bmp", "webp", "pgm", "tif", "tiff"], key="data.photo")
if photo is not None:
    from facelab.images import read_image
    from facelab.preprocess import FaceDetector, aligned_crops, extract_faces

    detector = FaceDetector()
    try:
        img = read_image(photo.getvalue(), name=photo.name)
        found = extract_faces(img, detector)
    except FaceLabError as err:
        ui.show_error(err)
        st.stop()
    labels = [f"face {i + 1}" + (" (eyes levelled)" if f.aligned else "") for i, f in enumerate(found)]
    st.plotly_chart(plots.photo_with_boxes(img, [f.box for f in found], labels), key="data.preview")
    if not found:
        st.warning(f"{photo.name}: no face found. Faces need to be frontal and at least 40 pixels wide.")
    else:
        c = st.columns(2)
        c[0].plotly_chart(plots.face_grid(aligned_crops(img, found, detector), labels, cols=4, title="aligned crops"),
                          key="data.crops")
        c[1].plotly_chart(plots.face_grid(np.stack([f.face for f in found]), cols=4, title="model input (64x64)"),
                          key="data.inputs")
