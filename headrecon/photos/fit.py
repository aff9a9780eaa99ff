"""A head placed in a scene from its photographs: robust triangulation of the face-mesh landmarks and the fit of
the sparse ICT morphable model (:mod:`headrecon.photos.model`) to them.

* :func:`triangulate`: each landmark from every view that sees it (linear DLT), RANSAC over view pairs when three
  or more views see it: a missed detection or an outlier view does not move the point. Returns the points, which
  views agreed, and the reprojection errors.
* :func:`fit_head`: the similarity ``ICT mm -> scene units`` (rigid when the scene is in millimetres: the
  prior was trained at metric scale) and the identity weights ``w`` of the morphable model. With two or more views
  that found the face: a robust (Huber, IRLS) fit to the triangulated points, alternating the pose (Umeyama) and
  the identity (ridge least squares with the model's N(0, 1) prior); then every view's 2D landmarks refine it
  (reprojection error measured in mm at the head's depth, Huber, L-BFGS). Landmarks whose surface is turned away
  from a view (the mean model posed by PnP in that view) are left out there: the detector guesses them. With one
  view: the pose starts from
  OpenCV's PnP with the mean model and the same 2D refinement fits pose and identity (depth then comes from the
  model's size). Views whose landmarks disagree with the fit (median error > 3x the others' and > 6 mm) are
  dropped and the fit is repeated.

Units: pixel coordinates as in :class:`headrecon.data.Camera`; the residuals that :class:`HeadFit` reports are in
millimetres of the fitted head.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from ..priors.normalization import umeyama
from .detect import H3DS_MEDIAPIPE, N_MEDIAPIPE
from .model import LandmarkModel, load_landmark_model

__all__ = ["HeadFit", "CameraFit", "triangulate", "umeyama", "fit_head", "fit_cameras", "NOISE_MM"]

NOISE_MM = 2.5       # typical distance between a detected landmark and its model point (the model's spread_mm)
HUBER_MM = 3.0
OUTLIER_MM = 10.0    # a triangulated landmark farther than this from the fitted model is replaced by the model's
VISIBLE_COS = 0.25   # a landmark counts in a view when its surface faces the camera within ~75 degrees


def _projections(cameras) -> np.ndarray:
    return np.stack([c.projection() for c in cameras])  # [V, 3, 4]


def _dlt(P: np.ndarray, uv: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Batched linear triangulation: ``P`` [V,3,4], ``uv`` [V,N,2], ``use`` [V,N] bool -> [N,3] (nan where fewer
    than two views are used)."""
    V, N = use.shape
    u, v = uv[..., 0], uv[..., 1]
    r1 = u[..., None] * P[:, None, 2] - P[:, None, 0]          # [V, N, 4]
    r2 = v[..., None] * P[:, None, 2] - P[:, None, 1]
    A = np.concatenate([r1, r2], 0) * np.concatenate([use, use], 0)[..., None]   # [2V, N, 4]
    A = np.transpose(A, (1, 0, 2))                              # [N, 2V, 4]
    A = A / np.maximum(np.linalg.norm(A, axis=2, keepdims=True), 1e-12)
    _, _, Vt = np.linalg.svd(A)
    h = Vt[:, -1]
    X = h[:, :3] / np.where(np.abs(h[:, 3:]) < 1e-12, np.nan, h[:, 3:])
    X[use.sum(0) < 2] = np.nan
    return X


