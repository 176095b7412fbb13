"""Shared fixtures: the real Olivetti faces from ../shared/data/olivetti, the synthetic set, Chromium."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# aiortc's pylibsrtp segfaults when it is first loaded after TensorFlow (both carry OpenSSL symbols);
# loading it first makes the test order irrelevant. The app does the same (facelab.live).
import pylibsrtp  # noqa: E402, F401

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
OLIVETTI_DIR = Path(os.environ.get("FACELAB_TEST_OLIVETTI", SHARED / "olivetti"))
WEBCAM_DIR = SHARED / "webcam"


@pytest.fixture(scope="session", autouse=True)
def no_network():
    """Tests never reach the network: a connection to anything but this machine fails the test that tries it."""
    connect = socket.socket.connect

    def local_only(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"a test tried to reach the network ({address!r})")
        return connect(self, address)

    socket.socket.connect = local_only
    yield
    socket.socket.connect = connect


@pytest.fixture(scope="session")
def olivetti_dir() -> Path:
    if not (OLIVETTI_DIR / "faces.npy").is_file():
        pytest.fail(f"Olivetti test data missing at {OLIVETTI_DIR} (see ../shared/data/olivetti/README.md)")
    return OLIVETTI_DIR


@pytest.fixture(scope="session")
def olivetti(olivetti_dir):
    """The 400 Olivetti faces as a FaceDataset (40 people x 10)."""
    from facelab.data import load_olivetti

    return load_olivetti(olivetti_dir)


@pytest.fixture(scope="session")
def olivetti_uint8(olivetti_dir) -> tuple[np.ndarray, np.ndarray]:
    """The raw arrays: (400, 64, 64) uint8 faces and (400,) labels."""
    return np.load(olivetti_dir / "faces.npy"), np.load(olivetti_dir / "labels.npy")


@pytest.fixture(scope="session")
def synthetic():
    from facelab.data import load_synthetic

    return load_synthetic()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium; browser tests fail under CI without it and are skipped elsewhere."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (apt-get install chromium); CI must run the browser tests")
    pytest.skip("chromium not installed (apt-get install chromium)")
