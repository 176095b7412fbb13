"""The live frame pipeline: detect, align, identify, draw, for one video stream. No Streamlit here.

`LiveRecognizer.process(img_bgr)` is a pure frame -> frame function (plus a `FrameResult`), so it is
tested on arrays; `LiveRecognizer.recv` adapts it to streamlit-webrtc's `video_frame_callback`, which
runs in a worker thread. Results reach the page through `LiveRecognizer.results`, a bounded queue,
and the recogniser sits behind a lock so the page can swap model or threshold while streaming.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import queue
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from facelab import FACE_SIZE
from facelab.errors import BadInputError, FaceLabError
from facelab.preprocess import Box, FaceDetector, align_face, to_grey
from facelab.recognition import Identification, Recognizer

if TYPE_CHECKING:  # av comes with streamlit-webrtc; only the webcam path needs it
    import av

    from facelab.enrol import FaceCapture

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "align", "identify", "draw")

_KNOWN_BGR = (80, 200, 60)
_UNKNOWN_BGR = (40, 60, 230)
FACE_ONLY = "face"  # the label of a face where no model names faces (collecting crops for a data set)


@dataclass(frozen=True)
class LiveConfig:
    """How each frame is processed."""

    detect_width: int | None = 320  # detect on a copy this wide: ~4x fewer pixels than 640x480
    min_face: int = 40  # smallest face side, in pixels of the full frame
    face_size: int = FACE_SIZE  # model input side
    align_eyes: bool = True  # level the eyes (costs an eye search per face)
    align_side: int = 144  # faces are shrunk to about this side before the eye search: 2-4x quicker on big faces
    max_faces: int = 8  # the largest faces only: bounds the per-frame cost in a crowd
    fps_window: int = 30  # frames over which frames per second are measured
    queue_size: int = 8  # results kept for the page; the oldest is dropped when it is full
    smooth_frames: int = 5  # a face is named by the majority of its last answers (1 = every frame on its own)
    draw: bool = True


@dataclass(frozen=True)
class FaceResult:
    """One face in one frame: where it is and who it is."""

    box: Box
    name: str
    confidence: float
    known: bool
    top: list[tuple[str, float]] = field(default_factory=list)
    distance: float | None = None  # a gallery's code distance to the nearest person (its threshold is one)

    def as_row(self) -> dict[str, Any]:
        """A table row for the page: the figure the model's threshold is compared with, named for what it is."""
        score = ({"distance": round(self.distance, 4)} if self.distance is not None
                 else {"probability": round(self.confidence, 3)})
        # No box coordinates: the video shows the boxes, and at 800 px they pushed the score out of sight.
        return {"name": self.name, **score, "known": self.known}


@dataclass(frozen=True)
class FrameResult:
    """What one frame held, how long each stage took (ms) and the stream's frame rate."""

    index: int
    faces: list[FaceResult]
    timings_ms: dict[str, float]
    fps: float
    model: str = ""
    shape: tuple[int, int] = (0, 0)  # frame (height, width)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.faces]

    @property
    def latency_ms(self) -> float:
        return float(sum(self.timings_ms.get(s, 0.0) for s in STAGES))

    def rows(self) -> list[dict[str, Any]]:
        return [f.as_row() for f in self.faces]


@dataclass(frozen=True)
class StreamStats:
    """Counts over the whole stream: frames, frames with a face, frames in which each name was seen."""

    frames: int
    frames_with_faces: int
    seen: dict[str, int]
    mean_latency_ms: float

    def share(self, name: str) -> float:
        """Share of all frames in which `name` was seen."""
        return self.seen.get(name, 0) / self.frames if self.frames else 0.0


@dataclass
class _Track:
    box: Box
    answers: deque[Identification]
    missed: int = 0
    shown: str | None = None  # the name given in the previous frame


