"""Model bundles (atomic save, safe load, refusal of foreign files, zip export) and the model registry."""

from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest

from facelab import storage
from facelab.data import split_dataset
from facelab.errors import BadInputError, FaceLabError
from facelab.registry import MODEL_KINDS, bundle_kind, config_fields, load_model
from facelab.storage import export_bundle, import_bundle, list_bundles, load_bundle, read_meta, save_bundle
from tests.helpers import patch_zip_headers


def _model(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((64, 64), name="face")
    out = keras.layers.Dense(3, activation="softmax", name="probs")(keras.layers.Flatten()(inp))
    return keras.Model(inp, out)


META = {"kind": "gru", "config": {"kind": "gru"}, "names": ["a", "b", "c"], "input_size": [64, 64],
        "metrics": {"accuracy": np.float32(0.5)}, "history": {"loss": [1.0, 0.5]}}


@pytest.fixture
def faces(olivetti):
    return olivetti.images[:5]


def test_round_trip_predicts_the_same(tmp_path, faces):
    model = _model()
    path = save_bundle(tmp_path / "m", model, META, {"gallery": np.arange(6, dtype=np.float32).reshape(2, 3)})
    bundle = load_bundle(path)
    np.testing.assert_allclose(bundle.model.predict_on_batch(faces), model.predict_on_batch(faces), rtol=1e-6)
    assert bundle.meta["names"] == ["a", "b", "c"] and bundle.meta["metrics"]["accuracy"] == 0.5
    assert bundle.meta["format"] == "facelab-bundle" and "keras" in bundle.meta["versions"]
    assert bundle.meta["created"]
    np.testing.assert_array_equal(bundle.extras["gallery"], np.arange(6).reshape(2, 3))
    listed = list_bundles(tmp_path)[0]
    assert listed["kind"] == "gru" and listed["history"] == {"loss": [1.0, 0.5]}  # curves to compare, no Keras load


def test_resave_replaces_files_and_crash_keeps_previous(tmp_path, faces, monkeypatch):
    first = _model(0)
    path = save_bundle(tmp_path / "m", first, META)
    save_bundle(path, _model(1), META)  # a second save leaves one model file
    assert len(list(path.glob("*.keras"))) == 1
    save_bundle(path, first, META)
    before = read_meta(path)

    def crash(target, data):
        raise OSError("disk full")

    monkeypatch.setattr(storage, "_write_atomic", crash)
    with pytest.raises(BadInputError, match="cannot save the model \\(disk full\\)"):  # one message, no traceback
        save_bundle(path, _model(2), META)
    monkeypatch.undo()
    assert read_meta(path) == before
    assert len(list(path.glob("*.keras"))) == 1  # the half-written model was cleaned up

    class FailsHalfway:
        def save(self, target):
            target.write_bytes(b"PK half a model")
            raise RuntimeError("boom while serialising")

    with pytest.raises(RuntimeError, match="boom"):
        save_bundle(path, FailsHalfway(), META)
    assert sorted(p.name for p in path.iterdir()) == sorted(["meta.json", before["files"]["model"]])  # no .tmp- file
    np.testing.assert_allclose(load_bundle(path).model.predict_on_batch(faces), first.predict_on_batch(faces),
                               rtol=1e-6)


def test_refuses_foreign_and_corrupt_bundles(tmp_path):
    with pytest.raises(BadInputError, match="no such"):
        load_bundle(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no meta.json"):
        load_bundle(tmp_path / "empty")
    (tmp_path / "file.keras").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(BadInputError, match="not a FaceLab model bundle"):
        load_bundle(tmp_path / "file.keras")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "meta.json").write_text(json.dumps({"hello": "world"}))
    with pytest.raises(BadInputError, match="lacks format"):
        load_bundle(foreign)
    (foreign / "meta.json").write_text("{broken")
    with pytest.raises(BadInputError, match="unreadable"):
        load_bundle(foreign)
    (foreign / "meta.json").write_text("[" * 100_000 + "]" * 100_000)  # a RecursionError in json.loads
    with pytest.raises(BadInputError, match="nested too deep"):
        read_meta(foreign)
    damaged = []
    assert list_bundles(tmp_path, damaged) == [] and damaged[0][0] == "foreign"  # listed, not a crash of every page

    path = save_bundle(tmp_path / "m", _model(), META)
    model_file = path / read_meta(path)["files"]["model"]
    model_file.write_bytes(model_file.read_bytes()[:200])  # truncated
    with pytest.raises(BadInputError, match=r"not a Keras model file \(corrupt or truncated\)"):
        load_bundle(path)
    meta = read_meta(path)
    meta["files"]["model"] = "../../etc/passwd"
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BadInputError, match="unsafe"):
        load_bundle(path)
    # Fields of the wrong type (hand-written or from another tool) are refused, and listings skip the folder.
    meta["files"]["model"] = "model.keras"
    for field, value in (("names", 5), ("created", 7), ("metrics", [1]), ("history", {"loss": ["x"]}),
                         ("input_size", [64]), ("input_size", None), ("kind", ["gru"]), ("calibration_people", 5),
                         ("fit_seconds", "x"), ("gallery", {"calibration": "x"}),
                         ("metrics", {"confusion": [[1, 0, 0], [0, 1]]}),  # not square
                         ("metrics", {"confusion": [[1, 0], [0, 1]]}),  # 2 columns, 3 names
                         ("metrics", {"accuracy": "high"})):
        (path / "meta.json").write_text(json.dumps({**meta, field: value}))
        with pytest.raises(BadInputError, match=f"malformed fields \\({field}\\)"):
            read_meta(path)
        assert list_bundles(tmp_path) == []
    # The first bundles' per-person figures (a dict with the accuracy) still read.
    (path / "meta.json").write_text(json.dumps({**meta, "metrics": {"per_person": {"a": {"accuracy": 0.5, "faces": 2}},
                                                                    "confusion": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}}))
    assert read_meta(path)["metrics"]["per_person"]["a"]["accuracy"] == 0.5
    # null where a default exists reads as the default, in listings too (null sorted against dates crashed them).
    (path / "meta.json").write_text(json.dumps({**meta, "created": None, "data_source": None}))
    assert [(b["created"], b["data_source"]) for b in list_bundles(tmp_path)] == [("", "")]
    # Every file the metadata names is checked (an export copies them all), and a missing one is a message.
    (path / "meta.json").write_text(json.dumps({**meta, "files": {**meta["files"], "notes": "../../etc/passwd"}}))
    with pytest.raises(BadInputError, match="unsafe file '../../etc/passwd'"):
        export_bundle(path)
    (path / "meta.json").write_text(json.dumps(meta))
    model_file.unlink()
    with pytest.raises(BadInputError, match="cannot export the bundle .*model.keras"):
        export_bundle(path)
    # a non-empty folder that is not a bundle is never overwritten
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    with pytest.raises(BadInputError, match="not empty"):
        save_bundle(tmp_path / "docs", _model(), META)
    with pytest.raises(BadInputError, match="notes.txt is not a writable folder"):  # under a file
        save_bundle(tmp_path / "docs" / "notes.txt" / "m", _model(), META)


