"""Reconstruction quality and the latent space: per-image MSE, PSNR and SSIM, error maps, 2-D
projections of codes (PCA or t-SNE) and interpolation between two faces' codes.

Faces are (N, S, S) float32 in [0, 1] (a single (S, S) face is taken as N = 1); codes are (N, D).
Pure NumPy/OpenCV/scikit-learn: no Keras here, so any encoder/decoder pair can be passed in.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from facelab.errors import FaceLabError

PSNR_CAP_DB = 100.0  # PSNR of an exact copy is infinite; capped so that means and JSON stay finite
SSIM_WINDOW = 11  # the Gaussian window of Wang et al. (2004): 11x11, sigma 1.5
SSIM_SIGMA = 1.5


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    # Accept one (S, S) face and (N, S, S, 1) model outputs as well as (N, S, S) batches.
    a = a[None] if a.ndim == 2 else a[..., 0] if a.ndim == 4 and a.shape[-1] == 1 else a
    b = b[None] if b.ndim == 2 else b[..., 0] if b.ndim == 4 and b.shape[-1] == 1 else b
    if a.shape != b.shape or a.ndim != 3:
        raise FaceLabError(f"cannot compare faces of shapes {a.shape} and {b.shape}: expected two (N, S, S) arrays")
    return a, b


def mse_per_image(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Mean squared pixel error of each image: (N,) float64."""
    a, b = _pair(original, reconstruction)
    return ((a - b) ** 2).mean(axis=(1, 2))


def psnr_per_image(original: np.ndarray, reconstruction: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio of each image in dB, 10*log10(range^2 / MSE), capped at `PSNR_CAP_DB`."""
    mse = mse_per_image(original, reconstruction)
    floor = data_range**2 / 10 ** (PSNR_CAP_DB / 10)
    return 10 * np.log10(data_range**2 / np.maximum(mse, floor))


def ssim_per_image(original: np.ndarray, reconstruction: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Structural similarity of each image (Wang et al. 2004, Gaussian 11x11 window, sigma 1.5): (N,).

    Local statistics use the Gaussian-weighted mean and (population) variance; borders are reflected
    rather than cropped, so a tiny image still has an SSIM.
    """
    a, b = _pair(original, reconstruction)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = np.empty(len(a))
    for i, (x, y) in enumerate(zip(a, b)):
        blur = lambda img: cv2.GaussianBlur(img, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA,  # noqa: E731
                                            borderType=cv2.BORDER_REFLECT)
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cov = blur(x * y) - mx * my
        ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        out[i] = ssim_map.mean()
    return out


def error_map(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Absolute pixel error |original - reconstruction|: (N, S, S) float32 in [0, 1]."""
    a, b = _pair(original, reconstruction)
    return np.abs(a - b).astype(np.float32)


def reconstruction_metrics(original: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """Mean MSE, PSNR (dB) and SSIM over a batch."""
    return {
        "mse": float(mse_per_image(original, reconstruction).mean()),
        "psnr": float(psnr_per_image(original, reconstruction).mean()),
        "ssim": float(ssim_per_image(original, reconstruction).mean()),
    }


def variety_kept(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """How much of the differences between the original faces their reconstructions keep: the pixels' spread
    across the reconstructions over their spread across the originals (about 0 when every face comes out as the
    same image, as after a few epochs; NaN for fewer than 2 faces)."""
    a, b = _pair(original, reconstruction)
    if len(a) < 2:
        return float("nan")
    spread = a.std(axis=0).mean()
    return float(b.std(axis=0).mean() / spread) if spread > 0 else float("nan")


def mean_face_baseline(train_faces: np.ndarray, test_faces: np.ndarray) -> dict[str, float]:
    """The metrics of "reconstructing" every test face as the mean training face: the floor to beat."""
    test = np.asarray(test_faces, np.float32)
    mean = np.asarray(train_faces, np.float32).mean(axis=0)
    return reconstruction_metrics(test, np.broadcast_to(mean, test.shape))


def project_codes(codes: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, D) codes -> (N, 2) points for plotting: PCA (default, fast, linear) or t-SNE (slow, local)."""
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) < 2:
        raise FaceLabError(f"need at least 2 codes of shape (N, D) to project, got {codes.shape}")
    if not np.isfinite(codes).all():
        raise FaceLabError("cannot project codes that contain NaN or infinity")
    if codes.shape[1] < 2:  # a 1-D code is plotted against zero
        return np.column_stack([codes[:, 0], np.zeros(len(codes))]).astype(np.float32)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(codes).astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE

        # scikit-learn requires perplexity < N; 30 is its default for larger sets.
        perplexity = float(min(30.0, max(1.0, (len(codes) - 1) / 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            codes).astype(np.float32)
    raise FaceLabError(f"unknown projection {method!r}: use 'pca' or 'tsne'")


def interpolate_codes(code_a: np.ndarray, code_b: np.ndarray, steps: int = 8) -> np.ndarray:
    """`steps` codes on the straight line from `code_a` to `code_b`, both ends included: (steps, D)."""
    a = np.asarray(code_a, np.float32).reshape(-1)
    b = np.asarray(code_b, np.float32).reshape(-1)
    if a.shape != b.shape:
        raise FaceLabError(f"cannot interpolate between codes of sizes {a.size} and {b.size}")
    if steps < 2:
        raise FaceLabError(f"interpolation needs at least 2 steps, got {steps}")
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return (1 - t) * a + t * b


def interpolate_faces(encode: Callable[[np.ndarray], np.ndarray], decode: Callable[[np.ndarray], np.ndarray],
                      face_a: np.ndarray, face_b: np.ndarray, steps: int = 8) -> np.ndarray:
    """Encode two (S, S) faces, walk the line between their codes and decode: (steps, S, S) faces."""
    codes = encode(np.stack([np.asarray(face_a, np.float32), np.asarray(face_b, np.float32)]))
    faces = np.asarray(decode(interpolate_codes(codes[0], codes[1], steps)), np.float32)
    return faces[..., 0] if faces.ndim == 4 else faces