class NameSmoother:
    """Steadies names across frames: each face is followed by box overlap and named by the majority of its
    last `window` answers, so one blurred frame does not flip a name (or "unknown") for a moment."""

    def __init__(self, window: int = 5, min_overlap: float = 0.3, max_missed: int = 5) -> None:
        self.window = max(1, int(window))
        self.min_overlap = min_overlap  # intersection over union that makes a box the same face as before
        self.max_missed = max_missed  # frames a face may go undetected before its history is dropped
        self._tracks: list[_Track] = []

    def update(self, boxes: list[Box], answers: list[Identification]) -> list[Identification]:
        """This frame's answers, each replaced by its face's majority answer over the recent frames."""
        if self.window == 1:
            return list(answers)
        pairs = sorted(((box_overlap(b, t.box), i, j) for i, b in enumerate(boxes) for j, t in enumerate(self._tracks)),
                       reverse=True)
        track_of: dict[int, _Track] = {}
        taken: set[int] = set()
        for overlap, i, j in pairs:  # greedy: the best-overlapping pairs first (a handful of faces at most)
            if overlap < self.min_overlap:
                break
            if i not in track_of and j not in taken:
                track_of[i] = self._tracks[j]
                taken.add(j)
        kept = [t for j, t in enumerate(self._tracks) if j not in taken]
        for t in kept:
            t.missed += 1
        self._tracks = [t for t in kept if t.missed <= self.max_missed]
        out = []
        for i, (box, answer) in enumerate(zip(boxes, answers)):
            track = track_of.get(i) or _Track(box, deque(maxlen=self.window))
            track.box, track.missed = box, 0
            track.answers.append(answer)
            self._tracks.append(track)
            smoothed = _majority(track.answers, track.shown)
            track.shown = smoothed.name
            out.append(smoothed)
        return out


def _majority(answers: deque[Identification], shown: str | None) -> Identification:
    """The most frequent name, with its mean confidence and the latest ranking. On a tie the name already
    shown stays (a name changes only when another has more votes), else the most recent of the tied."""
    votes = Counter(a.name for a in answers)
    top = max(votes.values())
    name = shown if votes.get(shown) == top else next(a.name for a in reversed(answers) if votes[a.name] == top)
    chosen = [a for a in answers if a.name == name]
    confidence = float(np.mean([a.confidence for a in chosen]))
    # A gallery's threshold is a distance: its nearest distance, averaged like the confidence, is what to show.
    distance = [float(np.mean([a.distances[0] for a in chosen]))] if all(a.distances for a in chosen) else []
    # Known as the answers said: "face" (no model to name it) is not a known person either.
    return Identification(name, confidence, chosen[-1].known, list(answers[-1].top), distance)


