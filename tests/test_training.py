"""The shared training loop: learning, progress with ETA, stop requests, NaN, best weights, seeds, configs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from facelab.errors import FaceLabError
from facelab.registry import config_fields, replace_config
from facelab.training import StopRequest, TrainConfig, TrainingError, TrainingProgress, fit_keras, seed_everything


def _tiny_model(people: int, seed: int = 0):
    import keras

    seed_everything(seed)
    inp = keras.Input((64, 64), name="face")
    x = keras.layers.Rescaling(2.0, -1.0)(keras.layers.Flatten()(inp))  # centred input keeps tanh units alive
    x = keras.layers.Dense(64, activation="tanh", name="hidden")(x)
    out = keras.layers.Dense(people, activation="softmax", name="probs")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def data(olivetti):
    from facelab.data import split_dataset

    split = split_dataset(olivetti, train_per_person=5, val_per_person=1, seed=0)
    return split


def _fit(model, split, **kw):
    cfg = kw.pop("config", TrainConfig(epochs=8, batch_size=32, learning_rate=3e-3, augment=False))
    return fit_keras(model, split.train.images, split.train.labels, config=cfg,
                     validation=(split.val.images, split.val.labels), loss="sparse_categorical_crossentropy",
                     metrics=["accuracy"], **kw)


def test_learns_on_olivetti_and_reports_progress(data):
    epochs, batches = [], []
    model = _tiny_model(40)
    result = _fit(model, data, on_epoch=epochs.append, on_batch=batches.append)
    assert result.epochs_run == 8 and not result.stopped
    assert set(result.history) >= {"loss", "val_loss", "accuracy", "val_accuracy", "lr", "seconds"}
    assert result.history["accuracy"][-1] > 0.5  # chance is 1/40
    assert result.history["loss"][-1] < result.history["loss"][0]
    # cosine schedule: the learning rate falls
    assert result.history["lr"][-1] < result.history["lr"][0]
    assert [p.epoch for p in epochs] == list(range(1, 9))
    assert all(isinstance(p, TrainingProgress) for p in batches)
    assert len(batches) == 8 * 5  # 160 faces / 32 per batch, no throttling
    # No estimate from the first batch alone (it also builds the graph); then one from the later batches' pace.
    assert batches[0].eta_s is None and batches[1].eta_s > 0 and batches[-1].eta_s == pytest.approx(0.0, abs=1e-6)
    assert batches[-1].fraction == 1.0 and 0 < batches[0].fraction < 0.05
    assert "loss" in batches[0].logs
    # the model holds the best-validation weights
    best = result.best_epoch
    assert result.history["val_loss"][best - 1] == min(result.history["val_loss"])


def test_the_best_epochs_weights_are_the_ones_kept(data):
    import keras

    class Sabotage(keras.callbacks.Callback):
        """Keeps epoch 4's weights, then ruins the weights after every later batch (val_loss soars)."""

        def __init__(self):
            super().__init__()
            self.rng, self.epoch, self.snapshot = np.random.default_rng(0), 0, None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == 4:
                self.snapshot = [w.copy() for w in self.model.get_weights()]

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch > 4:
                self.model.set_weights([self.rng.normal(0, 3, w.shape).astype(w.dtype)
                                        for w in self.model.get_weights()])

    model, sabotage = _tiny_model(40), Sabotage()
    result = _fit(model, data, extra_callbacks=[sabotage])
    assert result.epochs_run == 8 and result.best_epoch == 4
    for kept, best in zip(model.get_weights(), sabotage.snapshot, strict=True):
        np.testing.assert_array_equal(kept, best)


def test_batch_callbacks_are_throttled(data):
    calls = []
    _fit(_tiny_model(40), data, config=TrainConfig(epochs=2, augment=False), on_batch=calls.append,
         batch_interval_s=60.0)
    # first batch, then only the last batch of each epoch
    assert len(calls) == 3


def test_stop_request_ends_after_current_batch_and_keeps_weights(data):
    stop = StopRequest()
    seen = []

    def on_batch(p: TrainingProgress) -> None:
        seen.append((p.epoch, p.batch))
        if p.epoch == 2 and p.batch == 2:
            requester = threading.Thread(target=stop.request)  # from another thread, as the Stop button does
            requester.start()
            requester.join()  # not left racing the next batches on a busy machine

    model = _tiny_model(40)
    ends = []
    result = _fit(model, data, on_batch=on_batch, stop=stop, on_epoch=ends.append)
    assert result.stopped
    assert result.epochs_run <= 2
    assert seen[-1][0] == 2 and seen[-1][1] <= 3
    # The stopped epoch's report says where it stopped (it said the epoch's last batch, as if it had finished).
    assert (ends[-1].epoch, ends[-1].batch) == seen[-1] and ends[-1].batch < ends[-1].batches
    assert stop.requested
    assert np.isfinite(model.predict_on_batch(data.test.images[:4])).all()


