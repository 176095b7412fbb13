"""The one module in `facelab` that imports Streamlit: glue shared by the dashboard's pages.

Session-state keys, cached data loaders, guards that stop a page with a hint, a form built from any
config dataclass, the training panel both train pages use, and views more than one page shows (model
tables, curve comparisons, the embedding space, a confirmation before what cannot be undone).

Training runs in a background thread per session (`TrainingJob`): Keras reports into the job and a
fragment redraws from it every second, so the Stop button acts at once, the user can change page while
a model trains, and a closed tab still gets its model saved.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from facelab.errors import FaceLabError
from facelab.evaluation import HEADLINE, headline_metrics, misclassified
from facelab.jobs import TrainingJob, format_seconds
from facelab.registry import is_classifier
from facelab.storage import (
    check_bundle_target,
    default_model_dir,
    free_bundle_name,
    is_bundle,
    list_bundles,
    user_folder,
)

log = logging.getLogger(__name__)


def _leave_pages_folder_mode() -> None:
    """Make sure app.py (the frame) runs, even for the first visit after the server starts.

    Streamlit treats an app with a `pages/` folder as an old-style multipage app until the first
    `st.navigation` call in the process: a fresh server asked for /data runs pages/data.py alone,
    without app.py's sidebar and navigation. The first import of this module (from that page) turns
    the old mode off and asks for a rerun, which goes through app.py to the same page.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:  # a Streamlit without these internals: nothing to fix
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        if get_script_run_ctx() is not None:
            st.rerun()


_leave_pages_folder_mode()

# ------------------------------------------------------------------------------------ session state
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


# ------------------------------------------------------------------------------------------- guards
def data_key(ds: Any) -> str:
    """A token of the data set for widget keys, so choices made among one data set's people or images start
    afresh for another (a kept choice of names the new data lack would show nothing)."""
    return f"{abs(hash((ds.source, tuple(ds.names), len(ds.images)))):x}"


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


def show_error(err: BaseException) -> None:
    """A FaceLabError as a message; anything else as a short error (the log has the traceback)."""
    if isinstance(err, FaceLabError):
        st.error(str(err), icon=":material/error:")
    else:
        log.exception("unexpected error in the dashboard", exc_info=err)
        st.error(f"Something went wrong: {type(err).__name__}: {err}", icon=":material/error:")


# ------------------------------------------------------------------------------------------ loaders
def load_spec(spec: str, progress: Callable[[float, str], None] | None = None):
    """`facelab.data.load_dataset(spec)`, cached per spec and version of its files (the same for every user)."""
    from facelab.data import load_dataset, source_version

    return _cached(("spec", spec, source_version(spec)), lambda: load_dataset(spec, progress=progress))


def load_upload(name: str, data: bytes, progress: Callable[[float, str], None] | None = None):
    """`facelab.data.load_upload`, cached by content."""
    from facelab.data import load_upload as load

    return _cached(("upload", name, hashlib.sha256(data).hexdigest()), lambda: load(name, data, progress=progress))


@st.cache_resource
def _loaded_datasets() -> tuple[OrderedDict, threading.Lock]:
    return OrderedDict(), threading.Lock()


def _cached(key: tuple, load: Callable[[], Any], max_entries: int = 8) -> Any:
    """A data set loaded once for every session, the least recently used dropped first. Not st.cache_data: it
    replays the progress bar's updates on a cache hit, and a bar made outside the function cannot be replayed
    (the second Load of a folder or zip failed with CacheReplayClosureError)."""
    cache, lock = _loaded_datasets()
    with lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    ds = load()
    with lock:
        cache[key] = ds
        while len(cache) > max_entries:
            cache.popitem(last=False)
    return ds


def load_with_progress(loader: Callable[..., Any], *args: Any):
    """Run a cached loader with a progress bar (folders and zips report per file); errors become messages."""
    bar = st.progress(0.0, text="Loading faces...")

    def progress(fraction: float, item: str) -> None:
        bar.progress(min(max(fraction, 0.0), 1.0), text=f"Loading {item}")

    try:
        return loader(*args, progress=progress)
    except Exception as err:  # noqa: BLE001  a file from anywhere: a message (and the log), never a traceback
        show_error(err)
        return None
    finally:
        bar.empty()


