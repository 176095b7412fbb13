"""Enrolment: collect checked face crops of a new person and add them to a model, without retraining.

Crops come from webcam frames (`FaceCapture`, fed by the live pipeline in the video thread) or from
uploaded photos (`crops_from_photos`). `add_person` / `remove_person` return a NEW model object whose
gallery has the change, so a stream still identifying with the old one is never disturbed; the page
swaps the new one in and saves it. `FineTuneJob` retrains a GRU classifier on the enlarged set in a
background thread and hands back another new model. `FaceCollection` gathers crops of several people
into a data set or a folder of images (the Data page's webcam source, `python -m facelab capture`).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from facelab import FACE_SIZE
from facelab.data import DataSplit, FaceDataset, split_dataset
from facelab.errors import BadInputError, FaceLabError
from facelab.gallery import Gallery, unit_length
from facelab.images import read_image
from facelab.jobs import TrainingJob
from facelab.live import align_box  # live imports this module for type hints only: no cycle
from facelab.preprocess import Box, FaceDetector, is_face_crop, to_face, to_grey
from facelab.recognition import is_reserved_name
from facelab.storage import user_folder

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 40


@dataclass(frozen=True)
class EnrolConfig:
    """What a usable enrolment crop is and how many to collect."""

    n_faces: int = 10  # crops to collect from the webcam
    min_faces: int = 3  # fewest crops a person may be added with
    min_face: int = 80  # smallest face side in pixels: smaller crops are blurry after resizing to 64
    every: int = 3  # keep every n-th good frame, so the crops are not ten copies of one pose
    face_size: int = FACE_SIZE
    align_side: int = 144


@dataclass(frozen=True)
class Crop:
    """One candidate crop: where it came from, the face if accepted, or why it was refused."""

    source: str
    face: np.ndarray | None  # (S, S) float32 in [0, 1]
    box: Box | None
    reason: str | None = None  # None when accepted

    @property
    def ok(self) -> bool:
        return self.reason is None


def check_boxes(boxes: list[Box], frame_shape: tuple[int, int], config: EnrolConfig, edge: bool = True) -> str | None:
    """Why the faces of one frame or photo cannot be used for enrolment, or None when they can (`edge`: a box
    touching the frame's edge is refused, as the person in front of a camera can move)."""
    if not boxes:
        return "no face found"
    if len(boxes) > 1:
        return f"{len(boxes)} faces found; one person at a time"
    box = boxes[0]
    if min(box.w, box.h) < config.min_face:
        return f"face too small ({min(box.w, box.h)} px; at least {config.min_face} px): come closer"
    height, width = frame_shape[:2]
    if edge and (box.x <= 0 or box.y <= 0 or box.x + box.w >= width or box.y + box.h >= height):
        return "face cut by the edge of the picture"
    return None


def check_name(name: str) -> str:
    """A cleaned person name, or a `BadInputError` saying what is wrong with it."""
    clean = " ".join(str(name).split())
    if not clean:
        raise BadInputError("enter a name for the new person")
    if len(clean) > MAX_NAME_LENGTH:
        raise BadInputError(f"name {clean[:20]!r}... is {len(clean)} characters; at most {MAX_NAME_LENGTH}")
    if is_reserved_name(clean):
        raise BadInputError(f"{clean!r} is reserved for faces nobody knows; choose another name")
    return clean


class FaceCapture:
    """Collects enrolment crops from live frames; thread-safe (fed by the video thread, read by the page)."""

    def __init__(self, config: EnrolConfig | None = None) -> None:
        self.config = config or EnrolConfig()
        self._lock = threading.Lock()
        self._faces: list[np.ndarray] = []
        self._boxes: list[Box] = []
        self._good = 0
        self._frames = 0
        self._refused: Counter[str] = Counter()

    def offer(self, boxes: list[Box], faces: np.ndarray, frame_shape: tuple[int, ...]) -> bool:
        """Consider one frame's detected boxes and aligned faces; True when a crop was kept."""
        with self._lock:
            if len(self._faces) >= self.config.n_faces:
                return False
            self._frames += 1
            reason = check_boxes(list(boxes), frame_shape, self.config)
            if reason is not None:
                self._refused[reason.split(" (")[0]] += 1
                return False
            keep = self._good % self.config.every == 0
            self._good += 1
            if keep:
                self._faces.append(np.array(faces[0], np.float32))
                self._boxes.append(boxes[0])
            return keep

    @property
    def done(self) -> bool:
        with self._lock:
            return len(self._faces) >= self.config.n_faces

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._faces)

    def faces(self) -> np.ndarray:
        """The kept crops, (N, S, S) float32."""
        with self._lock:
            size = self.config.face_size
            return np.stack(self._faces) if self._faces else np.zeros((0, size, size), np.float32)

    def crops(self) -> list[Crop]:
        with self._lock:
            return [Crop(f"frame {i + 1}", f, b) for i, (f, b) in enumerate(zip(self._faces, self._boxes))]

    def refused(self) -> dict[str, int]:
        """Frames not used, by reason (e.g. {"no face found": 12})."""
        with self._lock:
            return dict(self._refused)

    def refused_text(self) -> str:
        """The reasons as text to append to a message, e.g. "; 12x no face found" ("" when none)."""
        return "".join(f"; {n}x {why}" for why, n in self.refused().items())

    def frames(self) -> int:
        with self._lock:
            return self._frames


