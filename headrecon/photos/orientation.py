"""2D hair orientation from photos (Wang et al., "Prior-Guided Multi-View 3D Head Reconstruction", Eq. 12).

A bank of ``n`` even-symmetric Gabor kernels (the real part of :func:`skimage.filters.gabor_kernel`), wave
directions ``theta_k = k pi / n`` in [0, pi), filters the grey image (:func:`scipy.ndimage.convolve`); per pixel
the strongest response picks ``theta*``. The kernel's wave runs along ``(cos theta, sin theta)`` in image
coordinates (x right, y down), so the strands run across it: the 2D orientation is ``d = (-sin theta*, cos
theta*)`` (defined up to sign). The confidence is the best response's share above the mean response (0 where the
image has no oriented texture).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["gabor_orientation", "orientation_vectors", "angular_error_deg", "reduce_orientation"]


def gabor_orientation(image, n_orientations: int = 32, wavelength_px: float = 4.0, bandwidth: float = 1.0):
    """``(theta [H,W], confidence [H,W])`` of a grey or RGB image (float in [0, 1] or uint8).

    ``theta`` is the winning kernel's wave direction in [0, pi) (see the module docstring for the strand
    direction); ``wavelength_px``: the stripe period the bank is tuned to (strands a few pixels apart).
    """
    from skimage.filters import gabor_kernel

    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)
    if img.ndim != 2:
        raise ValueError(f"image must be [H,W] or [H,W,C], got shape {np.shape(image)}")
    if img.max() > 1.0:
        img = img / 255.0
    img = img - ndimage.uniform_filter(img, size=int(4 * wavelength_px) | 1)  # remove the local mean (shading)
    thetas = np.arange(n_orientations) * np.pi / n_orientations
    responses = np.stack([np.abs(ndimage.convolve(img, np.real(gabor_kernel(1.0 / wavelength_px, theta=t,
                                                                         bandwidth=bandwidth)), mode="reflect"))
                          for t in thetas])
    k = responses.argmax(axis=0)
    best = np.take_along_axis(responses, k[None], axis=0)[0]
    mean = responses.mean(axis=0)
    conf = np.where(best > 0, (best - mean) / np.maximum(best, 1e-12), 0.0)
    return thetas[k], conf


def orientation_vectors(theta) -> np.ndarray:
    """Strand directions ``(-sin theta, cos theta)`` [..., 2] (x right, y down) of wave directions ``theta``."""
    theta = np.asarray(theta, dtype=np.float64)
    return np.stack([-np.sin(theta), np.cos(theta)], axis=-1)


def angular_error_deg(d_pred, d_true) -> np.ndarray:
    """Angle between undirected 2D orientations [...,2], degrees in [0, 90]."""
    a = np.asarray(d_pred, dtype=np.float64)
    b = np.asarray(d_true, dtype=np.float64)
    c = np.abs((a * b).sum(-1)) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(c, 0.0, 1.0)))


def reduce_orientation(theta, confidence, width: int, height: int):
    """``(theta, confidence)`` of a Gabor map reduced to [height, width] (the training images' size): per reduced
    pixel, the confidence-weighted mean of the doubled-angle vectors ``(cos 2 theta, sin 2 theta)`` over its box
    (orientations are defined up to sign, so they are averaged at twice their angle); the new confidence is that
    mean vector's length (at most the mean confidence; low where the strands disagree). Unchanged when the
    size already matches."""
    from PIL import Image

    theta = np.asarray(theta, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    if theta.shape == (height, width):
        return theta.copy(), conf.copy()

    def box(a):
        return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((width, height), Image.BOX),
                          dtype=np.float64)

    c, s, w = box(conf * np.cos(2 * theta)), box(conf * np.sin(2 * theta)), box(conf)
    r = np.hypot(c, s)
    return (0.5 * np.arctan2(s, c)) % np.pi, np.where(w > 0, r, 0.0)
