"""Tests of the synthetic scene generator: ray-cast renderer, make_scene / headrecon-make-scene, pose noise,
ICT-FaceKit heads and converter, and the Lee Perry-Smith scan (rendering, texture convention, masks)."""
import json

import numpy as np
import pytest
import trimesh
from scipy.ndimage import map_coordinates

from headrecon.data import Camera, load_scene
from headrecon.data.synthetic import (
    MeshRenderer,
    make_scene,
    orbit_cameras,
    parse_lights,
)


def head_like_mesh():
    """An analytic head-ish mesh in mm (ellipsoid + nose bump), with vertex colours and landmarks."""
    m = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    v = m.vertices * [75.0, 105.0, 90.0]
    v[:, 2] += 25.0 * np.exp(-((v[:, 0] / 15) ** 2 + ((v[:, 1] + 5) / 25) ** 2)) * (v[:, 2] > 0)
    m = trimesh.Trimesh(v, m.faces, process=False)
    cols = np.tile([200, 150, 120, 255], (len(v), 1)).astype(np.uint8)
    cols[v[:, 1] > 60] = [90, 60, 40, 255]
    m.visual = trimesh.visual.ColorVisuals(m, vertex_colors=cols)

    def near(p):
        return int(np.argmin(np.linalg.norm(v - p, axis=1)))
    m.metadata["landmarks"] = {"right_eye": near([-15, 25, 90]), "left_eye": near([15, 25, 90]),
                               "nose_tip": int(np.argmax(v[:, 2])), "nose_base": near([0, -25, 95]),
                               "right_lips": near([-22, -50, 80]), "left_lips": near([22, -50, 80])}
    return m


def test_render_sphere_silhouette_depth_and_shading():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=50.0)
    cam = Camera.look_at([0, 0, 300.0], [0, 0, 0], focal=120.0, width=96, height=96)
    r = MeshRenderer(sphere, lights="0,0,1@0.8", ambient=0.2)
    res = r.render(cam)
    # silhouette of a sphere: a disc of radius f * tan(asin(r / d))
    rad = 120.0 * np.tan(np.arcsin(50.0 / 300.0))
    assert abs(res.mask.sum() / (np.pi * rad ** 2) - 1) < 0.03
    assert abs(res.depth[48, 48] - 250.0) < 0.5
    assert np.isinf(res.depth[0, 0]) and not res.mask[0, 0] and np.all(res.image[0, 0] == 0)
    # Lambert: brightest where the normal faces the light, ambient-only at the rim
    centre = res.image[48, 48, 0]
    assert abs(centre - 0.7 * (0.2 + 0.8)) < 0.02  # default grey albedo 0.7
    ys, xs = np.nonzero(res.mask)
    rim = res.image[ys[np.argmin(xs)], xs.min(), 0]
    assert rim < 0.45 * centre
    # supersampling keeps the silhouette area
    res2 = r.render(cam, ssaa=3)
    assert abs(res2.mask.sum() - res.mask.sum()) < 0.02 * res.mask.sum()


def test_lights_parsing():
    assert len(parse_lights("studio")) == 3
    ls = parse_lights("0,1,0@0.5;headlight")
    assert ls[0].intensity == 0.5 and np.allclose(ls[0].direction, [0, 1, 0]) and ls[1].headlight
    assert parse_lights("none") == []
    with pytest.raises(ValueError, match="bad light"):
        parse_lights("1,2")


def test_orbit_cameras_convention():
    cams = orbit_cameras([0, 0, 0], 500.0, [0, 90], [0, 30], 100, 32, 32)
    assert len(cams) == 4
    np.testing.assert_allclose(cams[0].center, [0, 0, 500], atol=1e-9)
    np.testing.assert_allclose(cams[1].center, [500, 0, 0], atol=1e-9)
    assert cams[2].center[1] > 0 and abs(cams[2].center[1] - 250) < 1e-9  # pitch 30 = above
    for c in cams:
        np.testing.assert_allclose(c.project(np.zeros((1, 3))), [[16, 16]], atol=1e-9)


