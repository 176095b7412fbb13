"""Detection, alignment, cropping and augmentation on real Olivetti faces placed in photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facelab.preprocess import (
    AugmentConfig,
    Box,
    FaceDetector,
    align_face,
    augment_faces,
    detector_views,
    extract_faces,
    faces_in_image,
    faces_left_to_right,
    inference_views,
    to_face,
    zoom_faces,
)
from tests.helpers import photo_with_faces


def test_to_face_normalises_any_input():
    colour = np.full((100, 80, 3), 255, np.uint8)
    face = to_face(colour)
    assert face.shape == (64, 64) and face.dtype == np.float32
    assert np.allclose(face, 1.0)
    assert to_face(np.zeros((10, 10), np.float64)).max() == 0.0
    grey = np.full((64, 64), 0.5, np.float32)
    grey[0, 0] = 1.02  # a [0, 1] face with a little overshoot stays grey (it was read as 0..255 and went black)
    assert to_face(grey).mean() == pytest.approx(0.5, abs=0.01)
    assert to_face(np.full((64, 64), 128.0)).mean() == pytest.approx(128 / 255)  # 0..255 floats


def test_detector_finds_one_face_per_photo(olivetti_uint8):
    faces, _ = olivetti_uint8
    detector = FaceDetector()
    found = [len(detector.detect(photo_with_faces([faces[i]]))) for i in range(0, 400, 10)]
    assert sum(n == 1 for n in found) >= 36  # of 40 people's first image
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []


def test_detector_finds_two_faces_and_boxes_are_in_place(olivetti_uint8):
    faces, _ = olivetti_uint8
    photo = photo_with_faces([faces[0], faces[20]], width=480)
    boxes = FaceDetector().detect(photo)
    assert len(boxes) == 2
    centres = sorted(b.x + b.w / 2 for b in boxes)
    assert abs(centres[0] - 160) < 25 and abs(centres[1] - 320) < 25  # faces sit at x=160 and x=320


def test_crop_matches_the_original_face(olivetti_uint8):
    faces, _ = olivetti_uint8
    detector = FaceDetector()
    correlations = []
    for i in range(0, 400, 25):
        found = extract_faces(photo_with_faces([faces[i]]), detector)
        if found:
            original = faces[i].astype(np.float32) / 255
            correlations.append(np.corrcoef(found[0].face.ravel(), original.ravel())[0, 1])
    assert len(correlations) >= 14
    assert np.median(correlations) > 0.6  # the Olivetti framing is recovered, not just "a face"


def test_alignment_levels_a_tilted_face(olivetti_uint8):
    faces, _ = olivetti_uint8
    detector = FaceDetector()
    upright = photo_with_faces([faces[0]], width=400, height=400, face_px=200)
    rotation = cv2.getRotationMatrix2D((200, 200), 12, 1.0)
    tilted = cv2.warpAffine(upright, rotation, (400, 400), borderMode=cv2.BORDER_REPLICATE)
    box = detector.detect(tilted)[0]
    face, aligned = align_face(tilted, box, detector)
    plain, _ = align_face(tilted, box, None)
    reference = extract_faces(upright, detector)[0].face
    assert aligned
    score = lambda f: np.corrcoef(f.ravel(), reference.ravel())[0, 1]  # noqa: E731
    assert score(face) > score(plain)


def test_a_large_face_is_averaged_down_not_aliased():
    # A 1-pixel checkerboard shrunk 4x must come out flat grey; sampling it (bilinear) gives stripes instead.
    board = ((np.indices((400, 400)).sum(axis=0) % 2) * 255).astype(np.uint8)
    face, _ = align_face(board, Box(50, 50, 300, 300), None)
    assert face.shape == (64, 64)
    assert abs(face.mean() - 0.5) < 0.02 and face.std() < 0.05


def test_crop_framing_is_the_same_shrunk_or_not(olivetti_uint8):
    # The same photo at two sizes gives the same crop: shrinking first keeps the crop where it was.
    faces, _ = olivetti_uint8
    photo = photo_with_faces([faces[3]], width=400, height=400, face_px=200)
    box = Box(120, 110, 160, 160)
    small_photo = cv2.resize(photo, (100, 100), interpolation=cv2.INTER_AREA)
    large, _ = align_face(photo, box, None)
    small, _ = align_face(small_photo, Box(30, 27, 40, 40), None)  # enlarged in the warp, never shrunk
    assert np.corrcoef(large.ravel(), small.ravel())[0, 1] > 0.97


def test_detector_views_add_the_faces_as_the_detector_frames_them(olivetti):
    faces, labels = olivetti.images[:20], olivetti.labels[:20]  # two people
    x, y = detector_views(faces, labels)
    assert np.array_equal(x[:20], faces) and np.array_equal(y[:20], labels)
    views, view_labels = x[20:], y[20:]
    assert len(views) >= 15 and views.shape[1:] == faces.shape[1:]
    # A view is its own face reframed: its nearest original (by correlation) is of the same person.
    nearest = [np.argmax([np.corrcoef(v.ravel(), f.ravel())[0, 1] for f in faces]) for v in views]
    assert np.mean(labels[nearest] == view_labels) >= 0.9
    assert not any(np.array_equal(v, faces[i]) for v, i in zip(views, nearest))
    few, few_labels = detector_views(faces, labels, limit=5)  # a large data set: views of a sample only
    assert 20 < len(few) <= 25 and len(few_labels) == len(few)


def test_box_scaling():
    assert Box(10, 20, 30, 40).scaled(2) == Box(20, 40, 60, 80)


def test_augmentation_is_seeded_and_changes_faces(olivetti):
    faces = olivetti.images[:8]
    a = augment_faces(faces, np.random.default_rng(1))
    b = augment_faces(faces, np.random.default_rng(1))
    c = augment_faces(faces, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == faces.shape and a.min() >= 0 and a.max() <= 1
    still = augment_faces(faces, np.random.default_rng(1), AugmentConfig(0, 0, 0, False, 0, 0))
    np.testing.assert_allclose(still, faces, atol=1e-5)


def test_zoom_and_inference_views(olivetti):
    faces = olivetti.images[:3]
    np.testing.assert_allclose(zoom_faces(faces, 1.0), faces, atol=1e-6)
    dot = np.zeros((1, 64, 64), np.float32)
    dot[0, 32, 48] = 1.0  # 16 px right of the centre (32, 32)
    assert np.argmax(zoom_faces(dot, 1.25)[0, 32]) == 52  # 16 * 1.25 = 20 px out
    assert np.argmax(zoom_faces(dot, 0.75)[0, 32]) == 44
    assert len(inference_views(faces)) == 1
    views = inference_views(faces, flip=True, zoom=True)
    assert len(views) == 4 and all(v.shape == faces.shape for v in views)
    np.testing.assert_array_equal(views[1], faces[:, :, ::-1])
    assert zoom_faces(faces[:0], 1.1).shape == (0, 64, 64)


def test_faces_in_image_uses_crops_whole_and_searches_photos(olivetti_uint8):
    faces, _ = olivetti_uint8
    detector = FaceDetector()
    crop = faces_in_image(cv2.cvtColor(faces[5], cv2.COLOR_GRAY2BGR), detector)
    assert len(crop) == 1 and crop[0].box == Box(0, 0, 64, 64)
    np.testing.assert_allclose(crop[0].face, faces[5] / 255, atol=1e-6)
    photo = faces_in_image(photo_with_faces([faces[0], faces[20]], width=480), detector)
    assert len(photo) == 2 and all(f.box.w > 100 for f in photo)
    assert faces_in_image(np.full((240, 320, 3), 128, np.uint8), detector) == []


def test_faces_are_numbered_left_to_right_whatever_their_size(olivetti_uint8):
    faces, _ = olivetti_uint8
    photo = np.full((300, 520, 3), 128, np.uint8)
    photo[90:210, 20:140] = cv2.cvtColor(cv2.resize(faces[0], (120, 120)), cv2.COLOR_GRAY2BGR)  # small, left
    photo[30:270, 260:500] = cv2.cvtColor(cv2.resize(faces[20], (240, 240)), cv2.COLOR_GRAY2BGR)  # large, right
    detector = FaceDetector()
    assert [f.box.x > 200 for f in faces_in_image(photo, detector)] == [True, False]  # largest first
    assert [f.box.x > 200 for f in faces_left_to_right(photo, detector)] == [False, True]


def test_faces_that_fill_or_touch_the_photo_are_found(olivetti_uint8):
    # A Haar window needs forehead and cheeks around a face: with no margin, 0 of these 10 tight 256 px crops and
    # 0 of the 4 faces of a row of 192 px crops were found, and enrolment said "no face found" for each photo.
    from facelab.enrol import crops_from_photos

    faces, _ = olivetti_uint8
    detector = FaceDetector()
    tight = [cv2.resize(faces[i], (256, 256)) for i in [*range(0, 400, 40), 17]]  # 17: found only with margin 0.5
    found = [faces_in_image(img, detector) for img in tight]
    assert all(len(f) == 1 for f in found)
    assert all(f[0].box.x >= 0 and f[0].box.y >= 0 and f[0].box.x + f[0].box.w <= 256 for f in found)  # clipped
    assert all(c.face is not None for c in crops_from_photos([(f"p{i}.png", img) for i, img in enumerate(tight)]))
    row = np.hstack([cv2.resize(faces[i], (192, 192)) for i in (0, 100, 200, 300)])
    assert len(faces_in_image(row, detector)) == 4