@st.cache_data(show_spinner=False, ttl=600)
def device_label() -> str:
    """The compute device in words (asks nvidia-smi, not TensorFlow, so the first page stays quick)."""
    from facelab.device import device_info

    return device_info().label()


# ------------------------------------------------------------------------------------- config forms
def config_form(config: Any, key: str, skip: tuple[str, ...] = (), columns: int = 3) -> Any:
    """A widget for every field of a frozen config dataclass (nested configs in an expander); the new config.

    Fields, limits and help come from `facelab.registry.config_fields`, values go back through
    `replace_config` (which checks them). Widget keys are `key.field`; `key` should change with the
    preset so that picking a preset resets the widgets to its values.
    """
    from facelab.registry import config_fields, replace_config

    fields = [f for f in config_fields(type(config)) if f.name not in skip]
    groups: dict[tuple[str, ...], list] = {}
    for spec in fields:
        groups.setdefault(spec.path[:-1], []).append(spec)
    values: dict[str, Any] = {}
    for prefix, specs in groups.items():
        box = st.expander(" / ".join(p.replace("_", " ") for p in prefix).capitalize() + " settings",
                          expanded=True) if prefix else st.container()
        cols = box.columns(columns)
        for i, spec in enumerate(specs):
            current = config
            for part in spec.path:
                current = getattr(current, part)
            with cols[i % columns]:
                values[spec.name] = _field_widget(spec, current, kept(f"{key}.{spec.name}"))
    try:
        return replace_config(config, **values)
    except FaceLabError as err:
        show_error(err)
        st.stop()


def _field_widget(spec: Any, current: Any, key: str) -> Any:
    """The widget for one `ConfigField`: select for choices, checkbox, slider (log scale if marked), text."""
    label = spec.name.replace("_", " ")
    help_ = spec.help or None
    lo, hi = spec.min, spec.max
    if spec.choices:
        options = list(spec.choices)
        index = options.index(current) if current in options else 0
        return st.selectbox(label, options, index=index, key=key, help=help_)
    if spec.type is bool or isinstance(current, bool):
        return st.checkbox(label, value=bool(current), key=key, help=help_)
    if spec.type is int:
        if lo is not None and hi is not None and hi - lo <= 512:
            return int(st.slider(label, int(lo), int(hi), int(current), key=key, help=help_))
        return int(st.number_input(label, min_value=None if lo is None else int(lo),
                                   max_value=None if hi is None else int(hi), value=int(current), step=1,
                                   key=key, help=help_))
    if spec.type is float:
        if spec.log and lo and hi:
            # Learning rates and the like: steps of 1-2-5 per decade read better than a linear slider.
            return float(st.select_slider(label, options=spec.log_options(float(current)),
                                          value=float(current), key=key, help=help_, format_func=lambda v: f"{v:g}"))
        if lo is not None and hi is not None:
            return float(st.slider(label, float(lo), float(hi), float(current), step=spec.slider_step(),
                                   key=key, help=help_))
        return float(st.number_input(label, value=float(current), key=key, help=help_, format="%g"))
    if spec.type is tuple or isinstance(current, tuple):
        text = st.text_input(label, ", ".join(str(v) for v in current), key=key, help=help_)
        kind = type(current[0]) if current else int
        try:
            return tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            st.warning(f"{label}: expected comma-separated {kind.__name__} values; kept {current}")
            return current
    return st.text_input(label, "" if current is None else str(current), key=key, help=help_)


# ----------------------------------------------------------------------------------------- training
def jobs() -> dict[str, TrainingJob]:
    return st.session_state.setdefault(JOBS, {})


def running_jobs() -> list[TrainingJob]:
    return [job for job in jobs().values() if job.running]


def training_lines() -> None:
    """A line per running training, redrawn every 2 s while one runs; a full rerun when it ends shows its model."""
    names = [job.name for job in running_jobs()]
    st.fragment(_training_lines, run_every=2.0 if names else None)(names)