def test_make_scene_roundtrip_and_pose_noise(tmp_path):
    mesh = head_like_mesh()
    sc = make_scene(mesh, tmp_path / "clean", views=8, pitch=[0, 20], size=(64, 56), progress=False)
    assert len(sc) == 16
    loaded = load_scene(tmp_path / "clean")
    assert len(loaded) == 16 and loaded.images[0].shape == (56, 64, 3)
    # unit sphere holds the head with a margin; cameras outside it
    r = np.linalg.norm(loaded.to_unit(loaded.gt_mesh.vertices), axis=1)
    assert 0.85 < r.max() < 0.95
    assert all(np.linalg.norm(c.center) > 1.5 for c in loaded.cameras_normalized())
    # the head fills a good part of the frontal image
    assert 0.2 < loaded.masks[0].mean() < 0.8
    # ground truth vertices project inside the masks (half a pixel of tolerance for the contour)
    assert loaded.fraction_in_masks(loaded.gt_mesh.vertices).min() >= 0.999
    assert loaded.fraction_in_masks(loaded.gt_mesh.vertices, tolerance_px=0).min() >= 0.9
    shifted = loaded.gt_mesh.vertices + [12.0, 0, 0]  # a camera/mask mismatch would show
    assert loaded.fraction_in_masks(shifted).min() < 0.97
    # landmarks and face sphere (95 mm around the nose tip)
    assert loaded.landmarks == mesh.metadata["landmarks"]  # no seams: indices unchanged
    nose = loaded.gt_mesh.vertices[loaded.landmarks["nose_tip"]]
    d = np.linalg.norm(loaded.gt_mesh.vertices - nose, axis=1)
    assert set(loaded.face_sphere.vertex_indices.tolist()) == set(np.nonzero(d <= 95)[0].tolist())
    # yaw selection on the written scene
    assert sorted(np.round(loaded.subset("3").yaws_deg()).tolist()) == [-45, 0, 45]
    assert all(abs(p) < 1e-6 for p in loaded.subset("4").pitches_deg())
    # pose noise: written cameras perturbed by about sigma, images identical to the clean render
    make_scene(mesh, tmp_path / "noisy", views=8, pitch=[0, 20], size=(64, 56), pose_noise_rot_deg=2.0,
                       pose_noise_pos_mm=5.0, seed=1, progress=False)
    assert (tmp_path / "noisy" / "cameras_clean.npz").is_file()
    info = json.loads((tmp_path / "noisy" / "scene_info.json").read_text())
    assert info["pose_noise"]["rot_deg"] == 2.0
    ln = load_scene(tmp_path / "noisy")
    dpos = np.array([np.linalg.norm(a.center - b.center) for a, b in zip(ln.cameras, loaded.cameras)])
    drot = np.array([np.degrees(np.arccos(np.clip((np.trace(a.R @ b.R.T) - 1) / 2, -1, 1)))
                     for a, b in zip(ln.cameras, loaded.cameras)])
    assert 3.0 < dpos.mean() < 14.0 and 1.0 < drot.mean() < 6.0  # chi(3) means: 1.6 sigma
    for a, b in zip(ln.views, loaded.views):
        assert np.array_equal(a.mask, b.mask) and np.abs(a.image - b.image).max() < 1e-6
    clean = np.load(tmp_path / "noisy" / "cameras_clean.npz")
    np.testing.assert_allclose(clean["world_mat_3"], loaded.cameras[3].world_mat(), atol=1e-6)
    # unit-sphere noise option
    un = make_scene(mesh, None, views=[0], size=32, pose_noise=0.01, progress=False)
    assert abs(un.meta["pose_noise"]["pos_mm"] - 0.01 * un.scale_mat[0, 0]) < 1e-9


def test_make_scene_gt_outer_only(tmp_path):
    """A hidden surface (a small closed shell inside the head, like a mouth bag) is dropped from the ground truth
    with gt_outer_only; the images, masks, cameras and landmark positions stay the same."""
    head = head_like_mesh()
    inner = trimesh.creation.icosphere(subdivisions=2, radius=12.0)
    inner.apply_translation([0.0, -40.0, 40.0])  # inside the head, behind the "mouth"
    n = len(head.vertices)
    both = trimesh.Trimesh(np.concatenate([head.vertices, inner.vertices]),
                           np.concatenate([head.faces, inner.faces + n]), process=False)
    cols = np.concatenate([head.visual.vertex_colors, np.tile([255, 0, 0, 255], (len(inner.vertices), 1))])
    both.visual = trimesh.visual.ColorVisuals(both, vertex_colors=cols.astype(np.uint8))
    both.metadata["landmarks"] = dict(head.metadata["landmarks"])
    a = make_scene(both, tmp_path / "all", views=[0, 45, -45], size=48, progress=False)
    o = make_scene(both, tmp_path / "outer", views=[0, 45, -45], size=48, progress=False, gt_outer_only=True)
    assert len(a.gt_mesh.vertices) == n + len(inner.vertices) and len(o.gt_mesh.vertices) == n
    for va, vo in zip(a.views, o.views):
        assert np.array_equal(va.image, vo.image) and np.array_equal(va.mask, vo.mask)
    np.testing.assert_array_equal(a.scale_mat, o.scale_mat)
    for k in a.landmarks:
        np.testing.assert_array_equal(a.gt_mesh.vertices[a.landmarks[k]], o.gt_mesh.vertices[o.landmarks[k]])
    # the inner shell lay within 95 mm of the nose tip: the face region loses exactly its vertices
    assert len(a.face_sphere.vertex_indices) - len(o.face_sphere.vertex_indices) == len(inner.vertices)