class FaceCollection:
    """Checked face crops gathered per person (from the webcam or photos) that become a data set or a folder.

    Lives in one page session; `dataset()` makes a `FaceDataset` to train on, `save(folder)` writes one
    PNG per crop in one sub-folder per person, the layout `facelab.data.load_folder` reads back.
    """

    def __init__(self, face_size: int = FACE_SIZE) -> None:
        self.face_size = face_size
        self._faces: dict[str, list[np.ndarray]] = {}

    def add(self, name: str, faces: np.ndarray) -> str:
        """Add (N, S, S) crops in [0, 1] to a person (created if new); returns the cleaned name."""
        clean = check_name(name)
        faces = np.asarray(faces, np.float32)
        if faces.ndim == 2:
            faces = faces[None]
        if faces.ndim != 3 or faces.shape[1:] != (self.face_size, self.face_size) or not len(faces):
            raise BadInputError(f"expected face crops of {self.face_size}x{self.face_size}; got shape {faces.shape}")
        self._faces.setdefault(clean, []).extend(np.clip(faces, 0.0, 1.0))
        return clean

    def remove(self, name: str) -> None:
        self._faces.pop(name, None)

    def counts(self) -> dict[str, int]:
        """Crops per person, in the order people were added."""
        return {name: len(faces) for name, faces in self._faces.items()}

    def dataset(self, source: str = "webcam") -> FaceDataset:
        """The crops as a data set: at least 2 people with at least 2 crops each (a split needs both)."""
        short = [f"{n} ({c})" for n, c in self.counts().items() if c < 2]
        if short:
            raise BadInputError(f"every person needs at least 2 crops; too few for {', '.join(short)}")
        if len(self._faces) < 2:
            raise BadInputError(f"a data set needs at least 2 people; collected {len(self._faces)} so far")
        names = list(self._faces)
        images = np.stack([f for name in names for f in self._faces[name]]).astype(np.float32)
        labels = np.concatenate([np.full(len(self._faces[n]), i, np.int64) for i, n in enumerate(names)])
        return FaceDataset(images, labels, names, f"{source} ({len(names)} people)")

    def save(self, folder: str | Path) -> Path:
        """Write every crop as folder/<person>/<n>.png. The folder may already hold other people (collect some
        today, more tomorrow) but never one of these: each person's sub-folder is written beside its place and
        renamed into it, so it appears whole or not at all."""
        import cv2

        if not self._faces:
            raise BadInputError("nothing collected yet to save")
        target = check_collection_folder(folder, list(self._faces))
        subs = _folder_names(list(self._faces))
        try:
            target.mkdir(parents=True, exist_ok=True)
            for name, faces in self._faces.items():
                tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=target))  # hidden: load_folder skips it
                try:
                    for i, face in enumerate(faces, start=1):
                        ok, png = cv2.imencode(".png", np.round(face * 255).astype(np.uint8))
                        if not ok:
                            raise FaceLabError(f"could not encode crop {i} of {name} as PNG")
                        (tmp / f"{i:03d}.png").write_bytes(png.tobytes())
                    os.rename(tmp, target / subs[name])
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
        except OSError as err:  # no permission, disk full, ...: a message, and the people written so far are whole
            raise BadInputError(f"cannot save to {target}: {err.strerror or err}") from err
        return target