def _training_lines(names_at_start: list[str]) -> None:
    running = {job.name: job for job in running_jobs()}
    if any(name not in running for name in names_at_start):
        st.rerun()  # a training has ended: every page then offers its model (collect_finished)
    for job in running.values():
        progress = job.progress
        where = f"epoch {progress.epoch}/{progress.epochs}" if progress else "starting"
        st.caption(f"Training {job.name}: {where}")


def collect(job: TrainingJob) -> None:
    """Move a finished job's model, and its test results (`remember_test`), into the session once."""
    if job.running or job.collected:
        return
    job.collected = True
    if job.error is None:
        add_model(job.name, job.model, job.path)
        if getattr(job.model, "test_predictions_", None):
            remember_test(job.name, job.split.test, job.model.test_predictions_)


def remember_test(name: str, test: Any, predicted: list[str]) -> None:
    """Keep what model `name` got wrong on `test` (Evaluate) and a sample of the test faces to try (Identify)."""
    st.session_state.setdefault(EVALUATIONS, {})[name] = misclassified(test.images, test.face_names, predicted)
    st.session_state.setdefault(TEST_FACES, {})[name] = test.sample(TEST_SAMPLE)


def test_faces(name: str) -> Any:
    """The sample of model `name`'s test faces kept by `remember_test`, or None."""
    return st.session_state.get(TEST_FACES, {}).get(name)


def split_form(ds: Any, key: str) -> Callable[[], Any]:
    """Sliders for the per-person split (K training faces, of which some validate; the rest test).

    Returns a function that makes the `DataSplit` when called (when Train is pressed).
    """
    from facelab.data import split_dataset

    if ds.usage is not None:
        st.caption("This source fixes its own train / validation / test split; it is kept.")
        return lambda: split_dataset(ds)
    fewest = min(ds.counts().values())
    key = f"{key}.{data_key(ds)}"  # another data set has other limits: its sliders start afresh
    cols = st.columns(3)
    with cols[0]:
        k = _count_slider("training faces per person (K)", 1, fewest - 1, 5, kept(f"{key}.k"),
                          "the rest of each person's faces are the test set")
    with cols[1]:
        val = _count_slider("of which for validation", 0, k - 1, 1, kept(f"{key}.val"),
                            "validation faces choose the best epoch and give the validation curves; test faces are "
                            "only for reporting. 0 trains on every training face for the preset's fixed epochs, as "
                            "the benchmarks do (for ae-metric on Olivetti that named more validation faces rightly)")
    seed = cols[2].number_input("split seed", 0, 10_000, 0, key=kept(f"{key}.seed"))
    return lambda: split_dataset(ds, train_per_person=k, val_per_person=val, seed=int(seed))


def _count_slider(label: str, lo: int, hi: int, preferred: int, key: str, help_: str) -> int:
    """An int slider from `lo` to `hi`; when the data leave one choice, that choice as a caption (a slider whose
    ends meet is an error in Streamlit)."""
    hi = max(lo, hi)
    if hi == lo:
        st.caption(f"{label}: {lo} (the person with the fewest faces leaves no other choice)")
        return lo
    return int(st.slider(label, lo, hi, min(max(preferred, lo), hi), key=key, help=help_))


def collect_finished() -> None:
    """Collect every finished job, so a model trained while the user was on another page shows up."""
    for job in list(jobs().values()):
        collect(job)


def training_section(kind: str, ds: Any, key: str, page: str) -> None:
    """The body both train pages share: a widget per config field of `kind`, the split, the training panel."""
    from facelab import registry

    with st.spinner("Loading the model code (Keras)..."):
        preset = registry.config_for(kind)
    st.subheader("Settings")
    # "Back to the preset" starts a new generation of widget keys: fresh widgets show the preset's values (a
    # deleted widget state is not enough, the browser would keep showing the old value).
    generation = f"{key}.reset.{kind}"
    n = st.session_state.get(generation, 0)
    config = config_form(preset, key=f"{key}.{kind}" + (f".v{n}" if n else ""), skip=("kind", *preset.unused_fields()))
    changed = registry.changed_fields(preset, config)
    if changed:
        row = st.container(horizontal=True, vertical_alignment="center")  # wraps at 800 px ("Bac…" in a column)
        row.caption("Changed from the preset: " + ", ".join(c.replace("_", " ") for c in changed))
        row.button("Back to the preset", key=f"{generation}.button", icon=":material/restart_alt:",
                     on_click=lambda: st.session_state.update({generation: n + 1}))
    st.subheader("Split")
    make_split = split_form(ds, key=f"{key}.split")
    st.subheader("Training")
    training_panel(page, lambda: registry.create_model(config), make_split, default_name=kind)


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


