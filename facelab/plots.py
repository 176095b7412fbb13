"""Plotly figures for the dashboard: pure functions of arrays and histories, no Streamlit, no models.

Faces are (N, S, S) float32 in [0, 1]; several faces are drawn as one mosaic image (one trace, one
PNG in the figure's JSON) rather than one subplot per face, which keeps big grids quick to send.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# Answer colours: RIGHT for a name (a right one where the truth is known), WRONG for a wrong name (or "unknown"
# on a photo), UNSURE for a known person turned away as "unknown".
RIGHT, WRONG, UNSURE = "#16a34a", "#dc2626", "#6b7280"
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563",
           "#65a30d")
_LAYOUT = dict(template="plotly_white", margin=dict(l=40, r=20, t=50, b=40))


def _is_accuracy(key: str) -> bool:
    base = key.removeprefix("val_")
    return "acc" in base or base in ("top5", "top_5")


def _is_loss(key: str) -> bool:
    return key.removeprefix("val_").endswith("loss")


def training_curves(history: Mapping[str, Sequence[float]], title: str | None = None) -> go.Figure:
    """Loss (and accuracy, if logged) per epoch; training solid, validation dashed.

    `history` is a Keras-style dict of per-epoch lists (`loss`, `val_loss`, `accuracy`, ...); keys that
    are neither losses nor accuracies (learning rate, PSNR) are left out.
    """
    loss_keys = [k for k in history if _is_loss(k) and len(history[k])]
    acc_keys = [k for k in history if _is_accuracy(k) and len(history[k])]
    panels = [("loss", loss_keys)] + ([("accuracy", acc_keys)] if acc_keys else [])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
    for col, (_, keys) in enumerate(panels, start=1):
        bases = sorted({k.removeprefix("val_") for k in keys}, key=lambda b: (b != "loss", b))
        for i, base in enumerate(bases):
            for key, dash in ((base, "solid"), ("val_" + base, "dash")):
                if key not in keys:
                    continue
                values = [float(v) for v in history[key]]
                # ae-metric's total loss is almost all identity loss: drawn wide underneath, so both show.
                total = base == "loss" and len(bases) > 1
                fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers",
                                         name=key, line=dict(color=PALETTE[i % len(PALETTE)], dash=dash,
                                                             width=6 if total else 2),
                                         opacity=0.45 if total else 1.0, legendgroup=base), row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    _whole_epochs(fig, max((len(history[k]) for k in loss_keys + acc_keys), default=1))
    losses = np.array([float(v) for k in loss_keys for v in history[k]])
    losses = losses[np.isfinite(losses)]
    if len(losses) and losses.min() > 0 and losses.max() / losses.min() > 100:
        # ae-metric logs a reconstruction loss near 0.01 beside an identity loss near 10: on a linear axis the
        # first is a flat line at zero.
        # Ticks at powers of ten only: plotly's default labels 2 and 5 between them without their decade ("5" for 0.05).
        fig.update_yaxes(type="log", dtick=1, row=1, col=1)
    fig.update_layout(title=title, height=340, legend=dict(orientation="h", y=-0.25), **_LAYOUT)
    return fig


def model_colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per model name that depends on the name, not on its place in a chart, so a model keeps its colour
    from the Evaluate page to the Models page; a name whose colour another already took gets the next free one."""
    taken: dict[int, str] = {}
    out = {}
    for name in sorted(set(names)):
        slot = zlib.crc32(name.encode("utf-8")) % len(PALETTE)
        if len(taken) < len(PALETTE):
            while slot in taken:
                slot = (slot + 1) % len(PALETTE)
        taken[slot] = name
        out[name] = PALETTE[slot]
    return out


def compare_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], metric: str = "val_loss") -> go.Figure:
    """One `metric` per model, overlaid (models that did not log it are left out)."""
    fig = go.Figure()
    colours = model_colours(list(histories))
    for name, history in histories.items():
        values = history.get(metric) or []
        if len(values) == 0:
            continue
        fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=[float(v) for v in values],
                                 mode="lines+markers", name=name, line=dict(color=colours[name])))
    fig.update_layout(title=f"{metric} by model", xaxis_title="epoch", yaxis_title=metric, height=340, **_LAYOUT)
    _whole_epochs(fig, max((len(h.get(metric) or []) for h in histories.values()), default=1))
    return fig


def _whole_epochs(fig: go.Figure, epochs: int) -> None:
    """Epoch axes tick at whole epochs (Plotly put ticks at 1.5 and 2.5 for a three-epoch run)."""
    fig.update_xaxes(tick0=1, dtick=max(1, math.ceil(epochs / 10)))