def check_collection_folder(folder: str | Path, names: list[str]) -> Path:
    """The folder crops of `names` can be saved in (`FaceCollection.save`), or a BadInputError: a file, an
    unreadable folder, or one that already has a sub-folder for one of them. Call it before capturing too."""
    target = user_folder(folder)
    if target.exists() and not target.is_dir():
        raise BadInputError(f"{target} is a file, not a folder")
    try:
        existing = {p.name.lower() for p in target.iterdir()} if target.is_dir() else set()
    except OSError as err:
        raise BadInputError(f"{target}: the folder cannot be read ({err.strerror or err})") from None
    taken = [sub for sub in _folder_names(names).values() if sub.lower() in existing]
    if taken:
        raise BadInputError(f"{target} already has {', '.join(taken)}; choose another folder or name, so "
                            "nothing saved there is overwritten")
    return target


def _folder_names(names: list[str]) -> dict[str, str]:
    """A file-system-safe, unique sub-folder name per person (no separators, no leading dot or "__")."""
    used: set[str] = set()
    out = {}
    for name in names:
        base = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip(" .") or "person"
        base = re.sub(r"^_{2,}", "_", base)  # the folder loader skips "__" folders (__MACOSX, __pycache__)
        candidate, n = base, 2
        while candidate.lower() in used:
            candidate, n = f"{base}_{n}", n + 1
        used.add(candidate.lower())
        out[name] = candidate
    return out


def capture_from_video(source: int | str, config: EnrolConfig | None = None, max_frames: int = 300) -> FaceCapture:
    """Fill a `FaceCapture` from a camera (its index) or a video file, through the live pipeline's detection and
    alignment; stops when full, after `max_frames` frames, or at the end of the video."""

    from facelab.live import LiveConfig, LiveRecognizer, open_video

    video = open_video(source)
    capture = FaceCapture(config)
    stream = LiveRecognizer(config=LiveConfig(draw=False, smooth_frames=1))
    stream.start_capture(capture)
    try:
        for _ in range(max_frames):
            ok, frame = (False, None) if capture.done else video.read()
            if not ok:
                break
            stream.process(frame)
    finally:
        video.release()
    return capture


def crop_image(img_bgr: np.ndarray, source: str, detector: FaceDetector, config: EnrolConfig | None = None) -> Crop:
    """The one face of a photo, aligned, or the reason it cannot be used."""
    cfg = config or EnrolConfig()
    # A photo is searched with a margin, so a face that fills it is found (its box then reaches past the edges).
    boxes = detector.detect_photo(img_bgr)
    reason = check_boxes(boxes, img_bgr.shape[:2], cfg, edge=False)
    if reason is not None:
        return Crop(source, None, boxes[0] if len(boxes) == 1 else None, f"{source}: {reason}")
    face = align_box(to_grey(img_bgr), boxes[0], detector, cfg.face_size, cfg.align_side)
    return Crop(source, face, boxes[0])


