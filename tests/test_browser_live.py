"""The live page in a real browser: headless Chromium (Debian's) with a fake camera playing a Y4M
still built here from an Olivetti face, the app started as a subprocess, WebRTC over loopback.

The app's model folder holds one bundle made with the library: a small dense autoencoder trained on
Olivetti with a person "Ada" enrolled (from pipeline crops of four photos of Olivetti's person 40),
as the page's "Add a person" does it. Frame counts vary with the machine: the test asserts shares.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelab.preprocess import place_faces

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
NAME = "Ada"


def write_y4m(path: Path, frame_bgr: np.ndarray, frames: int = 30) -> Path:
    """A Y4M (I420) video of one still frame, which Chromium loops as its fake camera."""
    height, width = frame_bgr.shape[:2]
    i420 = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2YUV_I420).tobytes()
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            fh.write(b"FRAME\n" + i420)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, olivetti, olivetti_uint8) -> Path:
    from facelab.data import split_dataset
    from facelab.enrol import add_person, crops_from_photos
    from facelab.registry import config_for, create_model

    faces, _ = olivetti_uint8
    split = split_dataset(olivetti, train_per_person=5, val_per_person=1, seed=0)
    model = create_model(config_for("ae-dense", epochs=20))
    model.fit(split)
    crops = crops_from_photos([(str(i), place_faces([faces[390 + i]], side=200)) for i in range(4)])
    model = add_person(model, NAME, np.stack([c.face for c in crops if c.ok]))
    # A hand-set distance: video compression moves codes further than the photos' calibration expects.
    model.gallery_.threshold = 0.3
    folder = tmp_path_factory.mktemp("models")
    model.save(folder / "ada-ae")
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(model_dir):
    port = _free_port()
    env = dict(os.environ, FACELAB_MODEL_DIR=str(model_dir), TF_CPP_MIN_LOG_LEVEL="2")
    log = open(model_dir / "streamlit.log", "wb")
    # Keras (TensorFlow) is imported before the server starts, as when a user trains before going live:
    # the page must then load streamlit-webrtc safely (see facelab.live.prepare_webrtc_import).
    args = [
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]
    launcher = f"import sys, keras; from streamlit.web.cli import main; sys.argv = {args!r}; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start: {(model_dir / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def frames_in(summary: str) -> int:
    found = re.search(r"(\d+) frames;", summary)
    return int(found.group(1)) if found else 0


@contextmanager
def camera_page(chromium_path: str, feed: Path, url: str):
    """A Chromium page at `url` whose camera plays `feed`; on a Playwright timeout the error says what the page
    showed (a timeout alone does not tell why)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={feed}"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(url, timeout=60_000)
            try:
                yield page
            except PlaywrightTimeout as err:
                raise AssertionError(f"{err}\n--- page text ---\n{page.inner_text('main')}") from None
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()


def press_start(page) -> None:
    webrtc = page.frame_locator('iframe[title="streamlit_webrtc.component.webrtc_streamer"]')
    webrtc.get_by_role("button", name=re.compile("^start$", re.I)).click(timeout=60_000)


def type_into(page, label: str, value: str) -> None:
    """Fill a field and check the value stuck (a value typed while the page reruns can be lost)."""
    from playwright.sync_api import expect

    box = page.get_by_label(label, exact=True)
    box.wait_for(timeout=60_000)
    box.fill(value)
    box.press("Enter")
    expect(box).to_have_value(value)


