"""Dashboard speed in headless Chromium: server start to first render, and page switches. Prints JSON.

    python bench/bench_app.py [--switches 10] [--chromium /usr/bin/chromium]

Each "first render" starts a fresh `streamlit run app.py` (a cold process: nothing imported, nothing
cached) and times from launching it to the page's title on screen with the script run finished.
Targets: home page under 3 s from start, page switch under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
SWITCHES = [("Data", "Data"), ("Evaluate", "Evaluate"), ("Home", "FaceLab"), ("Models", "Models"),
            ("Identify", "Identify"), ("Train GRU", "Train a GRU classifier")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(env: dict[str, str]) -> tuple[subprocess.Popen, str, float, float]:
    """Launch the server; returns (process, url, launch time, seconds until the health check said ok)."""
    port = _free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise SystemExit("streamlit exited during start-up")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.read().strip() == b"ok":
                    return proc, url, t0, time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)
        if time.perf_counter() - t0 > 120:
            proc.kill()
            raise SystemExit("streamlit did not start within 120 s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _rendered(page, heading: str, timeout_s: float = 120) -> None:
    """Until the page's title (its h1) is `heading` and the script run has finished."""
    page.wait_for_function("t => Array.from(document.querySelectorAll('h1')).some(h => h.innerText.trim() === t)",
                           arg=heading, timeout=timeout_s * 1000)
    page.wait_for_selector(IDLE, timeout=timeout_s * 1000)


def _first_render(browser, env: dict[str, str], path: str, heading: str) -> dict[str, float]:
    proc, url, t0, health = _start(env)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/{path}")
        _rendered(page, heading)
        total = time.perf_counter() - t0
        page.close()
        return {"server_ready_s": round(health, 3), "first_render_s": round(total, 3)}
    finally:
        _stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=10, help="page switches to time (default 10)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "FACELAB_MODEL_DIR": tempfile.mkdtemp(prefix="facelab-bench-models-")}
    out: dict = {"benchmark": "dashboard", "python": platform.python_version(), "cpus": os.cpu_count(),
                 "load_avg_1min_at_start": round(os.getloadavg()[0], 2)}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        out["home"] = _first_render(browser, env, "", "FaceLab")
        out["train_gru"] = _first_render(browser, env, "train_gru", "Train a GRU classifier")

        proc, url, _, _ = _start(env)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/data")
            _rendered(page, "Data")
            page.get_by_role("button", name="Load").click()
            page.get_by_text("synthetic (seed 0, 12 people)").first.wait_for(timeout=120_000)
            page.wait_for_selector(IDLE)
            nav = page.locator('[data-testid="stSidebarNav"]')
            # With data loaded the Train GRU page shows its settings: the first visit imports Keras.
            t = time.perf_counter()
            nav.get_by_text("Train GRU", exact=True).click()
            page.get_by_text("Train settings").first.wait_for(timeout=120_000)
            page.wait_for_selector(IDLE)
            out["train_gru"]["first_visit_with_data_s"] = round(time.perf_counter() - t, 3)
            times = []
            for i in range(args.switches):
                label, heading = SWITCHES[i % len(SWITCHES)]
                time.sleep(0.3)
                t = time.perf_counter()
                nav.get_by_text(label, exact=True).click()
                _rendered(page, heading)
                times.append(time.perf_counter() - t)
            out["page_switch_s"] = {"median": round(statistics.median(times), 3), "max": round(max(times), 3),
                                    "n": len(times), "all": [round(x, 3) for x in times]}
        finally:
            _stop(proc)
        browser.close()
    out["targets"] = {"home_first_render_under_3s": out["home"]["first_render_s"] < 3.0,
                      "page_switch_median_under_1s": out["page_switch_s"]["median"] < 1.0}
    out["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
