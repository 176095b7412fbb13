"""Live webcam: every face boxed and named as it moves; add or remove people without leaving the app."""


import numpy as np
import pandas as pd
import streamlit as st

from facelab import registry
from facelab.enrol import (
    EnrolConfig,
    FaceCapture,
    add_person,
    check_name,
    count_look_alikes,
    crops_from_photos,
    fine_tune_split,
    look_alikes,
    remove_person,
    save_model,
    start_fine_tune,
    unlike_the_others,
)
from facelab.errors import FaceLabError
from facelab.images import read_image
from facelab.live import LiveRecognizer, identify_image, rtc_configuration
from facelab.storage import check_bundle_target
from pages import ui

LIVE = "live.processor"  # this session's LiveRecognizer: one detector and results queue per stream
CAPTURE = "live.capture"  # the FaceCapture being filled from the stream, if any
CAPTURE_SHOWN = "live.capture_shown"  # the finished capture whose crops the page has drawn
ADDED_PHOTOS = "live.added_photos"  # file ids of the uploaded photos whose faces were added last
FINE_TUNE = "live.fine_tune"  # (new model name, FineTuneJob) while a classifier retrains

st.title("Live webcam")

# ------------------------------------------------------------------------------------ model choice
name, model = ui.pick_model("Model", "live.model", lambda m: hasattr(m, "recognizer"), "model that can identify")

recognizer = ui.recognizer_with_threshold(model, key=f"live.threshold.{name}")
threshold = recognizer.threshold  # carried over to the models that enrolment makes

live: LiveRecognizer = st.session_state.setdefault(LIVE, LiveRecognizer())
# A new recogniser object per run; the stream thread picks it up at its next frame.
live.set_recognizer(recognizer, name)
live.set_smoothing(st.slider("Steady names over frames", 1, 15, live.config.smooth_frames, key="live.smooth",
                             help="each face is named by the majority of its last answers, so one odd frame does "
                                  "not flip its name; 1 = every frame on its own"))

# ---------------------------------------------------------------------------------------- video
mode = st.radio(
    "Camera",
    ["Live video (WebRTC)", "Snapshot (one photo)"],
    horizontal=True,
    key="live.mode",
    help="use snapshots where the browser or network blocks WebRTC",
)
playing = False  # the WebRTC stream is running (Live video mode only)
if mode.startswith("Live"):
    with st.expander("Connection"):
        stun = st.text_input(
            "STUN server for remote use",
            "",
            key="live.stun",
            placeholder="stun:stun.example.org:3478",
            help="empty: no outside server is contacted, which works when browser and app share a machine",
        )
    try:
        rtc = rtc_configuration(stun)
    except FaceLabError as err:
        ui.show_error(err)
        rtc = rtc_configuration("")
    video, info = st.columns([3, 2])  # the names beside the video, not a screen below it
    with video:
        playing = ui.camera_stream("live.webrtc", live.recv, rtc)
    if playing and not st.session_state.get("live.was_playing"):
        live.reset_stats()  # counts and frame rate are per stream
    st.session_state["live.was_playing"] = playing

    @st.fragment(run_every=0.5 if playing else None)
    def now_on_camera() -> None:
        newest = live.drain() or live.last_result()
        if playing and live.error:
            st.warning(f"Frames are shown without names: {live.error}")
        if not playing or newest is None:
            st.caption("Press START to open the camera." if not playing else "Waiting for the first frame...")
            return
        st.markdown("**On camera now:** " + (", ".join(newest.names) or "nobody"))
        if newest.faces:
            st.table(pd.DataFrame(newest.rows()))
        stats = live.stats()
        st.caption(
            f"{newest.fps:.1f} frames/s, {newest.latency_ms:.1f} ms per frame, {stats.frames} frames; "
            + ", ".join(f"{n}: {stats.share(n):.0%} of frames" for n in sorted(stats.seen))
        )
        st.caption("Per stage: " + ", ".join(f"{k} {v:.1f} ms" for k, v in newest.timings_ms.items()))
        ui.capture_progress(live.capture, CAPTURE_SHOWN)

    ui.mark_capture_shown(live.capture, CAPTURE_SHOWN)  # this full run draws its crops below
    with info:
        now_on_camera()
else:
    shot = st.camera_input("Take a photo", key="live.snapshot")
    if shot is not None:
        try:
            img = read_image(shot.getvalue(), name="camera photo")
            annotated, result = identify_image(img, recognizer)
            st.image(annotated, channels="BGR", caption="camera photo")
            st.markdown("**In the photo:** " + (", ".join(result.names) or "no face found"))
            if result.faces:
                st.table(pd.DataFrame(result.rows()))
        except FaceLabError as err:
            ui.show_error(err)