def test_make_scene_crop_bottom_cuts_the_frame_and_keeps_the_cameras(tmp_path):
    """crop_bottom: the bottom rows are cut off (a portrait frame), the rest of every image, mask and camera
    matrix is the full render's; ground-truth points that land in the kept rows still project into the masks."""
    mesh = head_like_mesh()
    full = make_scene(mesh, None, views=[0, 45, -45], size=48, progress=False)
    make_scene(mesh, tmp_path / "c", views=[0, 45, -45], size=48, progress=False, crop_bottom=0.375)
    cut = load_scene(tmp_path / "c")  # the principal point at 0.8 of the height: a crop, accepted
    assert cut.images[0].shape == (30, 48, 3) and cut.meta["crop_bottom"] == 0.375
    for a, b, ca, cb in zip(full.views, cut.views, full.cameras, cut.cameras):
        assert np.array_equal(a.mask[:30], b.mask) and np.abs(a.image[:30] - b.image).max() <= 0.5 / 255 + 1e-6
        np.testing.assert_allclose(ca.world_mat(), cb.world_mat(), atol=1e-9)
        assert (cb.width, cb.height) == (48, 30)
    assert cut.masks[0][-1].any()  # the head runs out of the frame
    with pytest.raises(ValueError, match="crop_bottom"):
        make_scene(mesh, None, views=[0], size=48, progress=False, crop_bottom=0.5)


def test_make_scene_cli(tmp_path):
    from headrecon.data.make_scene import main
    mesh = head_like_mesh()
    mesh.export(tmp_path / "head.ply")
    assert main(["--mesh", str(tmp_path / "head.ply"), "--out", str(tmp_path / "s"), "--views", "0,45,-45",
                 "--size", "48", "--quiet", "--lights", "headlight"]) == 0
    sc = load_scene(tmp_path / "s")
    assert len(sc) == 3 and sc.images[0].shape == (48, 48, 3)
    assert sc.images[0][sc.masks[0]].mean() > 0.2  # vertex colours + light reached the image
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x")])  # a source is required


# ---------------------------------------------------------------------------------------------- ICT-FaceKit
def test_ict_head(shared_data):
    from headrecon.data.ict import sample_ict_head
    a, b, c = sample_ict_head(7), sample_ict_head(7), sample_ict_head(8)
    assert a.is_watertight and a.is_winding_consistent and a.volume > 0
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.visual.vertex_colors, b.visual.vertex_colors)
    assert np.abs(a.vertices - c.vertices).max() > 1.0
    ext = np.ptp(a.vertices, axis=0)  # mm: ~ 25 x 34 x 23 cm
    assert 180 < ext[0] < 330 and 260 < ext[1] < 420 and 180 < ext[2] < 300
    lm = a.metadata["landmarks"]
    assert set(lm) == {"right_eye", "left_eye", "nose_tip", "nose_base", "right_lips", "left_lips"}
    V = a.vertices
    assert V[lm["nose_tip"], 2] == max(V[i, 2] for i in lm.values())
    assert V[lm["left_eye"], 0] > V[lm["right_eye"], 0]  # +X = subject's left
    iod = np.linalg.norm(V[lm["left_eye"]] - V[lm["right_eye"]])
    assert 25 < iod < 45  # inner eye corners, mm
    col = a.visual.vertex_colors[:, :3].astype(float)
    mouth = (V[lm["left_lips"]] + V[lm["right_lips"]]) / 2
    lips = np.linalg.norm(V[:11248] - mouth, axis=1) < 12
    forehead = np.linalg.norm(V[:11248] - (V[lm["nose_tip"]] + [0, 70, -20]), axis=1) < 15
    ratio = lambda c: (c[:, 0] / (c[:, 1] + 1)).mean()
    assert ratio(col[:11248][lips]) > ratio(col[:11248][forehead]) + 0.05  # lips redder than forehead
    assert np.std(col[:11248][forehead].mean(1)) > 0  # some tone variation
    w = np.asarray(a.metadata["weights"])
    assert len(w) == 100 and np.abs(w).max() <= 2.5