def confusion_heatmap(confusion: Sequence[Sequence[float]] | np.ndarray, names: Sequence[str],
                      normalize: bool = True) -> go.Figure:
    """Confusion matrix (rows: true person, columns: predicted); rows normalised to shares if `normalize`."""
    counts = np.asarray(confusion, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(names):
        raise ValueError(f"confusion must be square with one row per name; got {counts.shape} for {len(names)} names")
    z = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    labels = [str(n) for n in names]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, colorscale="Blues", zmin=0,
                               customdata=counts, hovertemplate="true %{y}<br>taken for %{x}<br>%{customdata:.0f} "
                               "face(s)<extra></extra>"))
    side = min(900, 260 + 14 * len(labels))
    fig.update_layout(title="confusion matrix" + (" (share of each true person)" if normalize else ""),
                      xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed", height=side, **_LAYOUT)
    return fig


def per_person_bar(per_person: Mapping[str, float | Mapping[str, float]], title: str = "accuracy per person"
                   ) -> go.Figure:
    """A bar per person, lowest first, so the people the model confuses stand out.

    Values are accuracies, or dicts holding one under "accuracy" (as bundles of the first FaceLab versions store
    them).
    """
    flat = {k: float(v["accuracy"] if isinstance(v, Mapping) else v) for k, v in per_person.items()}
    items = sorted(flat.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[k for k, _ in items], y=[float(v) for _, v in items], marker_color=PALETTE[0]))
    fig.update_layout(title=title, yaxis=dict(range=[0, 1.05], title="accuracy"), height=320, **_LAYOUT)
    return fig