def replace_model(new) -> str:
    """Save a model that replaces the chosen one (a person added or removed) over its bundle, put it in the
    session under the same name and in the stream at once; returns where it was saved, and what another save made
    there meanwhile kept."""
    saved = save_model(new, ui.save_target(name))
    ui.add_model(name, saved.model, saved.path)
    live.set_recognizer(saved.model.recognizer(threshold), name)
    return f"saved to {saved.path}." + (f" {saved.kept}." if saved.kept else "")


# ------------------------------------------------------------------------------------ enrolment
st.subheader("Add a person")
gallery_model = registry.is_autoencoder(model)
classifiers = {n: m for n, m in ui.models().items() if registry.is_classifier(m)}
st.caption(
    "An autoencoder's gallery takes a new person at once, without retraining; a GRU classifier can be "
    "fine-tuned on its data set plus the new person in the background, starting from its weights (a new model, "
    "swapped in when done)."
)
config = EnrolConfig(n_faces=int(st.number_input("Face crops to collect", 3, 30, 10, key="live.enrol.n")))
person = st.text_input("Name", key=ui.kept("live.enrol.name"))
source = st.radio("From", ["Webcam", "Photos"], horizontal=True, key="live.enrol.source")
faces = None
if source == "Webcam" and not mode.startswith("Live"):
    st.caption("Crops are captured from the live video: switch the camera above to Live video, or add the person "
               "from photos.")
elif source == "Webcam":
    if st.button(f"Capture {config.n_faces} frames", key="live.enrol.capture", icon=":material/photo_camera:",
                 disabled=not playing,
                 help="crops come from the live video" + ("" if playing else ": press START above first")):
        st.session_state[CAPTURE] = FaceCapture(config)
        live.start_capture(st.session_state[CAPTURE])
    capture = st.session_state.get(CAPTURE)
    if capture is not None and playing and not capture.done:
        st.caption("Capturing: the count is beside the video.")  # a caption here would not move on with it
    elif capture is not None:
        ui.capture_caption(capture)
    if capture is not None:
        faces = capture.faces() if capture.count else None
else:
    photos = st.file_uploader(
        "Photos of the person (one face each)",
        accept_multiple_files=True,
        type=["jpg", "jpeg", "png", "bmp", "webp", "pgm", "tif", "tiff"],
        key="live.enrol.photos",
    )
    if photos and [p.file_id for p in photos] == st.session_state.get(ADDED_PHOTOS):
        st.caption("These photos were added: upload photos of the next person.")  # not offered twice
    elif photos:
        crops = crops_from_photos([(p.name, p.getvalue()) for p in photos], config)
        for crop in crops:
            if not crop.ok:
                st.warning(crop.reason)
        good = [c for c in crops if c.ok]
        faces = np.stack([c.face for c in good]) if good else None
