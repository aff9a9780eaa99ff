"""Procedural hair for test scenes (headrecon.data.hair, headrecon-make-scene --hair): a hair volume over the
scalp of the style's thickness, semantic labels, and a true 2D orientation that the Gabor bank recovers."""
import numpy as np
import pytest
from PIL import Image

from headrecon.data.hair import HAIR_STYLES, SEMANTIC_CLASSES, add_hair, head_labels
from headrecon.photos.orientation import angular_error_deg, gabor_orientation, orientation_vectors


@pytest.fixture(scope="module")
def head(shared_data):
    from headrecon.data.ict import sample_ict_head

    return sample_ict_head(100002)


@pytest.mark.parametrize("style", ["short", "bob"])
def test_hair_surface_lies_its_thickness_outside_the_scalp(head, style):
    from scipy.spatial import cKDTree

    h = add_hair(head, style, voxel_mm=2.0)
    shell = h.parts[1]
    d, _ = cKDTree(head.sample(200000, seed=0)).query(shell.vertices)
    st = HAIR_STYLES[style]
    assert np.percentile(d, 99) <= max(st.crown_mm, st.bottom_mm) + 2.5
    assert np.median(d) >= 0.5 * min(st.crown_mm, st.bottom_mm)
    hair = SEMANTIC_CLASSES.index("hair")
    assert (h.gt_labels == hair).sum() >= len(shell.vertices)
    # the face stays bare: the nose tip and the eye corners are kept in the ground truth, not labelled hair
    for name in ("nose_tip", "right_eye", "left_eye"):
        assert h.gt_labels[h.gt_landmarks[name]] != hair
    assert np.linalg.norm(h.gt.vertices[h.gt_landmarks["nose_tip"]]
                          - head.vertices[head.metadata["landmarks"]["nose_tip"]]) < 1e-6
    # the hair's normals point away from the scalp (the visibility test and shading read them): a point a little
    # along the normal of a hair face is farther from the head than the face itself
    c, n = shell.triangles_center, shell.face_normals
    tree = cKDTree(head.sample(200000, seed=1))
    out = tree.query(c + 1.0 * n)[0] > tree.query(c)[0]
    assert out.mean() > 0.9


def test_head_labels_put_each_class_where_it_belongs(head):
    lab = head_labels(head.vertices, head.metadata["landmarks"])
    lm = head.metadata["landmarks"]
    V = np.asarray(head.vertices)
    assert set(np.unique(lab)) >= {SEMANTIC_CLASSES.index(c) for c in ("skin", "brows", "eyes", "lips", "ears", "neck")}
    lips = V[lab == SEMANTIC_CLASSES.index("lips")].mean(0)
    assert np.linalg.norm(lips - 0.5 * (V[lm["left_lips"]] + V[lm["right_lips"]])) < 15
    assert V[lab == SEMANTIC_CLASSES.index("neck"), 1].mean() < V[lm["right_lips"], 1] - 40
    assert V[lab == SEMANTIC_CLASSES.index("brows"), 1].mean() > V[lm["right_eye"], 1] + 12


def test_make_scene_hair_writes_labels_and_an_orientation_the_gabor_bank_finds(shared_data, tmp_path):
    from headrecon.data.make_scene import main

    out = tmp_path / "s"
    assert main(["--ict", "100002", "--hair", "medium", "--fringe", "--views", "4", "--size", "320",
                 "--hair-voxel", "2.0", "--quiet", "--out", str(out)]) == 0
    sem = np.asarray(Image.open(out / "semantic" / "sem_0002.png"))  # the back of the head
    mask = np.asarray(Image.open(out / "mask" / "mask_0002.png")) > 0
    hair = sem == SEMANTIC_CLASSES.index("hair")
    assert hair.sum() > 0.5 * mask.sum() and not (sem[~mask] > 0).any()
    gt = np.load(out / "orientation_gt" / "orient_0002.npy")
    assert np.array_equal(np.isfinite(gt), hair)
    theta, conf = gabor_orientation(np.asarray(Image.open(out / "image" / "img_0002.png")), wavelength_px=4.0)
    err = angular_error_deg(orientation_vectors(theta[hair]), np.stack([np.cos(gt[hair]), np.sin(gt[hair])], -1))
    assert np.median(err) < 10.0, np.median(err)
    region = set(int(i) for i in (out / "regions" / "face.txt").read_text().split())
    hair_v = set(int(i) for i in (out / "regions" / "hair.txt").read_text().split())
    assert hair_v and not (region & hair_v)
