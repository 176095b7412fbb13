"""Reconstruction metrics against hand computations on tiny arrays; projections and interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facelab.errors import FaceLabError
from facelab.reconstruction import (
    PSNR_CAP_DB,
    error_map,
    interpolate_codes,
    interpolate_faces,
    mean_face_baseline,
    mse_per_image,
    project_codes,
    psnr_per_image,
    reconstruction_metrics,
    ssim_per_image,
)


def test_mse_and_psnr_match_a_hand_computation():
    a = np.zeros((2, 2, 2), np.float32)
    b = a.copy()
    b[0, 0, 0] = 0.5  # image 0: one pixel off by 0.5 -> MSE 0.25 / 4
    b[1] = 0.1  # image 1: every pixel off by 0.1 -> MSE 0.01
    assert mse_per_image(a, b) == pytest.approx([0.0625, 0.01])
    assert psnr_per_image(a, b) == pytest.approx([10 * math.log10(1 / 0.0625), 20.0])
    assert psnr_per_image(a, b)[0] == pytest.approx(12.0412, abs=1e-4)


def test_psnr_of_an_exact_copy_is_capped_not_infinite():
    a = np.full((1, 4, 4), 0.3, np.float32)
    assert psnr_per_image(a, a)[0] == PSNR_CAP_DB


def test_ssim_matches_a_hand_computation_on_flat_images():
    # Flat images have zero variance and covariance, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1).
    a = np.full((1, 5, 5), 0.2)
    b = np.full((1, 5, 5), 0.6)
    c1 = (0.01) ** 2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    assert ssim_per_image(a, b)[0] == pytest.approx(expected, rel=1e-6)


def test_ssim_is_one_for_identical_images_and_lower_for_noise(olivetti):
    faces = olivetti.images[:3]
    assert ssim_per_image(faces, faces) == pytest.approx(np.ones(3))
    noisy = np.clip(faces + np.random.default_rng(0).normal(0, 0.1, faces.shape), 0, 1)
    assert (ssim_per_image(faces, noisy) < 0.9).all()
    # A stronger distortion scores lower.
    noisier = np.clip(faces + np.random.default_rng(0).normal(0, 0.3, faces.shape), 0, 1)
    assert (ssim_per_image(faces, noisier) < ssim_per_image(faces, noisy)).all()


def test_error_map_and_shapes_accept_single_faces_and_channel_axis():
    a = np.zeros((3, 3), np.float32)
    b = np.eye(3, dtype=np.float32)[..., None][None]  # (1, 3, 3, 1), as a model returns
    emap = error_map(a, b)
    assert emap.shape == (1, 3, 3) and emap.dtype == np.float32
    assert emap[0].tolist() == np.eye(3).tolist()
    with pytest.raises(FaceLabError, match="shapes"):
        mse_per_image(np.zeros((2, 3, 3)), np.zeros((2, 4, 4)))


def test_reconstruction_metrics_and_mean_face_baseline(olivetti):
    train, test = olivetti.images[:200], olivetti.images[200:]
    base = mean_face_baseline(train, test)
    mean = train.mean(axis=0)
    assert base["mse"] == pytest.approx(float(((test - mean) ** 2).mean()), rel=1e-5)
    assert set(reconstruction_metrics(test, test)) == {"mse", "psnr", "ssim"}


def test_projection_pca_and_tsne(olivetti):
    codes = olivetti.images[:40].reshape(40, -1)
    pca = project_codes(codes, "pca")
    assert pca.shape == (40, 2) and np.isfinite(pca).all()
    # PCA's first axis carries the most variance.
    assert pca[:, 0].var() >= pca[:, 1].var()
    tsne = project_codes(codes[:12], "tsne")
    assert tsne.shape == (12, 2) and np.isfinite(tsne).all()
    with pytest.raises(FaceLabError, match="unknown projection"):
        project_codes(codes, "umap")
    with pytest.raises(FaceLabError, match="at least 2"):
        project_codes(codes[:1])


def test_interpolation_walks_the_line_between_codes():
    line = interpolate_codes(np.array([0.0, 2.0]), np.array([1.0, 0.0]), steps=3)
    assert line.tolist() == [[0.0, 2.0], [0.5, 1.0], [1.0, 0.0]]
    with pytest.raises(FaceLabError):
        interpolate_codes(np.zeros(2), np.zeros(3))
    # With an identity "autoencoder" the middle face is the pixel average of the ends.
    a, b = np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)
    faces = interpolate_faces(lambda f: f.reshape(len(f), -1), lambda c: c.reshape(len(c), 4, 4), a, b, steps=5)
    assert faces.shape == (5, 4, 4)
    assert faces[2] == pytest.approx(np.full((4, 4), 0.5))


def test_variety_kept_is_zero_for_one_image_for_all_and_one_for_a_copy():
    from facelab.reconstruction import variety_kept

    faces = np.stack([np.zeros((4, 4)), np.ones((4, 4))]).astype(np.float32)  # per-pixel spread 0.5
    assert variety_kept(faces, faces) == pytest.approx(1.0)
    assert variety_kept(faces, np.full_like(faces, 0.5)) == 0.0  # every face rebuilt as the same grey
    assert variety_kept(faces, faces * 0.5) == pytest.approx(0.5)
    assert np.isnan(variety_kept(faces[:1], faces[:1]))