def test_ict_converter_matches_basis(shared_data, tmp_path):
    from headrecon.data.ict import convert_ict_facekit, main
    d = shared_data / "ict_facekit"
    src = tmp_path / "FaceXModel"
    src.mkdir()
    for f in ("generic_neutral_mesh.obj", "identity000.obj", "identity001.obj"):
        (src / f).symlink_to(d / f)
    main([str(src), str(tmp_path / "basis.npz")])
    out = np.load(tmp_path / "basis.npz")
    ref = np.load(d / "ict_head_basis.npz")
    np.testing.assert_allclose(out["mean_cm"], ref["mean_cm"], atol=1e-5)
    np.testing.assert_allclose(out["modes_cm"], ref["modes_cm"][:2], atol=1e-5)
    np.testing.assert_array_equal(out["faces"], ref["faces"])
    with pytest.raises(Exception, match="generic_neutral_mesh.obj"):
        convert_ict_facekit(tmp_path)


def test_ict_scene_renders(shared_data, tmp_path):
    from headrecon.data.ict import sample_ict_head
    sc = make_scene(sample_ict_head(3), tmp_path / "ict", views=[0, 45, -45, 90], size=64, progress=False)
    loaded = load_scene(tmp_path / "ict", views="3")
    assert loaded.indices == [0, 2, 1]
    img, m = loaded.images[0], loaded.masks[0]
    skin = img[m].mean(axis=0)
    assert skin[0] > skin[2] and skin.mean() > 0.2  # a skin colour, not grey or black
    assert loaded.gt_mesh.is_watertight and len(sc.gt_mesh.vertices) == len(loaded.gt_mesh.vertices)


def test_ict_scene_cli_ground_truth_is_the_outer_surface(shared_data, tmp_path):
    """headrecon-make-scene --ict keeps only what a camera sees in the ground truth (the inner lips, mouth and eye
    caps go); --gt-surfaces all keeps them; the images are identical."""
    from headrecon.data.make_scene import main
    for g in ("auto", "all"):
        assert main(["--ict", "100000", "--out", str(tmp_path / g), "--views", "0,45,-45", "--size", "48", "--quiet",
                     "--gt-surfaces", g]) == 0
    o, a = load_scene(tmp_path / "auto"), load_scene(tmp_path / "all")
    assert o.meta["gt_surfaces"] == "outer" and a.meta["gt_surfaces"] == "all"
    lost = len(a.face_sphere.vertex_indices) - len(o.face_sphere.vertex_indices)
    assert 0.03 * len(a.face_sphere.vertex_indices) < lost < 0.3 * len(a.face_sphere.vertex_indices)
    for vo, va in zip(o.views, a.views):
        assert np.array_equal(vo.image, va.image)


# ---------------------------------------------------------------------------------------------- Lee Perry-Smith
def test_lee_perry_smith_scene(shared_data, tmp_path):
    from headrecon.data.scans import load_lee_perry_smith
    mesh = load_lee_perry_smith()
    ext = np.ptp(mesh.vertices, axis=0)
    assert 350 < ext[0] < 450  # shoulders, ~48 mm per unit
    make_scene(mesh, tmp_path / "lps", views=8, size=96, progress=False)
    loaded = load_scene(tmp_path / "lps")
    gt = loaded.gt_mesh
    # every ground-truth vertex projects inside every mask, up to half a pixel at the contour (measured:
    # >= 99.98 %; strictly inside its own pixel: 96-98 % at 96 px, the rest are ear rims and edges seen edge-on)
    fractions = loaded.fraction_in_masks(gt.vertices)
    assert fractions.min() >= 0.99, fractions
    assert loaded.fraction_in_masks(gt.vertices, tolerance_px=0).min() >= 0.94
    assert loaded.fraction_in_masks(gt.vertices + [0, 8.0, 0]).min() < 0.99  # an 8 mm (2 px) offset shows
    # landmarks re-indexed onto the merged mesh point at the same places
    for k, i in mesh.metadata["landmarks"].items():
        np.testing.assert_allclose(gt.vertices[loaded.landmarks[k]], mesh.vertices[i], atol=1e-6)
    iod = np.linalg.norm(gt.vertices[loaded.landmarks["left_eye"]] - gt.vertices[loaded.landmarks["right_eye"]])
    assert 25 < iod < 40
    assert loaded.subset("3").indices == [0, 7, 1]