if faces is not None and len(faces):
    # Crops the model already names as someone else start unticked: added, they would be named as the new person.
    alike = look_alikes(recognizer, faces, person)
    if any(alike):
        n = sum(w is not None for w in alike)
        st.caption(f"{n} crop{'' if n == 1 else 's'} that {name} names as someone it knows start{'s' if n == 1 else ''} "
                   "unticked.")
    # Crops of someone else the model does not know either (a feed that changed faces) are caught another way:
    # far from the other crops.
    unlike = unlike_the_others(recognizer, faces)
    odd = [str(i + 1) for i, (u, a) in enumerate(zip(unlike, alike)) if u and not a]
    if odd:
        it, they = ("it", "it is") if len(odd) == 1 else ("them", "they are")
        st.warning(f"{'Crop' if len(odd) == 1 else 'Crops'} {', '.join(odd)} look{'s' if len(odd) == 1 else ''} unlike "
                   f"the others to {name}, as if of another person: unticked. Tick {it} again if {they} "
                   f"{person.strip() or 'the new person'} too.")
    notes = [f"like {a}" if a else "unlike the rest" if u else None for a, u in zip(alike, unlike)]
    kept = ui.pick_crops(faces, "live.enrol.keep", notes)
    chosen = faces[kept]
    known = count_look_alikes([alike[i] for i in kept])  # the answers above: no second pass over the crops
    if known:
        st.warning(f"{sum(known.values())} of the {len(chosen)} crops look like people {name} already knows: "
                   + ", ".join(f"{who} ({n})" for who, n in known.items())
                   + f". Untick the ones that are not {person.strip() or 'the new person'}: added, they would be "
                   "named as them from now on.")
    if len(chosen) < config.min_faces:
        st.caption(f"Keep at least {config.min_faces} crops to add a person.")
    tune = None
    if classifiers:
        # The chosen model when it is a classifier (another one only when picked here), else none for a gallery.
        tune = st.selectbox(
            "Also fine-tune a GRU classifier with this person (background)",
            ["no", *classifiers],
            index=1 + list(classifiers).index(name) if name in classifiers else 0 if gallery_model else 1,
            key="live.enrol.tune",
        )
        tune = None if tune == "no" else tune
    elif not gallery_model:
        st.info("Pick an autoencoder model above to add people to its gallery, or train a GRU classifier to retrain.")
    if (gallery_model or tune) and st.button(
        f"Add {person or 'the person'}", key="live.enrol.add", type="primary", icon=":material/person_add:",
        disabled=len(chosen) < config.min_faces,
    ):
        try:
            # Everything that can refuse is checked before the gallery changes: a refusal after it would leave the
            # crops and the Add button on the page, and a second press would add them twice.
            split = fine_tune_split(classifiers[tune], ui.dataset(), tune, person) if tune else None
            if tune:
                check_bundle_target(ui.model_dir() / ui.unique_name(f"{tune}-{check_name(person)}"))
            messages = []
            if gallery_model:
                saved = replace_model(add_person(model, person, chosen, config))
                messages.append(f"Added {check_name(person)} ({len(chosen)} crops); {saved}")
            if tune:
                new_name = ui.unique_name(f"{tune}-{check_name(person)}")
                job = start_fine_tune(classifiers[tune], split, person, chosen, save_as=ui.model_dir() / new_name)
                st.session_state[FINE_TUNE] = (job.name, job)  # another training may have taken new_name meanwhile
                messages.append(f"Retraining {tune} with {check_name(person)} as {job.name}...")
            live.start_capture(None)
            st.session_state.pop(CAPTURE, None)
            st.session_state[ADDED_PHOTOS] = [p.file_id for p in photos] if source == "Photos" else None
            ui.rerun_with_message("live.enrol", " ".join(messages), forget="live.enrol.keep.")
        except FaceLabError as err:
            ui.show_error(err)
ui.show_message("live.enrol")


@st.fragment(run_every=1.0)
def fine_tune_progress() -> None:
    running = st.session_state.get(FINE_TUNE)
    if running is None:  # ended at an earlier tick: the timer may fire once more before the full rerun
        return
    new_name, job = running
    status = job.status()
    if status.running:
        where = f"epoch {status.epoch}/{status.epochs}" if status.epochs else "starting"
        st.progress(status.epoch / max(status.epochs, 1), f"Fine-tuning {new_name}: {where}")
        return
    del st.session_state[FINE_TUNE]
    if job.result is None:
        ui.rerun_with_message("live.fine_tune", status.error or "retraining stopped without a model", error=True)
    ui.add_model(new_name, job.result, job.path, activate=False)  # the stream keeps its model until one is picked
    if job.save_error:
        ui.rerun_with_message("live.fine_tune", f"Fine-tuned {new_name} in {status.elapsed_s:.0f} s, kept in this "
                              f"session: {job.save_error}. Save it from the Models page.", error=True)
    ui.rerun_with_message("live.fine_tune", f"Fine-tuned {new_name} in {status.elapsed_s:.0f} s; pick it above to use "
                          f"it. Saved to {job.path}.")


if FINE_TUNE in st.session_state:
    fine_tune_progress()
ui.show_message("live.fine_tune")

if gallery_model:
    st.subheader("Remove a person")
    gone = st.selectbox("Person", list(model.gallery_.names), key="live.remove.name")
    if gone and st.button(f"Remove {gone}", key="live.remove", icon=":material/person_remove:"):
        ui.ask_confirmation("live.remove", f"{name}/{gone}")  # the same name in another model is another person
    if gone and ui.confirmed("live.remove", f"{name}/{gone}", f"Remove {gone} from {name}'s gallery? Their faces are forgotten "
                             "and the saved model is updated; adding them back needs their photos again.",
                             yes=f"Remove {gone}"):
        try:
            saved = replace_model(remove_person(model, gone))
            ui.rerun_with_message("live.remove", f"Removed {gone}; {saved}")
        except FaceLabError as err:
            ui.show_error(err)
    ui.show_message("live.remove")
