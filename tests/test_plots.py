"""The dashboard's figures: pure functions, checked on real Olivetti faces and small histories."""

from __future__ import annotations

import numpy as np
import pytest

from facelab import plots
from facelab.preprocess import Box

HISTORY = {"loss": [2.0, 1.2, 0.8], "val_loss": [2.1, 1.5, 1.1], "accuracy": [0.2, 0.5, 0.8],
           "val_accuracy": [0.1, 0.4, 0.7], "learning_rate": [1e-3, 1e-3, 5e-4]}


def test_training_curves_has_train_and_val_per_panel():
    fig = plots.training_curves(HISTORY, title="gru")
    names = [t.name for t in fig.data]
    assert names == ["loss", "val_loss", "accuracy", "val_accuracy"]  # the learning rate is not a curve here
    assert list(fig.data[1].y) == HISTORY["val_loss"] and list(fig.data[0].x) == [1, 2, 3]
    assert fig.data[1].line.dash == "dash" and fig.data[0].line.dash == "solid"
    assert fig.data[2].xaxis == "x2"  # accuracy in its own panel
    assert [a.text for a in fig.layout.annotations] == ["loss", "accuracy"]


def test_training_curves_loss_only_and_multi_output():
    hist = {"loss": [1.0, 0.5], "val_loss": [1.1], "reconstruction_loss": [0.9, 0.4], "val_reconstruction_loss": []}
    fig = plots.training_curves(hist)
    assert [t.name for t in fig.data] == ["loss", "val_loss", "reconstruction_loss"]  # empty lists are dropped
    assert len(fig.layout.annotations) == 1  # no accuracy panel for an autoencoder
    empty = plots.training_curves({})
    assert len(empty.data) == 0
    assert fig.layout.yaxis.type is None  # losses of one scale: linear
    # ae-metric: a reconstruction loss near 0.01 beside an identity loss near 10 is drawn on a log axis.
    metric = plots.training_curves({"loss": [12.0, 9.0], "recon_loss": [0.03, 0.01], "identity_loss": [12.0, 9.0]})
    assert metric.layout.yaxis.type == "log" and metric.layout.yaxis.dtick == 1  # 0.01, 0.1, 1, 10: no bare "5"
    # The total loss (almost all identity loss) is drawn wide and pale underneath, so the two lines both show.
    width = {t.name: t.line.width for t in metric.data}
    assert width["loss"] > width["identity_loss"] and metric.data[0].name == "loss" and metric.data[0].opacity < 1


def test_compare_curves_one_trace_per_model():
    fig = plots.compare_curves({"a": HISTORY, "b": {"val_loss": [3, 2]}, "c": {"loss": [1]}}, "val_loss")
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[1].y) == [3.0, 2.0]


def test_a_model_keeps_its_colour_from_chart_to_chart():
    # Evaluate compares the session's models, the Models page saved bundles: the same model must not change colour.
    session = plots.compare_curves({"ae-metric": HISTORY, "gru-cnn": HISTORY}, "val_loss")
    saved = plots.compare_curves({"seed": HISTORY, "old": HISTORY, "gru-cnn": HISTORY, "ae-metric": HISTORY}, "val_loss")
    colour = lambda fig: {t.name: t.line.color for t in fig.data}  # noqa: E731
    assert colour(session)["gru-cnn"] == colour(saved)["gru-cnn"]
    assert colour(session)["ae-metric"] == colour(saved)["ae-metric"]
    names = [f"model-{i}" for i in range(len(plots.PALETTE))]
    assert len(set(plots.model_colours(names).values())) == len(plots.PALETTE)  # no two alike while colours last


def test_confusion_heatmap_normalises_rows():
    conf = [[8, 2, 0], [0, 5, 5], [0, 0, 0]]
    fig = plots.confusion_heatmap(conf, ["x", "y", "z"])
    z = np.asarray(fig.data[0].z)
    np.testing.assert_allclose(z[0], [0.8, 0.2, 0.0])
    np.testing.assert_allclose(z[2], [0, 0, 0])  # a person with no test faces does not divide by zero
    assert np.asarray(fig.data[0].customdata)[1, 2] == 5
    raw = plots.confusion_heatmap(conf, ["x", "y", "z"], normalize=False)
    assert np.asarray(raw.data[0].z)[0, 0] == 8
    with pytest.raises(ValueError, match="square"):
        plots.confusion_heatmap([[1, 2]], ["x"])


def test_latent_scatter_one_trace_per_person(olivetti):
    rng = np.random.default_rng(0)
    labels = olivetti.labels[:30]  # people 1-3
    points = rng.normal(size=(30, 2)) + labels[:, None] * 5
    fig = plots.latent_scatter(points, labels, olivetti.names)
    assert [t.name for t in fig.data] == olivetti.names[:3]
    assert all(len(t.x) == 10 for t in fig.data)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plots.latent_scatter(np.zeros((30, 3)), labels, olivetti.names)


def test_mosaic_places_faces_row_by_row(olivetti):
    faces = olivetti.images[:5]
    out = plots.mosaic(faces, cols=3, pad=2)
    assert out.shape == (2 * 64 + 2, 3 * 64 + 4)
    np.testing.assert_array_equal(out[:64, :64], faces[0])
    np.testing.assert_array_equal(out[66:130, 66:130], faces[4])
    assert (out[66:, 132:] == 1.0).all()  # the empty sixth slot is background


