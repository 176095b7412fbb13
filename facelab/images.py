"""Safe image decoding: every way a user's file can be odd ends in a `BadInputError`, not a traceback.

Pillow does the decoding here rather than `cv2.imdecode` because it reads the header first (so a
50-megapixel image is refused before its pixels are decoded), applies EXIF orientation, and
converts 16-bit, palette, RGBA, CMYK and GIF images; OpenCV takes over from the BGR array.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facelab.errors import BadInputError

MAX_PIXELS = 50_000_000  # images of 50 megapixels and more are refused before full decoding
MAX_FILE_BYTES = 64 * 1024 * 1024
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".gif", ".webp", ".tif", ".tiff")


def read_image(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Decode an image file (path or bytes) to `img_bgr`: uint8 (H, W, 3), upright per EXIF."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    data = _read_bytes(source, label)
    if not data:
        raise BadInputError(f"{label}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height >= MAX_PIXELS:
                raise BadInputError(
                    f"{label}: {width}x{height} is {width * height / 1e6:.0f} megapixels; "
                    f"images of {MAX_PIXELS // 1_000_000} megapixels or more are refused"
                )
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb_array(img)
    except BadInputError:
        raise
    except UnidentifiedImageError:
        raise BadInputError(f"{label}: not an image, or an image format FaceLab cannot read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise BadInputError(f"{label}: corrupt or truncated image ({err})") from None
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise BadInputError(f"{label}: image is only {rgb.shape[1]}x{rgb.shape[0]} pixels")
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _read_bytes(source: str | Path | bytes, label: str) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as err:
            raise BadInputError(f"{label}: cannot read ({err.strerror or err})") from None
        if size > MAX_FILE_BYTES:
            raise BadInputError(f"{label}: file is {size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB")
        if not path.is_file():  # a folder, a FIFO (reading one would wait forever), a device
            raise BadInputError(f"{label}: not a file")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise BadInputError(f"{label}: cannot read ({err.strerror or err})") from None
    if len(data) > MAX_FILE_BYTES:
        raise BadInputError(f"{label}: file is {len(data) / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB")
    return data


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 RGB; 16/32-bit grey is rescaled, transparency goes over white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))
