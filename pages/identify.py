"""Identify: upload photos (every face is boxed and named, or "unknown", by the chosen model), or try the model's
test faces."""


import numpy as np
import pandas as pd
import streamlit as st

from facelab import plots, registry
from facelab.enrol import EnrolConfig
from facelab.errors import FaceLabError
from facelab.evaluation import check_answers
from facelab.images import read_image
from facelab.preprocess import CROP_MAX_SIDE, FaceDetector, faces_left_to_right
from pages import ui

st.title("Identify")
name, model = ui.pick_model("Model that answers", "identify.model", lambda m: hasattr(m, "recognizer"),
                            "model that can identify")
kind = "autoencoder gallery (nearest codes)" if registry.is_autoencoder(model) else "GRU classifier (softmax)"
st.caption(f"{name}: {kind}, {len(model.names_)} people.")

recognizer = ui.recognizer_with_threshold(model, key=f"identify.threshold.{name}")

test = ui.test_faces(name)
source = "Photos"
if test is not None:
    source = st.radio("Faces", ["Photos", "Test faces"], horizontal=True, key="identify.source",
                      help=f"test faces: a sample of the faces {name} was tested on, never trained on")


def test_faces_section() -> None:
    """A sample of the model's test faces, each captioned right, wrong or turned away."""
    c = st.columns([3, 1])
    most = min(36, len(test.images))
    n = c[0].slider("faces", 1, most, min(12, most), key="identify.test_n") if most > 1 else most
    if c[1].button("Other faces", key="identify.shuffle", icon=":material/shuffle:"):
        st.session_state["identify.test_seed"] = st.session_state.get("identify.test_seed", 0) + 1
    pick = test.sample(n, seed=st.session_state.get("identify.test_seed", 0))
    try:
        check = check_answers(pick.face_names, recognizer.identify(pick.images), model.names_)
    except FaceLabError as err:
        ui.show_error(err)
        return
    colors = {"right": plots.RIGHT, "wrong": plots.WRONG, "unknown": plots.UNSURE}
    st.plotly_chart(plots.face_grid(pick.images, check.captions, cols=6, colors=[colors[o] for o in check.outcomes]),
                    key="identify.test_grid")
    st.markdown(f"**{check.right} of {n}** answered rightly, {check.wrong} named wrongly, {check.unknown} turned away "
                "as unknown (move the threshold above to trade one for the other).")


def photos_section() -> None:
    """Uploaded photos, every face boxed and named, with an offer to add people nobody knows."""
    st.caption(f"Photos are searched for faces; an image of at most {CROP_MAX_SIDE} pixels a side is taken as one face "
               "crop.")
    photos = st.file_uploader("Photos", type=["jpg", "jpeg", "png", "bmp", "webp", "pgm", "tif", "tiff"],
                              accept_multiple_files=True, key="identify.photos")
    detector = FaceDetector()
    unknown_faces = 0
    for photo in photos or []:
        st.markdown(f"**{photo.name}**")
        try:
            img = read_image(photo.getvalue(), name=photo.name)
            found = faces_left_to_right(img, detector)
            if not found:
                st.warning(f"{photo.name}: no face found. Faces need to be frontal and at least 40 pixels wide.")
                continue
            answers = recognizer.identify(np.stack([f.face for f in found]))
        except FaceLabError as err:
            ui.show_error(err)
            continue
        unknown_faces += sum(not a.known for a in answers)
        labels = [f"{i + 1}: {a.name}" if a.known else f"{i + 1}: unknown" for i, a in enumerate(answers)]
        colors = [plots.RIGHT if a.known else plots.WRONG for a in answers]
        left, right = st.columns([3, 2])
        left.plotly_chart(plots.photo_with_boxes(img, [f.box for f in found], labels, colors),
                          key=f"identify.photo.{photo.file_id}")
        with right:
            for i, answer in enumerate(answers):
                # An unknown face's score belongs to the nearest person, so it is shown with that name.
                nearest = "" if answer.known else f"nearest: {answer.top[0][0]}, "
                if answer.distances:  # a gallery: the distance, which is what the threshold slider sets
                    st.markdown(f"Face {i + 1}: **{answer.name}** ({nearest}distance {answer.distances[0]:.4g}; "
                                f"named up to {recognizer.threshold:.4g})")
                    top = pd.DataFrame({"person": [n for n, _ in answer.top], "distance": answer.distances})
                else:
                    st.markdown(f"Face {i + 1}: **{answer.name}** ({nearest}probability {answer.confidence:.3f})")
                    top = pd.DataFrame(answer.top[:3], columns=["person", "probability"])
                st.dataframe(top, hide_index=True, key=f"identify.top.{photo.file_id}.{i}", column_config={
                    "probability": st.column_config.NumberColumn(format="%.3f"),
                    "distance": st.column_config.NumberColumn(format="%.4g")})

    if unknown_faces:
        how = (f"add them to this model's gallery from {EnrolConfig().min_faces} or more photos or the webcam, "
               "no retraining" if registry.is_autoencoder(model)
               else "retrain this classifier with them from photos or the webcam")
        st.info(f"{unknown_faces} face(s) unknown to {name}. Someone who should be known? On the Live page you can "
                f"{how}.")
        st.page_link(ui.PAGE_LIVE, label="Add a person (Live)", icon=":material/person_add:")


# Both run to the end, no st.stop: the sidebar is drawn again after the page, naming the model chosen here.
if source == "Test faces":
    test_faces_section()
else:
    photos_section()