def test_lee_perry_smith_outer_surface(shared_data):
    """The default scan keeps only what an outside viewpoint sees: the full scan is watertight; the dropped faces
    (inside the mouth and eye sockets) are hit by no camera ray of an orbit, the kept ones are, and the landmarks
    stay where they were."""
    from headrecon.data.scans import load_lee_perry_smith
    from headrecon.data.synthetic import orbit_cameras

    full = load_lee_perry_smith(outer_only=False)
    outer = load_lee_perry_smith()
    merged = trimesh.Trimesh(full.vertices, full.faces)
    merged.merge_vertices()
    assert merged.is_watertight
    assert 0.75 * len(full.faces) < len(outer.faces) < 0.9 * len(full.faces)
    for k, i in full.metadata["landmarks"].items():
        np.testing.assert_allclose(outer.vertices[outer.metadata["landmarks"][k]], full.vertices[i])
    kept = {tuple(np.round(c, 4)) for c in outer.triangles_center}
    dropped = np.array([tuple(np.round(c, 4)) not in kept for c in full.triangles_center])
    assert dropped.sum() == len(full.faces) - len(outer.faces)
    inter = full.ray  # the full scan: which faces do the cameras of an orbit see first?
    seen = np.zeros(len(full.faces), bool)
    for cam in orbit_cameras(np.zeros(3), 900.0, [0, 45, 90, 135, 180, 225, 270, 315], [-20.0, 0.0, 20.0],
                             focal=300.0, width=96, height=96):
        o, d = cam.rays_np()
        tri = inter.intersects_first(o, d)
        seen[tri[tri >= 0]] = True
    assert seen[dropped].mean() < 0.002 and seen[~dropped].mean() > 0.6


def test_lee_perry_smith_texture_convention(shared_data):
    """Albedo-only render: the pixel at a landmark shows the texture at that vertex's UV sampled as the
    README says (row = v * (H-1), no 1 - v)."""
    import json as _json

    from PIL import Image

    from headrecon.data.scans import load_lee_perry_smith, lps_dir
    mesh = load_lee_perry_smith(outer_only=False)  # the file's vertex order: landmarks.json indexes it
    folder = lps_dir()
    raw = trimesh.load(str(folder / "LeePerrySmith.glb"), process=False).to_geometry()
    tex = np.asarray(Image.open(folder / "Map-COL.jpg").convert("RGB"), dtype=np.float64) / 255
    H, W = tex.shape[:2]
    lm = _json.loads((folder / "landmarks.json").read_text())
    cam = Camera.look_at([0, 0, 900.0], [0, 0, 0], focal=1400.0, width=256, height=256)
    img = MeshRenderer(mesh, lights="none", ambient=1.0).render(cam).image
    errs, wrong = [], []
    for name in ("nose_tip", "right_eye", "left_eye", "right_lips", "left_lips"):
        i = lm[name]
        u, v = raw.visual.uv[i]
        expect = np.array([map_coordinates(tex[..., c], [[v * (H - 1)], [u * (W - 1)]], order=1)[0] for c in range(3)])
        flipped = np.array([map_coordinates(tex[..., c], [[(1 - v) * (H - 1)], [u * (W - 1)]], order=1)[0]
                            for c in range(3)])
        px = np.floor(cam.project(mesh.vertices[i][None])[0]).astype(int)
        patch = img[px[1] - 1:px[1] + 2, px[0] - 1:px[0] + 2].reshape(-1, 3)
        errs.append(np.abs(patch - expect).min(axis=0).max())
        wrong.append(np.abs(expect - flipped).max())
    assert np.mean(errs) < 0.06, errs
    assert np.mean(wrong) > 0.08  # the test can tell the two conventions apart
