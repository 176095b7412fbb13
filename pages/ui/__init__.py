"""The dashboard's glue, shared by the pages as `ui.<name>`: the only code that imports Streamlit besides
app.py and the pages. It lives beside the pages, not in `facelab`, so the library and the CLI import no Streamlit.

By concern: `state` (session-state keys, the session's models and data set), `messages` (errors, messages that
outlive a rerun, confirmations), `pickers` (guards that stop a page with a hint, model and threshold choices),
`loading` (data sets cached for every session), `forms` (a widget per config field, the split), `training`
(the train pages' panel), `views` (tables, curves, the embedding space) and `camera` (webcam capture).
"""

from __future__ import annotations

import sys

import streamlit as st

from pages.ui.camera import (
    camera_stream,
    capture_caption,
    capture_progress,
    mark_capture_shown,
    pick_crops,
)
from pages.ui.forms import (
    config_form,
    split_form,
)
from pages.ui.loading import (
    device_label,
    load_spec,
    load_upload,
    load_with_progress,
)
from pages.ui.messages import (
    ask_confirmation,
    confirmed,
    rerun_with_message,
    show_error,
    show_message,
)
from pages.ui.pickers import (
    pick_model,
    pick_people,
    recognizer_with_threshold,
    require_dataset,
    require_models,
)
from pages.ui.state import (
    ACTIVE_MODEL,
    DATASET,
    DATASET_LABEL,
    DONE_MESSAGE,
    EVALUATIONS,
    JOBS,
    KEPT_WIDGETS,
    LATENT,
    MODEL_DIR,
    MODEL_PATHS,
    MODELS,
    PAGE_DATA,
    PAGE_LIVE,
    PAGE_MODELS,
    PAGE_TRAIN_AE,
    PAGE_TRAIN_GRU,
    TEST_FACES,
    TEST_SAMPLE,
    active_model_name,
    add_model,
    data_key,
    dataset,
    forget_kept,
    keep_widget_values,
    kept,
    model_dir,
    model_dir_default_text,
    model_paths,
    models,
    remember_test,
    save_target,
    set_dataset,
    test_faces,
    unique_name,
)
from pages.ui.training import (
    collect,
    collect_finished,
    jobs,
    running_jobs,
    training_lines,
    training_panel,
    training_section,
)
from pages.ui.views import (
    compare_curves,
    embedding_space,
    metrics_table,
    show_metrics,
)


def _leave_pages_folder_mode() -> None:
    """Make sure app.py (the frame) runs, even for the first visit after the server starts.

    Streamlit treats an app with a `pages/` folder as an old-style multipage app until the first
    `st.navigation` call in the process: a fresh server asked for /data runs pages/data.py alone,
    without app.py's sidebar and navigation. The first import of this package (from that page) turns
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


def _keep_keras_session() -> None:
    """Stop Streamlit from clearing Keras's session at the end of every script run.

    Streamlit calls `keras.backend.clear_session()` after each run, fragments included. Here models train in
    background threads while the Train page's progress reruns every second: each clear dropped TensorFlow's kernel
    cache, ran a full garbage collection and reset Keras's global state under the training thread. A profile put
    half of the server's samples in it, and the ae-metric preset on 36 people took 2:36-2:56 with the Train page
    open against 1:09 with the browser on Home. Matplotlib's figures are still closed, as Streamlit does.
    """
    try:
        from streamlit.runtime.scriptrunner import script_runner
    except ImportError:  # a Streamlit without these internals: nothing to fix
        return
    if not hasattr(script_runner, "_clean_problem_modules"):
        return

    def close_matplotlib_figures() -> None:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")

    script_runner._clean_problem_modules = close_matplotlib_figures


_leave_pages_folder_mode()
_keep_keras_session()

__all__ = [
    "ACTIVE_MODEL",
    "DATASET",
    "DATASET_LABEL",
    "DONE_MESSAGE",
    "EVALUATIONS",
    "JOBS",
    "KEPT_WIDGETS",
    "LATENT",
    "MODELS",
    "MODEL_DIR",
    "MODEL_PATHS",
    "PAGE_DATA",
    "PAGE_LIVE",
    "PAGE_MODELS",
    "PAGE_TRAIN_AE",
    "PAGE_TRAIN_GRU",
    "TEST_FACES",
    "TEST_SAMPLE",
    "active_model_name",
    "add_model",
    "data_key",
    "dataset",
    "forget_kept",
    "keep_widget_values",
    "kept",
    "model_dir",
    "model_dir_default_text",
    "model_paths",
    "models",
    "remember_test",
    "save_target",
    "set_dataset",
    "test_faces",
    "unique_name",
    "ask_confirmation",
    "confirmed",
    "rerun_with_message",
    "show_error",
    "show_message",
    "pick_model",
    "pick_people",
    "recognizer_with_threshold",
    "require_dataset",
    "require_models",
    "device_label",
    "load_spec",
    "load_upload",
    "load_with_progress",
    "config_form",
    "split_form",
    "collect",
    "collect_finished",
    "jobs",
    "running_jobs",
    "training_lines",
    "training_panel",
    "training_section",
    "compare_curves",
    "embedding_space",
    "metrics_table",
    "show_metrics",
    "camera_stream",
    "capture_caption",
    "capture_progress",
    "mark_capture_shown",
    "pick_crops",
]
