"""An offline, deterministic set of synthetic faces (drawn with OpenCV) for smoke tests and demos.

Each identity has its own face geometry (head shape, eyes, brows, nose, mouth, hair, skin tone);
each image varies position, rotation, scale, lighting, expression and noise. They are cartoons, not
photos, and are always named as synthetic.
"""

from __future__ import annotations

import cv2
import numpy as np

_CANVAS = 128  # drawn at 2x and shrunk, for smooth edges


def _identity(rng: np.random.Generator) -> dict[str, float]:
    return {
        "head_w": rng.uniform(0.30, 0.40), "head_h": rng.uniform(0.40, 0.48), "skin": rng.uniform(0.45, 0.8),
        "eye_dx": rng.uniform(0.12, 0.19), "eye_y": rng.uniform(-0.10, 0.0), "eye_r": rng.uniform(0.03, 0.055),
        "brow_dy": rng.uniform(0.05, 0.09), "brow_tilt": rng.uniform(-0.04, 0.04), "brow_w": rng.uniform(1, 3.5),
        "nose_len": rng.uniform(0.06, 0.16), "nose_w": rng.uniform(0.02, 0.06),
        "mouth_y": rng.uniform(0.17, 0.27), "mouth_w": rng.uniform(0.08, 0.17),
        "hair": rng.uniform(0.0, 0.35), "hair_dark": rng.uniform(0.05, 0.35), "glasses": float(rng.random() < 0.25),
        "bg": rng.uniform(0.2, 0.9),
    }


def _draw(p: dict[str, float], rng: np.random.Generator, size: int) -> np.ndarray:
    c = _CANVAS
    img = np.full((c, c), p["bg"] * 255, np.float32)
    px = lambda v: int(round(v * c))  # noqa: E731
    cx, cy = c // 2, c // 2
    hair = p["hair_dark"] * 255
    if p["hair"] > 0.05:  # hair as a larger dark ellipse behind the head
        cv2.ellipse(img, (cx, cy - px(0.06)), (px(p["head_w"] + 0.04), px(p["head_h"] + p["hair"] * 0.3)), 0, 180, 360,
                    hair, -1, cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy), (px(p["head_w"]), px(p["head_h"])), 0, 0, 360, p["skin"] * 255, -1, cv2.LINE_AA)
    dark = p["skin"] * 255 * 0.35
    blink = rng.random() < 0.15
    for side in (-1, 1):
        ex, ey = cx + side * px(p["eye_dx"]), cy + px(p["eye_y"])
        if blink:
            cv2.line(img, (ex - px(p["eye_r"]), ey), (ex + px(p["eye_r"]), ey), dark, 2, cv2.LINE_AA)
        else:
            cv2.circle(img, (ex, ey), px(p["eye_r"]), 250, -1, cv2.LINE_AA)
            cv2.circle(img, (ex, ey), max(2, px(p["eye_r"] * 0.5)), dark * 0.5, -1, cv2.LINE_AA)
        by = ey - px(p["brow_dy"])
        tilt = side * px(p["brow_tilt"])
        cv2.line(img, (ex - px(0.06), by + tilt), (ex + px(0.06), by - tilt), hair, int(p["brow_w"]) + 1, cv2.LINE_AA)
        if p["glasses"]:
            cv2.circle(img, (ex, ey), px(p["eye_r"] + 0.035), 30, 2, cv2.LINE_AA)
    nose_top, nose_bot = cy + px(p["eye_y"]) + px(0.04), cy + px(p["eye_y"] + p["nose_len"]) + px(0.04)
    pts = np.array([[cx, nose_top], [cx - px(p["nose_w"]), nose_bot], [cx + px(p["nose_w"]), nose_bot]], np.int32)
    cv2.polylines(img, [pts], False, dark, 2, cv2.LINE_AA)
    smile = rng.uniform(-0.04, 0.07)  # expression: frown to smile
    my = cy + px(p["mouth_y"])
    mw = px(p["mouth_w"])
    curve = [(cx + int(t * mw), my + int(smile * c * (1 - t * t))) for t in np.linspace(-1, 1, 9)]
    cv2.polylines(img, [np.array(curve, np.int32)], False, dark * 0.7, 3, cv2.LINE_AA)
    return img


def synthetic_faces(people: int = 12, per_person: int = 20, seed: int = 0, size: int = 64
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N, size, size) float32 faces in [0, 1], (N,) labels and names; the same for the same seed."""
    rng = np.random.default_rng(seed)
    identities = [_identity(rng) for _ in range(people)]
    faces, labels = [], []
    for label, ident in enumerate(identities):
        for _ in range(per_person):
            img = _draw(ident, rng, size)
            angle, zoom = rng.uniform(-10, 10), rng.uniform(0.9, 1.1)
            matrix = cv2.getRotationMatrix2D((_CANVAS / 2, _CANVAS / 2), angle, zoom)
            matrix[:, 2] += rng.uniform(-0.06, 0.06, 2) * _CANVAS
            img = cv2.warpAffine(img, matrix, (_CANVAS, _CANVAS), borderMode=cv2.BORDER_REPLICATE)
            # lighting: a linear gradient in a random direction, plus overall gain
            yy, xx = np.mgrid[-1:1:_CANVAS * 1j, -1:1:_CANVAS * 1j]
            theta = rng.uniform(0, 2 * np.pi)
            light = 1 + rng.uniform(0, 0.35) * (np.cos(theta) * xx + np.sin(theta) * yy)
            img = img * light * rng.uniform(0.8, 1.15)
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) / 255.0
            img += rng.normal(0, 0.03, img.shape)
            faces.append(np.clip(img, 0, 1).astype(np.float32))
            labels.append(label)
    names = [f"synthetic-{i + 1:02d}" for i in range(people)]
    return np.stack(faces), np.asarray(labels, np.int64), names
