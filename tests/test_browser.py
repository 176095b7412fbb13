"""The dashboard in a real browser: `streamlit run app.py` and Debian's headless Chromium via Playwright.

Opens every page (fresh sessions, then by the sidebar within one session), asserts that no Streamlit
exception box appears, trains a small model and takes a screenshot of the training page (written to
$FACELAB_SCREENSHOT when set: that is how assets/screenshot-train.png for the README is made).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# url path -> title shown on the page (st.navigation derives the path from the file name). A sub-page
# comes first: the first visit to a fresh server must still go through app.py (sidebar, navigation).
PAGES = {"train_gru": "Train a GRU classifier", "": "FaceLab", "data": "Data",
         "train_autoencoder": "Train an autoencoder", "reconstructions": "Reconstructions", "evaluate": "Evaluate",
         "identify": "Identify", "models": "Models"}
if (ROOT / "pages" / "live.py").is_file():
    PAGES["live"] = ""  # the webcam helper's page: any title

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, env: dict[str, str]) -> subprocess.Popen:
    """`streamlit run app.py` on 127.0.0.1:port; returns once /_stcore/health answers ok."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {proc.stdout.read().decode(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("streamlit did not answer its health check within 60 s")


def wait_idle(page, timeout_s: float = 60) -> None:
    """Until the script run has finished (the app's `data-test-script-state` says notRunning)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_s * 1000)
    time.sleep(0.2)  # let the last deltas render


def assert_no_exception(page, where: str) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, f"{where}: {boxes.first.inner_text()[:2000]}"


@pytest.fixture(scope="module")
def server(tmp_path_factory, olivetti_dir):
    port = free_port()
    env = {**os.environ, "FACELAB_MODEL_DIR": str(tmp_path_factory.mktemp("models")),
           "FACELAB_OLIVETTI_DIR": str(olivetti_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = start_server(port, env)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_every_page_opens_without_an_exception(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    for path, title in PAGES.items():
        page.goto(f"{server}/{path}")
        if title:
            page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=60_000)
        wait_idle(page)
        assert_no_exception(page, f"/{path}")
        sidebar = page.locator('[data-testid="stSidebarUserContent"]')
        assert sidebar.get_by_text("Model folder").count() == 1, f"/{path}: the sidebar of app.py is missing"
    page.close()


def test_train_in_the_browser_and_screenshot(server, browser, tmp_path):
    # Streamlit scrolls inside its own container, so a full-page shot is the viewport: make it tall.
    page = browser.new_page(viewport={"width": 1400, "height": 2300})
    page.goto(f"{server}/data")
    page.get_by_role("heading", name="Data", exact=True).wait_for(timeout=60_000)
    page.get_by_role("button", name="Load").click()
    page.get_by_text("synthetic (seed 0, 12 people)").first.wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page, "data after Load")
    # The sidebar names the data loaded by this very run (it is drawn after the page), not "none yet".
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.get_by_text(re.compile(r"synthetic")).count() >= 1, sidebar.inner_text()

    # Within the same session (sidebar links keep st.session_state), every page again.
    for title, heading in (("Evaluate", "Evaluate"), ("Train autoencoder", "Train an autoencoder"),
                           ("Train GRU", "Train a GRU classifier")):
        page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
        page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=60_000)
        wait_idle(page)
        assert_no_exception(page, title)
        # Also on a page that stops early (Evaluate has no model yet), the sidebar keeps its status lines.
        assert "Data:" in page.locator('[data-testid="stSidebar"]').inner_text(), title

    for label, value in (("epochs", "8"), ("batch size", "32")):  # small, so the test stays short
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
        wait_idle(page)
    page.get_by_role("button", name=re.compile("Train$")).click()
    page.get_by_text(re.compile(r"epoch \d/8")).first.wait_for(timeout=120_000)  # live progress
    page.get_by_text(re.compile(r"finished after 8 epoch")).wait_for(timeout=240_000)
    wait_idle(page)
    assert_no_exception(page, "after training")
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1
    page.get_by_text("Training", exact=True).first.scroll_into_view_if_needed()
    # FACELAB_SCREENSHOT=assets/screenshot-train.png refreshes the README's picture; CI leaves the tree clean.
    out = Path(os.environ.get("FACELAB_SCREENSHOT", tmp_path / "screenshot-train.png"))
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000

    # Stop in the browser: a long training ends after the current batch and keeps its model.
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Train autoencoder", exact=True).click()
    page.get_by_role("heading", name="Train an autoencoder", exact=True).wait_for(timeout=60_000)
    page.get_by_text("Seed network", exact=False).first.click()
    # The seed preset's epochs field (50) replaces the conv preset's (60); while the page reruns both can be there.
    page.locator('input[aria-label="epochs"][value="50"]').wait_for(timeout=60_000)
    box = page.get_by_label("epochs", exact=True)
    expect(box).to_have_count(1, timeout=60_000)
    wait_idle(page)
    box.fill("500")
    box.press("Enter")
    wait_idle(page)
    expect(box).to_have_value("500")
    page.get_by_role("button", name=re.compile("Train$")).click()
    page.get_by_text(re.compile(r"epoch \d+/500")).first.wait_for(timeout=120_000)
    # On another page the sidebar's training line keeps moving (it stood still until a full rerun).
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.get_by_text("Data", exact=True).click()
    page.get_by_role("heading", name="Data", exact=True).wait_for(timeout=60_000)
    line = page.locator('[data-testid="stSidebar"]').get_by_text(re.compile(r"^Training .*: epoch \d+/500$"))
    line.wait_for(timeout=60_000)
    first = line.inner_text()
    expect(line).not_to_have_text(first, timeout=30_000)
    nav.get_by_text("Train autoencoder", exact=True).click()
    page.get_by_role("heading", name="Train an autoencoder", exact=True).wait_for(timeout=60_000)
    page.get_by_role("button", name=re.compile("Stop$")).click()
    page.get_by_text(re.compile(r"stopped after \d+ epoch")).wait_for(timeout=120_000)
    wait_idle(page)
    assert_no_exception(page, "after Stop")
    assert page.get_by_text(re.compile(r"finished after \d+ epoch")).count() == 0

    # Settings outlive a visit to another page (Streamlit drops the state of widgets a run does not draw).
    nav.get_by_text("Data", exact=True).click()
    page.get_by_role("heading", name="Data", exact=True).wait_for(timeout=60_000)
    wait_idle(page)
    nav.get_by_text("Train autoencoder", exact=True).click()
    page.get_by_role("heading", name="Train an autoencoder", exact=True).wait_for(timeout=60_000)
    wait_idle(page)
    expect(page.get_by_label("epochs", exact=True)).to_have_value("500")
    assert page.get_by_text("Changed from the preset: epochs").count() == 1
    page.close()
