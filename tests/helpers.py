"""Small builders shared by tests: photos made from real Olivetti faces, damaged zips."""

from __future__ import annotations

import cv2
import numpy as np


def photo_with_faces(faces: list[np.ndarray], width: int = 320, height: int = 240, face_px: int = 128,
                     background: int = 128) -> np.ndarray:
    """A BGR uint8 'photo': each 64x64 uint8 face upscaled to face_px and placed side by side, centred."""
    frame = np.full((height, width), background, np.uint8)
    gap = (width - len(faces) * face_px) // (len(faces) + 1)
    top = (height - face_px) // 2
    for i, face in enumerate(faces):
        left = gap + i * (face_px + gap)
        frame[top: top + face_px, left: left + face_px] = cv2.resize(face, (face_px, face_px),
                                                                     interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)


def patch_zip_headers(data: bytes, local: int, central: int, value: int) -> bytes:
    """The zip with a 2-byte field of every entry's local and central header (at those offsets) set to `value`."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        start = out.find(signature)
        while start != -1:
            out[start + offset:start + offset + 2] = value.to_bytes(2, "little")
            start = out.find(signature, start + 4)
    return bytes(out)


def set_distance_threshold(at, value: float):
    """Move an AppTest page's gallery threshold (a select slider of distances) to the offered value nearest
    `value` (inf: the largest) and rerun."""
    import math

    widget = next(s for s in at.select_slider if s.label.startswith("Maximum code distance"))
    offered = [float(option.split()[0]) for option in widget.options]  # "0.1855 (calibrated)" -> 0.1855
    return widget.set_value(offered[-1] if math.isinf(value) else min(offered, key=lambda v: abs(v - value))).run()
