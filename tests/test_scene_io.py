"""Tests of headrecon.data: Camera conventions, IDR/H3DS scene round trip, H3DS-style loading, view selection,
nerfstudio transforms.json conversion and the errors raised for bad scenes."""
import json
import shutil

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation

from headrecon.data import (
    Camera,
    Scene,
    SceneError,
    load_scene,
    select_views,
    view_targets,
    write_scene,
)
from headrecon.data.camera import look_at_rotation
from headrecon.data.meshio import read_obj
from headrecon.data.scene import FaceSphere


def random_camera(rng, w=40, h=30):
    K = np.array([[rng.uniform(30, 80), rng.uniform(-1, 1), rng.uniform(15, 25)],
                  [0, rng.uniform(30, 80), rng.uniform(10, 20)], [0, 0, 1]])
    R = Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix()
    t = rng.normal(size=3) * 10
    return Camera(K=K, R=R, t=t, width=w, height=h)


# ---------------------------------------------------------------------------------------------- camera
@pytest.mark.parametrize("factor", [1.0, -3.7, 0.01])
def test_from_projection_roundtrip(factor):
    rng = np.random.default_rng(0)
    cam = random_camera(rng)
    P = cam.world_mat() * factor
    P[3] = [0, 0, 0, 1]
    back = Camera.from_projection(P, cam.width, cam.height)
    np.testing.assert_allclose(back.K, cam.K, atol=1e-9)
    np.testing.assert_allclose(back.R, cam.R, atol=1e-9)
    np.testing.assert_allclose(back.t, cam.t, atol=1e-8)
    assert np.linalg.det(back.R) > 0
    assert np.all(np.diag(back.K) > 0)


