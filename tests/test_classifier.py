"""FaceClassifier on real Olivetti faces: it learns, evaluates, recognises, stops, and survives save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facelab.classifier import FaceClassifier, GRUConfig, build_model
from facelab.data import split_dataset
from facelab.errors import BadInputError, FaceLabError
from facelab.preprocess import INFERENCE_ZOOMS, zoom_faces
from facelab.recognition import UNKNOWN
from facelab.registry import config_for, create_model, load_model, replace_config
from facelab.training import StopRequest


def _quick(kind: str, **train) -> GRUConfig:
    base = GRUConfig.preset(kind)
    return replace_config(base, **{"epochs": 8, "warmup_epochs": 1, **train})


@pytest.fixture(scope="module")
def split(olivetti):
    return split_dataset(olivetti, train_per_person=5, val_per_person=1, seed=0)


@pytest.fixture(scope="module")
def trained(split):
    """A CNN->GRU trained for 8 epochs (about 10 s on 2 cores), selected on the validation faces."""
    epochs = []
    clf = FaceClassifier(_quick("cnn-gru")).fit(split, on_epoch=epochs.append)
    return clf, epochs


def test_cnn_gru_learns_and_evaluates(trained, split):
    clf, epochs = trained
    assert [p.epoch for p in epochs] == list(range(1, 9))
    assert clf.epochs_run_ == 8 and 1 <= clf.best_epoch_ <= 8
    # The preset also trains on the faces as the detector frames them: nearly twice the batches per epoch.
    assert epochs[0].batches >= 1.8 * len(split.train.images) / 16 and clf.n_train_ == len(split.train.images)
    assert set(clf.history_) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    metrics = clf.evaluate(split.test)
    assert metrics["accuracy"] > 0.4  # chance is 2.5%; the full recipe reaches about 98%
    assert metrics["top5"] >= metrics["accuracy"]
    assert len(metrics["confusion"]) == 40 and sum(map(sum, metrics["confusion"])) == len(split.test.images)
    assert len(metrics["per_person"]) == 40
    assert metrics["infer_ms_per_face"] > 0 and metrics["latency_ms_one_face"] > 0
    assert clf.metrics_ is metrics
    right = np.equal(clf.test_predictions_, split.test.face_names)  # the Evaluate page's misclassified faces
    assert right.mean() == pytest.approx(metrics["accuracy"])


def test_probabilities_embeddings_and_recognizer(trained, split):
    clf, _ = trained
    faces = split.test.images[:6]
    probs = clf.predict_proba(faces)
    assert probs.shape == (6, 40) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert clf.embed(faces).shape == (6, 256)  # bidirectional GRU(128)
    assert clf.predict_proba(faces[0]).shape == (1, 40)  # a single face is accepted
    answers = clf.recognizer(threshold=0.0).identify(faces)
    assert [a.name for a in answers] == clf.predict(faces)
    assert all(a.known and len(a.top) == 3 and a.top[0][1] == pytest.approx(a.confidence) for a in answers)
    strict = clf.recognizer(threshold=1.0).identify(faces)  # only a probability of exactly 1 is named
    assert all((a.name == UNKNOWN and not a.known) or a.confidence == 1.0 for a in strict)
    with pytest.raises(BadInputError, match="give one from 0 to 1"):
        clf.recognizer(threshold=1.01)
    # At a threshold between the scores: named exactly when the best probability reaches it.
    best = probs.max(axis=1)
    middle = float(np.median(best))
    answers = clf.recognizer(threshold=middle).identify(faces)
    assert [a.known for a in answers] == list(best >= middle) and 0 < sum(best >= middle) < 6
    assert all(a.name == (clf.names_[int(p.argmax())] if a.known else UNKNOWN) for a, p in zip(answers, probs))
    assert clf.recognizer().threshold == 0.8  # the preset's, chosen on validation strangers
    # Faces of another size are resized, not refused (a 32 px model in the 64 px live stream was refused).
    import cv2

    bigger = np.stack([cv2.resize(f, (128, 128)) for f in faces])
    assert (clf.predict_proba(bigger).argmax(1) == probs.argmax(1)).mean() >= 5 / 6
    with pytest.raises(BadInputError, match="faces must be images"):
        clf.predict_proba(np.zeros((2, 3, 32, 32, 1), np.float32))


def test_inference_view_averaging(trained, split):
    clf, _ = trained
    faces = split.test.images[:6]

    def same_weights(**views) -> FaceClassifier:
        twin = FaceClassifier(replace_config(clf.config, **views))
        twin.__dict__.update({k: v for k, v in clf.__dict__.items() if k != "config"})
        return twin

    plain = same_weights(flip_test=False, zoom_test=False).predict_proba
    p = plain(faces)
    mirrored = (p + plain(faces[:, :, ::-1])) / 2
    np.testing.assert_allclose(same_weights(flip_test=True, zoom_test=False).predict_proba(faces), mirrored, atol=1e-5)
    zoomed = (p + plain(zoom_faces(faces, INFERENCE_ZOOMS[0])) + plain(zoom_faces(faces, INFERENCE_ZOOMS[1]))) / 3
    np.testing.assert_allclose(same_weights(flip_test=False, zoom_test=True).predict_proba(faces), zoomed, atol=1e-5)
    assert not np.allclose(zoomed, p, atol=1e-4)  # the zoomed views do change the answer a little


def test_save_load_round_trip(trained, split, tmp_path):
    clf, _ = trained
    path = clf.save(tmp_path / "cnn")
    meta = json.loads((path / "meta.json").read_text())
    assert meta["kind"] == "cnn-gru" and meta["names"][0] == "person-01" and meta["input_size"] == [64, 64]
    assert meta["config"]["train"]["epochs"] == 8 and meta["history"]["loss"] and meta["versions"]["keras"]
    assert meta["data_source"].startswith("olivetti")
    loaded = load_model(path)
    assert isinstance(loaded, FaceClassifier) and loaded.config == clf.config and loaded.names_ == clf.names_
    faces = split.test.images[:10]
    np.testing.assert_allclose(loaded.predict_proba(faces), clf.predict_proba(faces), atol=1e-5)


def test_seed_gru_learns_a_few_people(olivetti):
    small = olivetti.subset(np.flatnonzero(olivetti.labels < 10))
    small.names = small.names[:10]
    split = split_dataset(small, train_per_person=5, val_per_person=0, seed=0)
    clf = FaceClassifier(_quick("gru", epochs=12)).fit(split)
    assert clf.best_epoch_ == clf.epochs_run_ == 12  # no validation: the final weights are kept
    assert clf.evaluate(split.test)["accuracy"] > 0.4  # chance is 10%


def test_stop_request_keeps_a_usable_model(split):
    stop = StopRequest()
    seen = []

    def on_batch(p):
        seen.append(p)
        stop.request()

    clf = FaceClassifier(_quick("gru", epochs=50)).fit(split, on_batch=on_batch, stop=stop)
    assert clf.stopped_ and clf.epochs_run_ <= 1
    assert len(seen) == 1 and seen[0].eta_s is None  # one batch gives no time-left estimate yet (see training)
    assert np.isfinite(clf.predict_proba(split.test.images[:2])).all()


def test_configs_and_errors(split, tmp_path):
    seed = GRUConfig.preset("gru")
    assert (seed.units, seed.layers, seed.cell, seed.bidirectional, seed.dropout) == (128, 2, "gru", False, 0.0)
    assert seed.flip_test and seed.train.weight_decay > 0  # the recipe: mirror averaging, AdamW
    cfg = config_for("cnn-gru", units=64, cell="seed", epochs=3)
    assert cfg.units == 64 and cfg.cell == "seed" and cfg.train.epochs == 3
    assert isinstance(create_model(cfg), FaceClassifier)
    with pytest.raises(BadInputError):
        GRUConfig(kind="rnn")
    with pytest.raises(FaceLabError, match="not trained"):
        FaceClassifier().predict_proba(split.test.images[:1])
    (tmp_path / "x").mkdir()
    with pytest.raises(BadInputError, match="not a FaceLab model bundle"):
        FaceClassifier.load(tmp_path / "x")
    # Model files that are not this kind's network are refused before anything runs them.
    from facelab.storage import save_bundle

    autoencoder = create_model(config_for("ae-dense")).build()
    save_bundle(tmp_path / "ae", autoencoder, {"kind": "cnn-gru", "names": ["a", "b"], "input_size": [64, 64]})
    with pytest.raises(BadInputError, match="not a FaceLab classifier"):
        FaceClassifier.load(tmp_path / "ae")
    small = build_model(GRUConfig.preset("cnn-gru"), people=2, image_size=32)
    save_bundle(tmp_path / "small", small, {"kind": "cnn-gru", "names": ["a", "b"], "input_size": [64, 64]})
    with pytest.raises(BadInputError, match="reads \\[\\(32, 32\\)\\], not 64x64 faces"):
        FaceClassifier.load(tmp_path / "small")


def test_fine_tuning_starts_from_the_trained_weights(trained, split, olivetti):
    """A newcomer replaces person 40: one epoch from the trained weights keeps the 39 others recognised,
    where one epoch from scratch does not."""
    from dataclasses import replace

    clf, _ = trained
    renamed = replace(olivetti, names=[*olivetti.names[:39], "newcomer"])
    grown = split_dataset(renamed, train_per_person=5, val_per_person=1, seed=0)
    one_epoch = _quick("cnn-gru", epochs=1, warmup_epochs=0)
    warm = FaceClassifier(one_epoch).fit(grown, init_from=clf)
    fresh = FaceClassifier(one_epoch).fit(grown)
    old_people = grown.test.subset(np.flatnonzero(grown.test.labels < 39))
    before = clf.evaluate(split.test.subset(np.flatnonzero(split.test.labels < 39)))["accuracy"]  # same faces
    assert warm.names_[39] == "newcomer"
    assert warm.evaluate(old_people)["accuracy"] >= before - 0.15
    assert warm.evaluate(old_people)["accuracy"] > fresh.evaluate(old_people)["accuracy"] + 0.2