def test_safe_mode_refuses_lambda_layers(tmp_path):
    import keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(inp))
    path = save_bundle(tmp_path / "lam", model, META)
    with pytest.raises(BadInputError, match="could not be loaded"):
        load_bundle(path)


def test_export_import_zip(tmp_path, faces):
    model = _model()
    path = save_bundle(tmp_path / "m", model, META, {"g": np.ones(3)})
    data = export_bundle(path, tmp_path / "m.zip")
    assert (tmp_path / "m.zip").read_bytes() == data
    copy = import_bundle(data, tmp_path / "imported")
    np.testing.assert_allclose(load_bundle(copy).model.predict_on_batch(faces), model.predict_on_batch(faces),
                               rtol=1e-6)
    import_bundle(tmp_path / "m.zip", copy)  # replacing a bundle with a bundle is fine
    assert bundle_kind(copy) == "gru"

    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("meta.json", json.dumps(read_meta(path)))
        zf.writestr("../escape.keras", b"x")
    with pytest.raises(BadInputError, match="flat"):
        import_bundle(evil.getvalue(), tmp_path / "evil")
    with pytest.raises(BadInputError, match="not a readable zip"):
        import_bundle(b"hello", tmp_path / "evil")
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF  # inside the model file: its CRC fails
    with pytest.raises(BadInputError, match="^my.zip: corrupt zip"):
        import_bundle(bytes(damaged), tmp_path / "evil", name="my.zip")
    with pytest.raises(BadInputError, match="^my.zip/meta.json: unreadable"):  # the upload is named, not a temp folder
        import_bundle(_zip({"meta.json": b"\xff\xfe"}), tmp_path / "evil", name="my.zip")
    encrypted = patch_zip_headers(_zip({"meta.json": json.dumps(read_meta(path)).encode()}), 6, 8, 0x1)
    with pytest.raises(BadInputError, match="^my.zip: zip entry 'meta.json' cannot be read .*encrypted"):
        import_bundle(encrypted, tmp_path / "evil", name="my.zip")
    assert not (tmp_path / "evil").exists()