def box_overlap(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(w, 0) * max(h, 0)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


class LiveRecognizer:
    """Per-stream frame processor: its own detector, a locked recogniser, a results queue.

    Make one per stream (OpenCV cascades must not be shared between threads). The page may call
    `set_recognizer` / `set_threshold` from its thread while `process` runs in the video thread.
    """

    def __init__(
        self,
        recognizer: Recognizer | None = None,
        config: LiveConfig | None = None,
        detector: FaceDetector | None = None,
        model_name: str = "",
    ) -> None:
        self.config = config or LiveConfig()
        self.detector = detector or FaceDetector(min_face=self.config.min_face, detect_width=self.config.detect_width)
        self.results: queue.Queue[FrameResult] = queue.Queue(maxsize=self.config.queue_size)
        self._lock = threading.Lock()
        self._recognizer = recognizer
        self._model_name = model_name
        self._capture: FaceCapture | None = None
        self._times: deque[float] = deque(maxlen=self.config.fps_window)
        self._index = 0
        self._seen: Counter[str] = Counter()
        self._with_faces = 0
        self._latency_sum = 0.0
        self._last: FrameResult | None = None
        self._error: str | None = None
        self._failures = 0
        self._smoother = NameSmoother(self.config.smooth_frames)

    # -- called from the page's thread -------------------------------------------------------------

    @property
    def recognizer(self) -> Recognizer | None:
        with self._lock:
            return self._recognizer

    @property
    def model_name(self) -> str:
        with self._lock:
            return self._model_name

    def set_recognizer(self, recognizer: Recognizer | None, model_name: str = "") -> None:
        """Swap the recogniser (a new object; the old one is never changed, a frame may still use it)."""
        with self._lock:
            if model_name != self._model_name or getattr(recognizer, "threshold", None) != \
                    getattr(self._recognizer, "threshold", None):
                self._forget_names()  # the old model's answers no longer count
            self._recognizer = recognizer
            self._model_name = model_name

    def set_smoothing(self, frames: int) -> None:
        """Name each face by the majority of its last `frames` answers (1 = every frame on its own)."""
        with self._lock:
            if frames != self._smoother.window:
                self._forget_names(frames)

    def set_threshold(self, threshold: float) -> None:
        """Use another unknown-threshold: swaps in a shallow copy, so a recogniser shared elsewhere is untouched."""
        with self._lock:
            if self._recognizer is None or self._recognizer.threshold == threshold:
                return
            changed = copy.copy(self._recognizer)
            changed.threshold = float(threshold)
            self._recognizer = changed
            self._forget_names()

    def start_capture(self, capture: FaceCapture | None) -> None:
        """Feed the faces of the coming frames into an enrolment capture (None stops it)."""
        with self._lock:
            self._capture = capture

    @property
    def capture(self) -> FaceCapture | None:
        with self._lock:
            return self._capture

    def last_result(self) -> FrameResult | None:
        with self._lock:
            return self._last

    def stats(self) -> StreamStats:
        with self._lock:
            frames = self._index
            return StreamStats(frames, self._with_faces, dict(self._seen), self._latency_sum / frames if frames else 0.0)

    def reset_stats(self) -> None:
        """Start the counts and the frame rate afresh (a new stream started)."""
        with self._lock:
            self._index = self._with_faces = 0
            self._seen.clear()
            self._latency_sum = 0.0
            self._last = None
            self._times.clear()
            self._forget_names()
        self.drain()

    def _forget_names(self, window: int | None = None) -> None:
        # Swapped, never cleared in place: a frame in flight keeps updating the smoother it took. Caller holds the lock.
        self._smoother = NameSmoother(self._smoother.window if window is None else window)

    def drain(self) -> FrameResult | None:
        """The newest queued result (older ones are discarded), or None when the queue is empty."""
        newest = None
        while True:
            try:
                newest = self.results.get_nowait()
            except queue.Empty:
                return newest

    # -- called from the video thread --------------------------------------------------------------

    def process(self, img_bgr: np.ndarray, decode_ms: float = 0.0) -> tuple[np.ndarray, FrameResult]:
        """Detect, align, identify and draw every face in a uint8 (H, W, 3) BGR frame.

        Returns the annotated copy and the frame's `FrameResult` (also put on `results`).
        """
        cfg = self.config
        timings = {"decode": decode_ms}
        t0 = time.perf_counter()
        grey = to_grey(img_bgr)
        boxes = self.detector.detect(grey)[: cfg.max_faces]
        t1 = time.perf_counter()
        timings["detect"] = (t1 - t0) * 1e3

        faces = np.zeros((len(boxes), cfg.face_size, cfg.face_size), np.float32)
        for i, box in enumerate(boxes):
            faces[i] = align_box(grey, box, self.detector if cfg.align_eyes else None, cfg.face_size, cfg.align_side)
        t2 = time.perf_counter()
        timings["align"] = (t2 - t1) * 1e3

        # The lock only takes a snapshot: recognisers are swapped, never changed, so the model call runs outside
        # it and the page's thread (stats, a new threshold) never waits on a frame's inference.
        with self._lock:
            recognizer, model_name, capture, smoother = self._recognizer, self._model_name, self._capture, self._smoother
        if capture is not None:  # before naming: a model that fails on this frame must not stop a capture
            capture.offer(boxes, faces, img_bgr.shape[:2])
        ids = smoother.update(boxes, _identify(recognizer, faces))
        t3 = time.perf_counter()
        timings["identify"] = (t3 - t2) * 1e3

        found = [FaceResult(box, i.name, float(i.confidence), bool(i.known), list(i.top),
                            i.distances[0] if i.distances else None) for box, i in zip(boxes, ids)]
        with self._lock:  # reset_stats may clear the frame times from the page's thread
            fps = self._tick(t0)
        out = img_bgr
        if cfg.draw:
            out = img_bgr.copy()
            draw_faces(out, found)
        t4 = time.perf_counter()
        timings["draw"] = (t4 - t3) * 1e3
        total = sum(timings.values())
        if cfg.draw:
            # The overlay shows this frame's latency up to drawing; drawing the text itself is ~0.05 ms.
            draw_overlay(out, fps, total, model_name)

        with self._lock:
            result = FrameResult(self._index, found, timings, fps, model_name, tuple(img_bgr.shape[:2]))
            self._index += 1
            self._with_faces += bool(found)
            self._seen.update({f.name for f in found})
            self._latency_sum += total
            self._last = result
        self._put(result)
        return out, result

    def recv(self, frame: av.VideoFrame) -> av.VideoFrame:
        """streamlit-webrtc `video_frame_callback`: a WebRTC frame in, the annotated frame out."""
        import av

        t0 = time.perf_counter()
        img_bgr = frame.to_ndarray(format="bgr24")
        decode_ms = (time.perf_counter() - t0) * 1e3
        try:
            out, _ = self.process(img_bgr, decode_ms)
            self._error = None
        except Exception as err:  # a failing model must not kill the stream; the frame goes back unannotated
            self._failures += 1
            self._error = str(err) if isinstance(err, FaceLabError) else f"{type(err).__name__}: {err}"
            if self._failures in (1, 10) or self._failures % 1000 == 0:  # not 30 tracebacks a second
                log.exception("live frame failed (%d so far)", self._failures)
            out = img_bgr
        return av.VideoFrame.from_ndarray(out, format="bgr24")

    @property
    def error(self) -> str | None:
        """Why the latest frame could not be processed (None when it was)."""
        return self._error

    def _tick(self, now: float) -> float:
        self._times.append(now)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def _put(self, result: FrameResult) -> None:
        # The page may read slower than frames come: keep the newest, drop the oldest.
        while True:
            try:
                self.results.put_nowait(result)
                return
            except queue.Full:
                try:
                    self.results.get_nowait()
                except queue.Empty:
                    pass


def _identify(recognizer: Recognizer | None, faces: np.ndarray) -> list[Identification]:
    if len(faces) == 0:
        return []
    if recognizer is None:  # no model (collecting crops for a data set): faces are found, not named
        return [Identification(FACE_ONLY, float("nan"), False)] * len(faces)
    return list(recognizer.identify(faces))


def prepare_webrtc_import() -> None:
    """Make importing streamlit-webrtc safe in this process; call it early (app.py does) or before that import.

    aiortc's pylibsrtp carries its own OpenSSL; loaded after TensorFlow (whose BoringSSL symbols are
    global) its calls bind to TensorFlow's copies and the process dies (segmentation fault, seen with
    TensorFlow 2.21 and pylibsrtp 1.0). RTLD_DEEPBIND makes it use its own symbols first.
    """
    if "pylibsrtp" in sys.modules:
        return
    if "tensorflow" not in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        import pylibsrtp  # noqa: F401  loaded first, it is safe whatever comes later
        return
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        import pylibsrtp  # noqa: F401
    finally:
        sys.setdlopenflags(flags)
    log.info("loaded pylibsrtp with RTLD_DEEPBIND: TensorFlow was imported first")


def rtc_configuration(stun: str = "") -> dict[str, Any]:
    """WebRTC ICE settings: none by default (works on one machine, contacts nobody); a STUN URL for remote use."""
    urls = [u.strip() for u in stun.replace(",", " ").split() if u.strip()]
    for url in urls:
        if not url.startswith(("stun:", "turn:", "turns:")):
            raise BadInputError(f"{url!r} is not a STUN/TURN address; write it like stun:stun.example.org:3478")
    return {"iceServers": [{"urls": urls}] if urls else []}


def identify_image(
    img_bgr: np.ndarray, recognizer: Recognizer | None, config: LiveConfig | None = None, detector: FaceDetector | None = None
) -> tuple[np.ndarray, FrameResult]:
    """One photo (the snapshot mode): the annotated copy and what was found."""
    cfg = config or LiveConfig(detect_width=640)
    return LiveRecognizer(recognizer, cfg, detector).process(img_bgr)


def align_box(
    grey: np.ndarray, box: Box, detector: FaceDetector | None = None, size: int = FACE_SIZE, side: int = 144
) -> np.ndarray:
    """`align_face` on a region around the box shrunk so the box is about `side` px: the (size, size) face.

    The eye search dominates alignment and grows with the face's area; a face filling the webcam
    frame costs 4x more than one at this side and gives the same 64x64 crop.
    """
    factor = min(1.0, side / max(box.w, 1))
    if factor >= 1.0:
        return align_face(grey, box, detector, size)[0]
    # A margin of half the side keeps the rotated crop inside the region (the crop is 0.81 of the side).
    margin = box.w // 2
    x0, y0 = max(0, box.x - margin), max(0, box.y - margin)
    x1, y1 = min(grey.shape[1], box.x + box.w + margin), min(grey.shape[0], box.y + box.h + margin)
    region = cv2.resize(grey[y0:y1, x0:x1], None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    small = Box(round((box.x - x0) * factor), round((box.y - y0) * factor), round(box.w * factor), round(box.h * factor))
    return align_face(region, small, detector, size)[0]


def label_text(face: FaceResult) -> str:
    """The caption drawn on a box: name and confidence in percent; "unknown" or "face" (no model) alone."""
    # An unknown face's score is how close the nearest person came: "unknown 89%" would read as a certainty.
    if math.isnan(face.confidence) or not face.known:
        return face.name
    return f"{face.name} {face.confidence * 100:.0f}%"


def draw_faces(img_bgr: np.ndarray, faces: list[FaceResult]) -> None:
    """Draw a box with name and confidence for every face, in place."""
    height = img_bgr.shape[0]
    scale = max(0.4, min(1.0, height / 600))
    for face in faces:
        b = face.box
        colour = _KNOWN_BGR if face.known else _UNKNOWN_BGR
        cv2.rectangle(img_bgr, (b.x, b.y), (b.x + b.w, b.y + b.h), colour, 2)
        text = label_text(face)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = b.y - th - base - 4 if b.y - th - base - 4 >= 0 else b.y + b.h  # below the box at the top edge
        cv2.rectangle(img_bgr, (b.x, top), (b.x + tw + 4, top + th + base + 4), colour, -1)
        cv2.putText(img_bgr, text, (b.x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_overlay(img_bgr: np.ndarray, fps: float, latency_ms: float, model_name: str = "") -> None:
    """Frames per second (none for a single photo), this frame's latency and the model, bottom left, in place.

    At the bottom: name labels sit above their boxes, so at the top the banner hid the name of a face near the
    top edge (seen in a browser walk)."""
    text = (f"{fps:4.1f} fps  " if fps > 0 else "") + f"{latency_ms:5.1f} ms" + (f"  {model_name}" if model_name else "")
    scale = max(0.35, min(0.6, img_bgr.shape[0] / 800))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    height = img_bgr.shape[0]
    cv2.rectangle(img_bgr, (0, height - th - base - 8), (tw + 8, height), (0, 0, 0), -1)
    cv2.putText(img_bgr, text, (4, height - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)


# ------------------------------------------------------------------------------ videos and cameras
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}  # containers OpenCV's own writer handles everywhere


def open_video(source: int | str) -> cv2.VideoCapture:
    """An opened `cv2.VideoCapture` for a camera index or a video file, or a `BadInputError` saying which failed."""
    video = cv2.VideoCapture(source)
    if video.isOpened() and not isinstance(source, int):
        # OpenCV "opens" any file named like an image (as a one-file image sequence), readable or not.
        readable = video.read()[0]
        video.release()
        video = cv2.VideoCapture(source) if readable else None
    if video is None or not video.isOpened():
        raise BadInputError(f"cannot open camera {source}" if isinstance(source, int) else f"{source}: cannot read as a video")
    return video


@dataclass(frozen=True)
class VideoReport:
    """What `identify_video` saw: per-frame names, how often each name was shown, per-frame latency."""

    frames: int
    frames_with_faces: int
    seen: dict[str, int]  # name -> frames in which it was shown
    latency_ms_p50: float
    latency_ms_p95: float
    timeline: list[list[str]]  # the names shown in each frame
    saved: str | None = None  # the annotated video, when one was written

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def identify_video(
    recognizer: Recognizer | None,
    source: int | str,
    max_frames: int = 300,
    out: str | os.PathLike | None = None,
    model_name: str = "",
    config: LiveConfig | None = None,
) -> VideoReport:
    """Run the live pipeline over a camera or video file (until its end, `max_frames`, or Ctrl-C) and report
    the names shown; with `out` (.mp4 or .avi) the annotated frames are written there, atomically."""
    target = Path(out) if out is not None else None
    if target is not None and target.suffix.lower() not in VIDEO_CODECS:
        raise BadInputError(f"{target}: the annotated video must end in {' or '.join(VIDEO_CODECS)}")
    if target is not None and not target.parent.is_dir():
        raise BadInputError(f"{target}: {target.parent} is not a folder")
    if target is not None and isinstance(source, (str, os.PathLike)) and target.resolve() == Path(source).resolve():
        # The finished file is renamed over the target: it would replace the video being read with its first frames.
        raise BadInputError(f"{target}: is the video being read; write the annotated copy to another file")
    video = open_video(source)
    stream = LiveRecognizer(recognizer, config, model_name=model_name)
    fps = video.get(cv2.CAP_PROP_FPS)
    fps = fps if 0 < fps < 240 else 25.0
    writer, partial, finished = None, None, False
    timeline: list[list[str]] = []
    latencies: list[float] = []
    try:
        try:
            while len(timeline) < max_frames:
                ok, frame = video.read()
                if not ok:
                    break
                drawn, result = stream.process(frame)
                timeline.append(result.names)
                latencies.append(result.latency_ms)
                if target is not None:
                    if writer is None:
                        # Written beside the target and renamed at the end: a failed run never leaves half a video.
                        partial = target.with_name(f".{target.stem}.partial{target.suffix}")
                        fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[target.suffix.lower()])
                        writer = cv2.VideoWriter(str(partial), fourcc, fps, (drawn.shape[1], drawn.shape[0]))
                        if not writer.isOpened():
                            raise BadInputError(f"{target}: cannot write a video there")
                    writer.write(drawn)
        except KeyboardInterrupt:
            pass  # a camera runs until stopped: report what was seen so far
        finished = True
    finally:
        video.release()
        if writer is not None:
            writer.release()
        if partial is not None and not finished:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
    saved = None
    if partial is not None:
        try:
            os.replace(partial, target)
        except OSError as err:
            raise BadInputError(f"{target}: cannot write the video there ({err.strerror or err})") from None
        saved = str(target)
    if not timeline:
        raise BadInputError(f"{source}: no frames could be read")
    stats = stream.stats()
    p50, p95 = np.percentile(latencies, [50, 95])
    return VideoReport(stats.frames, stats.frames_with_faces, stats.seen, float(p50), float(p95), timeline, saved)
