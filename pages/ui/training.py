"""The training panel both train pages share.

Training runs in a background thread per session (`TrainingJob`): Keras reports into the job and a fragment
redraws from it every second, so the Stop button acts at once, the user can change page while a model trains,
and a closed tab still gets its model saved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from facelab.errors import FaceLabError
from facelab.jobs import TrainingJob, format_seconds
from facelab.storage import check_bundle_target
from pages.ui.forms import config_form, split_form
from pages.ui.messages import show_error
from pages.ui.state import JOBS, add_model, data_key, dataset, kept, model_dir, remember_test, unique_name
from pages.ui.views import show_metrics


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
        views = ", cutting the faces out as the detector does" if job.model.config.train.detector_views else ""
        st.progress(0.0, text=f"Preparing {job.name} (loading Keras, building the model{views})...")
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