def _reprojection(P: np.ndarray, X: np.ndarray, uv: np.ndarray):
    """Errors [V, N] (pixels; inf behind a camera or for nan points)."""
    Xh = np.concatenate([X, np.ones((len(X), 1))], 1)
    x = np.einsum("vij,nj->vni", P, Xh)
    z = x[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.linalg.norm(x[..., :2] / z[..., None] - uv, axis=-1)
    e[~np.isfinite(e) | (z <= 0)] = np.inf
    return e


def triangulate(cameras, points2d, threshold_px=None):
    """Robust multi-view triangulation.

    Args:
        cameras: V :class:`headrecon.data.Camera` (scene units).
        points2d: V arrays [N, 2] of pixel positions (nan rows: that view does not see the point), or ``None`` for
            a view without a detection.
        threshold_px: inlier threshold per view (default: 3 % of the diagonal of that view's landmark box).

    Returns ``(X [N, 3], inliers [V, N] bool, errors [V, N] px)``; X is nan where fewer than two views agree.
    """
    V = len(cameras)
    have = np.array([p is not None for p in points2d])
    N = next(len(p) for p in points2d if p is not None)
    uv = np.zeros((V, N, 2))
    for k, p in enumerate(points2d):
        if p is not None:
            uv[k] = p
    det = np.repeat(have[:, None], N, 1) & np.isfinite(uv).all(-1)   # nan: this view does not see that point
    uv = np.nan_to_num(uv)
    if threshold_px is None:
        thr = np.array([0.03 * np.linalg.norm(np.nanmax(p, 0) - np.nanmin(p, 0)) if p is not None else 0.0
                        for p in points2d])
    else:
        thr = np.full(V, float(threshold_px))
    P = _projections(cameras)
    views = np.nonzero(have)[0]
    if len(views) < 2:
        return np.full((N, 3), np.nan), np.zeros((V, N), bool), np.full((V, N), np.inf)
    if len(views) == 2:
        inl = det.copy()
    else:  # RANSAC over view pairs: keep, per point, the pair with most agreeing views (then the smallest error)
        best_n = np.full(N, -1)
        best_e = np.full(N, np.inf)
        inl = np.zeros((V, N), bool)
        for a, b in itertools.combinations(views, 2):
            use = np.zeros((V, N), bool)
            use[[a, b]] = True
            X = _dlt(P, uv, use)
            e = _reprojection(P, X, uv)
            ok = det & (e < thr[:, None])
            n = ok.sum(0)
            s = np.where(ok, e, 0.0).sum(0)
            better = (n > best_n) | ((n == best_n) & (s < best_e))
            best_n = np.where(better, n, best_n)
            best_e = np.where(better, s, best_e)
            inl[:, better] = ok[:, better]
    X = _dlt(P, uv, inl)
    e = _reprojection(P, X, uv)
    bad = (inl.sum(0) < 2) | np.any(inl & ~np.isfinite(e), axis=0)
    X[bad] = np.nan
    inl[:, bad] = False
    return X, inl, np.where(det, e, np.inf)


def _apply(T, X):
    return X @ T[:3, :3].T + T[:3, 3]


def _landmark_objective(r: torch.Tensor, weights: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Huber on the reprojection errors ``r`` (mm, weighted) in units of the landmark noise, plus the identity
    weights' N(0, 1) prior: the objective of both 2D fits."""
    hub = torch.where(r <= HUBER_MM, 0.5 * r ** 2, HUBER_MM * (r - 0.5 * HUBER_MM))
    return (weights * hub).sum() / NOISE_MM ** 2 + 0.5 * (w * w).sum()


def _huber_weights(r, c=HUBER_MM):
    return np.where(r <= c, 1.0, c / np.maximum(r, 1e-12))


def _fit_points(model: LandmarkModel, idx, X, scale: bool, n_modes: int, iters: int = 12):
    """IRLS fit of pose and identity to 3D points ``X`` [len(idx), 3] (scene units)."""
    B = model.modes_mm[:n_modes, idx].astype(np.float64)          # [K, n, 3]
    Bm = B.transpose(1, 2, 0).reshape(-1, n_modes)                # [3n, K]
    w = np.zeros(n_modes)
    wt = np.ones(len(idx))
    T = np.eye(4)
    for _ in range(iters):
        M = model.points(w, idx)
        T = umeyama(M, X, wt, scale=scale)
        Xm = _apply(np.linalg.inv(T), X)                          # into the model's mm
        r = np.linalg.norm(M - Xm, axis=1)
        wt = _huber_weights(r)
        W = np.repeat(wt, 3)
        rhs = Bm.T @ (W * (Xm - model.points(None, idx)).reshape(-1))
        w = np.linalg.solve(Bm.T @ (W[:, None] * Bm) + NOISE_MM ** 2 * np.eye(n_modes), rhs)
    M = model.points(w, idx)
    T = umeyama(M, X, wt, scale=scale)
    return T, w


def _rotvec_matrix(r: torch.Tensor) -> torch.Tensor:
    th = torch.sqrt((r * r).sum() + 1e-18)
    k = r / th
    Kx = torch.zeros(3, 3, dtype=r.dtype)
    Kx[0, 1], Kx[0, 2], Kx[1, 0], Kx[1, 2], Kx[2, 0], Kx[2, 1] = -k[2], k[1], k[2], -k[0], -k[1], k[0]
    return torch.eye(3, dtype=r.dtype) + torch.sin(th) * Kx + (1 - torch.cos(th)) * (Kx @ Kx)


def _refine_2d(model, idx, cameras, uv, have, T0, w0, scale: bool, n_modes: int, iters: int = 60, vis=None):
    """Refine pose (and scale) and identity on the 2D landmarks of the views in ``have``."""
    from scipy.spatial.transform import Rotation

    s0 = float(np.cbrt(abs(np.linalg.det(T0[:3, :3]))))
    R0 = T0[:3, :3] / s0
    dt = torch.float64
    rv = torch.tensor(Rotation.from_matrix(R0).as_rotvec(), dtype=dt, requires_grad=True)
    t = torch.tensor(T0[:3, 3], dtype=dt, requires_grad=True)
    ls = torch.tensor(np.log(s0), dtype=dt, requires_grad=scale)
    w_init = np.zeros(n_modes)
    w_init[:min(n_modes, len(w0))] = np.asarray(w0, dtype=np.float64)[:n_modes]
    w = torch.tensor(w_init, dtype=dt, requires_grad=True)
    mean = torch.tensor(model.mean_mm[idx], dtype=dt)
    B = torch.tensor(model.modes_mm[:n_modes, idx].astype(np.float64), dtype=dt)
    views = [k for k in range(len(cameras)) if have[k]]
    P = torch.tensor(_projections([cameras[k] for k in views]), dtype=dt)
    U = torch.tensor(uv[views][:, idx], dtype=dt)
    fx = torch.tensor([cameras[k].fx for k in views], dtype=dt)
    wv = torch.ones(len(views), len(idx), dtype=dt) if vis is None else torch.tensor(
        vis[views][:, idx].astype(np.float64), dtype=dt)
    params = [rv, t, w] + ([ls] if scale else [])
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def points_world():
        M = mean + torch.tensordot(w, B, dims=1)
        return torch.exp(ls) * M @ _rotvec_matrix(rv).T + t

    def residual_mm():
        X = points_world()
        Xh = torch.cat([X, torch.ones(len(X), 1, dtype=dt)], 1)
        x = torch.einsum("vij,nj->vni", P, Xh)
        z = x[..., 2].clamp(min=1e-6)
        e = torch.linalg.norm(x[..., :2] / z[..., None] - U, dim=-1)        # px
        mm_per_px = (z.detach() / fx[:, None]) / torch.exp(ls.detach())    # scene units -> model mm
        return e * mm_per_px

    def closure():
        opt.zero_grad()
        loss = _landmark_objective(residual_mm(), wv, w)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        R = _rotvec_matrix(rv).numpy()
        T = np.eye(4)
        T[:3, :3] = float(torch.exp(ls)) * R
        T[:3, 3] = t.numpy()
        r = np.where(wv.numpy() > 0, residual_mm().numpy(), np.nan)
    res = np.full((len(cameras), len(idx)), np.nan)
    res[views] = r
    return T, w.detach().numpy(), res


@dataclass
class HeadFit:
    """Where the head is: ``transform`` (4x4, ICT-model mm -> scene units), identity ``weights``, the six H3DS
    landmarks in scene units (``landmarks``: triangulated where two views agree and the point lies within
    10 mm of the fitted model, else the fitted model's), and a JSON-ready ``report`` (method, views with a face,
    residuals in mm)."""

    transform: np.ndarray
    weights: np.ndarray
    landmarks: dict
    report: dict = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return float(np.cbrt(abs(np.linalg.det(self.transform[:3, :3]))))


def fit_head(cameras, detections, model: LandmarkModel | None = None, metric: bool = True, n_modes: int = 40,
             names=None, depth_at=None) -> HeadFit:
    """Fit the morphable model to the detections (see the module docstring).

    Args:
        cameras: V cameras (scene units).
        detections: V :class:`headrecon.photos.detect.FaceLandmarks` or ``None``.
        metric: the scene is in millimetres (rigid pose; else a similarity: the scale is fitted).
        n_modes: identity modes fitted (of 100).
        names: V view names for the report (default: indices).
        depth_at: one view only: a point (scene units) whose depth the head's centre takes instead of the depth
            the model's size gives (the head is scaled about the camera centre by the depth ratio, so that its
            image stays the same; ``scale`` in the report). E.g. the centre of an IDR/H3DS scene's unit sphere.
    Raises ValueError when no view has a face, or when one view must fix the scale of a non-metric scene.
    """
    model = model or load_landmark_model()
    V = len(cameras)
    names = list(names) if names is not None else [str(k) for k in range(V)]
    have = np.array([d is not None for d in detections])
    if not have.any():
        raise ValueError("no face was found in any view")
    uv = np.zeros((V, N_MEDIAPIPE, 2))
    for k, d in enumerate(detections):
        if d is not None:
            uv[k] = d.points
    idx = model.fit_indices()
    scale = not metric
    dropped = []
    for _attempt in range(3):
        views = np.nonzero(have)[0]
        X = inl = None
        facing = _facing(model, cameras, uv, have)
        if len(views) >= 2:
            X, inl, _ = triangulate(cameras, [np.where(facing[k][:, None], uv[k], np.nan) if have[k] else None
                                              for k in range(V)])
            ok = np.isfinite(X[idx]).all(1)
            if ok.sum() < 20:
                raise ValueError(f"only {int(ok.sum())} face landmarks could be triangulated: the views' faces "
                                 "disagree (wrong cameras?)")
            T, w = _fit_points(model, idx[ok], X[idx[ok]], scale=scale, n_modes=n_modes)
            how = f"triangulated landmarks ({len(views)} views) + morphable-model fit"
        else:
            if scale:
                raise ValueError("one view cannot fix the scale of a scene that is not in millimetres")
            T, w = _pnp_init(model, idx, cameras[views[0]], uv[views[0]])
            how = "one view: PnP + morphable-model fit (depth from the model's size)"
        T, w, res = _refine_2d(model, idx, cameras, uv, have, T, w, scale=scale, n_modes=n_modes, vis=facing)
        med = np.full(V, np.nan)
        med[have] = np.nanmedian(res[have], axis=1)
        if len(views) >= 3:
            worst = views[np.argmax(med[views])]
            others = np.median(med[[v for v in views if v != worst]])
            if med[worst] > max(3.0 * others, 6.0):
                have[worst] = False
                dropped.append(names[worst])
                continue
        break
    depth_ratio = None
    if depth_at is not None and X is None:  # one view: the head's centre to the given depth, its image unchanged
        from ..priors.normalization import CENTER_MM

        cam = cameras[views[0]]
        c_head = _apply(T, np.asarray(CENTER_MM, dtype=np.float64)[None])[0]
        depth_ratio = float((np.asarray(depth_at, dtype=np.float64) - cam.center) @ cam.forward /
                            ((c_head - cam.center) @ cam.forward))
        Sk = np.eye(4)
        Sk[:3, :3] *= depth_ratio
        Sk[:3, 3] = (1.0 - depth_ratio) * cam.center
        T = Sk @ T
        how += f"; depth of the scene's sphere centre (head scaled x{depth_ratio:.3f})"
    s = float(np.cbrt(abs(np.linalg.det(T[:3, :3]))))
    model_world = _apply(T, model.points(w))
    lm, from_model = {}, []
    for name, i in H3DS_MEDIAPIPE.items():  # triangulated where two views agree and the fit confirms it
        ok = X is not None and np.isfinite(X[i]).all() and np.linalg.norm(X[i] - model_world[i]) / s <= OUTLIER_MM
        lm[name] = X[i].copy() if ok else model_world[i]
        if not ok:
            from_model.append(name)
    rep = {"method": how, "views_with_face": [names[k] for k in range(V) if detections[k] is not None],
           "views_without_face": [names[k] for k in range(V) if detections[k] is None],
           "views_dropped_as_outliers": dropped, "metric": bool(metric), "scale": s, "identity_modes": int(n_modes),
           "landmarks_from_model": from_model, "depth_ratio": depth_ratio,
           "reprojection_mm_per_view": {names[k]: round(float(med[k]), 3) for k in range(V) if np.isfinite(med[k])}}
    if X is not None:
        ok = np.isfinite(X[idx]).all(1)
        r3 = np.linalg.norm(_apply(np.linalg.inv(T), X[idx[ok]]) - model.points(w, idx[ok]), axis=1)
        rep.update(triangulated_points=int(ok.sum()), residual_mm_median=round(float(np.median(r3)), 3),
                   residual_mm_p90=round(float(np.percentile(r3, 90)), 3))
        six = [i for i in H3DS_MEDIAPIPE.values() if np.isfinite(X[i]).all()]
        if six:
            r6 = np.linalg.norm(_apply(np.linalg.inv(T), X[six]) - model.points(w, six), axis=1)
            rep["landmark_residual_mm"] = round(float(r6.mean()), 3)
    else:
        r = res[have].ravel()
        rep.update(residual_mm_median=round(float(np.nanmedian(r)), 3),
                   residual_mm_p90=round(float(np.nanpercentile(r, 90)), 3))
    return HeadFit(transform=T, weights=np.asarray(w), landmarks=lm, report=rep)


def _facing(model, cameras, uv, have) -> np.ndarray:
    """[V, 478] bool: the landmark's surface faces the camera (within ~75 degrees) in the mean model posed by
    PnP in each view; a detection of a landmark turned away is the detector's guess, not an observation."""
    idx = model.fit_indices()
    vis = np.zeros((len(cameras), N_MEDIAPIPE), bool)
    for k, cam in enumerate(cameras):
        if not have[k]:
            continue
        T = cam.w2c() @ _pnp_init(model, idx, cam, uv[k])[0]          # model mm -> camera
        xc = model.points(None) @ T[:3, :3].T + T[:3, 3]
        nc = model.normal @ T[:3, :3].T
        vis[k] = (nc * -xc).sum(1) / np.linalg.norm(xc, axis=1) > VISIBLE_COS
    return vis


def _pnp_init(model, idx, camera, uv):
    import cv2

    obj = model.points(None, idx).astype(np.float64)
    img = uv[idx].astype(np.float64)
    ok, rvec, tvec = cv2.solvePnP(obj, img, camera.K.astype(np.float64), None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        raise ValueError("PnP failed on the only view with a face")
    ok, rvec, tvec = cv2.solvePnP(obj, img, camera.K.astype(np.float64), None, rvec, tvec, True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    Rp = cv2.Rodrigues(rvec)[0]
    Tc = np.eye(4)
    Tc[:3, :3], Tc[:3, 3] = Rp, tvec.reshape(3)        # model mm -> camera (scene units = mm: metric)
    W2C = camera.w2c()
    return np.linalg.inv(W2C) @ Tc, np.zeros(0)


@dataclass
class CameraFit:
    """Cameras fitted to a head: ``w2c`` (per view, 4x4, ICT-model mm -> camera), identity ``weights``, the views
    it could pose (``posed``: those with a face) and a JSON-ready ``report``."""

    w2c: list
    weights: np.ndarray
    posed: list
    report: dict = field(default_factory=dict)


def fit_cameras(detections, intrinsics, model: LandmarkModel | None = None, n_modes: int = 40,
                iters: int = 100, names=None) -> CameraFit:
    """Cameras from faces: one pose per view and identity weights shared by all views, fitted to the 2D landmarks
    (perspective projection with the given ``intrinsics`` K [3, 3] per view; Huber on the reprojection error in mm
    at the head's depth; the model's N(0, 1) identity prior). Each pose starts from OpenCV's PnP with the mean
    model. The world frame is the ICT model's (mm, +Y up, +Z out of the face). Views without a face are not posed
    (``None`` in ``w2c``). The focal lengths stay fixed: a shared focal factor fitted with them stayed within 1 %
    of wherever it started (250, 326 or 418 px for a true 326 px, three views): faces do not tell it."""
    import cv2

    from scipy.spatial.transform import Rotation

    model = model or load_landmark_model()
    V = len(detections)
    names = list(names) if names is not None else [str(k) for k in range(V)]
    posed = [k for k in range(V) if detections[k] is not None]
    if not posed:
        raise ValueError("no face was found in any photo")
    idx = model.fit_indices()
    obj = model.points(None, idx)
    dt = torch.float64
    rvecs, tvecs = [], []
    for k in posed:
        K = np.asarray(intrinsics[k], dtype=np.float64)
        img = detections[k].points[idx]
        ok, rv, tv = cv2.solvePnP(obj, img, K, None, flags=cv2.SOLVEPNP_EPNP)
        ok2, rv, tv = cv2.solvePnP(obj, img, K, None, rv, tv, True, flags=cv2.SOLVEPNP_ITERATIVE)
        if not (ok and ok2):
            raise ValueError(f"{names[k]}: PnP failed on the face landmarks")
        rvecs.append(rv.reshape(3))
        tvecs.append(tv.reshape(3))
    rv = torch.tensor(np.array(rvecs), dtype=dt, requires_grad=True)
    tv = torch.tensor(np.array(tvecs), dtype=dt, requires_grad=True)
    w = torch.zeros(n_modes, dtype=dt, requires_grad=True)
    mean = torch.tensor(model.mean_mm[idx], dtype=dt)
    B = torch.tensor(model.modes_mm[:n_modes, idx].astype(np.float64), dtype=dt)
    Ks = torch.tensor(np.array([intrinsics[k] for k in posed]), dtype=dt)
    U = torch.tensor(np.array([detections[k].points[idx] for k in posed]), dtype=dt)
    opt = torch.optim.LBFGS([rv, tv, w], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def residual_mm():
        M = mean + torch.tensordot(w, B, dims=1)                                  # [n, 3]
        R = torch.stack([_rotvec_matrix(rv[j]) for j in range(len(posed))])      # [P, 3, 3]
        xc = torch.einsum("pij,nj->pni", R, M) + tv[:, None]                     # [P, n, 3]
        z = xc[..., 2].clamp(min=1e-6)
        uv = torch.einsum("pij,pnj->pni", Ks, xc / z[..., None])[..., :2]
        return torch.linalg.norm(uv - U, dim=-1) * z.detach() / Ks[:, 0, 0, None]

    normals = torch.tensor(model.normal[idx], dtype=dt)
    vis = torch.ones(len(posed), len(idx), dtype=dt)

    def closure():
        opt.zero_grad()
        loss = _landmark_objective(residual_mm(), vis, w)
        loss.backward()
        return loss

    for _pass in range(2):  # then again without the landmarks on surfaces turned away from each camera
        opt.step(closure)
        with torch.no_grad():
            R = torch.stack([_rotvec_matrix(rv[j]) for j in range(len(posed))])
            M = mean + torch.tensordot(w, B, dims=1)
            xc = torch.einsum("pij,nj->pni", R, M) + tv[:, None]
            nc = torch.einsum("pij,nj->pni", R, normals)
            vis = ((nc * -xc).sum(-1) / xc.norm(dim=-1) > VISIBLE_COS).to(dt)
        opt = torch.optim.LBFGS([rv, tv, w], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")
    with torch.no_grad():
        r = residual_mm().numpy()
        r = np.where(vis.numpy() > 0, r, np.nan)
    w2c = [None] * V
    for j, k in enumerate(posed):
        T = np.eye(4)
        T[:3, :3] = Rotation.from_rotvec(rv[j].detach().numpy()).as_matrix()
        T[:3, 3] = tv[j].detach().numpy()
        w2c[k] = T
    rep = {"views_posed": [names[k] for k in posed],
           "views_without_face": [names[k] for k in range(V) if detections[k] is None],
           "identity_modes": int(n_modes),
           "reprojection_mm_per_view": {names[k]: round(float(np.nanmedian(r[j])), 3) for j, k in enumerate(posed)},
           "reprojection_mm_median": round(float(np.nanmedian(r)), 3),
           "landmarks_facing_camera": {names[k]: int(np.isfinite(r[j]).sum()) for j, k in enumerate(posed)}}
    return CameraFit(w2c=w2c, weights=w.detach().numpy(), posed=posed, report=rep)