def click_until(page, button, shows: re.Pattern | str, tries: int = 3) -> None:
    """Press `button` until the page `shows` the result: a click that lands while the page reruns may be dropped
    (seen in CI on a busy machine: "Add 3 crop(s) of Bob" pressed, nothing happened)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(tries):
        if attempt and not button.is_visible():
            break  # the click did land: its result is still coming
        button.click(timeout=30_000)
        try:
            page.get_by_text(shows).first.wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            continue
    page.get_by_text(shows).first.wait_for(timeout=30_000)


def capture_until(page, button, shows: re.Pattern) -> None:
    """Press a capture button until the page `shows` it started, then wait for the page to show the capture full:
    it redraws by itself with the crops."""
    click_until(page, button, shows)
    page.get_by_text(re.compile(r"Captured 3/3 crops")).wait_for(timeout=60_000)


def watch_live_page(
    url: str, chromium_path: str, feed: Path, min_frames: int = 30, min_samples: int = 6, limit_s: float = 60.0
) -> tuple[list[str], str]:
    """Open the live page with `feed` as the camera, press START and read "On camera now" until the
    stream has processed `min_frames` frames (about 1 s at camera speed; far slower on a busy machine)
    and the page was read `min_samples` times (face-less frames are quick: frames alone can come first).

    Returns the samples and the last stream summary ("... N frames; name: P% of frames").
    """
    samples: list[str] = []
    summary = ""
    with camera_page(chromium_path, feed, f"{url}/live") as page:
        press_start(page)
        now = page.locator("p", has_text="On camera now:")
        now.first.wait_for(timeout=30_000)  # the first processed frame has reached the page
        stats = page.get_by_text(re.compile(r"frames/s, .* frames;"))
        end = time.monotonic() + limit_s
        while time.monotonic() < end and (frames_in(summary) < min_frames or len(samples) < min_samples):
            if now.count():
                samples.append(now.first.inner_text())
            if stats.count():
                summary = stats.first.inner_text()
            time.sleep(0.25)
        assert "identify" in page.get_by_text("Per stage:").first.inner_text()
    return samples, summary


def test_enrolled_person_is_named_live(app_url, chromium_path, olivetti_uint8, tmp_path):
    faces, _ = olivetti_uint8
    feed = write_y4m(tmp_path / "ada.y4m", place_faces([faces[392]], side=200))  # one of Ada's photos
    samples, summary = watch_live_page(app_url, chromium_path, feed)
    # What the page showed while watching, and over every frame the stream processed: Ada in most.
    named = sum(s.endswith(NAME) for s in samples)
    assert len(samples) >= 4 and named >= 0.6 * len(samples), samples
    share = re.search(rf"{NAME}: (\d+)% of frames", summary)
    assert frames_in(summary) >= 30 and share and int(share.group(1)) >= 60, summary


def test_face_less_feed_names_nobody(app_url, chromium_path, tmp_path):
    feed = write_y4m(tmp_path / "empty.y4m", np.full((480, 640, 3), 128, np.uint8))
    samples, summary = watch_live_page(app_url, chromium_path, feed, min_frames=20)
    assert len(samples) >= 4 and all(s.endswith("nobody") for s in samples), samples
    assert frames_in(summary) >= 20 and "% of frames" not in summary, summary


def test_data_page_collects_two_people_from_the_webcam(app_url, chromium_path, olivetti_uint8, tmp_path):
    from playwright.sync_api import expect

    faces, _ = olivetti_uint8
    feed = write_y4m(tmp_path / "cam.y4m", place_faces([faces[15]], side=260))  # see the enrolment test on 260 px
    with camera_page(chromium_path, feed, f"{app_url}/data") as page:
        page.get_by_text("Webcam", exact=True).click(timeout=60_000)
        type_into(page, "Face crops per capture", "3")
        press_start(page)
        capture = page.get_by_role("button", name=re.compile("Capture 3 frames"))
        expect(capture).to_be_enabled(timeout=30_000)  # enabled once the page knows the camera plays
        # The same feed stands in for two people: what is tested is collecting, not telling them apart.
        for person in ("Ann", "Bob"):
            type_into(page, "Person's name", person)
            capture_until(page, capture, re.compile(r"Captured \d/3"))
            # Not the "collected" message: a capture-status tick in flight at the click can rerun the page at once
            # and take the message away (CI saw the crops added and no message). The counts below are the check.
            add = page.get_by_role("button", name=f"Add 3 crop(s) of {person}")
            add.wait_for(timeout=60_000)  # drawn with the crops: before it is, "no Add button" means nothing
            for _ in range(3):
                if add.count():
                    add.click(timeout=30_000)
                try:
                    expect(add).to_have_count(0, timeout=20_000)
                    break
                except AssertionError:
                    continue  # a click dropped while the page reran
            expect(page.get_by_text(re.compile(r"Captured \d/3 crops"))).to_have_count(0, timeout=30_000)
        page.get_by_role("button", name="Use as data set").click()
        values = page.locator('[data-testid="stMetricValue"]')
        expect(values.first).to_have_text("2", timeout=30_000)  # Ann and Bob
        expect(values.nth(1)).to_have_text("6")  # 3 crops each


def test_data_page_saves_snapshot_crops_as_a_folder(app_url, chromium_path, olivetti_uint8, tmp_path):
    from playwright.sync_api import expect

    faces, _ = olivetti_uint8
    feed = write_y4m(tmp_path / "cam.y4m", place_faces([faces[15]], side=260))
    with camera_page(chromium_path, feed, f"{app_url}/data") as page:
        page.get_by_text("Webcam", exact=True).click(timeout=60_000)
        page.get_by_text("Snapshot (one photo)").click()
        type_into(page, "Person's name", "Ann")
        video = page.locator('[data-testid="stCameraInput"] video')
        for shot in (1, 2):
            # As a person would: the camera's picture first, then the photo.
            page.wait_for_function("v => v && v.readyState >= 2 && v.videoWidth > 0", arg=video.element_handle(
                timeout=30_000), timeout=30_000)
            page.get_by_role("button", name="Take Photo").click(timeout=30_000)
            # The lasting sign of the crop added, not the message (a click landing in a rerun may be dropped).
            click_until(page, page.get_by_role("button", name="Add 1 crop(s) of Ann"), "This photo's face was added")
            if shot == 1:
                page.get_by_role("button", name="Clear photo").click()
                page.get_by_role("button", name="Take Photo").wait_for(timeout=30_000)
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')  # a value typed
        # during a rerun can be lost (seen here). Opened while "Ann: 2 crops collected." shows: the next rerun drops
        # that message, and the section, one element higher, used to be drawn anew, collapsed.
        page.get_by_text("Save the crops as a folder").click()
        folder = tmp_path / "crops"
        type_into(page, "Folder (people already in it stay; each person is saved once)", str(folder))
        page.get_by_role("button", name="Save", exact=True).click()
        # The section stays open on the rerun (it collapsed in snapshot mode, hiding this message).
        expect(page.get_by_text(f"Saved 2 crops to {folder}")).to_be_visible(timeout=30_000)
        assert len(list((folder / "Ann").iterdir())) == 2


def test_webcam_enrolment_shows_the_crops_and_adds_the_person(app_url, chromium_path, olivetti_uint8, tmp_path):
    # Runs last: it adds "Bea" to the shared bundle (the other tests' faces stay nearest their own people).
    from playwright.sync_api import expect

    faces, _ = olivetti_uint8
    # At 260 px the cascade finds this face in every frame, even JPEG-damaged or at half size (as WebRTC sends
    # on a busy machine); at 200 px it found it in 6 of 20 such frames, and a CI run once never filled its capture.
    feed = write_y4m(tmp_path / "bea.y4m", place_faces([faces[15]], side=260))
    with camera_page(chromium_path, feed, f"{app_url}/live") as page:
        type_into(page, "Face crops to collect", "3")  # settings first, then the camera
        type_into(page, "Name", "Bea")
        capture = page.get_by_role("button", name=re.compile("Capture 3 frames"))
        expect(capture).to_be_visible(timeout=30_000)
        press_start(page)
        page.locator("p", has_text="On camera now:").first.wait_for(timeout=30_000)
        capture_until(page, capture, re.compile(r"Captured \d/3"))
        # The model knows this face as person-02, so its crops start unticked: Bea is this person's new name here.
        page.get_by_text(re.compile(r"names as someone it knows start unticked")).wait_for(timeout=30_000)
        for i in (1, 2, 3):
            box = page.get_by_role("checkbox", name=str(i), exact=True)
            if not box.is_checked():
                box.check(force=True)
                expect(box).to_be_checked(timeout=30_000)
        page.get_by_role("button", name=re.compile("Add Bea")).click()
        page.get_by_text(re.compile(r"Added Bea \(3 crops\)")).wait_for(timeout=60_000)
        # The stream swaps in the enlarged gallery at its next frame: the same face is now named.
        page.locator("p", has_text=re.compile(r"On camera now:.*Bea")).first.wait_for(timeout=30_000)
