"""Data sets loaded once for every session, with a progress bar, and the compute device in words."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import streamlit as st

from pages.ui.messages import show_error


def load_spec(spec: str, progress: Callable[[float, str], None] | None = None):
    """`facelab.data.load_dataset(spec)`, cached per spec and version of its files (the same for every user)."""
    from facelab.data import load_dataset, source_version

    return _cached(("spec", spec, source_version(spec)), lambda: load_dataset(spec, progress=progress))


def load_upload(name: str, data: bytes, progress: Callable[[float, str], None] | None = None):
    """`facelab.data.load_upload`, cached by content."""
    from facelab.data import load_upload as load

    return _cached(("upload", name, hashlib.sha256(data).hexdigest()), lambda: load(name, data, progress=progress))


@st.cache_resource
def _loaded_datasets() -> tuple[OrderedDict, threading.Lock]:
    return OrderedDict(), threading.Lock()


def _cached(key: tuple, load: Callable[[], Any], max_entries: int = 8) -> Any:
    """A data set loaded once for every session, the least recently used dropped first. Not st.cache_data: it
    replays the progress bar's updates on a cache hit, and a bar made outside the function cannot be replayed
    (the second Load of a folder or zip failed with CacheReplayClosureError)."""
    cache, lock = _loaded_datasets()
    with lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    ds = load()
    with lock:
        cache[key] = ds
        while len(cache) > max_entries:
            cache.popitem(last=False)
    return ds


def load_with_progress(loader: Callable[..., Any], *args: Any):
    """Run a cached loader with a progress bar (folders and zips report per file); errors become messages."""
    bar = st.progress(0.0, text="Loading faces...")

    def progress(fraction: float, item: str) -> None:
        bar.progress(min(max(fraction, 0.0), 1.0), text=f"Loading {item}")

    try:
        return loader(*args, progress=progress)
    except Exception as err:  # noqa: BLE001  a file from anywhere: a message (and the log), never a traceback
        show_error(err)
        return None
    finally:
        bar.empty()


@st.cache_data(show_spinner=False, ttl=600)
def device_label() -> str:
    """The compute device in words (asks nvidia-smi, not TensorFlow, so the first page stays quick)."""
    from facelab.device import device_info

    return device_info().label()
