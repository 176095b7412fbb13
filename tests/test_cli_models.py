"""`python -m facelab train/evaluate/identify` on real faces: JSON keys, photo folders, bundles, bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from facelab.cli import main
from tests.conftest import ROOT
from tests.helpers import photo_with_faces

KEYS = {"model", "data", "people", "n_train", "n_test", "accuracy", "top5", "train_seconds", "infer_ms_per_face",
        "epochs_run"}


@pytest.fixture(scope="module")
def photo_folder(olivetti_uint8, tmp_path_factory):
    """Six people, six uncropped 320x240 photos each, made from their Olivetti faces."""
    faces, labels = olivetti_uint8
    root = tmp_path_factory.mktemp("photos")
    for person in (0, 2, 3, 4, 5, 6):  # person 1's faces are mostly missed by the Haar detector at this size
        (root / f"p{person}").mkdir()
        for j, face in enumerate(faces[labels == person][:6]):
            cv2.imwrite(str(root / f"p{person}" / f"{j}.jpg"), photo_with_faces([face]))
    return root


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_evaluate_json_on_a_folder_of_photos(photo_folder, capsys):
    code = main(["evaluate", "cnn-gru", "--data", str(photo_folder), "--train-per-person", "4", "--seed", "1",
                 "--epochs", "2", "--units", "16", "--json"])
    assert code == 0
    out = _json(capsys)
    assert KEYS <= set(out)
    assert out["model"] == "cnn-gru" and out["people"] == 6
    assert out["n_train"] == 24 and out["n_test"] == 12 and out["epochs_run"] == 2
    assert 0 <= out["accuracy"] <= out["top5"] <= 1
    assert out["accuracy"] * out["n_test"] == pytest.approx(round(out["accuracy"] * out["n_test"]))  # k of 12 faces
    assert out["config"]["units"] == 16 and out["config"]["train"]["seed"] == 1
    assert out["data"].startswith("folder")


def test_train_then_identify_photos(olivetti_dir, olivetti_uint8, tmp_path, capsys):
    bundle = tmp_path / "seed-gru"
    code = main(["train", "gru", "--data", f"olivetti:{olivetti_dir}", "--epochs", "2", "--units", "16",
                 "--out", str(bundle), "--json"])
    assert code == 0
    out = _json(capsys)
    assert out["bundle"] == str(bundle) and (bundle / "meta.json").is_file()
    assert out["n_train"] == 200 and out["n_test"] == 200

    faces, labels = olivetti_uint8
    photo = tmp_path / "two.png"
    cv2.imwrite(str(photo), photo_with_faces([faces[0], faces[25]], width=400))
    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), faces[3])  # a small face crop is used whole
    assert main(["identify", str(bundle), str(photo), str(crop), "--json", "--threshold", "0"]) == 0
    result = _json(capsys)
    two, one = result["images"]
    assert len(two["faces"]) == 2 and two["faces"][0]["box"]["w"] > 60
    assert all(f["name"].startswith("person-") and 0 <= f["probability"] <= 1 for f in two["faces"])
    assert len(one["faces"]) == 1 and one["faces"][0]["box"] == {"x": 0, "y": 0, "w": 64, "h": 64}
    from facelab.registry import load_model

    said = load_model(bundle).recognizer(0).identify(faces[3:4].astype("float32") / 255)[0]  # the crop, directly
    assert one["faces"][0]["name"] == said.name and one["faces"][0]["probability"] == pytest.approx(said.confidence,
                                                                                                    abs=1e-4)

    assert main(["identify", str(bundle), str(photo), "--threshold", "1"]) == 0
    assert "unknown" in capsys.readouterr().out
    assert main(["identify", str(bundle), str(photo), "--threshold", "5"]) == 2  # a classifier's is a probability
    assert "give one from 0 to 1" in capsys.readouterr().err

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["identify", str(bundle), str(bad), str(crop)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("error:") == 1 and "bad.jpg" in captured.err
    assert "crop.png: face 1" in captured.out


def test_bad_models_and_flags(tmp_path, photo_folder, capsys):
    assert main(["identify", str(tmp_path), str(tmp_path / "x.jpg")]) == 2
    assert "not a FaceLab model bundle" in capsys.readouterr().err
    assert main(["evaluate", "nothing-here", "--data", "synthetic"]) == 2
    assert "neither a model kind" in capsys.readouterr().err
    assert main(["evaluate", "gru", "--data", str(photo_folder), "--gallery-k", "3"]) == 2
    assert "--gallery-k" in capsys.readouterr().err
    assert main(["evaluate", "gru", "--data", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["data", "synthetic", "--size", "0"]) == 2  # was a cv2.error traceback (and --size 100000 ran out of memory)
    assert "face size 0 is outside 8..512" in capsys.readouterr().err
    assert main(["capture", "Cy", "--out", str(tmp_path / "cap"), "--n", "2"]) == 2  # refused before any frame
    assert "--n must be at least 3" in capsys.readouterr().err
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), np.full((80, 80), 128, np.uint8))
    assert main(["capture", "Cy", "--out", str(tmp_path / "cap"), "--camera", str(photo)]) == 2
    assert "a photo, not a video" in capsys.readouterr().err
    (tmp_path / "notimage.jpg").write_text("hello")  # named like a photo, but none: not called one
    assert main(["capture", "Cy", "--out", str(tmp_path / "cap"), "--camera", str(tmp_path / "notimage.jpg")]) == 2
    assert "cannot read as a video" in capsys.readouterr().err


def test_enrol_adds_lists_and_removes_people_in_a_saved_gallery(photo_folder, tmp_path, capsys):
    known = tmp_path / "known"
    for person in ("p2", "p3", "p4", "p5", "p6"):
        shutil.copytree(photo_folder / person, known / person)
    bundle = tmp_path / "ae"
    assert main(["train", "ae-metric", "--data", str(known), "--epochs", "15", "--out", str(bundle), "--json"]) == 0
    capsys.readouterr()
    newcomer = tmp_path / "ada"
    shutil.copytree(photo_folder / "p0", newcomer)
    (newcomer / "notes.txt").write_text("not a photo: ignored, not an image suffix")
    (newcomer / "broken.jpg").write_bytes(b"not an image")
    photos = sorted(str(p) for p in newcomer.glob("[0-9].jpg"))

    assert main(["enrol", str(bundle), "Ada", str(newcomer), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["people"]["Ada"] == len(photos) and len(out["people"]) == 6
    assert [r["photo"] for r in out["refused"]] == [str(newcomer / "broken.jpg")] and "broken.jpg" in captured.err

    assert main(["identify", str(bundle), *photos, "--json"]) == 0  # the saved bundle, loaded again
    answer = _json(capsys)
    named = [f["name"] for image in answer["images"] for f in image["faces"]]
    assert named.count("Ada") == len(photos)
    # A gallery answers with the distance its threshold is compared with, in the JSON and the text.
    assert all(f["distance"] <= answer["threshold"] for image in answer["images"] for f in image["faces"])
    assert main(["identify", str(bundle), photos[0]]) == 0
    assert re.search(r": Ada distance=[0-9.e-]+ \(names up to [0-9.e-]+\)$", capsys.readouterr().out.strip())
    assert main(["identify", str(bundle), photos[0], "--json", "--threshold", "inf"]) == 0  # names everyone
    strict = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert strict["threshold"] is None

    assert main(["enrol", str(bundle), "--remove", "Ada"]) == 0
    assert "knows 5 people" in capsys.readouterr().out
    assert main(["identify", str(bundle), *photos, "--json"]) == 0
    assert "Ada" not in {f["name"] for image in _json(capsys)["images"] for f in image["faces"]}

    # Refusals leave the saved gallery as it was.
    assert main(["enrol", str(bundle), "Bob", photos[0]]) == 2
    assert "at least 3" in capsys.readouterr().err
    assert main(["enrol", str(bundle), "unknown", str(newcomer)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: 'unknown' is reserved for faces nobody knows; "
                                                            "choose another name"]  # refused before reading photos
    assert main(["enrol", str(bundle), "--remove", "Nobody"]) == 2
    assert "not in this model's gallery" in capsys.readouterr().err
    assert main(["enrol", str(bundle), "--list", "--json"]) == 0
    assert set(_json(capsys)["people"]) == {"p2", "p3", "p4", "p5", "p6"}
    # Photos of someone the gallery knows, under a new name: added as asked, with a warning (as in the app).
    p2 = sorted(str(f) for f in (known / "p2").glob("*.jpg"))
    assert main(["enrol", str(bundle), "Zed", *p2, "--out", str(tmp_path / "zed")]) == 0
    assert "look like people the gallery already knows: p2" in capsys.readouterr().err


def test_enrol_refuses_a_classifier_bundle(olivetti_dir, tmp_path, capsys):
    bundle = tmp_path / "gru"
    assert main(["train", "gru", "--data", f"olivetti:{olivetti_dir}", "--epochs", "1", "--units", "8",
                 "--out", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["enrol", str(bundle), "--list"]) == 2
    assert "no gallery" in capsys.readouterr().err
    assert main(["enrol", str(bundle), "Ada"]) == 2
    assert "no photos of Ada" in capsys.readouterr().err


def test_models_lists_saved_bundles_with_their_figures(olivetti_dir, tmp_path, capsys):
    data = f"olivetti:{olivetti_dir}"
    assert main(["train", "gru", "--data", data, "--epochs", "1", "--units", "8", "--out", str(tmp_path / "g")]) == 0
    assert main(["train", "ae-dense", "--data", data, "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    (tmp_path / "not-a-bundle").mkdir()
    capsys.readouterr()
    assert main(["models", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in _json(capsys)["bundles"]}
    assert set(rows) == {"g", "a"}
    assert rows["g"]["kind"] == "gru" and rows["a"]["kind"] == "ae-dense" and rows["g"]["people"] == 40
    assert 0 <= rows["g"]["accuracy"] <= 1 and rows["a"]["recon_psnr"] > 10
    assert main(["models", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "2 bundle(s)" in text and "a: ae-dense, 40 people, accuracy" in text and "dB" in text
    assert main(["models", str(tmp_path / "not-a-bundle")]) == 0
    assert "0 bundle(s) in" in capsys.readouterr().out
    assert main(["models", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    # A folder whose meta.json does not read as a bundle's is named with the reason, not left out in silence.
    (tmp_path / "not-a-bundle" / "meta.json").write_text("{broken")
    assert main(["models", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "2 bundle(s)" in text and "1 folder(s) with a meta.json that is not a readable bundle" in text
    assert "not-a-bundle/meta.json: unreadable bundle metadata" in text or "not-a-bundle: " in text
    assert main(["models", str(tmp_path / "g" / "meta.json")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["models", "~nosuchuser-facelab/m"]) == 2  # was a RuntimeError traceback from pathlib
    assert "no such user's home folder" in capsys.readouterr().err


def test_live_names_the_people_of_the_webcam_feed_and_writes_the_annotated_video(olivetti_dir, tmp_path, capsys):
    from tests.conftest import WEBCAM_DIR

    feed = WEBCAM_DIR / "olivetti_feed.y4m"  # 75 frames: person 0, 2, 3 (20 frames each), 5 empty frames after each
    bundle = tmp_path / "ae"
    assert main(["train", "ae-metric", "--data", f"olivetti:{olivetti_dir}", "--epochs", "15", "--out", str(bundle)]) == 0
    capsys.readouterr()
    video = tmp_path / "annotated.mp4"
    # Threshold 2 (the largest cosine distance): closed set, every face gets its nearest person's name.
    assert main(["live", str(bundle), "--camera", str(feed), "--threshold", "2", "--out", str(video), "--json"]) == 0
    out = _json(capsys)
    assert out["frames"] == 75 and out["frames_with_faces"] == 60 and len(out["timeline"]) == 75
    assert all(names == [] for names in out["timeline"][20:25] + out["timeline"][70:75])  # the empty frames
    most_seen = sorted(out["seen"], key=out["seen"].get, reverse=True)[:3]
    assert set(most_seen) == {"person-01", "person-03", "person-04"}, out["seen"]
    assert out["saved"] == str(video) and [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    written = cv2.VideoCapture(str(video))
    frames = []
    while (frame := written.read())[0]:
        frames.append(frame[1])
    assert len(frames) == 75 and frames[0].shape == (240, 320, 3)

    assert main(["live", str(bundle), "--camera", str(feed), "--max-frames", "3"]) == 0
    assert capsys.readouterr().out.startswith("3 frames, 3 with a face")
    assert main(["live", str(bundle), "--camera", str(feed), "--out", str(tmp_path / "x.gif")]) == 2
    assert "must end in .mp4 or .avi" in capsys.readouterr().err
    not_video = tmp_path / "notes.txt"
    not_video.write_text("not a video")
    assert main(["live", str(bundle), "--camera", str(not_video), "--out", str(tmp_path / "y.mp4")]) == 2
    assert "notes.txt" in capsys.readouterr().err and not (tmp_path / "y.mp4").exists()
    assert main(["live", str(bundle), "--camera", str(feed), "--out", str(not_video / "z.mp4")]) == 2  # under a file
    assert "notes.txt is not a folder" in capsys.readouterr().err
    # The video being read is never replaced by its annotated first frames.
    assert main(["live", str(bundle), "--camera", str(video), "--out", str(video), "--max-frames", "3"]) == 2
    assert "is the video being read" in capsys.readouterr().err
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT) == 75


def test_a_model_command_prints_its_message_without_backend_start_up_lines(tmp_path):
    # TensorFlow logs oneDNN and CUDA-probe lines at import, before its log level applies; the CLI hides them
    # unless -v, so an error is the only line on stderr.
    run = lambda *a: subprocess.run([sys.executable, "-m", "facelab", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=ROOT, timeout=300)
    quiet = run("identify", str(tmp_path), str(tmp_path / "x.jpg"))
    assert quiet.returncode == 2
    assert quiet.stderr.splitlines() == [f"error: {tmp_path}: not a FaceLab model bundle (no meta.json)"]


def test_validation_faces_by_default_only_where_something_needs_them(capsys):
    from facelab.autoencoder import calibration_stranger_count
    from facelab.commands import default_val_per_person
    from facelab.registry import config_for

    assert [calibration_stranger_count(0.2, n) for n in (40, 10, 9, 7)] == [8, 2, 2, 0]  # 7 people: 1 stranger
    assert calibration_stranger_count(0.5, 6) == 0 and calibration_stranger_count(0.0, 40) == 0  # too few left
    assert default_val_per_person("cnn-gru", config_for("cnn-gru"), 40) == 0  # a fixed epoch budget
    assert default_val_per_person("ae-metric", config_for("ae-metric"), 40) == 0  # 8 calibration strangers
    assert default_val_per_person("ae-metric", config_for("ae-metric"), 5) == 1  # too few people for them
    assert default_val_per_person("ae-conv", config_for("ae-conv"), 40) == 1  # its threshold needs validation
    assert main(["evaluate", "ae-metric", "--data", "synthetic:people=10,per_person=6", "--epochs", "1",
                 "--json"]) == 0
    out = _json(capsys)
    assert out["val_per_person"] == 0 and out["n_train"] == 50  # every training face trained on or enrolled


def test_split_flags_that_ask_for_more_faces_than_there_are_are_named(capsys, caplog):
    data = "synthetic:people=3,per_person=6"
    assert main(["evaluate", "gru", "--data", data, "--train-per-person", "20", "--val-per-person", "25",
                 "--epochs", "1", "--units", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_test"] == 3  # one face per person kept for test
    assert "--train-per-person 20: the fewest faces a person has is 6" in caplog.text  # warnings: on stderr
    assert "--val-per-person 25: each person keeps at least one face to train on, so 12 faces validate and 3 train" \
        in caplog.text