def training_panel(page: str, make_model: Callable[[], Any], make_split: Callable[[], Any], default_name: str) -> None:
    """Name, Train button, live progress and curves, Stop button, and the result with its metrics.

    `make_model()` returns an unfitted estimator and `make_split()` a DataSplit; both are called only
    when Train is pressed. `page` tells the jobs of the two train pages apart.
    """
    job = jobs().get(page)
    busy = job is not None and job.running
    name = st.text_input("Model name", unique_name(default_name), key=kept(f"{page}.name.{default_name}"),
                         disabled=busy,
                         help="the bundle is saved under this name in the model folder (sidebar)")
    if not busy and unique_name(name) != name:  # taken, or not a safe folder name
        st.caption(f"This training will be saved as {unique_name(name)}.")
    if st.button("Train", key=f"{page}.train", type="primary", disabled=busy, icon=":material/play_arrow:"):
        name = unique_name(name)
        try:
            check_bundle_target(model_dir() / name)  # a model folder that cannot take it: say so before training
            model, split = make_model(), make_split()
            job = TrainingJob(name, model, split, model_dir()).start()
        except FaceLabError as err:
            show_error(err)
            return
        jobs()[page] = job
        st.session_state[f"{page}.job_data"] = data_key(dataset())
        st.rerun()  # the whole app again, so that the sidebar's training line starts ticking
    if job is None:
        return
    if job.running:
        _live(job)
        return
    collect(job)
    if job.error and st.session_state.get(f"{page}.job_data") != data_key(dataset()):
        # A failure on data loaded before is history, not something to fix on the data now loaded.
        st.caption(f"The last training, {job.name}, on the data set loaded before, failed: {job.error}")
        return
    _result(job)


@st.fragment(run_every=1.0)
def _live(job: TrainingJob) -> None:
    """Redrawn every second while the job runs; a full rerun when it ends shows the result."""
    if not job.running:
        st.rerun()
    from facelab import plots

    progress, history = job.snapshot()
    if progress is None:
        st.progress(0.0, text=f"Preparing {job.name} (loading Keras, building the model)...")
    else:
        text = (f"epoch {progress.epoch}/{progress.epochs} · batch {progress.batch}/{progress.batches} · "
                f"{format_seconds(progress.elapsed_s)} elapsed · {format_seconds(progress.eta_s)} left")
        if job.phase == "training" and progress.fraction >= 1:  # Keras is done; the estimator finishes its fit
            text = "Trained; taking the best weights and finishing up..."
        text = {"testing": "Trained; measuring it on the test faces...",
                "saving": "Trained and tested; saving the bundle..."}.get(job.phase, text)
        st.progress(progress.fraction, text=text)
    if job.stop.requested:
        st.caption("Stopping after this batch; the best weights so far are kept.")
    else:
        st.button("Stop", key=f"stop.{job.name}", on_click=job.stop.request, icon=":material/stop:",
                  help="end training after the current batch and keep the best model so far")
    if history:
        st.plotly_chart(plots.training_curves(history, title=job.name), key=f"live_curves.{job.name}")


def _result(job: TrainingJob) -> None:
    from facelab import plots

    history = job.final_history()
    if job.error:
        st.error(job.error, icon=":material/error:")
    else:
        epochs = len(next(iter(history.values()), []))
        how = "stopped" if job.stop.requested else "finished"
        where = (f"saved to {job.path}" if job.path and job.path.is_dir()
                 else "its saved bundle has been deleted since" if job.path else "not saved")
        st.success(f"{job.name}: {how} after {epochs} epoch(s) in {format_seconds(job.finished - job.started)}; "
                   f"{where}", icon=":material/check_circle:")
        if job.save_error:
            st.warning(f"{job.save_error}. The model is kept in this session: save it from the Models page once the "
                       "model folder can take it.", icon=":material/warning:")
        metrics = getattr(job.model, "metrics_", None) or {}
        show_metrics(metrics)
    if history:
        st.plotly_chart(plots.training_curves(history, title=job.name), key=f"curves.{job.name}")