def crops_from_photos(
    photos: list[tuple[str, bytes | Path | np.ndarray]], config: EnrolConfig | None = None, detector: FaceDetector | None = None
) -> list[Crop]:
    """One `Crop` per (name, file bytes, path or img_bgr): accepted, or refused with the file and the reason."""
    cfg = config or EnrolConfig()
    detector = detector or FaceDetector(min_face=min(40, cfg.min_face), detect_width=640)
    out = []
    for name, data in photos:
        try:
            img = data if isinstance(data, np.ndarray) else read_image(data, name)
        except BadInputError as err:
            out.append(Crop(name, None, None, str(err)))
            continue
        if is_face_crop(img):  # used whole, as everywhere in FaceLab
            out.append(Crop(name, to_face(img, cfg.face_size), Box(0, 0, img.shape[1], img.shape[0])))
        else:
            out.append(crop_image(img, name, detector, cfg))
    return out


# ------------------------------------------------------------------------------------- galleries


def look_alikes(recognizer: Any, faces: np.ndarray, name: str = "") -> list[str | None]:
    """For each of the (N, S, S) crops, the known person other than `name` the recogniser names it as, or None."""
    if not len(faces) or not getattr(recognizer, "names", True):  # a gallery emptied by removals knows nobody
        return [None] * len(faces)
    clean = " ".join(str(name).split())
    return [a.name if a.known and a.name != clean else None
            for a in recognizer.identify(np.asarray(faces, np.float32))]


def count_look_alikes(alike: list[str | None]) -> dict[str, int]:
    """Per person, most first, how many crops `look_alikes` named as them."""
    return dict(Counter(who for who in alike if who is not None).most_common())


def already_known(recognizer: Any, faces: np.ndarray, name: str = "") -> dict[str, int]:
    """How many of the (N, S, S) crops the recogniser already names as someone other than `name`, per person,
    most first: crops of the wrong person (a webcam feed that changed faces) would teach it that they are `name`."""
    return count_look_alikes(look_alikes(recognizer, faces, name))


# Crops a gallery's codes tell apart: average-linkage groups of crops cut at UNLIKE_CUT times the gallery's
# threshold (cosine distance); the crops outside the largest group are unlike the others. Chosen on validation folds
# (Olivetti, training side, bench seeds 0-2, 9 refitted ae-metric models, faces of 6 strangers per fold): of sets of
# one stranger's 5 faces 17% had a crop flagged (Olivetti's faces of one person differ more than a few seconds of
# webcam do); of the other people's crops in sets of 4 + 1, 3 + 2, 3 + 1 + 1 and 5 + 2 + 2 faces 87%, 81%, 86% and
# 88% were flagged, and 4-9% of the main person's. Single linkage at 2.5x (11% of one-person sets flagged) chained
# the three people of a webcam feed seen through WebRTC into one group; a first rule (far from the mean of the
# others) flagged 9% of the second person's crops in sets of 3 + 2.
UNLIKE_CUT = 3.0


def unlike_the_others(recognizer: Any, faces: np.ndarray) -> list[bool]:
    """For each of the (N, S, S) crops, whether a gallery's codes set it apart from the largest group of alike crops
    (another person in a capture, as when a webcam feed changes faces); all False for fewer than 3 crops, a
    recogniser without codes (a classifier) or a gallery whose calibrated threshold names few known faces."""
    from sklearn.cluster import AgglomerativeClustering

    threshold = getattr(recognizer, "threshold", math.inf)
    if (not isinstance(recognizer, Gallery) or recognizer.metric != "cosine" or not math.isfinite(threshold)
            or threshold <= 0 or len(faces) < 3):
        return [False] * len(faces)
    if recognizer.calibration is not None and recognizer.calibration.names_few_known:
        # Codes that do not even bring a known person's faces within the threshold (the seed's dense network) would
        # set one person's crops apart from each other.
        return [False] * len(faces)
    codes = unit_length(recognizer.encode(np.asarray(faces, np.float32)).astype(np.float64))
    groups = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                     distance_threshold=UNLIKE_CUT * threshold).fit_predict(codes)
    return (groups != np.bincount(groups).argmax()).tolist()


def gallery_of(model: Any) -> Any:
    """The model's `Gallery`, or a clear error for a model kind that has none (the GRU classifiers)."""
    gallery = getattr(model, "gallery_", None)
    if gallery is None:
        raise FaceLabError(
            f"{getattr(model, 'kind', type(model).__name__)} models have no gallery: people are added to an "
            "autoencoder model (ae-dense, ae-conv, ae-metric), or a classifier is fine-tuned with them"
        )
    return gallery