def test_an_import_that_does_not_load_is_removed_and_names_the_upload(tmp_path):
    from facelab.registry import import_model

    # A bundle whose metadata is fine but whose model is no FaceLab classifier (no embedding layer).
    data = export_bundle(save_bundle(tmp_path / "m", _model(), META))
    with pytest.raises(BadInputError, match="^up.zip: the saved model is not a FaceLab classifier") as err:
        import_model(data, tmp_path / "models" / "up", "up.zip")
    assert str(tmp_path / "models") not in str(err.value)
    assert not (tmp_path / "models" / "up").exists()
    # A bundle already at that place stays as it was: the import is loaded before it replaces anything.
    kept = save_bundle(tmp_path / "models" / "keep", _model(), {**META, "kind": "kept"})
    with pytest.raises(BadInputError, match="^up.zip: "):
        import_model(data, kept, "up.zip")
    assert read_meta(kept)["kind"] == "kept" and load_bundle(kept).model is not None
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["keep"]  # no temporary folder left


def test_an_import_whose_config_holds_a_huge_number_is_refused(tmp_path, olivetti):
    from facelab.registry import config_for, create_model, import_model

    model = create_model(config_for("ae-dense", epochs=1))
    model.fit(split_dataset(olivetti.subset(np.flatnonzero(olivetti.labels < 3)), 4, 1, 0))
    path = model.save(tmp_path / "m")
    meta = read_meta(path)
    meta["config"]["hidden_units"] = 10 ** 400  # JSON integers have no size limit; float() of it overflows
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BadInputError, match="^up.zip: .*hidden_units must be a whole number"):
        import_model(export_bundle(path), tmp_path / "models" / "up", "up.zip")
    assert not (tmp_path / "models" / "up").exists()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_delete_refuses_non_bundles(tmp_path):
    path = save_bundle(tmp_path / "m", _model(), META)
    (tmp_path / "other").mkdir()
    with pytest.raises(BadInputError):
        storage.delete_bundle(tmp_path / "other")
    storage.delete_bundle(path)
    assert not path.exists() and (tmp_path / "other").exists()


def test_registry_kinds_and_errors(tmp_path):
    assert MODEL_KINDS == ("gru", "cnn-gru", "ae-dense", "ae-conv", "ae-metric")
    with pytest.raises(BadInputError, match="unknown model kind"):
        bundle_kind(save_bundle(tmp_path / "x", _model(), {**META, "kind": "svm"}))
    with pytest.raises(FaceLabError):
        load_model(tmp_path / "nothing")
    from facelab.training import TrainConfig

    assert "epochs" in {f.name for f in config_fields(TrainConfig)}


def test_stored_configs_are_checked_like_typed_settings():
    from facelab.registry import changed_fields, config_for, config_from_dict, config_to_dict

    assert changed_fields(config_for("cnn-gru"), config_for("cnn-gru", epochs=3, units=64)) == ["units", "epochs"]

    for kind in MODEL_KINDS:  # every preset survives the round trip unchanged
        assert config_from_dict(kind, config_to_dict(config_for(kind))) == config_for(kind)
    stored = config_to_dict(config_for("cnn-gru"))
    assert config_from_dict("cnn-gru", {**stored, "threshold": 1}).threshold == 1.0  # JSON may write 1.0 as 1
    for field, value, message in (("threshold", "x", "threshold must be a number"),
                                  ("units", 2.5, "units must be a whole number"),
                                  ("bidirectional", "yes", "bidirectional must be true or false"),
                                  ("cell", "rnn", "cell must be one of"), ("dropout", 7, "dropout=7.0 is outside"),
                                  ("train", 3, "TrainConfig settings must be a mapping")):
        with pytest.raises(BadInputError, match=message):
            config_from_dict("cnn-gru", {**stored, field: value})
    with pytest.raises(BadInputError, match="image_size=-4 is outside"):
        config_from_dict("ae-conv", {**config_to_dict(config_for("ae-conv")), "image_size": -4})


