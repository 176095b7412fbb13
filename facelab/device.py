"""Which compute device FaceLab runs on, and GPU set-up (memory growth, mixed precision).

`device_info()` answers without importing TensorFlow when it is not loaded yet (it asks
`nvidia-smi`), so the home page can show the device before any model code is imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceInfo:
    """The device computation runs on: kind ("GPU" or "CPU"), a name, and GPU memory in GiB."""

    kind: str
    name: str
    memory_gib: float | None
    backend: str

    def label(self) -> str:
        mem = f", {self.memory_gib:.0f} GiB" if self.memory_gib else ""
        return f"{self.kind}: {self.name}{mem} (Keras backend: {self.backend})"


def keras_backend() -> str:
    """The Keras backend that is or will be used (KERAS_BACKEND, default tensorflow)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def _nvidia_smi() -> list[tuple[str, float]]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.rpartition(",")
        try:
            gpus.append((name.strip(), float(mem) / 1024))
        except ValueError:
            continue
    return gpus


def device_info() -> DeviceInfo:
    """The GPU FaceLab will use (name, memory) or the CPU."""
    backend = keras_backend()
    gpus = _nvidia_smi()
    if backend == "tensorflow" and "tensorflow" in sys.modules:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            gpus = []  # a GPU TensorFlow cannot use is no help
    elif backend == "torch" and "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            gpus = [(props.name, props.total_memory / 2**30)]
        else:
            gpus = []
    if gpus:
        return DeviceInfo("GPU", gpus[0][0], gpus[0][1], backend)
    return DeviceInfo("CPU", f"{os.cpu_count() or 1} cores", None, backend)


def start_backend_quietly() -> None:
    """Import Keras with its backend's C++ start-up log (oneDNN notes, CUDA probing) kept off stderr.

    TensorFlow writes those lines before its logging can be configured, so `TF_CPP_MIN_LOG_LEVEL` alone does
    not hide them; the CLI calls this unless `--verbose`, so a command prints its answer and nothing else.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the CUDA probe logs its failure on a machine without GPU
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def configure_device(mixed_precision: bool = False) -> DeviceInfo:
    """Turn on GPU memory growth (TensorFlow) and optionally mixed precision; return the device."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised: growth can only be set before first use
                pass
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    return device_info()