def add_person(model: Any, name: str, faces: np.ndarray, config: EnrolConfig | None = None) -> Any:
    """A new model object whose gallery also knows `name` from (N, S, S) faces; `model` is unchanged."""
    cfg = config or EnrolConfig()
    gallery = gallery_of(model)
    clean = check_name(name)
    faces = np.asarray(faces, np.float32)
    if faces.ndim != 3 or len(faces) < cfg.min_faces:
        raise BadInputError(f"{clean}: {len(faces)} usable face(s); at least {cfg.min_faces} are needed")
    new_gallery = gallery.copy()
    new_gallery.enrol(clean, faces)
    return _with_gallery(model, new_gallery)


def remove_person(model: Any, name: str) -> Any:
    """A new model object whose gallery no longer knows `name`; `model` is unchanged."""
    gallery = gallery_of(model)
    if name not in list(gallery.names):
        raise BadInputError(f"{name!r} is not in this model's gallery")
    new_gallery = gallery.copy()
    new_gallery.remove(name)
    return _with_gallery(model, new_gallery)


def _with_gallery(model: Any, gallery: Any) -> Any:
    new = copy.copy(model)  # shares the (read-only at inference) Keras model; only the gallery differs
    new.gallery_ = gallery
    names = list(gallery.names)
    if hasattr(new, "names_"):
        new.names_ = names
    return new


@dataclass(frozen=True)
class SavedModel:
    """Where `save_model` saved, the model as saved, and what it kept of another save made meanwhile."""

    path: Path
    model: Any
    kept: str | None = None  # e.g. "Kept Ann (enrolled), Bob (removed) from another session's save of this model"


def save_model(model: Any, path: str | Path, attempts: int = 3) -> SavedModel:
    """Save the model bundle (with its gallery) through the model's own atomic `save`.

    When another session or command has saved a gallery change to that bundle since the model was loaded (a
    person added there), both changes are kept: this model's people added or removed since are applied to the
    gallery saved there, as long as the network is the same. Otherwise the save is refused (BundleChangedError).
    """
    from facelab.storage import BundleChangedError

    kept: list[str] = []
    for _ in range(attempts):
        try:
            return SavedModel(Path(model.save(path)), model, "; ".join(kept) or None)
        except BundleChangedError:
            since = getattr(model, "saved_gallery_", None)
            if since is None or getattr(model, "gallery_", None) is None:
                raise
            model, note = _merged_with_saved(model, since, path)
            kept += [note] if note else []
    raise BadInputError(f"{path}: saved by others {attempts} times while this change was being saved; try again")


def _merged_with_saved(model: Any, since: Any, path: str | Path) -> tuple[Any, str | None]:
    """`model` with the gallery saved at `path` meanwhile plus this model's own changes since `since`."""
    from facelab.registry import load_model
    from facelab.storage import BundleChangedError

    theirs = load_model(path)
    ours, saved = model.keras_model_.get_weights(), theirs.keras_model_.get_weights()
    if theirs.kind != model.kind or len(ours) != len(saved) or not all(
            a.shape == b.shape and np.array_equal(a, b) for a, b in zip(ours, saved)):
        raise BundleChangedError(f"{path}: another model has been saved there since this one was loaded from it; "
                                 "save this one under another name")
    changed, removed = model.gallery_.changes_since(since)
    their_changed, their_removed = theirs.gallery_.changes_since(since)
    gallery = theirs.gallery_.copy(embed=model.gallery_.embed)
    gallery.threshold, gallery.calibration = model.gallery_.threshold, model.gallery_.calibration
    gallery.apply_changes(changed, removed)
    merged = _with_gallery(model, gallery)
    merged.origin_, merged.saved_gallery_ = theirs.origin_, theirs.gallery_
    parts = [f"{n} ({'enrolled' if n not in since else 'more faces'})" for n in their_changed if n not in changed]
    parts += [f"{n} (removed)" for n in their_removed if n not in changed]
    kept = f"Kept {', '.join(parts)} from another session's save of this model" if parts else None
    return merged, kept