def test_free_bundle_name_and_default_model_dir(tmp_path, monkeypatch):
    from facelab.storage import default_model_dir, free_bundle_name

    assert free_bundle_name("cnn gru/v1", set()) == "cnn-gru-v1"
    assert free_bundle_name("ae", {"ae", "ae-2"}) == "ae-3"
    assert free_bundle_name("//", set()) == "model"
    assert free_bundle_name("..", set()) == "model" and free_bundle_name(".hidden v1.0.", set()) == "hidden-v1.0"
    assert free_bundle_name("my ae/../conv test", set()) == "my-ae-conv-test"
    monkeypatch.setenv("FACELAB_MODEL_DIR", str(tmp_path / "m"))
    assert default_model_dir() == tmp_path / "m"
    monkeypatch.delenv("FACELAB_MODEL_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_model_dir() == tmp_path / ".facelab" / "models"


def test_two_sessions_enrolling_into_one_bundle_keep_both_changes(tmp_path, synthetic):
    # Two tabs (or a tab and `python -m facelab enrol`) hold the same bundle: the second save used to replace the
    # first one's enrolment without a word, then was refused; now both people are kept.
    from facelab.enrol import add_person, remove_person, save_model
    from facelab.registry import config_for, create_model

    model = create_model(config_for("ae-dense", epochs=1)).fit(split_dataset(synthetic, 4, 1, 0))
    path = model.save(tmp_path / "shared")
    tab_a, tab_b = load_model(path), load_model(path)
    faces = synthetic.images[:3]
    created = read_meta(path)["created"]
    time.sleep(1.1)  # dates have whole seconds
    first = save_model(add_person(tab_a, "Ann", faces), path)
    assert first.kept is None and first.path == path
    assert read_meta(path)["created"] == created != read_meta(path)["saved"]  # a person added: still that model
    second = save_model(add_person(tab_b, "Bob", synthetic.images[3:6]), path)
    assert second.kept == "Kept Ann (enrolled) from another session's save of this model"
    assert {"Ann", "Bob"} <= set(read_meta(path)["names"]) and {"Ann", "Bob"} <= set(second.model.gallery_.names)
    on_disk = load_model(path).gallery_
    np.testing.assert_array_equal(on_disk.changes_since(tab_a.gallery_)[0]["Ann"],
                                  first.model.gallery_.changes_since(tab_a.gallery_)[0]["Ann"])  # Ann's own codes
    # The first tab, not reloaded, removes Ann: Bob (saved by the other tab) stays.
    third = save_model(remove_person(first.model, "Ann"), path)
    assert "Bob (enrolled)" in third.kept
    names = read_meta(path)["names"]
    assert "Ann" not in names and "Bob" in names and set(third.model.gallery_.names) == set(names)
    assert second.model.gallery_.names != names  # the second tab's own model is not changed behind its back
    # The model that made the bundle, saved again: nothing of its own to add, everyone else's kept.
    again = save_model(model, path)
    assert set(read_meta(path)["names"]) == set(names) and "Bob (enrolled)" in again.kept
    # Another network saved at that place meanwhile: its people are not this model's codes, so the save is refused.
    other = create_model(config_for("ae-dense", epochs=1, seed=5)).fit(split_dataset(synthetic, 4, 1, 0))
    save_bundle(path, other.keras_model_, {**read_meta(path)}, extras=other.gallery_.to_arrays())
    with pytest.raises(storage.BundleChangedError, match="another model has been saved there"):
        save_model(add_person(again.model, "Dee", faces), path)
    with pytest.raises(BadInputError, match="saved by another session"):
        again.model.save(path)  # the model's own save never merges: it refuses


@pytest.mark.parametrize("failing_write", [1, 2])  # 1: the extras file, 2: meta.json (the commit point)
def test_a_full_disk_mid_save_keeps_the_previous_bundle(tmp_path, faces, monkeypatch, failing_write):
    first = _model(0)
    path = save_bundle(tmp_path / "m", first, META, {"g": np.ones(3)})
    before_files = sorted(p.name for p in path.iterdir())
    before_meta = (path / "meta.json").read_bytes()
    calls = []
    real_fsync = storage.os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) == failing_write:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", fsync)
    with pytest.raises(BadInputError, match="cannot save the model \\(No space left on device\\)"):
        save_bundle(path, _model(1), META, {"g": np.zeros(3)})
    monkeypatch.undo()
    assert (path / "meta.json").read_bytes() == before_meta
    assert sorted(p.name for p in path.iterdir()) == before_files  # no new model, extras or temporary file
    bundle = load_bundle(path)
    np.testing.assert_array_equal(bundle.extras["g"], np.ones(3))
    np.testing.assert_allclose(bundle.model.predict_on_batch(faces), first.predict_on_batch(faces), rtol=1e-6)


