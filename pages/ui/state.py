"""The dashboard's per-session state: its keys in `st.session_state`, the session's models and data set, where
models are saved, settings kept across pages, and each model's last test results."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from facelab.errors import FaceLabError
from facelab.evaluation import misclassified
from facelab.storage import default_model_dir, free_bundle_name, is_bundle, user_folder

DATASET = "facelab_dataset"  # the active FaceDataset
DATASET_LABEL = "facelab_dataset_label"  # where it came from, for the sidebar
MODELS = "facelab_models"  # dict: name -> trained or loaded estimator (history_, metrics_ inside)
MODEL_PATHS = "facelab_model_paths"  # dict: name -> bundle path it was saved to / loaded from
ACTIVE_MODEL = "facelab_active_model"  # name of the model the result pages show first
JOBS = "facelab_jobs"  # dict: train page ("gru" / "autoencoder") -> TrainingJob
MODEL_DIR = "facelab_model_dir"  # sidebar text input: where bundles are saved
EVALUATIONS = "facelab_evaluations"  # dict: model name -> facelab.evaluation.Misclassified of its last test
TEST_FACES = "facelab_test_faces"  # dict: model name -> FaceDataset, a sample of its last test faces (Identify)
LATENT = "facelab_latent"  # dict: (page, model, data, method) -> (2-D points, labels), so t-SNE runs once
TEST_SAMPLE = 200  # test faces kept per model: enough to try, small for a large test set
KEPT_WIDGETS = "facelab_kept_widgets"  # dict: settings widget key -> its last value, kept across pages
DONE_MESSAGE = "facelab_done_message"  # (place, text, is_error) shown by the next run: see `rerun_with_message`

PAGE_DATA = "pages/data.py"
PAGE_TRAIN_GRU = "pages/train_gru.py"
PAGE_TRAIN_AE = "pages/train_autoencoder.py"
PAGE_MODELS = "pages/models.py"
PAGE_LIVE = "pages/live.py"


def kept(key: str) -> str:
    """`key`, for a settings widget whose value survives a visit to another page: given back to the widget when
    Streamlit has dropped it (see `keep_widget_values`). Call it as the widget's `key=`, before it is drawn."""
    values = st.session_state.setdefault(KEPT_WIDGETS, {})
    if key not in st.session_state and values.get(key) is not None:
        st.session_state[key] = values[key]
    else:
        values.setdefault(key, None)
    return key


def keep_widget_values() -> None:
    """Note the kept widgets' values at the start of every full run (app.py calls it). Streamlit drops the
    state of widgets a run does not draw (a visit to another page, or a training's progress fragment rerunning
    while the user is elsewhere), so without this the Train pages' settings were lost."""
    values = st.session_state.get(KEPT_WIDGETS, {})
    for key in values:
        if key in st.session_state:
            values[key] = st.session_state[key]


def forget_kept(prefix: str) -> None:
    """Drop widget values whose keys start with `prefix`, kept ones included (crops that are gone)."""
    for key in [k for k in st.session_state if str(k).startswith(prefix)]:
        del st.session_state[key]
    values = st.session_state.get(KEPT_WIDGETS, {})
    for key in [k for k in values if k.startswith(prefix)]:
        del values[key]


def model_dir_default_text() -> str:
    """What the sidebar's model-folder box starts with: the default folder, or $FACELAB_MODEL_DIR as typed when it
    cannot be expanded (`model_dir` then says why on the page)."""
    try:
        return str(default_model_dir())
    except FaceLabError:
        return os.environ.get("FACELAB_MODEL_DIR", "")


def model_dir() -> Path:
    """The folder finished trainings are saved to (the sidebar setting)."""
    value = str(st.session_state.get(MODEL_DIR) or "").strip()
    try:
        return user_folder(value) if value else default_model_dir()
    except FaceLabError as err:  # the sidebar, drawn before the page, keeps the box to correct it
        st.error(f"Model folder: {err}. Correct it in the sidebar.", icon=":material/error:")
        st.stop()


def models() -> dict[str, Any]:
    """This session's models by name (trained here or loaded from bundles)."""
    return st.session_state.setdefault(MODELS, {})


def model_paths() -> dict[str, Path]:
    return st.session_state.setdefault(MODEL_PATHS, {})


def add_model(name: str, model: Any, path: Path | None = None, activate: bool = True) -> None:
    """Put a model in the session (replacing one of the same name) and make it the active one."""
    models()[name] = model
    for key in (EVALUATIONS, TEST_FACES):  # the replaced model's test results
        st.session_state.get(key, {}).pop(name, None)
    if path is not None:
        model_paths()[name] = Path(path)
    if activate:
        st.session_state[ACTIVE_MODEL] = name


def active_model_name() -> str | None:
    name = st.session_state.get(ACTIVE_MODEL)
    return name if name in models() else next(reversed(models()), None)


def dataset():
    """The active FaceDataset, or None."""
    return st.session_state.get(DATASET)


def set_dataset(ds, label: str | None = None) -> None:
    st.session_state[DATASET] = ds
    st.session_state[DATASET_LABEL] = label or ds.source


def save_target(name: str, anywhere: bool = True) -> Path:
    """Where the session model `name` is saved: the bundle it came from or was saved to (`anywhere` False: only
    when that is in the model folder), else the model folder under its name, or name-2, ... when another model's
    bundle has that name there, which is never replaced."""
    own = model_paths().get(name)
    if own is not None and (anywhere or own.parent == model_dir()):
        return own
    target = model_dir() / name
    return model_dir() / unique_name(name) if is_bundle(target) else target


def unique_name(base: str) -> str:
    """`base`, or `base-2`, `base-3`, ... so a new model never replaces another in the session or the folder."""
    return free_bundle_name(base, set(models()) | {p.name for p in _saved_names()})


def _saved_names() -> list[Path]:
    folder = model_dir()
    return list(folder.iterdir()) if folder.is_dir() else []


def data_key(ds: Any) -> str:
    """A token of the data set for widget keys, so choices made among one data set's people or images start
    afresh for another (a kept choice of names the new data lack would show nothing)."""
    return f"{abs(hash((ds.source, tuple(ds.names), len(ds.images)))):x}"


def remember_test(name: str, test: Any, predicted: list[str]) -> None:
    """Keep what model `name` got wrong on `test` (Evaluate) and a sample of the test faces to try (Identify)."""
    st.session_state.setdefault(EVALUATIONS, {})[name] = misclassified(test.images, test.face_names, predicted)
    st.session_state.setdefault(TEST_FACES, {})[name] = test.sample(TEST_SAMPLE)


def test_faces(name: str) -> Any:
    """The sample of model `name`'s test faces kept by `remember_test`, or None."""
    return st.session_state.get(TEST_FACES, {}).get(name)
