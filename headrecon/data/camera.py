"""Pinhole camera in the OpenCV convention: intrinsics, world-to-camera pose, image size.

Convention (used everywhere in headrecon):

* camera frame: x to the right of the image, y down the image, z forward (the viewing direction);
* ``x_cam = R @ x_world + t`` (``R``, ``t`` = world-to-camera), camera centre ``C = -R.T @ t``;
* pixel ``(u, v)`` = (column, row) covers ``[u, u+1) x [v, v+1)``; its centre is ``(u + 0.5, v + 0.5)``;
  ``project`` returns continuous image coordinates in that convention, so a ray through pixel ``(u, v)``
  projects back to ``(u + 0.5, v + 0.5)``;
* a projection matrix ``P = K [R | t]`` (3x4, or 4x4 with last row ``[0, 0, 0, 1]``) as stored in IDR/H3DS
  ``cameras.npz`` (``world_mat_i``) decomposes back into ``K, R, t`` with :meth:`Camera.from_projection`.

OpenGL/nerfstudio camera-to-world matrices (x right, y up, z backward) are converted explicitly with
:meth:`Camera.from_c2w_opengl`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import torch

from .errors import SceneError

__all__ = ["Camera", "look_at_rotation", "similarity_parts", "reduced_size"]

# OpenGL camera axes (x right, y up, z backward) -> OpenCV (x right, y down, z forward)
_GL_TO_CV = np.diag([1.0, -1.0, -1.0])


def _as_np(x, dtype=np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def look_at_rotation(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """World-to-camera rotation (OpenCV) of a camera at ``eye`` looking at ``target`` with ``up`` pointing up
    in the image (image y = down = ``-up`` projected)."""
    eye, target, up = _as_np(eye), _as_np(target), _as_np(up)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight along up: pick any perpendicular
        x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=0)


def similarity_parts(S, atol: float = 1e-6):
    """Split a 4x4 similarity ``S = [[s R, c], [0, 1]]`` into ``(s, R, c)``; ValueError when it is not one."""
    S = _as_np(S)
    if S.shape != (4, 4) or not np.all(np.isfinite(S)):
        raise ValueError(f"expected a finite 4x4 matrix, got shape {S.shape}")
    if not np.allclose(S[3], [0, 0, 0, 1], atol=atol):
        raise ValueError(f"last row must be [0, 0, 0, 1], got {S[3].tolist()}")
    A = S[:3, :3]
    det = np.linalg.det(A)
    if abs(det) < 1e-12:
        raise ValueError("matrix is singular")
    if det < 0:
        raise ValueError("matrix contains a reflection")
    s = det ** (1.0 / 3.0)
    R = A / s
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4):
        raise ValueError("matrix is not a similarity (uniform scale + rotation + translation)")
    return float(s), R, S[:3, 3].copy()


@dataclass
class Camera:
    """A pinhole camera: ``K`` (3x3), world-to-camera ``R`` (3x3) and ``t`` (3,), image ``width`` x ``height``.

    Arrays are float64 numpy. See the module docstring for the (OpenCV) convention.
    """

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int
    meta: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.K = _as_np(self.K).reshape(3, 3)
        self.R = _as_np(self.R).reshape(3, 3)
        self.t = _as_np(self.t).reshape(3)
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_projection(cls, P, width: int, height: int, source=None) -> "Camera":
        """Decompose ``P = K [R | t]`` (3x4 or 4x4, any non-zero scale, either sign) into a Camera.

        Uses an RQ decomposition with sign fixes so that ``K`` has a positive diagonal, ``K[2, 2] = 1`` and
        ``R`` is a proper rotation. ``source`` (a file name, key) only serves error messages.
        """
        P = _as_np(P)
        where = source if source is not None else "projection matrix"
        if P.shape == (4, 4):
            P = P[:3]
        if P.shape != (3, 4):
            raise SceneError(where, f"expected a 3x4 or 4x4 projection matrix, got shape {P.shape}")
        if not np.all(np.isfinite(P)):
            raise SceneError(where, "projection matrix contains NaN or inf")
        M = P[:, :3]
        scale = np.abs(M).max()
        if scale == 0 or abs(np.linalg.det(M / scale)) < 1e-12:
            raise SceneError(where, "projection matrix is singular (its left 3x3 block K R has no inverse)")
        K, R = scipy.linalg.rq(M)
        D = np.diag(np.sign(np.diag(K)))
        K, R = K @ D, D @ R  # K R unchanged since D @ D = I
        p4 = P[:, 3]
        if np.linalg.det(R) < 0:  # P is only defined up to scale: use -P
            R, p4 = -R, -p4
        t = np.linalg.solve(K, p4)
        K = K / K[2, 2]
        return cls(K=K, R=R, t=t, width=width, height=height)

    @classmethod
    def look_at(cls, eye, target, focal: float, width: int, height: int, up=(0.0, 1.0, 0.0), cx=None, cy=None
                ) -> "Camera":
        """Camera at ``eye`` looking at ``target``; square pixels of focal length ``focal`` (pixels),
        principal point at the image centre unless given."""
        R = look_at_rotation(eye, target, up)
        t = -R @ _as_np(eye)
        cx = width / 2.0 if cx is None else cx
        cy = height / 2.0 if cy is None else cy
        K = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
        return cls(K=K, R=R, t=t, width=width, height=height)

    @classmethod
    def from_c2w_opengl(cls, c2w, K, width: int, height: int) -> "Camera":
        """From an OpenGL/nerfstudio/Blender camera-to-world matrix (x right, y up, z backward)."""
        c2w = _as_np(c2w)
        rot_cv = c2w[:3, :3] @ _GL_TO_CV  # columns: camera axes (OpenCV) in world coordinates
        R = rot_cv.T
        t = -R @ c2w[:3, 3]
        return cls(K=K, R=R, t=t, width=width, height=height)

    # ------------------------------------------------------------------ properties
    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.R.T @ self.t

    @property
    def forward(self) -> np.ndarray:
        """Unit viewing direction (camera +z) in world coordinates."""
        return self.R[2].copy()

    @property
    def up(self) -> np.ndarray:
        """Unit image-up direction (camera -y) in world coordinates."""
        return -self.R[1]

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    def w2c(self) -> np.ndarray:
        """4x4 world-to-camera matrix."""
        M = np.eye(4)
        M[:3, :3], M[:3, 3] = self.R, self.t
        return M

    def c2w(self) -> np.ndarray:
        """4x4 camera-to-world matrix (OpenCV axes)."""
        M = np.eye(4)
        M[:3, :3], M[:3, 3] = self.R.T, self.center
        return M

    def c2w_opengl(self) -> np.ndarray:
        """4x4 camera-to-world matrix with OpenGL axes (x right, y up, z backward), as in nerfstudio."""
        M = self.c2w()
        M[:3, :3] = M[:3, :3] @ _GL_TO_CV
        return M

    def projection(self) -> np.ndarray:
        """3x4 ``K [R | t]``."""
        return self.K @ np.concatenate([self.R, self.t[:, None]], axis=1)

    def world_mat(self) -> np.ndarray:
        """4x4 ``K [R | t]`` with last row ``[0, 0, 0, 1]``, the IDR/H3DS ``world_mat_i``."""
        M = np.eye(4)
        M[:3] = self.projection()
        return M

    # ------------------------------------------------------------------ geometry
    def pixel_grid(self) -> np.ndarray:
        """All integer pixels ``(u, v)`` in row-major order (``v`` outer), int64 [H*W, 2]."""
        v, u = np.mgrid[0:self.height, 0:self.width]
        return np.stack([u.ravel(), v.ravel()], axis=1)

    def rays_np(self, pixels=None):
        """Like :meth:`rays` but float64 numpy (used by the CPU renderer)."""
        if pixels is None:
            pixels = self.pixel_grid()
        uv = _as_np(pixels).reshape(-1, 2) + 0.5
        hom = np.concatenate([uv, np.ones((len(uv), 1))], axis=1)
        d_cam = np.linalg.solve(self.K, hom.T).T
        d = d_cam @ self.R  # == (R.T @ d_cam.T).T
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        o = np.broadcast_to(self.center, d.shape).copy()
        return o, d

    def rays(self, pixels=None):
        """World-space rays through pixel centres ``(u + 0.5, v + 0.5)``.

        ``pixels``: integer ``(u, v)`` = (column, row) pairs [N, 2] (numpy or torch); None = every pixel in
        row-major order. Returns torch float32 ``(origins [N, 3], dirs [N, 3])`` with unit ``dirs``.
        """
        o, d = self.rays_np(pixels)
        return torch.from_numpy(o.astype(np.float32)), torch.from_numpy(d.astype(np.float32))

    def project(self, points, return_depth: bool = False):
        """Project world points [N, 3] to continuous image coordinates ``uv`` [N, 2] (see convention).

        Accepts numpy or torch (returns the same kind). With ``return_depth`` also returns the camera-frame
        depth z [N] (positive in front of the camera).
        """
        if isinstance(points, torch.Tensor):
            K = torch.as_tensor(self.K, dtype=points.dtype, device=points.device)
            R = torch.as_tensor(self.R, dtype=points.dtype, device=points.device)
            t = torch.as_tensor(self.t, dtype=points.dtype, device=points.device)
            xc = points.reshape(-1, 3) @ R.T + t
            uvw = xc @ K.T
        else:
            xc = _as_np(points).reshape(-1, 3) @ self.R.T + self.t
            uvw = xc @ self.K.T
        uv = uvw[:, :2] / uvw[:, 2:3]
        return (uv, xc[:, 2]) if return_depth else uv

    # ------------------------------------------------------------------ frames and resizing
    def transformed(self, S) -> "Camera":
        """The same camera expressed in a new world frame, where ``S`` (4x4) maps new-frame points to this
        camera's world frame (``x_old = S @ x_new``). For IDR/H3DS, ``S = scale_mat`` gives the camera in the
        normalised unit-sphere frame. ``S`` must be a similarity (uniform scale, rotation, translation)."""
        s, Rs, c = similarity_parts(S)
        R_new = self.R @ Rs
        t_new = (self.R @ c + self.t) / s
        return Camera(K=self.K.copy(), R=R_new, t=t_new, width=self.width, height=self.height, meta=dict(self.meta))

    def resized(self, width: int, height: int) -> "Camera":
        """The camera for the same view rendered at another resolution (pixel-corner convention kept)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return Camera(K=K, R=self.R.copy(), t=self.t.copy(), width=width, height=height, meta=dict(self.meta))

    def cropped(self, left: int, top: int, width: int, height: int) -> "Camera":
        """The camera of the image window ``[top:top + height, left:left + width]`` of this one's image (the
        principal point moves with the window's corner)."""
        K = self.K.copy()
        K[0, 2] -= left
        K[1, 2] -= top
        return Camera(K=K, R=self.R.copy(), t=self.t.copy(), width=width, height=height, meta=dict(self.meta))

    def copy(self) -> "Camera":
        return Camera(K=self.K.copy(), R=self.R.copy(), t=self.t.copy(), width=self.width, height=self.height,
                      meta=dict(self.meta))

    def to_torch(self, device=None, dtype=torch.float32) -> dict:
        """``{"K", "R", "t", "center"}`` as torch tensors (for the reconstruction code)."""
        return {k: torch.as_tensor(v, dtype=dtype, device=device)
                for k, v in (("K", self.K), ("R", self.R), ("t", self.t), ("center", self.center))}


def reduced_size(height: int, width: int, max_size: int) -> tuple:
    """``(width, height)`` of an image reduced so that its larger side is at most ``max_size`` (unchanged if
    already small enough or ``max_size`` <= 0): the size :func:`headrecon.recon.sampling.resize_view` gives."""
    if max_size <= 0 or max(height, width) <= max_size:
        return width, height
    s = max_size / float(max(height, width))
    return max(1, int(round(width * s))), max(1, int(round(height * s)))
