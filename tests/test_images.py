"""Safe decoding: every odd file either decodes to a sane BGR image or gets a clear BadInputError."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facelab.errors import BadInputError
from facelab.images import read_image


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _huge_png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge size, with a tiny (wrong) body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_grey_png_becomes_bgr(olivetti_uint8):
    faces, _ = olivetti_uint8
    img = read_image(_png_bytes(Image.fromarray(faces[0])))
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[:, :, 0], faces[0])


def test_sixteen_bit_png_is_rescaled(olivetti_uint8):
    faces, _ = olivetti_uint8
    wide = faces[0].astype(np.uint16) * 257  # full 16-bit range
    img = read_image(_png_bytes(Image.fromarray(wide)))
    assert img.dtype == np.uint8
    assert np.abs(img[:, :, 0].astype(int) - faces[0]).max() <= 1


def test_rgba_palette_and_cmyk_decode(olivetti_uint8):
    faces, _ = olivetti_uint8
    rgb = Image.fromarray(faces[3]).convert("RGB")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    face = faces[3].astype(np.float64)
    # Half-transparent: laid over white, as a viewer shows it (not over black, not with the alpha dropped).
    img = read_image(_png_bytes(rgba))
    assert img.shape == (64, 64, 3)
    assert np.abs(img[..., 0] - (face * 128 / 255 + 255 * 127 / 255)).max() <= 1
    for data, min_corr, max_error in ((_png_bytes(rgb.convert("P")), 0.9, None),  # 256 colours: dithered
                                      (_jpeg_bytes(rgb.convert("CMYK")), 0.99, 5.0)):  # not inverted
        img = read_image(data)
        assert img.shape == (64, 64, 3)
        gray = img.astype(np.float64).mean(axis=2)
        assert np.corrcoef(gray.ravel(), face.ravel())[0, 1] > min_corr
        if max_error is not None:
            assert np.abs(gray - face).mean() < max_error


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    out = read_image(_jpeg_bytes(img, exif=exif.tobytes()))
    assert out.shape[:2] == (40, 20)  # portrait after applying EXIF
    assert out[:15].mean() > 200 and out[-15:].mean() < 60  # white half now on top


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty file"),
        (b"this is a text file, not a picture\n" * 10, "not an image"),
        (_huge_png_header(8000, 7000), "megapixels"),
    ],
)
def test_bad_files_get_clear_messages(data, needle):
    with pytest.raises(BadInputError, match=needle):
        read_image(data, name="upload.png")


def test_truncated_jpeg_is_refused(olivetti_uint8):
    faces, _ = olivetti_uint8
    data = _jpeg_bytes(Image.fromarray(faces[0]).resize((256, 256)))
    with pytest.raises(BadInputError, match="upload.jpg: corrupt or truncated"):
        read_image(data[: len(data) // 2], name="upload.jpg")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(BadInputError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_folders_and_pipes_are_not_read_as_images(tmp_path):
    import os

    with pytest.raises(BadInputError, match="not a file"):
        read_image(tmp_path)
    os.mkfifo(tmp_path / "pipe.png")  # reading it would wait for a writer forever
    with pytest.raises(BadInputError, match="pipe.png: not a file"):
        read_image(tmp_path / "pipe.png")