# ------------------------------------------------------------------------------------- fine-tuning


def enlarged_split(split: DataSplit, name: str, faces: np.ndarray, val_share: float = 0.2) -> DataSplit:
    """`split` plus a person: most of `faces` join train, some join val (when val is used); test is unchanged."""
    clean = check_name(name)
    faces = np.asarray(faces, np.float32)
    names = list(split.train.names)
    if clean in names:
        label = names.index(clean)
    else:
        label = len(names)
        names.append(clean)
    n_val = int(round(len(faces) * val_share)) if len(split.val.images) else 0
    n_val = min(n_val, max(len(faces) - 1, 0))

    def grow(part: FaceDataset, extra: np.ndarray) -> FaceDataset:
        images = np.concatenate([part.images, extra]) if len(extra) else part.images
        labels = np.concatenate([part.labels, np.full(len(extra), label, np.int64)]) if len(extra) else part.labels
        return replace(part, images=images, labels=labels, names=names, usage=None, paths=None, skipped=[])

    train = grow(split.train, faces[n_val:])
    val = grow(split.val, faces[:n_val])
    test = replace(split.test, names=names)
    return DataSplit(train, val, test)


@dataclass(frozen=True)
class FineTuneStatus:
    """Where a background fine-tune is: running, done (with `model`) or failed (with `error`)."""

    running: bool
    epoch: int
    epochs: int
    elapsed_s: float
    error: str | None = None


class FineTuneJob(TrainingJob):
    """A `TrainingJob` for enrolment: fine-tunes a new classifier; the page polls `status()` and swaps in `result`.

    With `save_as` the thread saves the new bundle there; a failed save keeps the model (`save_error` says why).
    """

    def __init__(self, make_model: Callable[[], Any], split: DataSplit, init_from: Any = None,
                 save_as: Path | None = None) -> None:
        super().__init__(save_as.name if save_as else "fine-tune", make_model(), split,
                         folder=save_as.parent if save_as else None, evaluate=False, init_from=init_from)

    def status(self) -> FineTuneStatus:
        progress, _ = self.snapshot()
        epoch, epochs = (int(progress.epoch), int(progress.epochs)) if progress is not None else (0, 0)
        end = self.finished if self.finished is not None else time.time()
        return FineTuneStatus(self.running, epoch, epochs, end - self.started, self.error)


def fine_tune_split(classifier: Any, ds: FaceDataset | None, label: str, person: str) -> DataSplit:
    """What a classifier named `label` is fine-tuned on when `person` joins: the data set it was trained on (it
    must be the loaded one), split as the Train pages' default does (5 training faces per person, 1 validates)."""
    if ds is None or list(ds.names) != list(classifier.names_):
        raise FaceLabError(f"load the data set {label} was trained on (Data page) to retrain it with "
                           f"{person.strip() or 'the new person'}")
    return split_dataset(ds, train_per_person=5, val_per_person=1)


def start_fine_tune(classifier: Any, split: DataSplit, name: str, faces: np.ndarray, epochs: int | None = None,
                    save_as: Path | None = None) -> FineTuneJob:
    """Fine-tune a NEW classifier on `split` plus `name`'s faces, in a thread, starting from `classifier`'s
    weights (its output layer grows by one person; `epochs` may shorten the recipe; `save_as` a bundle path the
    thread saves it to). `classifier` keeps serving until the result is swapped in: a model a stream uses is never
    changed in place.
    """
    if not hasattr(classifier, "with_config"):
        raise FaceLabError(f"{getattr(classifier, 'kind', type(classifier).__name__)} models cannot be fine-tuned")
    grown = enlarged_split(split, name, faces)
    overrides = {"epochs": int(epochs)} if epochs else {}
    return FineTuneJob(lambda: classifier.with_config(**overrides), grown, init_from=classifier, save_as=save_as).start()