def test_nan_loss_raises_clear_error(data):
    images = data.train.images.copy()
    images[0, 0, 0] = np.nan
    import keras

    model = _tiny_model(40)
    with pytest.raises(TrainingError, match="NaN"):
        fit_keras(model, images, data.train.labels, config=TrainConfig(epochs=3, augment=False),
                  loss="sparse_categorical_crossentropy")
    assert isinstance(model, keras.Model)


def test_same_seed_same_result(data):
    import random

    cfg = TrainConfig(epochs=3, augment=False, seed=3)
    runs = []
    for other_training in (None, lambda progress: random.seed(len(runs) + progress.batch)):
        # The second run's global `random` is reseeded at every batch, as another training starting in the same
        # process would do; the run must not depend on it.
        model = _tiny_model(40, seed=3)
        _fit(model, data, config=cfg, on_batch=other_training, batch_interval_s=0.0)
        runs.append(model.predict_on_batch(data.test.images[:8]))
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5, atol=1e-6)


def test_transform_hook_and_dict_targets(data):
    import keras

    seen = []

    def transform(xb, yb, rng):
        seen.append(len(xb["face"]))
        return {"face": xb["face"] + rng.normal(0, 0.01, xb["face"].shape).astype(np.float32)}, yb

    seed_everything(0)
    inp = keras.Input((64, 64), name="face")
    h = keras.layers.Dense(8, name="h")(keras.layers.Flatten()(inp))
    out = {"probs": keras.layers.Dense(40, activation="softmax", name="probs")(h),
           "recon": keras.layers.Reshape((64, 64), name="recon")(keras.layers.Dense(4096)(h))}
    model = keras.Model({"face": inp}, out)
    x, y = {"face": data.train.images}, {"probs": data.train.labels, "recon": data.train.images}
    result = fit_keras(model, x, y, config=TrainConfig(epochs=2, augment=False), transform=transform,
                       loss={"probs": "sparse_categorical_crossentropy", "recon": "mse"},
                       loss_weights={"probs": 1.0, "recon": 1.0},
                       validation=({"face": data.val.images}, {"probs": data.val.labels, "recon": data.val.images}))
    assert sum(seen) >= 2 * len(data.train.images)
    assert "val_recon_loss" in result.history or "val_loss" in result.history


def test_empty_data_and_bad_config():
    with pytest.raises(TrainingError, match="empty"):
        fit_keras(object(), np.zeros((0, 64, 64), np.float32), np.zeros(0), config=TrainConfig(),
                  loss="mse")
    with pytest.raises(TrainingError, match="lr_schedule"):
        TrainConfig(lr_schedule="sometimes")


def test_config_fields_and_replace():
    fields = {f.name: f for f in config_fields(TrainConfig)}
    assert fields["lr_schedule"].choices == ("constant", "cosine", "plateau")
    assert fields["epochs"].type is int and fields["epochs"].min == 1
    assert fields["augment"].type is bool and fields["learning_rate"].log
    cfg = replace_config(TrainConfig(), epochs=5, lr_schedule="constant")
    assert cfg.epochs == 5 and cfg.lr_schedule == "constant"
    from facelab.errors import BadInputError

    with pytest.raises(BadInputError, match="unknown setting"):
        replace_config(TrainConfig(), epoch=5)
    with pytest.raises(BadInputError, match="outside"):
        replace_config(TrainConfig(), epochs=0)


def test_durations_and_headline_metrics_read_as_the_pages_show_them():
    from facelab.evaluation import headline_metrics
    from facelab.jobs import format_seconds

    assert [format_seconds(s) for s in (None, 42.4, 185)] == ["...", "42 s", "3:05"]
    assert headline_metrics({"accuracy": 0.9767, "recon_mse": 0.012345, "recon_psnr": 24.71, "other": 1}) == [
        ("test accuracy", "97.7%"), ("PSNR (dB)", "24.71"), ("MSE", "0.01235")]


def test_misclassified_keeps_the_wrong_faces_with_captions():
    from facelab.evaluation import misclassified

    faces = np.arange(5 * 4, dtype=np.float32).reshape(5, 2, 2)
    wrong = misclassified(faces, ["a", "a", "b", "b", "c"], ["a", "b", "a", "b", "a"], limit=2)
    assert (wrong.count, wrong.total) == (3, 5)
    assert wrong.captions == ["a\n→ b", "b\n→ a"]  # the first two of three, in test order
    np.testing.assert_array_equal(wrong.faces, faces[[1, 2]])
    assert misclassified(faces[:1], ["a"], ["a"]).count == 0
    with pytest.raises(FaceLabError):
        misclassified(faces, ["a"], ["a", "b"])


