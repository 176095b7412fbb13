"""Webcam pieces: the WebRTC camera widget, a face capture's progress, and the crops to keep."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from pages.ui.state import kept


def camera_stream(key: str, on_frame: Callable, rtc: dict[str, Any]) -> bool:
    """The WebRTC camera widget (640x480 video, no audio) sending each frame to `on_frame`; whether it plays."""
    from facelab.live import prepare_webrtc_import

    prepare_webrtc_import()  # another page may have loaded TensorFlow first: see its docstring
    from streamlit_webrtc import webrtc_streamer

    ctx = webrtc_streamer(key=key, video_frame_callback=on_frame, rtc_configuration=rtc,
                          media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
                          async_processing=True)
    return bool(ctx.state.playing)


def capture_caption(capture: Any) -> None:
    """How far an enrolment `FaceCapture` is, and why frames were not used (e.g. "12x no face found")."""
    st.caption(f"Captured {capture.count}/{capture.config.n_faces} crops from {capture.frames()} frames"
               + capture.refused_text())


def capture_progress(capture: Any, shown_key: str) -> None:
    """For a fragment that reruns while the camera plays: the capture's progress bar, then, once it fills
    up, one full rerun so that the page draws its crops (a fragment cannot draw outside itself)."""
    if capture is None:
        return
    if not capture.done:
        st.progress(capture.count / capture.config.n_faces, f"Captured {capture.count}/{capture.config.n_faces}")
    elif st.session_state.get(shown_key) is not capture:
        st.rerun()


def mark_capture_shown(capture: Any, shown_key: str) -> None:
    """Called by the full run that draws a finished capture's crops, so `capture_progress` stops rerunning."""
    if capture is not None and capture.done:
        st.session_state[shown_key] = capture


def pick_crops(faces: Any, key: str, notes: list[str | None] | None = None) -> list[int]:
    """Show (N, S, S) crops with a box each, ticked unless `notes` has a note for the crop (shown under it, such as
    "like Ann"); returns the indices of the crops still ticked."""
    st.caption("Check the crops: untick any that is not the person.")
    notes = notes or [None] * len(faces)
    # Keyed by the crops themselves: a new capture or other photos start from their own ticks, not the last set's.
    crops = hashlib.sha1(np.ascontiguousarray(faces).tobytes()).hexdigest()[:10]
    cols = st.columns(min(len(faces), 10))
    keep = [cols[i % len(cols)].checkbox(f"{i + 1}", notes[i] is None, key=kept(f"{key}.{crops}.{i}"))
            for i in range(len(faces))]
    for i, face in enumerate(faces):
        cols[i % len(cols)].image(face, clamp=True, width=64, caption=notes[i])
    return [i for i, k in enumerate(keep) if k]
