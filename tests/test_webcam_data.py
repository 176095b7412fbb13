"""A data set from the webcam: `FaceCollection` in the library, and the Data page's "Webcam" source in AppTest
(snapshots, and the live capture with webrtc_streamer patched out and frames fed to its processor by hand)."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from facelab.data import load_folder
from facelab.enrol import FaceCollection
from facelab.errors import BadInputError
from facelab.preprocess import place_faces
from pages import ui

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def model_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FACELAB_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def test_collection_becomes_a_data_set_and_a_folder_that_loads_back(olivetti, tmp_path):
    people = FaceCollection()
    assert people.add("  Ann  Lee ", olivetti.images[:3]) == "Ann Lee"
    people.add("../Bob", olivetti.images[10:12])
    people.add("Ann Lee", olivetti.images[3])  # one more crop for an existing person
    assert people.counts() == {"Ann Lee": 4, "../Bob": 2}
    ds = people.dataset()
    assert ds.names == ["Ann Lee", "../Bob"] and ds.counts() == {"Ann Lee": 4, "../Bob": 2}
    np.testing.assert_array_equal(ds.images[:4], olivetti.images[:4])
    folder = people.save(tmp_path / "faces")
    # A name is never a path: "../Bob" stays inside the folder.
    assert sorted(p.name for p in folder.iterdir()) == ["Ann Lee", "_Bob"]
    back = load_folder(folder)
    assert back.counts() == {"Ann Lee": 4, "_Bob": 2}
    assert np.abs(back.images - ds.images).max() <= 0.5 / 255 + 1e-6  # 8-bit PNGs of the same crops


def test_a_name_starting_with_two_underscores_is_saved_where_the_loader_reads_it(olivetti, tmp_path):
    # "__Zed" was saved as __Zed/, a folder the loader skips (as __MACOSX): Zed vanished from the data set unsaid.
    people = FaceCollection()
    people.add("__Zed", olivetti.images[:2])
    people.add("Ann", olivetti.images[10:12])
    folder = people.save(tmp_path / "faces")
    assert sorted(p.name for p in folder.iterdir()) == ["Ann", "_Zed"]
    assert load_folder(folder).counts() == {"Ann": 2, "_Zed": 2}


def test_a_save_that_fails_partway_leaves_whole_people_only(olivetti, tmp_path, monkeypatch):
    import os

    from facelab.errors import FaceLabError

    people = FaceCollection()
    people.add("Ann", olivetti.images[:3])
    people.add("Bob", olivetti.images[10:13])
    encode, calls = cv2.imencode, []

    def fails_on_bobs_second_crop(ext, img):
        calls.append(ext)
        return (False, None) if len(calls) == 5 else encode(ext, img)

    monkeypatch.setattr(cv2, "imencode", fails_on_bobs_second_crop)
    with pytest.raises(FaceLabError, match="could not encode crop 2 of Bob"):
        people.save(tmp_path / "faces")
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "faces").iterdir()] == ["Ann"]  # no half of Bob, no .saving- folder
    ann = sorted((tmp_path / "faces" / "Ann").iterdir())
    assert [p.name for p in ann] == ["001.png", "002.png", "003.png"]
    assert all(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).shape == (64, 64) for p in ann)

    rename = os.rename
    monkeypatch.setattr(os, "rename", lambda a, b: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(BadInputError, match="cannot save to .*No space left on device"):
        people.save(tmp_path / "more")
    monkeypatch.setattr(os, "rename", rename)
    assert list((tmp_path / "more").iterdir()) == []


def test_collection_refuses_what_it_cannot_use_and_never_overwrites(olivetti, tmp_path):
    people = FaceCollection()
    with pytest.raises(BadInputError, match="enter a name"):
        people.add("  ", olivetti.images[:2])
    with pytest.raises(BadInputError, match="64x64"):
        people.add("Ann", np.zeros((2, 32, 32)))
    with pytest.raises(BadInputError, match="nothing collected"):
        people.save(tmp_path / "empty")
    people.add("Ann", olivetti.images[:3])
    with pytest.raises(BadInputError, match="at least 2 people"):
        people.dataset()
    people.add("Bob", olivetti.images[10])
    with pytest.raises(BadInputError, match=r"Bob \(1\)"):
        people.dataset()
    people.remove("Bob")
    assert people.counts() == {"Ann": 3}
    # A folder may hold other things and people already; never this person.
    shared = tmp_path / "shared"
    (shared / "Bob").mkdir(parents=True)
    (shared / "notes.txt").write_text("mine")
    people.save(shared)
    assert sorted(p.name for p in shared.iterdir()) == ["Ann", "Bob", "notes.txt"]
    assert len(list((shared / "Ann").iterdir())) == 3 and (shared / "notes.txt").read_text() == "mine"
    before = sorted((shared / "Ann").iterdir())
    with pytest.raises(BadInputError, match="already has Ann"):
        people.save(shared)
    assert sorted((shared / "Ann").iterdir()) == before
    assert not [p for p in shared.iterdir() if p.name.startswith(".")]  # no half-written folder left
    with pytest.raises(BadInputError, match="is a file"):
        people.save(shared / "notes.txt")
    with pytest.raises(BadInputError, match="cannot save to"):
        people.save(shared / "notes.txt" / "below-a-file")


def jpeg(img_bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


@pytest.fixture
def webrtc():
    from facelab.live import prepare_webrtc_import

    prepare_webrtc_import()
    with mock.patch("streamlit_webrtc.webrtc_streamer") as patched:
        patched.return_value.state.playing = False
        yield patched


def webcam_source() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/data.py")
    at.run()
    at.radio(key="data.source").set_value("Webcam").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_snapshots_of_two_people_become_the_data_set_and_a_saved_folder(webrtc, olivetti_uint8, tmp_path):
    faces, _ = olivetti_uint8
    at = webcam_source()
    assert any("No crops collected" in i.value for i in at.info)
    at.radio(key="data.webcam.mode").set_value("Snapshot (one photo)").run()
    for name, picks in (("Ann", (50, 51)), ("Bob", (60, 61))):
        at.text_input(key="data.webcam.name").set_value(name).run()
        for i in picks:
            at.camera_input(key="data.webcam.snapshot").upload("shot.jpg", jpeg(place_faces([faces[i]], side=220))).run()
            at.button(key="data.webcam.add").click().run()
            assert not at.exception and not at.error, [e.value for e in at.error]
            # The page redraws: the message, and the same photo is not offered a second time.
            assert any(s.value.startswith(f"{name}: ") for s in at.success)
            assert not [b for b in at.button if b.key == "data.webcam.add"]
    assert at.session_state["data.webcam.collection"].counts() == {"Ann": 2, "Bob": 2}
    # A photo without a face says so and offers nothing to add.
    at.camera_input(key="data.webcam.snapshot").upload("wall.jpg", jpeg(np.full((480, 640, 3), 90, np.uint8))).run()
    assert any("no face found" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == "data.webcam.add"]

    at.button(key="data.webcam.use").click().run()
    ds = at.session_state[ui.DATASET]
    assert ds.names == ["Ann", "Bob"] and len(ds.images) == 4
    assert [m.value for m in at.metric] == ["2", "4", "64x64"]
    at.text_input(key="data.webcam.folder").set_value(str(tmp_path / "cam")).run()
    at.button(key="data.webcam.save").click().run()
    assert any("Saved 4 crops" in s.value for s in at.success)
    assert load_folder(tmp_path / "cam").counts() == {"Ann": 2, "Bob": 2}
    # Saving again over the now full folder is refused with a message; the saved crops stay.
    at.button(key="data.webcam.save").click().run()
    assert any("already has Ann, Bob" in e.value for e in at.error) and not at.exception
    assert load_folder(tmp_path / "cam").counts() == {"Ann": 2, "Bob": 2}
    # Dropping a person's crops asks first.
    at.selectbox(key="data.webcam.person").set_value("Bob").run()
    at.button(key="data.webcam.remove").click().run()
    assert any("Drop the 2 crops of Bob" in w.value for w in at.warning)
    assert at.session_state["data.webcam.collection"].counts() == {"Ann": 2, "Bob": 2}
    at.button(key="data.webcam.remove.yes").click().run()
    assert at.session_state["data.webcam.collection"].counts() == {"Ann": 2} and not at.exception


def test_live_capture_fills_from_stream_frames_and_adds_the_crops(webrtc, olivetti_uint8):
    faces, _ = olivetti_uint8
    webrtc.return_value.state.playing = True
    at = webcam_source()
    at.text_input(key="data.webcam.name").set_value("Cleo").run()
    at.number_input(key="data.webcam.n").set_value(3).run()
    stream = at.session_state["data.webcam.stream"]
    assert webrtc.call_args.kwargs["video_frame_callback"] == stream.recv
    at.button(key="data.webcam.capture").click().run()
    # The video thread's work, done here: frames of one face (every 3rd good frame is kept).
    for i in range(9):
        stream.process(place_faces([faces[70 + i % 3]], side=200))
    at.run()
    assert not at.exception
    assert any("Captured 3/3 crops from 7 frames" in c.value for c in at.caption)
    [c for c in at.checkbox if c.key.startswith("data.webcam.keep.")][1].uncheck().run()  # one is not the person
    at.button(key="data.webcam.add").click().run()
    assert at.session_state["data.webcam.collection"].counts() == {"Cleo": 2}
    assert stream.capture is None  # the stream stops feeding a capture once its crops are taken
    # The added crops and their Add button are gone; the next capture's crops start ticked.
    assert not [c for c in at.caption if "Captured" in c.value]
    assert not [b for b in at.button if b.key == "data.webcam.add"]
    at.button(key="data.webcam.capture").click().run()
    for i in range(7):
        stream.process(place_faces([faces[80 + i % 3]], side=200))
    at.run()
    assert [c.value for c in at.checkbox if c.key.startswith("data.webcam.keep.")] == [True, True, True]


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_cli_captures_a_person_from_a_video_into_a_data_folder(olivetti_uint8, tmp_path, capsys):
    from facelab.cli import main

    faces, _ = olivetti_uint8
    video = write_video(tmp_path / "ann.avi", [place_faces([faces[50 + i % 4]], side=200) for i in range(20)])
    out = tmp_path / "people"
    assert main(["capture", "Ann", "--out", str(out), "--camera", str(video), "--n", "4"]) == 0
    assert "Saved 4 crops of Ann" in capsys.readouterr().out
    video = write_video(tmp_path / "bob.avi", [place_faces([faces[60 + i % 4]], side=200) for i in range(20)])
    assert main(["capture", "Bob", "--out", str(out), "--camera", str(video), "--n", "4"]) == 0
    ds = load_folder(out)
    assert ds.counts() == {"Ann": 4, "Bob": 4}
    # The same person again, a face-less video, a file that is no video: one message each, nothing changed.
    assert main(["capture", "Ann", "--out", str(out), "--camera", str(video), "--n", "4"]) == 2
    assert "already has Ann" in capsys.readouterr().err
    empty = write_video(tmp_path / "wall.avi", [np.full((480, 640, 3), 90, np.uint8)] * 10)
    assert main(["capture", "Cy", "--out", str(out), "--camera", str(empty)]) == 2
    assert "only 0 usable face crop(s) in 10 frames; 10x no face found" in capsys.readouterr().err
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video")
    assert main(["capture", "Cy", "--out", str(out), "--camera", str(junk)]) == 2
    assert "cannot read as a video" in capsys.readouterr().err
    # A person the folder already has is refused before any frame is read (the camera is not even opened).
    assert main(["capture", "Ann", "--out", str(out), "--camera", str(junk)]) == 2
    assert "already has Ann" in capsys.readouterr().err
    assert load_folder(out).counts() == {"Ann": 4, "Bob": 4}


def test_a_new_set_of_crops_starts_from_its_own_ticks():
    # Ticks were keyed by position only: a second capture inherited the first one's (a crop unticked there stayed
    # unticked, a look-alike of the new set stayed ticked).
    def page():
        import numpy as np
        import streamlit as st

        from pages import ui

        second = st.session_state.get("second", False)
        faces = np.full((3, 8, 8), 0.7 if second else 0.3, np.float32)
        ui.pick_crops(faces, "t.keep", ["like Alice", None, None] if second else None)

    at = AppTest.from_function(page, default_timeout=60).run()
    [c for c in at.checkbox if c.key.startswith("t.keep.")][1].uncheck().run()
    assert [c.value for c in at.checkbox] == [True, False, True]
    at.session_state["second"] = True
    at.run()
    assert [c.value for c in at.checkbox] == [False, True, True]  # the new set's look-alike unticked, the rest ticked