def test_check_answers_and_samples_of_a_dataset():
    from facelab.data import FaceDataset
    from facelab.evaluation import check_answers
    from facelab.recognition import Identification

    answers = [Identification("ann", 0.9, True), Identification("bob", 0.7, True), Identification("unknown", 0.3, False),
               Identification("unknown", 0.2, False), Identification("ann", 0.6, True)]
    check = check_answers(["ann", "ann", "bob", "eve", "eve"], answers, known_people=["ann", "bob"])
    # eve is not known: "unknown" is her right answer, a name a false accept.
    assert check.outcomes == ["right", "wrong", "unknown", "right", "wrong"]
    assert (check.right, check.wrong, check.unknown) == (2, 2, 1)
    assert check.captions[:3] == ["ann ✓ p 0.900", "ann\n✗ bob", "bob: unknown"]
    # A gallery's answer shows the distance its threshold is compared with, not a similarity.
    gallery_answer = Identification("ann", 0.99, True, [("ann", 0.99)], distances=[0.0123])
    assert check_answers(["ann"], [gallery_answer], ["ann"]).captions == ["ann ✓ distance 0.0123"]
    with pytest.raises(ValueError):
        check_answers(["ann"], answers, ["ann"])

    ds = FaceDataset(np.zeros((10, 2, 2), np.float32), np.arange(10) % 2, ["a", "b"], "test")
    a, b = ds.sample(4, seed=1), ds.sample(4, seed=1)
    assert len(a.images) == 4 and a.face_names == b.face_names and len(ds.sample(50).images) == 10


def test_slider_stops_of_a_config_field():
    from facelab.registry import ConfigField

    lr = ConfigField("learning_rate", ("learning_rate",), float, 1e-3, min=1e-4, max=1e-2, log=True)
    assert lr.log_options(0.003) == [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 0.003, 5e-3, 1e-2]
    assert ConfigField("dropout", ("dropout",), float, 0.3, min=0.0, max=0.9).slider_step() == 0.001


def test_a_training_job_keeps_its_model_when_saving_fails(tmp_path):
    from facelab.data import load_dataset, split_dataset
    from facelab.errors import BadInputError
    from facelab.jobs import TrainingJob
    from facelab.registry import config_for, create_model

    split = split_dataset(load_dataset("synthetic:people=3,per_person=6"), 4, 1, 0)
    model = create_model(config_for("ae-dense", epochs=1))

    def full_disk(path):
        raise BadInputError(f"{path}: cannot save the model (No space left on device)")

    model.save = full_disk
    job = TrainingJob("m", model, split, tmp_path).start()
    assert job.wait(120)
    assert job.error is None and job.result is not None and job.path is None  # trained, kept, not saved
    assert "No space left" in job.save_error
    assert not (tmp_path / "m").exists()  # the folder claimed for it is given back


def test_two_trainings_started_under_one_name_save_two_bundles(tmp_path):
    # Two tabs (or both Train pages) may both choose "gru" before either has saved: the second used to replace the
    # first one's bundle when it finished.
    from facelab.data import load_dataset, split_dataset
    from facelab.jobs import TrainingJob
    from facelab.registry import config_for, create_model
    from facelab.storage import read_meta

    split = split_dataset(load_dataset("synthetic:people=3,per_person=6"), 4, 1, 0)
    first = TrainingJob("m", create_model(config_for("ae-dense", epochs=1)), split, tmp_path)
    second = TrainingJob("m", create_model(config_for("ae-conv", epochs=1)), split, tmp_path)
    assert (first.name, second.name) == ("m", "m-2")
    for job in (second.start(), first.start()):
        assert job.wait(120) and job.error is None
    assert read_meta(tmp_path / "m")["kind"] == "ae-dense" and read_meta(tmp_path / "m-2")["kind"] == "ae-conv"
    assert (first.path, second.path) == (tmp_path / "m", tmp_path / "m-2")
    with pytest.raises(FaceLabError, match="is a file, not a folder"):
        TrainingJob("m", first.model, split, tmp_path / "m" / "meta.json")


def test_a_training_job_says_what_it_does_after_the_last_batch(tmp_path):
    # The seconds of testing and saving after the last batch used to read "0 s left" with nothing moving.
    from facelab.data import load_dataset, split_dataset
    from facelab.jobs import TrainingJob
    from facelab.registry import config_for, create_model

    split = split_dataset(load_dataset("synthetic:people=3,per_person=6"), 4, 1, 0)
    model = create_model(config_for("ae-dense", epochs=1))
    seen = []
    evaluate, save = model.evaluate, model.save
    model.evaluate = lambda test: (seen.append(job.phase), evaluate(test))[1]
    model.save = lambda path: (seen.append(job.phase), save(path))[1]
    job = TrainingJob("m", model, split, tmp_path)
    assert job.phase == "training"
    assert job.start().wait(120) and job.error is None
    assert seen == ["testing", "saving"]


def test_a_training_job_whose_fit_fails_reports_it_and_gives_the_folder_back(tmp_path):
    from facelab.data import load_dataset, split_dataset
    from facelab.jobs import TrainingJob
    from facelab.registry import config_for, create_model

    split = split_dataset(load_dataset("synthetic:people=3,per_person=6"), 4, 1, 0)
    model = create_model(config_for("ae-dense", epochs=1))

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    model.fit = boom
    job = TrainingJob("m", model, split, tmp_path).start()
    assert job.wait(120) and not job.running
    assert job.error == "training failed: RuntimeError: boom"
    assert job.result is None and job.path is None
    assert list(tmp_path.iterdir()) == []  # the folder claimed at the start is removed
