"""Views more than one page shows: model tables, metric tiles, curve comparisons and the embedding space."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from facelab.errors import FaceLabError
from facelab.evaluation import HEADLINE, headline_metrics
from pages.ui.messages import show_error
from pages.ui.state import LATENT


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