def test_face_grid_is_one_image_with_captions(olivetti):
    fig = plots.face_grid(olivetti.images[:12], captions=[f"p{i}" for i in range(12)], cols=6)
    assert len(fig.data) == 1 and fig.data[0].type == "image"
    assert np.asarray(fig.data[0].z).shape == (2 * 64 + 2, 6 * 64 + 10, 3)
    assert [a.text for a in fig.layout.annotations] == [f"p{i}" for i in range(12)]
    colored = plots.face_grid(olivetti.images[:2], captions=["a", "b\nc"], colors=[plots.RIGHT, plots.WRONG])
    assert [a.font.color for a in colored.layout.annotations] == [plots.RIGHT, plots.WRONG]
    assert colored.layout.annotations[1].text == "b<br>c"  # two lines
    with pytest.raises(ValueError):
        plots.face_grid(np.zeros((0, 64, 64)))


def test_people_grid_gives_each_person_a_row(olivetti):
    # 3 faces of one person beside 2 of another: in one 3-wide grid the second person's faces used to share rows
    # with the next person's; blank cells fill the short row now.
    fig = plots.people_grid([olivetti.images[:3], olivetti.images[10:12], olivetti.images[:0]], ["ann", "bo", "cy"])
    assert np.asarray(fig.data[0].z).shape == (2 * 64 + 2, 3 * 64 + 4, 3)
    # Each person named once, at the middle of their own row (not under every face, where names overlapped).
    assert list(fig.layout.yaxis.ticktext) == ["ann", "bo"] and list(fig.layout.yaxis.tickvals) == [32, 64 + 2 + 32]
    assert not fig.layout.annotations
    assert np.all(np.asarray(fig.data[0].z)[66:, 2 * 66:] == 255)  # bo's row: a blank third cell


def test_reconstruction_strip_and_error_maps(olivetti):
    faces = olivetti.images[:4]
    blurred = np.clip(faces * 0.9 + 0.05, 0, 1)
    fig = plots.reconstruction_strip(faces, blurred, scores=[20.0, 21.5, 22.0, 19.0])
    assert np.asarray(fig.data[0].z).shape == (2 * 64 + 2, 4 * 64 + 6, 3)
    assert [a.text for a in fig.layout.annotations if a.text] == ["20.0 dB", "21.5 dB", "22.0 dB", "19.0 dB"]
    with pytest.raises(ValueError):
        plots.reconstruction_strip(faces, blurred[:3])
    err = np.abs(faces - blurred)
    emap = plots.error_maps(err, cols=4)
    assert emap.data[0].type == "heatmap" and emap.data[0].zmax > 0
    assert np.asarray(emap.data[0].z).shape == (64, 4 * 64 + 6)


def test_photo_with_boxes(olivetti):
    img = np.zeros((200, 300, 3), np.uint8)
    img[:, :, 2] = 255  # red in BGR
    fig = plots.photo_with_boxes(img, [Box(10, 20, 64, 64), Box(150, 30, 50, 50)], ["person-01 0.93", "unknown"])
    shown = _picture(fig)
    assert shown.shape == (200, 300, 3) and np.abs(shown[100, 150].astype(int) - [0, 0, 255]).max() <= 3  # still red
    assert [(s.x0, s.y0, s.x1, s.y1) for s in fig.layout.shapes] == [(10, 20, 74, 84), (150, 30, 200, 80)]
    assert [a.text for a in fig.layout.annotations] == ["person-01 0.93", "unknown"]
    grey = plots.photo_with_boxes((olivetti.images[0] * 255).astype(np.uint8), [])
    assert _picture(grey).shape == (64, 64, 3)
    # A 24-megapixel photo is sent shrunk, its boxes with it (its pixel values as JSON broke the browser).
    big = np.zeros((4000, 6000, 3), np.uint8)
    fig = plots.photo_with_boxes(big, [Box(3000, 2000, 600, 600)], ["ann"])
    assert _picture(fig).shape == (853, 1280, 3) and len(fig.data[0].source) < 200_000
    scale = 1280 / 6000
    assert (fig.layout.shapes[0].x0, fig.layout.shapes[0].x1) == pytest.approx((3000 * scale, 3600 * scale))
    assert fig.layout.annotations[0].x == pytest.approx(3000 * scale)


def _picture(fig) -> np.ndarray:
    import base64

    import cv2

    source = fig.data[0].source
    assert source.startswith("data:image/jpeg;base64,")
    return cv2.imdecode(np.frombuffer(base64.b64decode(source.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)


def test_per_person_bar_sorted():
    fig = plots.per_person_bar({"a": 1.0, "b": 0.5, "c": 0.75})
    assert list(fig.data[0].x) == ["b", "c", "a"]
    nested = plots.per_person_bar({"a": {"accuracy": 0.2, "faces": 5}, "b": {"accuracy": 0.9, "faces": 5}})
    assert list(nested.data[0].y) == [0.2, 0.9]
