"""The dashboard driven by Streamlit's AppTest: every page, training, identification, bundles, bad input.

Models for the result pages are trained once here with the library (not through the app) and put in
the session, as a user's earlier training would have. The model folder is a temporary directory.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from pages import ui
from tests.helpers import set_distance_threshold

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["pages/home.py", "pages/data.py", "pages/train_gru.py", "pages/train_autoencoder.py",
         "pages/reconstructions.py", "pages/evaluate.py", "pages/identify.py", "pages/models.py"]
if (ROOT / "pages" / "live.py").is_file():
    PAGES.append("pages/live.py")


@pytest.fixture(autouse=True)
def model_dir(tmp_path, monkeypatch, olivetti_dir) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("FACELAB_MODEL_DIR", str(folder))
    monkeypatch.setenv("FACELAB_OLIVETTI_DIR", str(olivetti_dir))
    return folder


def new_app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception
    return at


def go(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


@pytest.fixture(scope="module")
def olivetti_ae(olivetti):
    """A quick metric-learning autoencoder on Olivetti (5 training faces per person), trained with the library."""
    from facelab.data import split_dataset
    from facelab.registry import config_for, create_model

    split = split_dataset(olivetti, train_per_person=5, val_per_person=1, seed=0)
    model = create_model(config_for("ae-metric", epochs=10, augment=False))
    model.fit(split)
    model.evaluate(split.test)
    return model, split


def png(face: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", (np.clip(face, 0, 1) * 255).astype(np.uint8))
    assert ok
    return buf.tobytes()


def png_in_frame(face: np.ndarray) -> bytes:
    """An Olivetti face (64x64 float) upscaled to 128 px on a flat 320x240 background, as PNG bytes."""
    import cv2

    img = np.full((240, 320), 128, np.uint8)
    big = cv2.resize((face * 255).astype(np.uint8), (128, 128), interpolation=cv2.INTER_CUBIC)
    img[56:184, 96:224] = big
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def with_model(at: AppTest, name: str, model) -> AppTest:
    at.session_state[ui.MODELS] = {name: model}
    at.session_state[ui.ACTIVE_MODEL] = name
    return at


def test_every_page_renders_from_a_fresh_session():
    # webrtc_streamer needs a real server; the live page is checked in the browser test.
    with mock.patch("streamlit_webrtc.webrtc_streamer"):
        for page in PAGES:
            at = go(new_app(), page)
            assert at.title or at.info, page
    # Without a model, a page links only to the train pages that make the kind it needs.
    links = lambda at: [p.proto.label for p in at.get("page_link")]  # noqa: E731
    assert links(go(new_app(), "pages/reconstructions.py")) == ["Train autoencoder", "Models"]
    assert links(go(new_app(), "pages/evaluate.py")) == ["Train GRU", "Train autoencoder", "Models"]


def test_data_page_loads_sources_and_lists_problems(tmp_path):
    at = go(new_app(), "pages/data.py")
    at.button(key="data.load").click().run()
    assert [m.value for m in at.metric] == ["12", "240", "64x64"]
    assert at.get("plotly_chart")  # the face grid
    at.radio(key="data.source").set_value("Olivetti").run()
    at.button(key="data.load").click().run()
    assert [m.value for m in at.metric] == ["40", "400", "64x64"]
    # the face grid starts afresh on the new people (the first set's names are not Olivetti's: nothing was drawn)
    assert at.multiselect[0].value == ["person-01", "person-02", "person-03", "person-04"]
    assert at.get("plotly_chart")
    # a zip of two people plus files that are not faces: the problems are listed, not raised
    import zipfile

    import cv2

    def png(face):
        return cv2.imencode(".png", (face * 255).astype(np.uint8))[1].tobytes()

    ds = at.session_state[ui.DATASET]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            zf.writestr(f"people/alice/{i}.png", png(ds.images[i]))
            zf.writestr(f"people/bob/{i}.png", png(ds.images[10 + i]))
        zf.writestr("people/alice/broken.png", b"not a png")
        zf.writestr("people/bob/notes.txt", "hello")
    at.radio(key="data.source").set_value("Zip upload").run()
    at.file_uploader(key="data.zip").upload("people.zip", buf.getvalue(), "application/zip").run()
    at.button(key="data.load").click().run()
    assert not at.exception and not errors(at)
    assert [m.value for m in at.metric] == ["2", "6", "64x64"]
    skipped = at.dataframe[0].value
    assert sorted(skipped["file"]) == ["alice/broken.png", "bob/notes.txt"]
    at.button(key="data.load").click().run()  # the same upload again: from the cache, no replay error
    assert not at.exception and not errors(at) and [m.value for m in at.metric] == ["2", "6", "64x64"]
    # a zip with nothing usable: one message naming the file
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("notes/readme.txt", "hello")
    at.file_uploader(key="data.zip").upload("nothing.zip", empty.getvalue(), "application/zip").run()
    at.button(key="data.load").click().run()
    assert not at.exception
    assert any("nothing.zip" in e and "at least 2 people" in e for e in errors(at)), errors(at)


def test_preprocessing_preview_boxes_aligns_and_shrinks_the_faces_of_a_photo(olivetti_uint8):
    import cv2

    from tests.helpers import photo_with_faces

    faces, _ = olivetti_uint8
    at = go(new_app(), "pages/data.py")
    at.button(key="data.load").click().run()
    photo = cv2.imencode(".png", photo_with_faces([faces[0], faces[20]], width=640, height=320))[1].tobytes()
    at.file_uploader(key="data.photo").upload("two.png", photo, "image/png").run()
    assert not at.exception and not at.warning
    charts = {c.proto.id for c in at.get("plotly_chart")}
    assert len(charts) == 4  # the data set's grid, the photo with its boxes, the aligned crops, the model inputs
    at.file_uploader(key="data.photo").upload("wall.png", cv2.imencode(".png", np.full((240, 320), 90, np.uint8))[1]
                                              .tobytes(), "image/png").run()
    assert any("wall.png: no face found" in w.value for w in at.warning)


def test_a_folder_loads_again_once_its_files_change(olivetti_uint8, tmp_path):
    import cv2

    faces, _ = olivetti_uint8
    for person in ("ann", "ben"):
        (tmp_path / person).mkdir()
        for j in range(3):
            cv2.imwrite(str(tmp_path / person / f"{j}.png"), faces[j + (10 if person == "ben" else 0)])
    at = go(new_app(), "pages/data.py")
    at.radio(key="data.source").set_value("Folder path").run()
    at.text_input(key="data.folder").set_value(str(tmp_path)).run()
    at.button(key="data.load").click().run()
    assert at.session_state[ui.DATASET].names == ["ann", "ben"]
    (tmp_path / "cy").mkdir()
    for j in range(3):
        cv2.imwrite(str(tmp_path / "cy" / f"{j}.png"), faces[20 + j])
    at.button(key="data.load").click().run()  # the cache is keyed on the folder's files, not only its path
    assert not at.exception and at.session_state[ui.DATASET].names == ["ann", "ben", "cy"]
    loaded = at.session_state[ui.DATASET]
    # Load again, unchanged: from the cache (it failed with CacheReplayClosureError: the progress bar's replay).
    at.button(key="data.load").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert at.session_state[ui.DATASET] is loaded


def test_settings_changed_from_the_preset_are_named_and_can_be_reset():
    at = go(new_app(), "pages/data.py")
    at.button(key="data.load").click().run()
    go(at, "pages/train_gru.py")
    assert not any("Changed from the preset" in c.value for c in at.caption)
    at.number_input(key="gru.cnn-gru.epochs").set_value(7).run()
    at.checkbox(key="gru.cnn-gru.bidirectional").uncheck().run()
    assert "Changed from the preset: bidirectional, epochs" in [c.value for c in at.caption]
    at.button(key="gru.reset.cnn-gru.button").click().run()
    assert not at.exception and at.number_input(key="gru.cnn-gru.v1.epochs").value == 50  # fresh widgets
    assert at.checkbox(key="gru.cnn-gru.v1.bidirectional").value
    assert not any("Changed from the preset" in c.value for c in at.caption)
    # A kind's form shows only what its network reads: the seed GRU has no conv stack, the dense autoencoder none.
    at.radio(key="gru.preset").set_value("gru").run()
    keys = {w.key for w in (*at.slider, *at.number_input, *at.checkbox, *at.selectbox)}
    assert "gru.gru.units" in keys and not {"gru.gru.base_filters", "gru.gru.conv_blocks", "gru.gru.kind"} & keys
    go(at, "pages/train_autoencoder.py")
    at.radio(key="ae.preset").set_value("ae-dense").run()
    keys = {w.key for w in (*at.slider, *at.number_input, *at.checkbox, *at.selectbox)}
    assert "ae.ae-dense.hidden_units" in keys and not {"ae.ae-dense.filters", "ae.ae-dense.blocks"} & keys


def test_split_sliders_take_data_with_two_faces_per_person(olivetti):
    # One training face per person is the only split; a slider from 1 to 1 would be an error in Streamlit.
    at = new_app()
    at.session_state[ui.DATASET] = olivetti.subset(
        np.concatenate([np.flatnonzero(olivetti.labels == p)[:2] for p in range(5)]))
    for page in ("pages/train_gru.py", "pages/train_autoencoder.py"):
        go(at, page)
        captions = [c.value for c in at.caption]
        assert "training faces per person (K): 1 (the person with the fewest faces leaves no other choice)" in captions
        assert any(c.startswith("of which for validation: 0") for c in captions)


def test_a_model_folder_that_cannot_take_the_bundle_is_refused_before_training(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("FACELAB_MODEL_DIR", str(tmp_path / "a-file"))  # the sidebar's default model folder
    at = go(new_app(), "pages/data.py")
    at.button(key="data.load").click().run()
    go(at, "pages/train_gru.py")
    at.button(key="gru.train").click().run()
    assert any("is not a writable folder" in e for e in errors(at)), errors(at)
    assert "gru" not in at.session_state[ui.JOBS]  # nothing trained for nothing
    go(at, "pages/models.py")
    assert any("is a file, not a folder" in e for e in errors(at))


def test_training_two_epochs_fills_curves_and_session():
    at = go(new_app(), "pages/data.py")
    at.button(key="data.load").click().run()  # synthetic set
    go(at, "pages/train_gru.py")
    assert len(at.get("latex")) == 3  # the seed's cell beside Keras' LSTM and the true GRU
    at.number_input(key="gru.cnn-gru.epochs").set_value(2).run()
    at.button(key="gru.train").click().run()
    assert not at.exception
    job = at.session_state[ui.JOBS]["gru"]
    assert job.wait(120) and job.error is None
    at.run()
    assert not at.exception
    model = at.session_state[ui.MODELS]["cnn-gru"]
    assert at.session_state[ui.ACTIVE_MODEL] == "cnn-gru"
    assert len(model.history_["loss"]) == 2 and len(model.history_["val_accuracy"]) == 2
    assert "accuracy" in model.metrics_  # evaluated on the held-out faces
    assert at.get("plotly_chart")  # the curves
    assert "finished after 2 epoch(s)" in at.success[0].value
    assert (job.path / "meta.json").is_file()  # saved at once
    go(at, "pages/evaluate.py")  # the faces the new model got wrong, without evaluating again
    wrong = round((1 - model.metrics_["accuracy"]) * len(job.split.test.images))
    assert f"Misclassified: {wrong} of {len(job.split.test.images)} test faces" in [s.value for s in at.subheader]
    # The classifier's embedding space: one 2-D point per face of the data set.
    points = [v[0] for k, v in at.session_state[ui.LATENT].items() if k[0] == "evaluate.latent"]
    assert len(points) == 1 and points[0].shape == (len(at.session_state[ui.DATASET].images), 2)
    go(at, "pages/identify.py")  # its test faces can be tried without a photo
    at.radio(key="identify.source").set_value("Test faces").run()
    at.slider(key="identify.test_n").set_value(10).run()
    assert not at.exception and at.get("plotly_chart")
    summary = next(m.value for m in at.markdown if "answered rightly" in m.value)
    from facelab.evaluation import check_answers

    pick = at.session_state[ui.TEST_FACES]["cnn-gru"].sample(10, seed=0)  # the page's first sample
    check = check_answers(pick.face_names, model.recognizer().identify(pick.images), model.names_)
    assert summary.startswith(f"**{check.right} of 10** answered rightly, {check.wrong} named wrongly"), summary
    at.button(key="identify.shuffle").click().run()
    assert at.session_state["identify.test_seed"] == 1 and not at.exception


def test_a_failed_training_stays_in_the_past_once_other_data_are_loaded():
    from facelab.errors import FaceLabError

    class Failing:
        def fit(self, split, **_):
            raise FaceLabError("the loss became NaN at epoch 1")

    at = go(new_app(), "pages/data.py")
    at.button(key="data.load").click().run()
    go(at, "pages/train_gru.py")
    with mock.patch("facelab.registry.create_model", return_value=Failing()):
        at.button(key="gru.train").click().run()
    assert at.session_state[ui.JOBS]["gru"].wait(30)
    at.run()
    assert any("NaN" in e for e in errors(at)), errors(at)
    go(at, "pages/data.py")
    at.slider(key="data.syn_people").set_value(5).run()
    at.button(key="data.load").click().run()
    go(at, "pages/train_gru.py")
    assert not errors(at)  # an error about the data loaded before is not one to fix now
    assert any("on the data set loaded before, failed: the loss became NaN" in c.value for c in at.caption)


def test_stop_ends_training_and_keeps_the_model():
    at = go(new_app(), "pages/data.py")
    at.button(key="data.load").click().run()
    go(at, "pages/train_autoencoder.py")
    at.radio(key="ae.preset").set_value("ae-dense").run()
    at.number_input(key="ae.ae-dense.epochs").set_value(500).run()
    at.button(key="autoencoder.train").click().run()
    job = at.session_state[ui.JOBS]["autoencoder"]
    deadline = time.time() + 60
    while not job.history and time.time() < deadline:  # at least one epoch done
        time.sleep(0.2)
    at.run()
    at.button(key=f"stop.{job.name}").click().run()
    assert job.stop.requested
    done_after_stop = len(job.history.get("loss", []))  # the request came before this
    assert job.wait(60) and job.error is None
    at.run()
    epochs = len(at.session_state[ui.MODELS][job.name].history_["loss"])
    assert 1 <= epochs <= done_after_stop + 1  # it ended in the epoch it was in, not at 500 (a fast GPU can get far)
    assert f"stopped after {epochs} epoch(s)" in at.success[0].value


def test_identify_names_uploaded_olivetti_faces(olivetti_ae):
    model, split = olivetti_ae
    at = with_model(new_app(), "olivetti-ae", model)
    go(at, "pages/identify.py")
    set_distance_threshold(at, float("inf"))  # name every face: closed-set identification
    # Held-out test faces of ten people, uploaded as 64x64 crops: never seen in training or enrolment.
    picks = [int(np.flatnonzero(split.test.labels == p)[0]) for p in range(10)]
    files = [(f"face{i}.png", png(split.test.images[i]), "image/png") for i in picks]
    at.file_uploader(key="identify.photos").set_value(files).run()
    assert not at.exception and not errors(at)
    answers = [m.value for m in at.markdown if m.value.startswith("Face 1:")]
    assert len(answers) == 10
    right = sum(a.startswith(f"Face 1: **{split.test.names[split.test.labels[i]]}**") for a, i in zip(answers, picks))
    assert right >= 8, answers  # the fixture model names about 85% of held-out faces
    # A photo: an enrolled face upscaled on a larger background goes through detection and alignment.
    at.file_uploader(key="identify.photos").upload("photo.png", png_in_frame(split.train.images[0]), "image/png").run()
    assert not at.exception and not errors(at)
    chart = at.get("plotly_chart")[0].proto.spec
    assert '"type":"rect"' in chart.replace(" ", "")  # the face is boxed
    assert any(m.value.startswith("Face 1: **person-") for m in at.markdown)
    assert not any("unknown to" in i.value for i in at.info)  # every face named: no pointer to enrolment
    set_distance_threshold(at, 0.0)  # nobody is close enough now (the photo is the one upload left)
    pointer = [i.value for i in at.info if "unknown to olivetti-ae" in i.value]
    assert pointer and pointer[0].startswith("1 face(s)") and "gallery" in pointer[0]
    assert any(m.value.startswith("Face 1: **unknown** (nearest: person-") for m in at.markdown)
    # A gallery's answer is given as the distance its threshold slider sets, not as a similarity beside it.
    said = next(m.value for m in at.markdown if m.value.startswith("Face 1: **unknown**"))
    assert re.search(r"distance [0-9.e-]+; named up to 0\)$", said), said
    assert list(at.dataframe[-1].value.columns) == ["person", "distance"]
    assert at.get("page_link")[0].proto.page == "live"
    # Test faces kept from training: a single one still draws (no one-value slider).
    at.session_state[ui.TEST_FACES] = {"olivetti-ae": split.test.subset(np.array([0]))}
    at.run()
    at.radio(key="identify.source").set_value("Test faces").run()
    assert not at.exception and any(" of 1** answered rightly" in m.value for m in at.markdown)


def test_identify_explains_the_calibrated_threshold_and_warns_when_it_names_few_faces(olivetti_ae, monkeypatch):
    import dataclasses

    model, _ = olivetti_ae
    calibration = model.gallery_.calibration

    def identify_page(tar: float) -> AppTest:
        monkeypatch.setattr(model.gallery_, "calibration", dataclasses.replace(calibration, tar=tar))
        return go(with_model(new_app(), "olivetti-ae", model), "pages/identify.py")

    at = identify_page(0.9)
    assert any(c.value.startswith("Calibrated threshold") and "named 90% of" in c.value for c in at.caption)
    assert not at.warning, [w.value for w in at.warning]
    # A threshold that turns most known faces away (a plain-reconstruction or undertrained model): the page says so.
    at = identify_page(0.25)
    assert any("names only 25% of known people's faces" in w.value and "more epochs" in w.value for w in at.warning)


def test_bad_uploads_show_messages(olivetti_ae):
    model, _ = olivetti_ae
    at = with_model(new_app(), "olivetti-ae", model)
    go(at, "pages/identify.py")
    at.file_uploader(key="identify.photos").upload("holiday.jpg", b"\x00garbage" * 50, "image/jpeg").run()
    assert not at.exception
    assert any(e.startswith("holiday.jpg:") for e in errors(at)), errors(at)
    go(at, "pages/models.py")
    at.file_uploader(key="models.upload").upload("model.zip", b"PK not really", "application/zip").run()
    at.button(key="models.import").click().run()
    assert not at.exception
    assert any("model.zip" in e and "not a FaceLab model export" in e for e in errors(at)), errors(at)


def test_an_imported_bundle_takes_the_name_typed_not_the_file_name(olivetti_ae, model_dir, tmp_path):
    # A browser saves a second download as "model (1).zip": the name field starts from it and can be changed.
    from facelab.storage import export_bundle

    model, _ = olivetti_ae
    data = export_bundle(model.save(tmp_path / "olivetti-ae"))
    at = go(new_app(), "pages/models.py")
    at.file_uploader(key="models.upload").upload("olivetti-ae (1).facelab.zip", data, "application/zip").run()
    field = next(t for t in at.text_input if t.label == "Name in the model folder")
    assert field.value == "olivetti-ae (1)"
    field.set_value("faces of the lab").run()
    at.button(key="models.import").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert (model_dir / "faces-of-the-lab" / "meta.json").is_file()
    assert "faces-of-the-lab" in at.session_state[ui.MODELS]


def test_curves_compared_name_the_models_that_lack_the_chosen_curve(olivetti_ae):
    # A walk compared three models, one trained without validation faces: it was silently missing from val_loss.
    import copy

    model, _ = olivetti_ae
    no_val = copy.copy(model)
    no_val.history_ = {"loss": list(model.history_["loss"])}
    at = with_model(new_app(), "no-val", no_val)
    at.session_state[ui.MODELS]["with-val"] = model
    go(at, "pages/evaluate.py")
    assert at.selectbox(key="evaluate.compare.curve").value == "val_loss"
    assert "No val_loss curve for no-val (trained without validation faces)." in [c.value for c in at.caption]
    at.selectbox(key="evaluate.compare.curve").set_value("loss").run()
    assert not any(c.value.startswith("No loss curve") for c in at.caption)


def test_models_page_save_and_load_round_trip(olivetti_ae, model_dir):
    model, split = olivetti_ae
    at = with_model(new_app(), "olivetti-ae", model)
    go(at, "pages/models.py")
    at.button(key="models.save").click().run()
    assert (model_dir / "olivetti-ae" / "meta.json").is_file()
    at.session_state[ui.MODELS] = {}  # a new session: nothing in memory
    at.run()
    assert at.selectbox(key="models.bundle").value == "olivetti-ae"
    assert at.multiselect(key="models.compare").value == ["olivetti-ae"]  # its curves, read from the bundle
    assert at.selectbox(key="models.compare.curve").value == "val_loss" and at.get("plotly_chart")
    saved = at.dataframe[0].value.iloc[0]  # the bundle table shows the test figures it was saved with
    assert saved["test accuracy"] == pytest.approx(100 * model.metrics_["accuracy"], abs=1e-2)  # in percent
    assert saved["PSNR (dB)"] == pytest.approx(model.metrics_["recon_psnr"], abs=1e-4)
    assert at.dataframe[0].proto.placeholder == "–"  # a figure a model lacks is a dash, not a grey "None"
    at.session_state[ui.MODELS] = {"other": model}  # the session's own model comes first in its section
    at.run()
    at.button(key="models.load").click().run()
    assert not at.exception and not errors(at)
    assert at.selectbox(key="models.session_model").value == "olivetti-ae"  # the session section follows the Load
    loaded = at.session_state[ui.MODELS]["olivetti-ae"]
    assert loaded is not model
    np.testing.assert_allclose(loaded.embed(split.test.images[:8]), model.embed(split.test.images[:8]), atol=1e-5)
    assert loaded.metrics_["accuracy"] == pytest.approx(model.metrics_["accuracy"])
    # Delete asks once more: keeping it leaves the files, confirming removes them.
    at.button(key="models.delete").click().run()
    assert (model_dir / "olivetti-ae").is_dir() and any("for good" in w.value for w in at.warning)
    at.button(key="models.delete.no").click().run()
    assert (model_dir / "olivetti-ae").is_dir() and not at.warning
    at.button(key="models.delete").click().run()
    at.button(key="models.delete.yes").click().run()
    assert not at.exception and not (model_dir / "olivetti-ae").exists()
    assert any("No bundles" in i.value for i in at.info)
    assert any("Deleted olivetti-ae from the model folder" in s.value for s in at.success)  # said, not only gone
    session_table = next(d.value for d in at.dataframe if "saved as" in d.value.columns)
    assert session_table["saved as"].tolist() == ["", f"{model_dir / 'olivetti-ae'} (deleted since; save it again)"]


def test_a_pending_delete_lapses_when_another_bundle_is_chosen(olivetti_ae, model_dir):
    model, _ = olivetti_ae
    model.save(model_dir / "a")
    model.save(model_dir / "b")
    at = go(new_app(), "pages/models.py")
    at.selectbox(key="models.bundle").set_value("a").run()
    at.button(key="models.delete").click().run()
    assert any("Delete a from the model folder" in w.value for w in at.warning)
    at.selectbox(key="models.bundle").set_value("b").run()
    at.selectbox(key="models.bundle").set_value("a").run()
    assert not any("for good" in w.value for w in at.warning)  # it used to come back with its bundle
    assert (model_dir / "a").is_dir() and (model_dir / "b").is_dir()


def test_saving_a_session_model_never_replaces_another_models_bundle(olivetti_ae, model_dir):
    model, _ = olivetti_ae
    from facelab.storage import read_meta, save_bundle
    from tests.test_storage import META, _model

    save_bundle(model_dir / "mine", _model(), META)  # another model, saved under the same name elsewhere
    at = go(with_model(new_app(), "mine", model), "pages/models.py")
    at.button(key="models.save").click().run()
    assert read_meta(model_dir / "mine")["kind"] == META["kind"]  # kept
    assert read_meta(model_dir / "mine-2")["kind"] == model.kind
    assert any("another model and was kept" in s.value for s in at.success)
    at.button(key="models.save").click().run()  # saving it again updates its own bundle
    assert not at.exception
    assert not (model_dir / "mine-3").exists() and read_meta(model_dir / "mine")["kind"] == META["kind"]


def test_result_pages_offer_saved_bundles_without_a_visit_to_models(olivetti_ae, model_dir):
    model, _ = olivetti_ae
    model.save(model_dir / "saved-ae")
    at = go(new_app(), "pages/identify.py")  # a new session: nothing trained or loaded yet
    assert at.selectbox(key="identify.model").value == "saved-ae"
    assert "saved-ae" in at.session_state[ui.MODELS] and not errors(at)  # loaded on choice
    go(at, "pages/reconstructions.py")
    assert at.selectbox(key="recon.model").value == "saved-ae"
    # A newer bundle of a kind the page cannot use (a GRU on Reconstructions) is not offered there.
    from facelab.storage import save_bundle
    from tests.test_storage import META, _model

    save_bundle(model_dir / "newer-gru", _model(), META)
    at = go(new_app(), "pages/reconstructions.py")
    assert at.selectbox(key="recon.model").options == ["saved-ae (saved)"] and not errors(at)
    # The model picked on a page becomes the active one, which the sidebar names and other pages start on.
    at = with_model(new_app(), "first", model)
    at.session_state[ui.MODELS]["second"] = model
    go(at, "pages/evaluate.py")
    at.selectbox(key="evaluate.model").set_value("second").run()
    assert at.session_state[ui.ACTIVE_MODEL] == "second"
    go(at, "pages/identify.py")
    assert at.selectbox(key="identify.model").value == "second"


def test_kept_settings_come_back_when_streamlit_has_dropped_them():
    # What app.py notes at each full run (ui.keep_widget_values) is given back to a widget Streamlit dropped while
    # the page was not drawn: a visit to another page, or a training's progress fragment rerunning meanwhile.
    at = go(new_app(), "pages/data.py")
    at.button(key="data.load").click().run()
    at.session_state[ui.KEPT_WIDGETS] = {"gru.preset": "gru", "gru.gru.epochs": 7}
    go(at, "pages/train_gru.py")
    assert at.radio(key="gru.preset").value == "gru" and at.number_input(key="gru.gru.epochs").value == 7


def test_pages_with_data_and_a_model(olivetti_ae, olivetti):
    model, _ = olivetti_ae
    at = with_model(new_app(), "olivetti-ae", model)
    at.session_state[ui.DATASET] = olivetti
    for page in ("pages/train_gru.py", "pages/train_autoencoder.py", "pages/data.py"):
        go(at, page)
    for page in ("pages/reconstructions.py", "pages/evaluate.py"):
        go(at, page)
        assert at.get("plotly_chart"), page
        if page == "pages/reconstructions.py":  # the first 4 faces of the first 3 people, as the page starts
            from facelab.reconstruction import psnr_per_image

            faces = olivetti.images[olivetti.first_per_person(olivetti.names[:3], 4)]
            psnr = psnr_per_image(faces, model.reconstruct(faces)).mean()
            assert any(c.value.startswith(f"Mean PSNR {psnr:.2f} dB") for c in at.caption), psnr
    # Which faces are test depends only on K and the seed: no validation slider to puzzle over.
    assert [s.label for s in at.slider] == ["training faces per person (K)"]
    before = model.metrics_
    at.button(key="evaluate.run").click().run()
    assert not at.exception and model.metrics_ is not before  # evaluated again, on this page's split
    accuracy = model.metrics_["accuracy"]
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["test accuracy"] == f"{accuracy:.1%}"
    n_test = sum(model.metrics_["confusion"][i][j] for i in range(len(model.metrics_["confusion"]))
                 for j in range(len(model.metrics_["confusion"])))
    wrong = round((1 - accuracy) * n_test)
    assert f"Misclassified: {wrong} of {n_test} test faces" in [s.value for s in at.subheader]


def test_identify_warns_about_a_classifier_that_names_few_test_faces(synthetic):
    # A walk tried a 3-epoch CNN->GRU that named 17.5% of its test faces: every photo came back "unknown" with no
    # hint, while a weak gallery's calibration already said so.
    from facelab.data import split_dataset
    from facelab.registry import config_for, create_model

    model = create_model(config_for("gru", epochs=1, units=8, augment=False)).fit(split_dataset(synthetic, 4, 1, 0))
    model.metrics_ = {**model.metrics_, "accuracy": 0.175}
    at = go(with_model(new_app(), "weak", model), "pages/identify.py")
    assert not at.exception and any("named only 18% of its test faces" in w.value for w in at.warning)


def test_evaluate_says_when_people_were_enrolled_after_the_test(olivetti_ae):
    # A walk enrolled "Newbie" and Evaluate went on showing the old figures as the model's, with no word.
    from facelab.enrol import add_person

    model, split = olivetti_ae
    grown = add_person(model, "Newbie", split.test.images[:4])
    at = go(with_model(new_app(), "grown", grown), "pages/evaluate.py")
    assert not at.exception
    assert any(c.value.startswith("Measured before adding Newbie: press Evaluate") for c in at.caption)
    at = go(with_model(new_app(), "plain", model), "pages/evaluate.py")
    assert not any(c.value.startswith("Measured before") for c in at.caption)


def test_reconstructions_say_when_a_model_rebuilds_every_face_alike(synthetic):
    # After 3 epochs a walk saw every face rebuilt as the same flat grey, with nothing on the page saying why.
    from facelab.data import split_dataset
    from facelab.registry import config_for, create_model

    model = create_model(config_for("ae-dense", epochs=1)).fit(split_dataset(synthetic, 4, 1, 0))
    at = with_model(new_app(), "new", model)
    at.session_state[ui.DATASET] = synthetic
    go(at, "pages/reconstructions.py")
    assert not at.exception and any("nearly the same image" in w.value for w in at.warning)


def test_reconstructions_of_a_model_with_another_face_size(synthetic):
    # An autoencoder trained at 32 px on 64 px data: the page compared 64 px originals with 32 px reconstructions
    # and stopped with "cannot compare faces of shapes (12, 64, 64) and (12, 32, 32)".
    from facelab.data import split_dataset
    from facelab.registry import config_for, create_model

    model = create_model(config_for("ae-conv", epochs=1, image_size=32)).fit(split_dataset(synthetic, 4, 1, 0))
    at = with_model(new_app(), "small", model)
    at.session_state[ui.DATASET] = synthetic
    go(at, "pages/reconstructions.py")
    assert not at.exception and not errors(at)
    assert any(c.value.startswith("Mean PSNR") for c in at.caption)


def test_a_model_folder_that_cannot_be_expanded_or_read_is_a_message(monkeypatch, tmp_path):
    # "~nosuchuser/m" made pathlib raise RuntimeError in the sidebar, so no page rendered.
    monkeypatch.setenv("FACELAB_MODEL_DIR", "~nosuchuser-facelab/m")
    at = go(new_app(), "pages/models.py")
    assert not at.exception
    assert any("no such user's home folder" in e for e in errors(at)), errors(at)


def test_script_runs_leave_keras_session_alone():
    # Streamlit cleared Keras's session after every run, fragments included: with the Train page's progress
    # redrawn every second, training in the background thread ran at less than half speed.
    import keras
    from streamlit.runtime.scriptrunner import script_runner

    with mock.patch.object(keras.backend, "clear_session") as clear:
        script_runner._clean_problem_modules()
    clear.assert_not_called()
