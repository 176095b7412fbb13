"""Autoencoders on Olivetti: shapes, learning, reconstructions, enrolment without retraining, bundles."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facelab.autoencoder import AEConfig, FaceAutoencoder
from facelab.data import DataSplit, split_dataset
from facelab.errors import FaceLabError
from facelab.gallery import Gallery
from facelab.recognition import UNKNOWN
from facelab.reconstruction import mean_face_baseline
from facelab.registry import AUTOENCODER_KINDS, config_for, load_model
from facelab.training import StopRequest

KNOWN = 35  # the model trains on people 0..34; 35..39 are never seen in training


def _known(ds):
    return ds.subset(np.flatnonzero(ds.labels < KNOWN))


@pytest.fixture(scope="module")
def split(olivetti):
    return split_dataset(olivetti, train_per_person=5, val_per_person=1, seed=0)


@pytest.fixture(scope="module")
def trained(split):
    """A small, short-trained metric autoencoder (35 people; ~10 s on 2 cores)."""
    known = DataSplit(_known(split.train), _known(split.val), _known(split.test))
    config = config_for("ae-metric", epochs=25, filters=8, augment=False, seed=1, refit_share=0.0)
    epochs = []
    model = FaceAutoencoder(config).fit(known, on_epoch=epochs.append)
    assert [p.epoch for p in epochs] == list(range(1, 26))
    return model


@pytest.mark.parametrize("kind", AUTOENCODER_KINDS)
def test_shapes_of_every_kind(kind):
    model = FaceAutoencoder(AEConfig.preset(kind))
    model.keras_model_ = model.build(n_people=3)
    faces = np.random.default_rng(0).random((5, 64, 64)).astype(np.float32)
    codes = model.encode(faces)
    assert codes.shape == (5, 64) and codes.dtype == np.float32
    assert np.linalg.norm(model.embed(faces), axis=1) == pytest.approx(np.ones(5), abs=1e-5)
    mirrored = model.embed(faces[:, :, ::-1])
    if kind == "ae-dense":  # the seed network's embedding is its plain code: a mirror image has another one
        assert not np.allclose(model.embed(faces), mirrored, atol=1e-3)
    else:  # the code of the face averaged with its mirror image's
        assert model.embed(faces) == pytest.approx(mirrored, abs=1e-5)
    recon = model.reconstruct(faces)
    assert recon.shape == (5, 64, 64) and recon.min() >= 0 and recon.max() <= 1
    assert model.decode(codes).shape == (5, 64, 64)
    assert model.interpolate(faces[0], faces[1], steps=4).shape == (4, 64, 64)
    outputs = model.keras_model_(faces[..., None])
    if kind == "ae-metric":
        assert set(outputs) == {"recon", "identity"} and tuple(outputs["identity"].shape) == (5, 3)
    else:
        assert tuple(outputs.shape) == (5, 64, 64, 1)


def test_seed_preset_is_the_seed_network():
    config = AEConfig.preset("ae-dense")
    assert (config.encoding_dim, config.train.epochs, config.train.batch_size, config.train.learning_rate) == \
        (64, 50, 256, 1e-3)
    assert not config.train.augment and config.metric_weight == 0
    assert config.calibration_people == 0 and not config.center_input  # trains on every face, as the seed did
    model = FaceAutoencoder(config).build()
    dense = [layer for sub in model.layers if hasattr(sub, "layers") for layer in sub.layers
             if layer.__class__.__name__ == "Dense"]
    assert [(d.units, d.activation.__name__) for d in dense] == [(64, "relu"), (64 * 64, "sigmoid")]


def test_other_face_sizes_and_colour_are_converted():
    model = FaceAutoencoder(AEConfig.preset("ae-conv"))
    model.keras_model_ = model.build()
    colour = (np.random.default_rng(0).random((2, 112, 92, 3)) * 255).astype(np.uint8)
    assert model.encode(colour).shape == (2, 64)
    assert model.encode(colour[0, :, :, 0]).shape == (1, 64)


def test_both_losses_fall_while_training(trained):
    history = trained.history_
    assert history["recon_loss"][-1] < 0.8 * history["recon_loss"][0]
    assert history["val_recon_loss"][-1] < history["val_recon_loss"][0]
    assert history["identity_loss"][-1] < 0.5 * history["identity_loss"][0]
    assert history["val_identity_loss"][-1] < history["val_identity_loss"][0]


def test_short_trained_metric_codes_point_different_ways(split):
    # The preset cut to 15 epochs (~5 s), as a user in a hurry would: without the code's batch norm
    # (code_norm=False) every code pointed one way (cosines ~0.999 between different people), so the
    # calibrated threshold was ~0 and every face came back unknown.
    model = FaceAutoencoder(config_for("ae-metric", epochs=15, seed=0)).fit(split)
    assert model.config.code_norm
    codes = model.embed(split.test.images)
    others = split.test.labels[:, None] != split.test.labels[None, :]
    assert np.median((codes @ codes.T)[others]) < 0.5
    assert model.gallery_.threshold > 0.02


def test_seed_autoencoder_reconstructs_better_than_the_mean_face(split):
    model = FaceAutoencoder(AEConfig.preset("ae-dense")).fit(split)  # the seed's 50 epochs, ~5 s
    loss = model.history_["loss"]
    assert loss[-1] < 0.7 * loss[0] and model.best_epoch_ is not None
    assert model.history_["val_loss"][-1] < model.history_["val_loss"][0]
    recon = model.reconstruct(split.test.images)
    mse = float(((recon - split.test.images) ** 2).mean())
    assert mse < 0.95 * mean_face_baseline(split.train.images, split.test.images)["mse"]  # measured 0.0152 vs 0.0171
    assert model.evaluate(split.test)["recon_mse"] == pytest.approx(mse, rel=1e-4)


def test_evaluate_reports_identification_and_reconstruction(trained, split):
    metrics = trained.evaluate(_known(split.test))
    for key in ("accuracy", "top5", "confusion", "per_person", "infer_ms_per_face", "recon_mse", "recon_psnr",
                "recon_ssim", "tar", "threshold"):
        assert key in metrics, key
    assert metrics["accuracy"] >= 0.6 and metrics["top5"] >= metrics["accuracy"]
    assert np.array(metrics["confusion"]).shape == (KNOWN, KNOWN)
    assert np.array(metrics["confusion"]).sum() == len(_known(split.test).images)
    # The axes follow the data set's order, not the gallery's (which lists the calibration people last).
    shown = metrics["confusion_names"]
    assert shown == [n for n in split.test.names if n in trained.gallery_.names] and trained.gallery_.names != shown
    assert metrics["recon_psnr"] > 15 and trained.metrics_ is metrics
    right = np.equal(trained.test_predictions_, _known(split.test).face_names)
    assert right.mean() == pytest.approx(metrics["accuracy"])
    cal = trained.gallery_.calibration
    assert cal is not None and cal.impostors == 5 * len(trained.calibration_people_) and cal.far <= 0.01
    json.dumps(metrics)  # JSON-ready


def test_fit_calibrates_the_threshold_on_people_it_never_trained_on(trained, split):
    strangers = trained.calibration_people_
    assert len(strangers) == 7  # 20% of 35 people
    assert not set(strangers) & set(trained.train_names_) and len(trained.train_names_) == KNOWN - 7
    # Enrolled afterwards without retraining: everyone of the training split is in the gallery.
    assert set(strangers) <= set(trained.gallery_.names) and len(trained.gallery_) == KNOWN
    cal = trained.gallery_.calibration
    assert cal.impostors == 5 * len(strangers) and cal.genuine == KNOWN - 7 and cal.far == 0.0
    # People it has neither trained on nor enrolled (35..39) are mostly answered "unknown".
    unseen = split.test.subset(np.flatnonzero(split.test.labels >= KNOWN))
    answers = [a.name for a in trained.recognizer().identify(unseen.images)]
    assert answers.count(UNKNOWN) >= 0.6 * len(answers), answers
    # A hand-set threshold is a distance: 0 or more (infinite names everyone); a negative one is refused.
    assert trained.recognizer(float("inf")).threshold == float("inf")
    with pytest.raises(FaceLabError, match="code distance"):
        trained.recognizer(-1.0)


def test_refit_trains_on_the_calibration_people_and_keeps_their_threshold(trained, split):
    known = DataSplit(_known(split.train), _known(split.val), _known(split.test))
    config = config_for("ae-metric", epochs=25, filters=8, augment=False, seed=1, refit_share=0.4)
    epochs = []
    model = FaceAutoencoder(config).fit(known, on_epoch=epochs.append)
    # One run of 35 epochs as far as progress and history tell: 25, then 10 on everyone.
    assert [(p.epoch, p.epochs) for p in epochs] == [(e, 35) for e in range(1, 36)]
    assert all(len(v) == 35 for v in model.history_.values()) and np.all(np.diff(model.history_["seconds"]) > 0)
    # The first 25 epochs are the model without refit (same seed): same strangers, same threshold, calibrated on
    # them before they were trained on.
    strangers = trained.calibration_people_
    assert model.calibration_people_ == strangers
    assert model.gallery_.threshold == trained.gallery_.threshold
    assert set(strangers) <= set(model.train_names_) and len(model.train_names_) == KNOWN
    assert len(model.gallery_) == KNOWN and model.gallery_.calibration.impostors == 5 * len(strangers)
    # Their unseen test faces now sit closer to their own gallery entries.
    def own_distance(m) -> float:
        faces = known.test.subset(np.flatnonzero(np.isin(known.test.face_names, strangers)))
        names, dist = m.gallery_.distances(m.embed(faces.images))
        return float(np.mean([dist[i, names.index(n)] for i, n in enumerate(faces.face_names)]))

    assert own_distance(model) < own_distance(trained)


def test_too_few_people_for_strangers_calibrate_on_validation_faces(split):
    few = DataSplit(*(d.subset(np.flatnonzero(d.labels < 4)) for d in (split.train, split.val, split.test)))
    model = FaceAutoencoder(config_for("ae-conv", epochs=1, filters=4, augment=False)).fit(few)
    assert model.calibration_people_ == [] and len(model.train_names_) == 4
    assert model.gallery_.calibration.impostors == 4  # each validation face's nearest other person


def test_enrolling_a_new_person_needs_no_retraining(trained, split):
    gallery = trained.recognizer(trained.gallery_.threshold).copy()  # leave the fixture's gallery alone
    newcomer = 37
    name = split.train.names[newcomer]
    their_test = split.test.images[split.test.labels == newcomer]
    assert name not in gallery.names
    before = [a.name for a in gallery.identify(their_test)]
    assert before.count(UNKNOWN) >= 3, before  # a stranger to the gallery is mostly "unknown"

    gallery.enrol(name, split.train.images[split.train.labels == newcomer])
    answers = gallery.identify(their_test)
    assert sum(a.top[0][0] == name for a in answers) >= 4, [a.top[:2] for a in answers]
    # The threshold is set for strangers at 1% false accepts; this short-trained model accepts only some.
    assert sum(a.name == name for a in answers) >= 1, [a.top[:2] for a in answers]

    gallery.remove(name)
    assert [a.name for a in gallery.identify(their_test)] == before  # as if they had never been enrolled


def test_save_and_load_keep_the_gallery(trained, split, tmp_path):
    model = FaceAutoencoder(trained.config)
    model.__dict__.update(trained.__dict__)
    model.gallery_ = trained.gallery_.copy()
    model.gallery_.enrol("newcomer", split.train.images[split.train.labels == 38])
    path = model.save(tmp_path / "ae")
    loaded = load_model(path)
    assert isinstance(loaded, FaceAutoencoder) and loaded.kind == "ae-metric"
    assert loaded.gallery_.names == model.gallery_.names and "newcomer" in loaded.names_
    assert loaded.gallery_.threshold == pytest.approx(model.gallery_.threshold)
    assert loaded.gallery_.calibration == model.gallery_.calibration
    faces = split.test.images[::7]
    assert loaded.embed(faces) == pytest.approx(model.embed(faces), abs=1e-5)
    assert [a.name for a in loaded.identify(faces)] == [a.name for a in model.identify(faces)]
    assert loaded.history_["loss"] == pytest.approx(model.history_["loss"])


def test_code_size_mismatch_between_gallery_and_model_is_refused(trained, tmp_path):
    from facelab.storage import save_bundle

    model = FaceAutoencoder(trained.config)
    model.__dict__.update(trained.__dict__)
    model.gallery_ = Gallery(code_size=8)
    model.gallery_.enrol_codes("someone", np.ones((2, 8), np.float32))
    path = model.save(tmp_path / "bad")
    with pytest.raises(FaceLabError, match="code-size mismatch"):
        FaceAutoencoder.load(path)
    save_bundle(tmp_path / "gru", trained.keras_model_, {"kind": "gru"})
    with pytest.raises(FaceLabError, match="not an autoencoder"):
        FaceAutoencoder.load(tmp_path / "gru")
    # A model file from elsewhere under a right-looking config: the input size must be the config's.
    small = FaceAutoencoder(config_for("ae-dense", image_size=32)).build()
    save_bundle(tmp_path / "small", small, {"kind": "ae-dense", "config": {"kind": "ae-dense", "image_size": 64}})
    with pytest.raises(FaceLabError, match=r"reads \(32, 32, 1\) inputs but its config says 64x64"):
        FaceAutoencoder.load(tmp_path / "small")


def test_stop_request_and_bad_training_data(split):
    stop = StopRequest()
    stop.request()
    batches = []
    model = FaceAutoencoder(config_for("ae-dense", epochs=5, batch_size=32)).fit(
        split, on_batch=batches.append, stop=stop)
    assert model.stopped_ and len(model.history_["loss"]) == 1 and batches
    one_person = split.train.subset(np.flatnonzero(split.train.labels == 0))
    with pytest.raises(FaceLabError, match="at least 2 people"):
        FaceAutoencoder(AEConfig.preset("ae-metric")).fit(DataSplit(one_person, one_person, one_person))
    with pytest.raises(FaceLabError, match="not been trained"):
        FaceAutoencoder().reconstruct(split.test.images[:1])
    with pytest.raises(FaceLabError, match="image_size"):
        AEConfig(image_size=60)


def test_colour_photo_faces_are_identified(trained, split):
    faces = split.test.images[split.test.labels == 2][:3]
    bgr = [cv2.cvtColor(cv2.resize((f * 255).astype(np.uint8), (92, 112)), cv2.COLOR_GRAY2BGR) for f in faces]
    answers = trained.identify(bgr)
    assert len(answers) == 3 and sum(a.top[0][0] == split.test.names[2] for a in answers) >= 2


def test_cli_trains_saves_and_evaluates_an_autoencoder(olivetti_dir, tmp_path, capsys):
    from facelab.cli import main

    data = f"olivetti:{olivetti_dir}"
    assert main(["train", "ae-dense", "--data", data, "--epochs", "3", "--out", str(tmp_path / "m"), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["model"] == "ae-dense" and trained["n_test"] == 200
    assert trained["calibration"]["summary"].startswith("Calibrated threshold")  # as the text output says it
    for key in ("accuracy", "top5", "infer_ms_per_face", "recon_mse", "recon_psnr"):
        assert isinstance(trained[key], float), key
    assert main(["evaluate", str(tmp_path / "m"), "--data", data, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy"] == pytest.approx(trained["accuracy"])
    assert again["recon_mse"] == pytest.approx(trained["recon_mse"], rel=1e-4)
    assert main(["evaluate", str(tmp_path / "m"), "--data", data]) == 0
    assert "the saved bundle (3 epochs)" in capsys.readouterr().out  # not "trained in 0 s"
    # The same command line again does not replace the trained model unasked.
    before = (tmp_path / "m" / "meta.json").read_bytes()
    assert main(["train", "ae-dense", "--data", data, "--epochs", "1", "--out", str(tmp_path / "m")]) == 2
    assert "already holds a model bundle: pass --replace" in capsys.readouterr().err
    assert (tmp_path / "m" / "meta.json").read_bytes() == before
    assert main(["train", "ae-dense", "--data", data, "--epochs", "1", "--out", str(tmp_path / "m"), "--replace"]) == 0
    assert "(1 epoch)" in capsys.readouterr().out and (tmp_path / "m" / "meta.json").read_bytes() != before


def test_crops_of_other_people_stand_out_among_crops_of_one_stranger(trained, olivetti):
    # Live enrolment: a webcam feed that changed faces gives crops of people none of whom the model knows.
    from facelab.enrol import unlike_the_others

    gallery = trained.recognizer()
    faces = {p: olivetti.images[olivetti.labels == p] for p in range(KNOWN, 40)}  # never trained on nor enrolled
    one_person = [any(unlike_the_others(gallery, faces[p][:6])) for p in faces]
    assert sum(one_person) <= 1
    # 5 crops of one person and 1 of another; 4 of one and 2 each of two others (the feed a walk saw).
    sets = [(faces[p][:5], faces[q][j:j + 1]) for p in faces for q in faces if q != p for j in range(2)]
    sets += [(faces[p][:4], np.concatenate([faces[q][:2], faces[r][2:4]]))
             for p in faces for q in faces for r in faces if len({p, q, r}) == 3]
    flags = [np.array(unlike_the_others(gallery, np.concatenate([main, others]))) for main, others in sets]
    others = np.concatenate([f[len(main):] for f, (main, _) in zip(flags, sets)])
    mains = np.concatenate([f[:len(main)] for f, (main, _) in zip(flags, sets)])
    assert others.mean() >= 0.7 and mains.mean() <= 0.2  # here 89% and 10% (validation folds: 81-88%, 4-9%)
    # Too few crops to tell, or a recogniser without codes: nothing is flagged.
    assert unlike_the_others(gallery, faces[KNOWN][:2]) == [False] * 2
    assert unlike_the_others(object(), faces[KNOWN][:6]) == [False] * 6
    # Nor with codes too weak to bring one known person's faces within the threshold (the seed's dense network):
    # they would set one person's crops apart from each other.
    import dataclasses

    weak = gallery.copy()
    weak.calibration = dataclasses.replace(gallery.calibration, tar=0.3)
    mixed_set = np.concatenate([faces[KNOWN][:4], faces[KNOWN + 1][:2]])
    assert any(unlike_the_others(gallery, mixed_set)) and not any(unlike_the_others(weak, mixed_set))
