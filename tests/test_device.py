"""The device line: a GPU named by nvidia-smi, the CPU otherwise, and the mixed-precision switch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from facelab import device

ROOT = Path(__file__).resolve().parent.parent


def _fake_nvidia_smi(folder: Path, output: str, status: int = 0) -> None:
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\nprintf '{output}'\nexit {status}\n")
    exe.chmod(0o755)


def test_nvidia_smi_names_the_gpus_and_skips_what_it_cannot_read(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, "NVIDIA H200, 143771\\nnot a gpu line\\nTesla T4, 15360\\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    gpus = device._nvidia_smi()
    assert [name for name, _ in gpus] == ["NVIDIA H200", "Tesla T4"]
    assert gpus[0][1] == pytest.approx(143771 / 1024) and gpus[1][1] == pytest.approx(15.0)
    _fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed\\n", status=9)  # a driver that does not answer
    assert device._nvidia_smi() == []
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert device._nvidia_smi() == []


def test_the_home_page_line_before_keras_is_loaded(tmp_path):
    # In a fresh process (Keras not imported yet), as the app's first page asks it.
    _fake_nvidia_smi(tmp_path, "NVIDIA H200, 143771\\n")
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "KERAS_BACKEND": "tensorflow"}
    code = "import sys; from facelab.device import device_info; print(device_info().label()); print('keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["GPU: NVIDIA H200, 140 GiB (Keras backend: tensorflow)", "False"]
    env["PATH"] = str(tmp_path / "empty") + os.pathsep + os.path.dirname(sys.executable)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0] == f"CPU: {os.cpu_count()} cores (Keras backend: tensorflow)"


def test_mixed_precision_switch():
    import keras

    try:
        assert device.configure_device(mixed_precision=True).kind in ("CPU", "GPU")
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        device.configure_device(mixed_precision=False)
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
