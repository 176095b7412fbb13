"""Face preprocessing with OpenCV: detect, align by the eyes, crop, grey, resize, augment.

Conventions: `img_bgr` is a uint8 (H, W, 3) OpenCV image (the file and webcam boundary); a `face`
is a float32 (S, S) grey image in [0, 1] (the model input). `Box` is the one box convention:
top-left corner plus width and height, in pixels of the image it was found in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from facelab import FACE_SIZE
from facelab.errors import BadInputError


@dataclass(frozen=True)
class Box:
    """A face box: top-left (x, y), width w and height h, in image pixels."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    def clipped(self, width: int, height: int) -> Box:
        """The part of the box inside a width x height image."""
        x0, y0 = max(0, self.x), max(0, self.y)
        x1, y1 = min(width, self.x + self.w), min(height, self.y + self.h)
        return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def scaled(self, factor: float) -> Box:
        return Box(round(self.x * factor), round(self.y * factor), round(self.w * factor), round(self.h * factor))

    def as_dict(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}


@dataclass(frozen=True)
class DetectedFace:
    """A face found in a photo: its box, the model-ready `face` and whether eyes levelled it."""

    box: Box
    face: np.ndarray  # (S, S) float32 in [0, 1]
    aligned: bool


def to_grey(img: np.ndarray) -> np.ndarray:
    """uint8 grey (H, W) from a BGR, BGRA or grey uint8 image."""
    if img.ndim == 2:
        return img
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def to_face(img: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """Any image (uint8 or float in [0, 1], grey or colour, any size) -> float32 (size, size) in [0, 1]."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = np.nan_to_num(arr.astype(np.float32))
        # Up to 1.5 is a [0, 1] image with some overshoot (resampling, augmentation), not a black 0..255 one.
        arr = np.clip(arr * (255.0 if arr.max(initial=0) <= 1.5 else 1.0), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    grey = to_grey(arr)
    if grey.shape != (size, size):
        shrinking = grey.shape[0] > size or grey.shape[1] > size
        grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return grey.astype(np.float32) / 255.0


def as_faces(faces: Any, size: int) -> np.ndarray:
    """(N, S, S) float32 faces in [0, 1] at `size` from a batch, a list or one face: another size or colour
    depth is converted (`to_face`), not refused (the house rule for faces); a batch already right is returned."""
    if isinstance(faces, np.ndarray) and faces.ndim == 3 and faces.shape[1:] == (size, size):
        return faces if faces.dtype == np.float32 else faces.astype(np.float32)
    if isinstance(faces, np.ndarray) and faces.ndim == 2:
        faces = faces[None]
    if len(faces) == 0:
        return np.zeros((0, size, size), np.float32)
    if any(np.ndim(f) not in (2, 3) for f in faces):
        raise BadInputError(f"faces must be images (H x W, grey or colour); got {np.shape(faces)}")
    return np.stack([to_face(f, size) for f in faces])


# Margins photos are searched with, in turn (`FaceDetector.detect_photo`); live frames get none, to stay fast.
PHOTO_MARGINS = (0.2, 0.5)


class FaceDetector:
    """OpenCV Haar-cascade face and eye detector (bundled with opencv-python, works offline).

    A `cv2.CascadeClassifier` must not be shared between threads: make one detector per stream.
    """

    def __init__(self, min_face: int = 40, scale_factor: float = 1.1, min_neighbors: int = 5,
                 detect_width: int | None = None) -> None:
        self.min_face = min_face
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        # Detecting on a downscaled copy is the main lever on live latency; boxes are mapped back.
        self.detect_width = detect_width
        self._faces = _cascade("haarcascade_frontalface_default.xml")
        self._eyes = _cascade("haarcascade_eye.xml")

    def detect(self, img: np.ndarray, margin: float = 0.0) -> list[Box]:
        """Faces in a BGR or grey uint8 image, largest first.

        `margin` > 0 first extends the image on every side by that share of its longer side (edge pixels
        repeated): a Haar window needs some forehead and cheek around a face, so a face that fills or touches the
        frame is otherwise missed (2 of 40 Olivetti faces found at 256 px with no margin, 36 with 0.2). Boxes may
        then reach past the image.
        """
        grey = to_grey(img)
        pad = round(margin * max(grey.shape)) if margin > 0 else 0
        if pad:
            grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        factor = 1.0
        if self.detect_width and grey.shape[1] > self.detect_width:
            factor = self.detect_width / grey.shape[1]
            grey = cv2.resize(grey, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        min_side = max(12, round(self.min_face * factor))
        found = self._faces.detectMultiScale(grey, scaleFactor=self.scale_factor,
                                             minNeighbors=self.min_neighbors, minSize=(min_side, min_side))
        boxes = [Box(int(x), int(y), int(w), int(h)).scaled(1 / factor) for x, y, w, h in found]
        boxes = [Box(b.x - pad, b.y - pad, b.w, b.h) for b in boxes]
        return sorted(boxes, key=lambda b: b.area, reverse=True)

    def detect_photo(self, img: np.ndarray) -> list[Box]:
        """Faces in a photo: searched with a margin of 0.2, then 0.5 when that finds none. Of 134 Olivetti faces
        filling a 256 px image, 121 were found with 0.2 alone and 129 this way (0.5 alone: 129, at 2.6x the pixels
        of 0.2 for every photo); live frames use `detect`."""
        for margin in PHOTO_MARGINS:
            boxes = self.detect(img, margin=margin)
            if boxes:
                return boxes
        return []

    def eyes(self, grey: np.ndarray, box: Box) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """Centres of the left and right eye (image coordinates) inside a face box, if both are found."""
        # A box from a search with a margin may start above or left of the image: negative indices would wrap.
        x0, y0 = max(0, box.x), max(0, box.y)
        top = grey[y0: box.y + box.h // 2 + box.h // 10, x0: box.x + box.w]
        if top.size == 0:
            return None
        min_eye = max(6, box.w // 10)
        found = self._eyes.detectMultiScale(top, scaleFactor=1.1, minNeighbors=5, minSize=(min_eye, min_eye),
                                            maxSize=(box.w // 2, box.w // 2))
        centres = [(x0 + x + w / 2, y0 + y + h / 2) for x, y, w, h in found]
        left = [c for c in centres if c[0] < box.x + box.w / 2]
        right = [c for c in centres if c[0] >= box.x + box.w / 2]
        if not left or not right:
            return None
        # The eye nearest each half's centre line beats eyebrows and glasses rims picked up as eyes.
        pick = lambda cs, cx: min(cs, key=lambda c: abs(c[0] - cx))  # noqa: E731
        return pick(left, box.x + box.w * 0.3), pick(right, box.x + box.w * 0.7)


def _cascade(filename: str) -> cv2.CascadeClassifier:
    # Each call returns a fresh classifier: one must not be shared between threads.
    path = cv2.data.haarcascades + filename
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load its bundled cascade {path}; is opencv-python-headless 4.x installed?")
    return cascade


# A Haar box reaches above the brows and wider than the cheeks. Measured on 39 Olivetti faces placed in
# frames: the Olivetti crop is 0.81 (sd 0.05) of the box side, centred 0.08 of the side lower. Using the
# same framing makes webcam and photo crops look like the data the models learnt from.
CROP_SCALE = 0.81
CROP_SHIFT_Y = 0.08


def align_face(img: np.ndarray, box: Box, detector: FaceDetector | None = None, size: int = FACE_SIZE,
               scale: float = CROP_SCALE, shift_y: float = CROP_SHIFT_Y) -> tuple[np.ndarray, bool]:
    """Crop a face box (side x `scale`, centre moved down by `shift_y` x side), levelling the eyes.

    Returns the (size, size) float32 face and whether eye alignment was applied.
    """
    grey = to_grey(img)
    angle = 0.0
    if detector is not None:
        eyes = detector.eyes(grey, box)
        if eyes is not None:
            (lx, ly), (rx, ry) = eyes
            angle = math.degrees(math.atan2(ry - ly, rx - lx))
            if abs(angle) > 30:  # implausible for a frontal face: a false eye match
                angle = 0.0
    side = max(box.w, box.h) * scale
    cx, cy = box.x + box.w / 2, box.y + box.h / 2 + shift_y * box.h
    zoom = size / side
    if zoom < 1:
        grey, cx, cy = _shrunk_around(grey, cx, cy, side, zoom)
        zoom = 1.0
    # One affine warp does rotation, crop and (for a small face) enlargement.
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, zoom)
    matrix[0, 2] += size / 2 - cx
    matrix[1, 2] += size / 2 - cy
    crop = cv2.warpAffine(grey, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop.astype(np.float32) / 255.0, angle != 0.0


def _shrunk_around(grey: np.ndarray, cx: float, cy: float, side: float, zoom: float) -> tuple[np.ndarray, float, float]:
    """The square around (cx, cy) that holds a crop of `side` at any rotation, shrunk by `zoom` with area
    averaging (edges repeated past the image), and the centre in it.

    warpAffine has no area interpolation (INTER_AREA is bilinear there): shrinking a large face in the warp
    aliased its texture. On validation faces pasted into photos (Olivetti, cnn-gru, training side only), shrinking
    first named 84.2% instead of 81.7% at 180 px (80.0% either way at 120 px).
    """
    half = int(math.ceil(side * 0.75)) + 1  # > side / sqrt(2): a crop turned 45 degrees stays inside
    x0, y0 = int(math.floor(cx)) - half, int(math.floor(cy)) - half
    height, width = grey.shape[:2]
    inside = grey[max(0, y0): max(0, min(height, y0 + 2 * half)), max(0, x0): max(0, min(width, x0 + 2 * half))]
    if inside.size == 0:  # a box wholly outside the image: nothing to shrink
        return grey, cx, cy
    top, left = max(0, -y0), max(0, -x0)
    region = cv2.copyMakeBorder(inside, top, 2 * half - top - inside.shape[0], left, 2 * half - left - inside.shape[1],
                                cv2.BORDER_REPLICATE)
    small = cv2.resize(region, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA)
    # Pixel centres: source x maps to (x + 0.5) * ratio - 0.5 in the shrunk copy.
    ratio_x, ratio_y = small.shape[1] / region.shape[1], small.shape[0] / region.shape[0]
    return small, (cx - x0 + 0.5) * ratio_x - 0.5, (cy - y0 + 0.5) * ratio_y - 0.5


# An image whose sides are both at most this many pixels is a face crop (AT&T's 92x112, Olivetti's 64x64):
# the detector needs context around a face and would find none, or a part of it, in a tight crop.
CROP_MAX_SIDE = 128


def is_face_crop(img: np.ndarray) -> bool:
    """True for an image small enough (sides <= CROP_MAX_SIDE) to be a face crop, used whole, not searched."""
    return max(img.shape[:2]) <= CROP_MAX_SIDE


def faces_in_image(img: np.ndarray, detector: FaceDetector, size: int = FACE_SIZE) -> list[DetectedFace]:
    """The faces to use from one image: a small one (`is_face_crop`) is a crop used whole, a larger one is a photo
    searched for faces (largest first)."""
    if is_face_crop(img):
        height, width = img.shape[:2]
        return [DetectedFace(Box(0, 0, width, height), to_face(img, size), False)]
    return extract_faces(img, detector, size)


def faces_left_to_right(img: np.ndarray, detector: FaceDetector, size: int = FACE_SIZE) -> list[DetectedFace]:
    """`faces_in_image` numbered as people read a photo: left to right (the Identify page and the CLI agree)."""
    return sorted(faces_in_image(img, detector, size), key=lambda f: f.box.x)


def aligned_crops(img: np.ndarray, faces: list[DetectedFace], detector: FaceDetector, size: int = 160) -> np.ndarray:
    """(N, size, size) views of found faces, cut and levelled as the model inputs are but larger, for showing."""
    return np.stack([align_face(img, f.box, detector, size)[0] for f in faces])


def extract_faces(img: np.ndarray, detector: FaceDetector, size: int = FACE_SIZE, align: bool = True) -> list[DetectedFace]:
    """Every face in a photo, detected, aligned and cropped, largest first."""
    out = []
    height, width = img.shape[:2]
    for box in detector.detect_photo(img):
        face, aligned = align_face(img, box, detector if align else None, size)
        out.append(DetectedFace(box.clipped(width, height), face, aligned))  # shown and reported inside the photo
    return out


def place_faces(
    faces: list[np.ndarray], size: tuple[int, int] = (480, 640), side: int = 160, background: int = 128
) -> np.ndarray:
    """A synthetic BGR frame (H, W, 3) with grey faces upscaled to `side` px, spread along one row.

    For tests, benchmarks and `detector_views`: the same framing as the webcam feed in ../shared/data/webcam.
    """
    height, width = size
    frame = np.full((height, width), background, np.uint8)
    n = len(faces)
    for i, face in enumerate(faces):
        arr = np.asarray(face)
        grey = (np.clip(arr, 0, 1) * 255).astype(np.uint8) if arr.dtype != np.uint8 else arr
        big = cv2.resize(grey, (side, side), interpolation=cv2.INTER_CUBIC)
        cx = round(width * (i + 1) / (n + 1))
        x, y = max(0, cx - side // 2), max(0, (height - side) // 2)
        region = frame[y : y + side, x : x + side]
        region[:] = big[: region.shape[0], : region.shape[1]]
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)


# Hand-framed data sets (Olivetti) vary in how large a face sits in its crop, from person to person (the
# detector's box is 1.06 to 1.39 of the frame, by person); the detector evens that out, so a model that only
# saw the hand framing named faces in photos far worse than the same faces as crops. Training on both framings
# closes most of that gap (validation faces, see TrainConfig.detector_views).
VIEW_SIDE = 180  # px a face is pasted at (validation photos at 120, 180 and 240 px were then named alike)
# At about 30 ms a face, views of FER2013's 28,709 training faces would take 14 minutes before training starts;
# a seeded sample of this many keeps it near 2.5 minutes.
VIEW_LIMIT = 5000


def detector_views(faces: np.ndarray, labels: np.ndarray, detector: FaceDetector | None = None,
                   limit: int = VIEW_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S) faces and their labels, followed by each face the detector finds when it is pasted into a photo,
    as the detector crops it (the framing of faces in photos and webcam frames), with its label. Of more than
    `limit` faces, a seeded sample of `limit` gets views."""
    detector = detector or FaceDetector()
    size = faces.shape[1]
    chosen = np.arange(len(faces))
    if len(faces) > limit:
        chosen = np.sort(np.random.default_rng(0).choice(len(faces), limit, replace=False))
    views, kept = [], []
    for i in chosen:
        face = faces[i]
        photo = place_faces([face], size=(VIEW_SIDE * 2, VIEW_SIDE * 2), side=VIEW_SIDE)
        found = extract_faces(photo, detector, size)
        if found:
            views.append(found[0].face)
            kept.append(i)
    if not views:  # faces the detector does not take for faces (drawn ones): nothing to add
        return faces, labels
    return np.concatenate([faces, np.stack(views).astype(faces.dtype)]), np.concatenate([labels, labels[kept]])


@dataclass(frozen=True)
class AugmentConfig:
    """Random training-time changes; each is the maximum of a uniform draw."""

    rotation_deg: float = 8.0
    shift: float = 0.06  # share of the side
    zoom: float = 0.08  # share of the scale
    flip: bool = True
    brightness: float = 0.1  # added, in [0, 1] units
    contrast: float = 0.15  # multiplier range around 1


def augment_faces(faces: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Randomly rotated, shifted, zoomed, flipped and relit copies of (N, S, S) float32 faces."""
    n, height, width = faces.shape
    out = np.empty_like(faces, dtype=np.float32)
    angles = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg, n)
    zooms = 1 + rng.uniform(-cfg.zoom, cfg.zoom, n)
    shifts = rng.uniform(-cfg.shift, cfg.shift, (n, 2)) * (width, height)
    flips = rng.random(n) < 0.5 if cfg.flip else np.zeros(n, bool)
    bright = rng.uniform(-cfg.brightness, cfg.brightness, n)
    contrast = 1 + rng.uniform(-cfg.contrast, cfg.contrast, n)
    centre = (width / 2, height / 2)
    for i in range(n):
        matrix = cv2.getRotationMatrix2D(centre, angles[i], zooms[i])
        matrix[:, 2] += shifts[i]
        face = _warp(faces[i], matrix)
        if flips[i]:
            face = face[:, ::-1]
        mean = face.mean()
        out[i] = (face - mean) * contrast[i] + mean + bright[i]
    return np.clip(out, 0.0, 1.0)


INFERENCE_ZOOMS = (0.96, 1.04)  # inside the training augmentation's zoom range, so the model has seen such faces


def _warp(face: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    height, width = face.shape
    return cv2.warpAffine(face.astype(np.float32), matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def zoom_faces(faces: np.ndarray, scale: float) -> np.ndarray:
    """(N, S, S) faces scaled by `scale` about their centre, same size (edges reflected)."""
    height, width = faces.shape[1:]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, scale)
    return np.stack([_warp(face, matrix) for face in faces]) if len(faces) else faces.astype(np.float32)


def inference_views(faces: np.ndarray, flip: bool = False, zoom: bool = False) -> list[np.ndarray]:
    """The faces, plus their mirror images (`flip`) and their `INFERENCE_ZOOMS` copies (`zoom`), for averaging."""
    views = [faces]
    if flip:
        views.append(np.ascontiguousarray(faces[:, :, ::-1]))
    if zoom:
        views += [zoom_faces(faces, scale) for scale in INFERENCE_ZOOMS]
    return views