def metrics_table(rows: list[dict]) -> None:
    """A table of models whose metric columns carry `evaluation.HEADLINE` labels, formatted like the tiles."""
    import pandas as pd  # here: importing it costs the app's first render 0.2 s on pages without tables

    percent = {HEADLINE[k] for k in ("accuracy", "top5")}
    # Shares shown as percentages with one decimal everywhere ("40.0%" beside "29.5%"; the "percent" format
    # drops the decimal of round values).
    table = pd.DataFrame([{k: v * 100 if k in percent and v is not None else v for k, v in row.items()}
                          for row in rows])
    formats = {"accuracy": "%.1f%%", "top5": "%.1f%%", "recon_mse": "%.4g"}
    # "–" where a model has no such figure (a classifier's reconstruction error), instead of a grey "None".
    st.dataframe(table, hide_index=True, placeholder="–", column_config={
        label: st.column_config.NumberColumn(format=formats.get(key, "%.2f")) for key, label in HEADLINE.items()})


def compare_curves(histories: dict[str, dict[str, list[float]]], key: str) -> None:
    """A choice of logged curve and the models' curves of it overlaid (validation loss first when logged)."""
    from facelab import plots

    curves = sorted({k for h in histories.values() for k in h if k not in ("seconds", "lr")})
    if not curves:
        st.caption("No training curves were recorded for these models.")
        return
    metric = st.selectbox("Curve", curves, index=curves.index("val_loss") if "val_loss" in curves else 0,
                          key=f"{key}.curve")
    st.plotly_chart(plots.compare_curves(histories, metric), key=f"{key}.chart")
    missing = [name for name, history in histories.items() if not history.get(metric)]
    if missing:  # left out of the chart: say so, rather than let a model vanish from the legend
        st.caption(f"No {metric} curve for {', '.join(missing)}"
                   + (" (trained without validation faces)" if metric.startswith("val_") else "") + ".")


def embedding_space(name: str, model: Any, ds: Any, embed: Callable[[np.ndarray], np.ndarray], what: str,
                    key: str) -> None:
    """A 2-D projection (PCA or t-SNE) of `embed` over up to 2000 faces of `ds`, one colour per person."""
    from facelab import plots, reconstruction

    method = st.radio("Projection", ["pca", "tsne"], horizontal=True, key=f"{key}.method",
                      format_func={"pca": "PCA (fast)", "tsne": "t-SNE (slower)"}.get)
    # Per-session memo of the points and their labels: t-SNE takes seconds, and neither it nor drawing the sample
    # must run again when another widget on the page moves.
    memo = st.session_state.setdefault(LATENT, {})
    memo_key = (key, name, id(model), ds.source, len(ds.images), method)
    if memo_key not in memo:
        shown = ds.sample(2000)  # a cap keeps t-SNE and the browser responsive
        with st.spinner("Encoding and projecting..."):
            try:
                memo[memo_key] = (reconstruction.project_codes(embed(shown.images), method), shown.labels)
            except FaceLabError as err:
                show_error(err)
                return
    points, labels = memo[memo_key]
    st.plotly_chart(plots.latent_scatter(points, labels, ds.names, title=f"{what} of {name} ({method})"),
                    key=f"{key}.chart")


def show_metrics(metrics: dict) -> None:
    """The headline numbers of an evaluation as metric tiles."""
    shown = headline_metrics(metrics)
    if not shown:
        return
    # A row that wraps: in five columns at 800 px the figures were cut to "90.…".
    with st.container(horizontal=True):
        for label, text in shown:
            st.metric(label, text)