def latent_scatter(points: np.ndarray, labels: Sequence[int] | np.ndarray, names: Sequence[str],
                   title: str = "latent space") -> go.Figure:
    """2-D projected codes (N, 2), one trace (colour) per person so the legend toggles people."""
    points = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"points must be (N, 2) with one label each; got {points.shape} and {labels.shape}")
    fig = go.Figure()
    for label in np.unique(labels):
        mask = labels == label
        name = str(names[int(label)])
        fig.add_trace(go.Scattergl(x=points[mask, 0], y=points[mask, 1], mode="markers", name=name,
                                   marker=dict(size=8, color=PALETTE[int(label) % len(PALETTE)],
                                               symbol=int(label) // len(PALETTE) % 8),
                                   hovertemplate=f"{name}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="component 1", yaxis_title="component 2", height=480, **_LAYOUT)
    return fig


def mosaic(faces: np.ndarray, cols: int = 8, pad: int = 2, fill: float = 1.0) -> np.ndarray:
    """(N, S, S) faces -> one (rows*(S+pad)-pad, cols*(S+pad)-pad) image, row by row."""
    faces = np.asarray(faces, dtype=np.float32)
    if faces.ndim != 3:
        raise ValueError(f"faces must be (N, S, S); got shape {faces.shape}")
    n, h, w = faces.shape
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), fill, np.float32)
    for i, face in enumerate(faces):
        r, c = divmod(i, cols)
        out[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = face
    return out


GRID_PAD = 2  # pixels between the faces of a mosaic; captions and row labels are placed with it


def _image_figure(img: np.ndarray, colorscale: str | None, zmax: float, height: int | None) -> go.Figure:
    if colorscale is None:
        rgb = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        fig = go.Figure(go.Image(z=np.repeat(rgb[:, :, None], 3, axis=2), hoverinfo="skip"))
    else:
        fig = go.Figure(go.Heatmap(z=img, colorscale=colorscale, zmin=0, zmax=zmax, showscale=True,
                                   hovertemplate="error %{z:.3f}<extra></extra>"))
        fig.update_yaxes(autorange="reversed", scaleanchor="x")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    # Plotly keeps the image's aspect ratio inside the figure, so a height set from the rows alone leaves wide
    # mosaics floating in blank space: assume a display about 700 px wide (up to 2.2x enlargement).
    scale = min(2.2, 700 / max(img.shape[1], 1))
    fig.update_layout(height=height or max(160, int(img.shape[0] * scale) + 60),
                      **{**_LAYOUT, "margin": dict(l=5, r=5, t=40, b=5)})
    return fig


def _caption(fig: go.Figure, captions: Sequence[str] | None, n: int, cols: int, side: int, pad: int,
             colors: Sequence[str] | None = None) -> None:
    for i, text in enumerate((captions or [])[:n]):
        if not text:
            continue
        r, c = divmod(i, cols)
        color = colors[i] if colors is not None and i < len(colors) else "#111827"
        fig.add_annotation(x=c * (side + pad) + side / 2, y=r * (side + pad) + side - 2,
                           text=str(text).replace("\n", "<br>"),
                           showarrow=False, yanchor="bottom", font=dict(size=10, color=color),
                           bgcolor="rgba(255,255,255,0.75)")


def face_grid(faces: np.ndarray, captions: Sequence[str] | None = None, cols: int = 8,
              title: str | None = None, colors: Sequence[str] | None = None) -> go.Figure:
    """Faces in a grid with an optional caption on each (a name, a score; a newline breaks it), in `colors` if
    given."""
    faces = np.asarray(faces, dtype=np.float32)
    if faces.ndim != 3 or len(faces) == 0:
        raise ValueError(f"face_grid needs (N, S, S) faces with N >= 1; got shape {faces.shape}")
    cols = max(1, min(cols, len(faces)))
    fig = _image_figure(mosaic(faces, cols, GRID_PAD), None, 1.0, None)
    _caption(fig, captions, len(faces), cols, faces.shape[1], GRID_PAD, colors)
    fig.update_layout(title=title)
    return fig


def people_grid(groups: Sequence[np.ndarray], names: Sequence[str], title: str | None = None) -> go.Figure:
    """One row per person, named once at its left: each (n_i, S, S) group of faces, short rows left blank, so
    a person with fewer faces does not push the next one into their row."""
    rows = [(np.asarray(g, np.float32), name) for g, name in zip(groups, names) if len(g)]
    if not rows:
        raise ValueError("people_grid needs at least one face")
    cols, side = max(len(g) for g, _ in rows), rows[0][0].shape[1]
    blank = np.ones((side, side), np.float32)
    faces = [face for group, _ in rows for face in (*group, *[blank] * (cols - len(group)))]
    fig = face_grid(np.stack(faces), None, cols, title)
    # A name under every face overlapped its neighbours' once the faces were small (800 px wide windows).
    fig.update_yaxes(visible=True, showgrid=False, zeroline=False, ticks="",
                     tickvals=[r * (side + GRID_PAD) + side / 2 for r in range(len(rows))], ticktext=[n for _, n in rows])
    fig.update_layout(margin=dict(l=5, r=5, t=40 if title else 5, b=5))
    return fig


def reconstruction_strip(originals: np.ndarray, reconstructions: np.ndarray,
                         scores: Sequence[float] | None = None, title: str = "originals (top) and reconstructions") -> go.Figure:
    """Originals on the top row, their reconstructions below, the PSNR (dB) under each pair."""
    originals = np.asarray(originals, np.float32)
    reconstructions = np.asarray(reconstructions, np.float32)
    if originals.shape != reconstructions.shape or originals.ndim != 3:
        raise ValueError(f"originals and reconstructions must be equal (N, S, S); got {originals.shape} "
                         f"and {reconstructions.shape}")
    n, side = len(originals), originals.shape[1]
    fig = _image_figure(mosaic(np.concatenate([originals, reconstructions]), n, GRID_PAD), None, 1.0, None)
    if scores is not None:
        _caption(fig, [""] * n + [f"{s:.1f} dB" for s in scores], 2 * n, n, side, GRID_PAD)
    fig.update_layout(title=title)
    return fig


def error_maps(errors: np.ndarray, captions: Sequence[str] | None = None, cols: int = 8,
               title: str = "absolute error per pixel") -> go.Figure:
    """(N, S, S) per-pixel errors as a heat-map mosaic on one shared colour scale."""
    errors = np.asarray(errors, np.float32)
    if errors.ndim != 3 or len(errors) == 0:
        raise ValueError(f"error_maps needs (N, S, S) errors; got shape {errors.shape}")
    cols = max(1, min(cols, len(errors)))
    zmax = float(max(np.percentile(errors, 99.5), 1e-6))
    fig = _image_figure(mosaic(errors, cols, GRID_PAD, fill=0.0), "Inferno", zmax, None)
    _caption(fig, captions, len(errors), cols, errors.shape[1], GRID_PAD)
    fig.update_layout(title=title)
    return fig


PHOTO_PREVIEW_SIDE = 1280  # longer side of the picture sent to the browser; boxes are scaled with it


def photo_with_boxes(img_bgr: np.ndarray, boxes: Sequence, labels: Sequence[str] | None = None,
                     colors: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """A photo with a rectangle and a label per face; boxes have x, y, w, h (`facelab.preprocess.Box`).

    The photo goes to the browser as a JPEG of at most `PHOTO_PREVIEW_SIDE` pixels: as an array of pixel values a
    24-megapixel photo made a JSON string too long for the browser ("RangeError: Invalid string length")."""
    import base64

    import cv2

    img = np.asarray(img_bgr)
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[:, :, :3]
    scale = min(1.0, PHOTO_PREVIEW_SIDE / max(bgr.shape[:2]))
    if scale < 1:
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    jpeg = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    fig = go.Figure(go.Image(source="data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode(),
                             hoverinfo="skip"))
    for i, box in enumerate(boxes):
        color = (colors[i] if colors else None) or PALETTE[i % len(PALETTE)]
        x0, y0 = box.x * scale, box.y * scale
        fig.add_shape(type="rect", x0=x0, y0=y0, x1=(box.x + box.w) * scale, y1=(box.y + box.h) * scale,
                      line=dict(color=color, width=3))
        if labels and i < len(labels):
            fig.add_annotation(x=x0, y=y0, text=str(labels[i]), showarrow=False, xanchor="left",
                               yanchor="bottom", font=dict(color="white", size=12), bgcolor=color)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    height = int(min(640, max(240, bgr.shape[0] * min(1.0, 720 / max(bgr.shape[1], 1)))))
    fig.update_layout(title=title, height=height + 40, **{**_LAYOUT, "margin": dict(l=5, r=5, t=40, b=5)})
    return fig