def test_extras_that_hold_pickled_objects_or_are_truncated_are_refused(tmp_path):
    from facelab.registry import import_model

    path = save_bundle(tmp_path / "p", _model(), META, {"g": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(BadInputError, match="extras hold pickled Python objects, which FaceLab never loads") as err:
        load_bundle(path)  # loading them could run code
    assert "allow_pickle" not in str(err.value)  # numpy's advice to load it unsafely is not passed on
    with pytest.raises(BadInputError, match="^up.zip/extras-.*: bundle extras hold pickled Python objects"):
        import_model(export_bundle(path), tmp_path / "models" / "up", "up.zip")
    assert not (tmp_path / "models" / "up").exists()

    path = save_bundle(tmp_path / "t", _model(), META, {"g": np.ones(1000)})
    extras = path / read_meta(path)["files"]["extras"]
    extras.write_bytes(extras.read_bytes()[:100])
    with pytest.raises(BadInputError, match="extras could not be read"):
        load_bundle(path)


def test_an_import_never_replaces_a_folder_that_is_not_a_bundle(tmp_path):
    data = export_bundle(save_bundle(tmp_path / "m", _model(), META))
    mine = tmp_path / "models" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(BadInputError, match="no meta.json|not a FaceLab model bundle"):
        import_bundle(data, mine, name="up.zip")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "my notes"
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["mine"]  # no .import- or .old- folder left


def test_refusals_of_damaged_and_future_bundles(tmp_path, monkeypatch):
    path = save_bundle(tmp_path / "m", _model(), META)
    meta = read_meta(path)
    model_file = path / meta["files"]["model"]
    model_bytes = model_file.read_bytes()
    model_file.write_bytes(model_bytes[:200])
    with pytest.raises(BadInputError, match=r"not a Keras model file \(corrupt or truncated\)"):
        load_bundle(path)
    model_file.unlink()
    with pytest.raises(BadInputError, match="missing its model file"):
        load_bundle(path)
    model_file.write_bytes(model_bytes)
    (path / "meta.json").write_text(json.dumps({**meta, "version": 2}))
    with pytest.raises(BadInputError, match="newer than this FaceLab"):
        load_bundle(path)
    (path / "meta.json").write_text(json.dumps(meta))
    assert load_bundle(path).model is not None
    monkeypatch.setattr(storage, "META_MAX_BYTES", 100)
    with pytest.raises(BadInputError, match="meta.json"):
        read_meta(path)


def test_export_uploads_over_the_limits_or_lacking_a_member_are_refused(tmp_path, monkeypatch):
    path = save_bundle(tmp_path / "m", _model(), META)
    meta_bytes = json.dumps(read_meta(path)).encode()
    too_many = _zip({"meta.json": meta_bytes, **{f"f{i}.txt": b"x" for i in range(storage.EXPORT_MAX_FILES)}})
    with pytest.raises(BadInputError, match="too many or too large"):
        import_bundle(too_many, tmp_path / "a", name="up.zip")
    monkeypatch.setattr(storage, "EXPORT_MAX_BYTES", len(meta_bytes) + 10)
    with pytest.raises(BadInputError, match="too many or too large"):
        import_bundle(export_bundle(path), tmp_path / "a", name="up.zip")
    monkeypatch.undo()
    with pytest.raises(BadInputError, match="^up.zip: the export lacks model-"):
        import_bundle(_zip({"meta.json": meta_bytes}), tmp_path / "a", name="up.zip")
    assert not (tmp_path / "a").exists()