# ------------------------------------------------------------------------------ webcam face crops
def camera_stream(key: str, on_frame: Callable, rtc: dict[str, Any]) -> bool:
    """The WebRTC camera widget (640x480 video, no audio) sending each frame to `on_frame`; whether it plays."""
    from facelab.live import prepare_webrtc_import

    prepare_webrtc_import()  # another page may have loaded TensorFlow first: see its docstring
    from streamlit_webrtc import webrtc_streamer

    ctx = webrtc_streamer(key=key, video_frame_callback=on_frame, rtc_configuration=rtc,
                          media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
                          async_processing=True)
    return bool(ctx.state.playing)


def capture_caption(capture: Any) -> None:
    """How far an enrolment `FaceCapture` is, and why frames were not used (e.g. "12x no face found")."""
    st.caption(f"Captured {capture.count}/{capture.config.n_faces} crops from {capture.frames()} frames"
               + capture.refused_text())


def capture_progress(capture: Any, shown_key: str) -> None:
    """For a fragment that reruns while the camera plays: the capture's progress bar, then, once it fills
    up, one full rerun so that the page draws its crops (a fragment cannot draw outside itself)."""
    if capture is None:
        return
    if not capture.done:
        st.progress(capture.count / capture.config.n_faces, f"Captured {capture.count}/{capture.config.n_faces}")
    elif st.session_state.get(shown_key) is not capture:
        st.rerun()


def mark_capture_shown(capture: Any, shown_key: str) -> None:
    """Called by the full run that draws a finished capture's crops, so `capture_progress` stops rerunning."""
    if capture is not None and capture.done:
        st.session_state[shown_key] = capture


def pick_crops(faces: Any, key: str, looks_like: list[str | None] | None = None) -> list[int]:
    """Show (N, S, S) crops with a box each, ticked unless `looks_like` names a known person the crop looks like
    (shown under it); returns the indices of the crops still ticked."""
    st.caption("Check the crops: untick any that is not the person.")
    looks_like = looks_like or [None] * len(faces)
    # Keyed by the crops themselves: a new capture or other photos start from their own ticks, not the last set's.
    crops = hashlib.sha1(np.ascontiguousarray(faces).tobytes()).hexdigest()[:10]
    cols = st.columns(min(len(faces), 10))
    keep = [cols[i % len(cols)].checkbox(f"{i + 1}", looks_like[i] is None, key=kept(f"{key}.{crops}.{i}"))
            for i in range(len(faces))]
    for i, face in enumerate(faces):
        cols[i % len(cols)].image(face, clamp=True, width=64, caption=f"like {looks_like[i]}" if looks_like[i] else None)
    return [i for i, k in enumerate(keep) if k]


def ask_confirmation(key: str, item: str) -> None:
    """Start asking whether to go ahead with the action `key` on `item` (see `confirmed`)."""
    st.session_state[f"{key}.pending"] = item


def confirmed(key: str, item: str, question: str, yes: str) -> bool:
    """While `ask_confirmation(key, item)` is pending: the question with `yes` / Cancel buttons. True on the run
    the user presses `yes`; for actions that cannot be undone."""
    pending = f"{key}.pending"
    if st.session_state.get(pending) != item:
        # Another item was chosen meanwhile: the question lapses instead of coming back with its item.
        st.session_state.pop(pending, None)
        return False
    st.warning(question)
    go_on, cancel = st.columns([1, 3])
    if go_on.button(yes, key=f"{key}.yes", type="primary"):
        st.session_state.pop(pending)
        return True
    if cancel.button("Cancel", key=f"{key}.no"):
        st.session_state.pop(pending)
        st.rerun()
    return False


def rerun_with_message(place: str, text: str, forget: str | None = None, error: bool = False) -> None:
    """Rerun the page at once, so nothing the action changed is left drawn stale (crops that were just added,
    a person just removed), and show `text` (a success, or an error) where the page calls `show_message(place)`.
    Widget values whose keys start with `forget` are dropped (e.g. the ticks of crops that are gone, so the next
    ones start ticked)."""
    if forget:
        forget_kept(forget)
    st.session_state[DONE_MESSAGE] = (place, text, error)
    st.rerun()


def show_message(place: str) -> None:
    """The message `rerun_with_message` left for this place, once."""
    message = st.session_state.get(DONE_MESSAGE)
    if message and message[0] == place:
        del st.session_state[DONE_MESSAGE]
        (st.error if message[2] else st.success)(message[1])
