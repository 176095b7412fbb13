"""Guards and pickers: a page stops with a hint when its data or model is missing; choices of people, of a
model and of the threshold under which a face is "unknown"."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import streamlit as st

from facelab.errors import FaceLabError
from facelab.registry import is_classifier
from facelab.storage import list_bundles
from pages.ui.messages import show_error
from pages.ui.state import (
    ACTIVE_MODEL,
    PAGE_DATA,
    PAGE_MODELS,
    PAGE_TRAIN_AE,
    PAGE_TRAIN_GRU,
    active_model_name,
    add_model,
    data_key,
    dataset,
    model_dir,
    models,
)


def pick_people(ds: Any, label: str, n_default: int, key: str) -> list[str]:
    """A multiselect of the data set's people, the first `n_default` chosen at first."""
    return st.multiselect(label, ds.names, default=ds.names[: min(n_default, ds.n_people)], key=f"{key}.{data_key(ds)}")


def require_dataset():
    """The active dataset; without one, a hint with a link to the Data page and the page stops here."""
    ds = dataset()
    if ds is None:
        st.info("No data set is loaded yet. Pick one on the Data page (the synthetic set needs no download).")
        st.page_link(PAGE_DATA, label="Go to Data", icon=":material/database:")
        st.stop()
    return ds


def require_models(predicate: Callable[[Any], bool] = lambda m: True, what: str = "model",
                   train_pages: tuple[str, ...] = (PAGE_TRAIN_GRU, PAGE_TRAIN_AE)) -> dict[str, Any]:
    """The session's models that satisfy `predicate`; with none, a hint (links to the `train_pages` that make
    such a model, and to Models) and the page stops here."""
    found = {name: m for name, m in models().items() if predicate(m)}
    if not found:
        st.info(f"No {what} in this session yet. Train one, or load a saved bundle on the Models page.")
        labels = {PAGE_TRAIN_GRU: "Train GRU", PAGE_TRAIN_AE: "Train autoencoder", PAGE_MODELS: "Models"}
        for col, page in zip(st.columns(3), (*train_pages, PAGE_MODELS)):
            icon = ":material/inventory_2:" if page == PAGE_MODELS else ":material/model_training:"
            col.page_link(page, label=labels[page], icon=icon)
        st.stop()
    return found


def pick_model(label: str, key: str, predicate: Callable[[Any], bool] = lambda m: True, what: str = "model",
               train_pages: tuple[str, ...] = (PAGE_TRAIN_GRU, PAGE_TRAIN_AE),
               kinds: tuple[str, ...] | None = None) -> tuple[str, Any]:
    """A select over the session's models that satisfy `predicate` and the model folder's bundles of `kinds`
    (default: every kind; loaded into the session when chosen), starting on the active model, else the newest
    bundle; the page stops with a hint when there is neither, or with the message when a bundle does not load."""
    from facelab import registry

    session = {n: m for n, m in models().items() if predicate(m)}
    bundles = [b for b in list_bundles(model_dir()) if kinds is None or b["kind"] in kinds]  # newest first
    saved = {b["name"]: b["path"] for b in bundles if b["name"] not in models()}
    if not session and not saved:
        require_models(predicate, what, train_pages)
    # One sorted list, so loading a saved bundle into the session keeps the selection where it is.
    choices = sorted(set(session) | set(saved))
    active, newest = active_model_name(), next((b["name"] for b in bundles), None)
    # Else the session's newest model of the kind wanted (the active one may be of another kind), else a bundle.
    start = active if active in session else next(reversed(session), newest if newest in saved else choices[0])
    name = st.selectbox(label, choices, index=choices.index(start), key=key,
                        format_func=lambda n: n if n in session else f"{n} (saved)",
                        help="models of this session and bundles in the model folder; starts on the newest")
    if name not in session:
        try:
            with st.spinner(f"Loading {name}..."):
                add_model(name, registry.load_model(saved[name]), saved[name])
        except FaceLabError as err:
            show_error(err)
            st.stop()
    st.session_state[ACTIVE_MODEL] = name  # the sidebar names it, and the other pages start on it
    return name, models()[name]


def recognizer_with_threshold(model: Any, key: str) -> Any:
    """A threshold slider suited to the model and its recogniser at that threshold (stops the page on error).

    A classifier's threshold is a probability; a gallery's is a code distance (farther faces are "unknown").
    """
    try:
        default = model.recognizer()
    except FaceLabError as err:
        show_error(err)
        st.stop()
    if is_classifier(model):
        from facelab.evaluation import weak_model_advice

        threshold = st.slider("Minimum probability to name a face", 0.0, 1.0, float(default.threshold), 0.01,
                              key=key, help="below it the face is answered \"unknown\"")
        advice = weak_model_advice(getattr(model, "metrics_", {}), getattr(model, "kind", ""))
        if advice:  # a gallery says the same through its calibration, below
            st.warning(advice)
    else:
        from facelab.gallery import threshold_choices

        top = 2.0 if getattr(default, "metric", "cosine") == "cosine" else 50.0
        choices, start = threshold_choices(float(default.threshold), top)
        calibrated = start if math.isfinite(default.threshold) else None
        threshold = st.select_slider(
            "Maximum code distance to name a face", choices, value=start,
            format_func=lambda v: f"{v:.4g}" + (" (calibrated)" if v == calibrated else ""),
            key=f"{key}.{start:.4g}",  # a retrained model's new calibration starts afresh
            help="calibrated when the model was trained; farther faces are answered \"unknown\"")
        calibration = getattr(default, "calibration", None)
        if calibration is not None:
            st.caption(calibration.describe())
            if calibration.names_few_known:
                st.warning(calibration.few_known_advice(getattr(model, "kind", "")))
    return model.recognizer(threshold)