def test_rays_project_consistency():
    rng = np.random.default_rng(1)
    cam = random_camera(rng)
    pix = np.array([[0, 0], [39, 29], [12, 7], [20, 15]])
    o, d = cam.rays(torch.from_numpy(pix))
    assert o.dtype == torch.float32 and d.dtype == torch.float32 and o.shape == (4, 3)
    np.testing.assert_allclose(torch.linalg.norm(d, dim=1).numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(o.numpy(), np.broadcast_to(cam.center, (4, 3)), atol=1e-5)
    pts = o.double().numpy() + 7.5 * d.double().numpy()
    uv, z = cam.project(pts, return_depth=True)
    np.testing.assert_allclose(uv, pix + 0.5, atol=1e-4)
    assert np.all(z > 0)
    # torch input -> torch output, same numbers
    uv_t = cam.project(torch.from_numpy(pts))
    assert isinstance(uv_t, torch.Tensor)
    np.testing.assert_allclose(uv_t.numpy(), uv, atol=1e-9)
    # all pixels, row-major
    o_all, d_all = cam.rays()
    assert d_all.shape == (cam.width * cam.height, 3)
    np.testing.assert_allclose(d_all[cam.width * 7 + 12].numpy(), d[2].numpy(), atol=1e-6)


def test_opencv_convention_and_look_at():
    cam = Camera.look_at(eye=[0, 0, 500.0], target=[0, 0, 0], focal=100, width=64, height=64)
    np.testing.assert_allclose(cam.forward, [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(cam.center, [0, 0, 500], atol=1e-9)
    uv = cam.project(np.array([[0, 0, 0], [50.0, 0, 0], [0, 50.0, 0]]))
    np.testing.assert_allclose(uv[0], [32, 32])
    assert uv[1, 0] > 32  # +X is to the right of a frontal camera
    assert uv[2, 1] < 32  # +Y (up) is up in the image (OpenCV y down)
    R = look_at_rotation([1, 2, 3], [0, 0, 0])
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) > 0


def test_transformed_and_opengl():
    rng = np.random.default_rng(2)
    cam = random_camera(rng)
    S = np.eye(4)
    S[:3, :3] = 120.0 * Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    S[:3, 3] = [5, -7, 30]
    cn = cam.transformed(S)
    x_unit = rng.normal(size=(10, 3)) * 0.3
    x_scene = x_unit @ S[:3, :3].T + S[:3, 3]
    np.testing.assert_allclose(cn.project(x_unit), cam.project(x_scene), atol=1e-8)
    np.testing.assert_allclose(cn.center, np.linalg.solve(S[:3, :3], cam.center - S[:3, 3]), atol=1e-9)
    gl = cam.c2w_opengl()
    back = Camera.from_c2w_opengl(gl, cam.K, cam.width, cam.height)
    np.testing.assert_allclose(back.R, cam.R, atol=1e-12)
    np.testing.assert_allclose(back.t, cam.t, atol=1e-9)
    np.testing.assert_allclose(gl[:3, 2], -cam.forward, atol=1e-12)  # OpenGL cameras look down -z
    small = cam.resized(20, 15)
    np.testing.assert_allclose(small.project(x_scene), cam.project(x_scene) / 2, atol=1e-9)
    win = cam.cropped(5, 3, 12, 10)  # pixels of the window = the full image's minus its corner
    assert (win.width, win.height) == (12, 10)
    np.testing.assert_allclose(win.project(x_scene), cam.project(x_scene) - [5, 3], atol=1e-9)


# ---------------------------------------------------------------------------------------------- view selection
def test_view_targets_and_selection():
    assert view_targets("3") == [0.0, -45.0, 45.0]
    assert view_targets(4) == [-90.0, -45.0, 45.0, 90.0]
    assert view_targets("8")[:3] == [0.0, 45.0, 90.0] and view_targets("8")[4] == 180.0
    yaws = [k * 360 / 32 - 360 * (k > 16) for k in range(32)]
    assert [yaws[i] for i in select_views(yaws, "3")] == [0.0, -45.0, 45.0]
    assert [yaws[i] for i in select_views(yaws, "4")] == [-90.0, -45.0, 45.0, 90.0]
    assert sorted(select_views(yaws, "16")) == list(range(0, 32, 2))
    assert select_views(yaws, "all") == list(range(32))
    assert select_views(yaws, [3, 1, 31]) == [3, 1, 31]
    for bad in ([3, 1, -1], [3, 3]):  # negative and repeated indices are refused (one rule for every command)
        with pytest.raises(ValueError, match="negative|more than once"):
            select_views(yaws, bad)
    # closest available views, each used once
    jittered = [2.0, 38.0, 46.0, -47.0, 170.0, -100.0]
    assert select_views(jittered, "3") == [0, 3, 2]
    assert select_views(jittered, "4") == [5, 3, 1, 2]  # minimal total angular error: 45->38, 90->46
    with pytest.raises(ValueError, match="needs 8 views"):
        select_views(jittered, "8")
    with pytest.raises(ValueError, match="out of range"):
        select_views(jittered, [6])
    with pytest.raises(ValueError, match="bad views 'front'"):
        select_views(jittered, "front")


# ---------------------------------------------------------------------------------------------- round trip
def small_scene(n=4, w=24, h=18, seed=0):
    rng = np.random.default_rng(seed)
    cams = [Camera.look_at([300 * np.sin(a), 20, 300 * np.cos(a)], [0, 0, 0], 40, w, h)
            for a in np.radians(np.arange(n) * 360 / n)]
    images = [rng.random((h, w, 3)).astype(np.float32) for _ in range(n)]
    masks = [rng.random((h, w)) > 0.5 for _ in range(n)]
    S = np.diag([150.0, 150.0, 150.0, 1.0])
    S[:3, 3] = [1, 2, 3]
    gt = trimesh.creation.icosphere(subdivisions=2, radius=100)
    lm = {"nose_tip": int(np.argmax(gt.vertices[:, 2])), "right_eye": 3, "left_eye": 4}
    return Scene.from_arrays(images, masks, cams, S, gt_mesh=gt, landmarks=lm, meta={"note": "test"})


def test_write_read_roundtrip(tmp_path):
    sc = small_scene()
    write_scene(tmp_path / "s", sc)
    for f in ("image/img_0000.png", "mask/mask_0003.png", "cameras.npz", "full_head.obj", "landmarks.txt",
              "regions/face_sphere.txt", "scene_info.json"):
        assert (tmp_path / "s" / f).is_file(), f
    back = load_scene(tmp_path / "s")
    assert len(back) == 4 and back.indices == [0, 1, 2, 3]
    for a, b in zip(sc.views, back.views):
        assert b.image.dtype == np.float32 and b.image.shape == a.image.shape
        assert np.abs(a.image - b.image).max() <= 0.5 / 255 + 1e-6
        assert np.array_equal(a.mask, b.mask)
        np.testing.assert_allclose(b.camera.K, a.camera.K, atol=1e-9)
        np.testing.assert_allclose(b.camera.R, a.camera.R, atol=1e-9)
        np.testing.assert_allclose(b.camera.t, a.camera.t, atol=1e-7)
    np.testing.assert_allclose(back.scale_mat, sc.scale_mat)
    np.testing.assert_allclose(back.gt_mesh.vertices, sc.gt_mesh.vertices, atol=1e-5)
    assert np.array_equal(back.gt_mesh.faces, sc.gt_mesh.faces)
    assert back.landmarks == sc.landmarks
    assert np.array_equal(back.face_sphere.vertex_indices, sc.face_sphere.vertex_indices)
    assert back.meta["note"] == "test"
    # unit-sphere helpers
    p = np.array([[0.1, -0.2, 0.3]])
    np.testing.assert_allclose(back.to_unit(back.to_mm(p)), p, atol=1e-12)
    np.testing.assert_allclose(back.to_mm(p), p * 150 + [1, 2, 3])
    cn = back.cameras_normalized()
    x = np.array([[0.2, 0.1, -0.1]])
    np.testing.assert_allclose(cn[1].project(x), back.cameras[1].project(back.to_mm(x)), atol=1e-8)
    # views subset: images decoded only for the chosen ones, yaw order kept
    sub = load_scene(tmp_path / "s", views=[2, 0])
    assert sub.indices == [2, 0] and np.array_equal(sub.masks[0], sc.masks[2])
    nolo = load_scene(tmp_path / "s", load_images=False)
    assert nolo.images[0] is None and nolo.views[0].image_path.name == "img_0000.png"


def write_h3ds_like(root, n=5, w=32, h=24):
    """An H3DS-style folder: jpg images, RGB masks, world_mat with an arbitrary (negative) scale, extra keys,
    an OBJ with vt/vn records and quads, landmarks.txt and a region file."""
    rng = np.random.default_rng(3)
    (root / "image").mkdir(parents=True)
    (root / "mask").mkdir()
    arrays = {}
    cams = []
    for i in range(n):
        a = np.radians(-60 + 30 * i)
        cam = Camera.look_at([500 * np.sin(a), 30, 500 * np.cos(a)], [0, 10, 0], 60, w, h)
        cams.append(cam)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(root / "image" / f"img_{i:04d}.jpg")
        m = np.zeros((h, w, 3), np.uint8)
        m[5:20, 8:25] = 255
        Image.fromarray(m).save(root / "mask" / f"mask_{i:04d}.png")
        arrays[f"world_mat_{i}"] = cam.world_mat() * -2.5
        arrays[f"scale_mat_{i}"] = np.diag([200.0, 200, 200, 1])
        arrays[f"camera_mat_{i}"] = np.eye(4)
    np.savez(root / "cameras.npz", **arrays)
    obj = ["# quads with uv seams", "v 0 0 0", "v 100 0 0", "v 100 100 0", "v 0 100 0", "v 50 50 80",
           "vt 0 0", "vt 1 0", "vt 1 1", "vt 0 1", "vt 0.5 0.5", "vt 0.2 0.2", "vn 0 0 1",
           "f 1/1/1 4/4/1 3/3/1 2/2/1", "f 1/6/1 2/2/1 5/5/1", "f 2/2/1 3/3/1 5/5/1", "f 3/3/1 4/4/1 5/5/1",
           "f 4/4/1 1/1/1 5/5/1"]
    (root / "full_head.obj").write_text("\n".join(obj) + "\n")
    (root / "landmarks.txt").write_text("right_eye 0\nleft_eye 1\nnose_tip 4\nnose_base 4\nright_lips 3\nleft_lips 2\n")
    (root / "regions").mkdir()
    (root / "regions" / "face_sphere.txt").write_text("4\n2\n")
    return cams


def test_h3ds_layout_loads_unchanged(tmp_path):
    cams = write_h3ds_like(tmp_path / "h")
    sc = load_scene(tmp_path / "h")
    assert len(sc) == 5 and sc.units == "mm"
    for a, b in zip(cams, sc.cameras):
        np.testing.assert_allclose(b.K, a.K, atol=1e-9)
        np.testing.assert_allclose(b.R, a.R, atol=1e-9)
        np.testing.assert_allclose(b.t, a.t, atol=1e-7)
    assert sc.images[0].shape == (24, 32, 3) and sc.masks[0].sum() == 15 * 17
    # vertex order of the OBJ kept despite vt seams; quads fan-triangulated
    assert len(sc.gt_mesh.vertices) == 5 and len(sc.gt_mesh.faces) == 6
    np.testing.assert_allclose(sc.gt_mesh.vertices[4], [50, 50, 80])
    assert sc.landmarks["nose_tip"] == 4
    assert sorted(sc.face_sphere.vertex_indices.tolist()) == [2, 4]
    np.testing.assert_allclose(sc.face_sphere.center_mm, [50, 50, 80])
    V, F = read_obj(tmp_path / "h" / "full_head.obj")
    assert F.tolist()[:2] == [[0, 3, 2], [0, 2, 1]]


# ---------------------------------------------------------------------------------------------- nerfstudio
def test_transforms_json_opengl_conversion(tmp_path):
    rng = np.random.default_rng(4)
    w, h = 30, 20
    cams = [Camera.look_at([400 * np.sin(a), 50, 400 * np.cos(a)], [0, 0, 0], 45, w, h, cx=14.0, cy=11.0)
            for a in np.radians([0, 40, -40, 90])]
    frames = []
    (tmp_path / "images").mkdir()
    for i, cam in enumerate(cams):
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[..., :3] = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        rgba[4:16, 5:25, 3] = 255
        Image.fromarray(rgba).save(tmp_path / "images" / f"frame_{i:05d}.png")
        frames.append({"file_path": f"images/frame_{i:05d}.png", "transform_matrix": cam.c2w_opengl().tolist()})
    meta = {"camera_model": "OPENCV", "fl_x": 45.0, "fl_y": 45.0, "cx": 14.0, "cy": 11.0, "w": w, "h": h,
            "frames": frames}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    sc = load_scene(tmp_path)
    assert len(sc) == 4 and sc.units == "scene"
    for a, b in zip(cams, sc.cameras):
        np.testing.assert_allclose(b.R, a.R, atol=1e-9)
        np.testing.assert_allclose(b.t, a.t, atol=1e-7)
        np.testing.assert_allclose(b.K, a.K)
    assert sc.masks[0].sum() == 12 * 20 and sc.images[0].shape == (h, w, 3)
    # estimated unit sphere: centred near the orbit's focus, encloses what the masks show, cameras outside
    c = sc.scale_mat[:3, 3]
    assert np.linalg.norm(c) < 20
    assert all(np.linalg.norm(cn.center) > 1.5 for cn in sc.cameras_normalized())
    # frontal camera (yaw 0) first for V3
    assert load_scene(tmp_path / "transforms.json", views="3", load_images=False).indices == [0, 2, 1]
    # a frame without a mask is an error naming the image
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "images" / "frame_00001.png")
    with pytest.raises(SceneError, match="frame_00001.png.*no mask"):
        load_scene(tmp_path)


# ---------------------------------------------------------------------------------------------- bad scenes
def _good(tmp_path):
    write_scene(tmp_path / "s", small_scene(n=3))
    return tmp_path / "s"


def _edit_npz(path, **changes):
    d = dict(np.load(path))
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    np.savez(path, **d)


@pytest.mark.parametrize("case, pattern", [
    ("no_cameras", r"cameras\.npz.*not found"),
    ("missing_mask", r"mask.*masks missing for views \[1\]"),  # with allow_missing_masks=False
    ("mask_without_image", r"mask.*masks without an image in image/ for views \[5\]"),
    ("extra_world_mat", r"cameras\.npz.*4 world_mat_i matrices but 3 images"),
    ("mask_size", r"mask_0002\.png.*mask is 10x10 but image img_0002\.png is 24x18"),
    ("singular", r"cameras\.npz \(world_mat_1\).*singular"),
    ("nan", r"cameras\.npz.*world_mat_0 contains NaN"),
    ("empty_mask", r"mask_0001\.png.*empty"),
    ("bad_scale", r"cameras\.npz.*scale_mat_2.*singular"),
    ("bad_landmark", r"landmarks\.txt.*out of range"),
    ("no_images", r"image.*no images"),
])
def test_bad_scene_errors(tmp_path, case, pattern):
    p = _good(tmp_path)
    if case == "no_cameras":
        (p / "cameras.npz").unlink()
    elif case == "missing_mask":
        (p / "mask" / "mask_0001.png").unlink()
    elif case == "mask_without_image":
        shutil.copy(p / "mask" / "mask_0001.png", p / "mask" / "mask_0005.png")
    elif case == "extra_world_mat":
        _edit_npz(p / "cameras.npz", world_mat_3=np.eye(4))
    elif case == "mask_size":
        Image.fromarray(np.full((10, 10), 255, np.uint8)).save(p / "mask" / "mask_0002.png")
    elif case == "singular":
        P = np.zeros((4, 4))
        P[3, 3] = 1
        _edit_npz(p / "cameras.npz", world_mat_1=P)
    elif case == "nan":
        P = np.eye(4)
        P[0, 0] = np.nan
        _edit_npz(p / "cameras.npz", world_mat_0=P)
    elif case == "empty_mask":
        Image.fromarray(np.zeros((18, 24), np.uint8)).save(p / "mask" / "mask_0001.png")
    elif case == "bad_scale":
        _edit_npz(p / "cameras.npz", scale_mat_2=np.diag([0.0, 1, 1, 1]))
    elif case == "bad_landmark":
        (p / "landmarks.txt").write_text("nose_tip 99999\n")
    elif case == "no_images":
        shutil.rmtree(p / "image")
        (p / "image").mkdir()
    with pytest.raises(SceneError, match=pattern):
        load_scene(p, allow_missing_masks=case != "missing_mask")


def test_missing_masks_are_left_for_estimation(tmp_path):
    """A view without a mask file loads with mask None (the pipeline estimates it from the photo)."""
    p = _good(tmp_path)
    (p / "mask" / "mask_0001.png").unlink()
    s = load_scene(p)
    assert s.views[1].mask is None and s.views[1].mask_path is None and s.views[0].mask is not None


def test_missing_scene_folder(tmp_path):
    with pytest.raises(SceneError, match="not found"):
        load_scene(tmp_path / "nope")
    with pytest.raises(SceneError, match="OBJ file not found"):
        read_obj(tmp_path / "x.obj")


def test_face_sphere_from_mesh():
    v = np.array([[0, 0, 0], [50, 0, 0], [96, 0, 0], [0, 94.9, 0.0]])
    fs = FaceSphere.from_mesh(v, v[0])
    assert fs.vertex_indices.tolist() == [0, 1, 3] and fs.radius_mm == 95.0
