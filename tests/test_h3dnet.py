"""--method h3dnet in the reconstruction loop: the shipped prior loads, phase 1 moves only the latent code and the
rendering network, phase 2 also fine-tunes the decoder, the latent regulariser enters the loss, and a missing
prior gives a clear error."""
import pytest
import torch
from test_recon import TINY as _TINY
from test_recon import one_thread, three_view_scene_dir  # noqa: F401  (fixtures; one_thread is autouse)

from headrecon.methods.idr import IDROptions

# the geometry is the prior's; detail="none": the paper's phase 2 (decoder fine-tuning; the fast preset's detail
# field is tested in test_detail.py)
TINY = dict({k: v for k, v in _TINY.items() if k not in IDROptions.field_names()}, detail="none")

from headrecon.data import load_scene
from headrecon.priors.h3dnet import default_prior_path
from headrecon.recon.config import make_config
from headrecon.recon.trainer import Trainer

pytestmark = pytest.mark.skipif(not default_prior_path().exists(), reason="shipped prior asset absent")


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _moved(before, module):
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())}


def test_two_phases_and_latent_loss(three_view_scene_dir):  # noqa: F811
    scene = load_scene(three_view_scene_dir, views="3")
    cfg = make_config("fast", method="h3dnet", iterations=6, prior_latent_fraction=0.5, strategy="search",
                      **dict(TINY, batch_rays=256))
    tr = Trainer(cfg, scene, device="cpu")
    geo, ren = tr.model.geometry, tr.model.rendering
    dec0, ren0, z0 = _snapshot(geo.net if hasattr(geo, "net") else geo), _snapshot(ren), geo.latent.detach().clone()
    tr.train(stop_after=3)  # phase 1: iterations 0..2
    decoder = geo.net if hasattr(geo, "net") else geo
    moved = _moved(dec0, decoder)
    assert not (moved - {"latent"}), f"decoder weights moved in phase 1: {sorted(moved)[:5]}"
    assert not torch.equal(geo.latent.detach(), z0), "the latent code did not move in phase 1"
    assert _moved(ren0, ren), "the rendering network did not train in phase 1"
    assert all("latent_loss" in h and h["latent_loss"] >= 0 for h in tr.history)
    tr.train()  # phase 2
    assert _moved(dec0, decoder) - {"latent"}, "the decoder did not move in phase 2"


def test_missing_prior_is_a_clear_error(three_view_scene_dir, tmp_path):  # noqa: F811
    scene = load_scene(three_view_scene_dir, views="3")
    cfg = make_config("fast", method="h3dnet", iterations=2, prior=str(tmp_path / "nope.pt"), **TINY)
    with pytest.raises((FileNotFoundError, ValueError), match="nope.pt"):
        Trainer(cfg, scene, device="cpu")


def test_no_schedule_trains_everything_from_the_start(three_view_scene_dir):  # noqa: F811
    """prior_latent_fraction=0 (H3D-Net's "no schedule" ablation): one phase, the decoder moves at iteration 0."""
    scene = load_scene(three_view_scene_dir, views="3")
    cfg = make_config("fast", method="h3dnet", iterations=4, prior_latent_fraction=0.0, strategy="search",
                      **dict(TINY, batch_rays=256))
    tr = Trainer(cfg, scene, device="cpu")
    assert [p.name for p in tr.phases] == ["all"]
    decoder = tr.model.geometry.net if hasattr(tr.model.geometry, "net") else tr.model.geometry
    dec0 = _snapshot(decoder)
    tr.train(stop_after=1)
    assert _moved(dec0, decoder) - {"latent"}, "the decoder did not train in the first iteration"
    with pytest.raises(ValueError, match="prior_latent_fraction"):
        make_config("fast", method="h3dnet", prior_latent_fraction=1.0)


def test_prior_latent_reg_sets_the_code_prior(three_view_scene_dir):  # noqa: F811
    """``prior_latent_reg``: default the prior's own training weight; a given weight scales the term (0 turns it
    off), is recorded in the run's info, and a negative one is refused."""
    from headrecon.methods.base import split_detail
    from headrecon.priors.h3dnet.model import load_prior

    scene = load_scene(three_view_scene_dir, views="3")
    own = load_prior(None).config.latent_reg
    terms = {}
    for w in (None, 0.0, 4 * own):
        tr = Trainer(make_config("fast", method="h3dnet", iterations=2, prior_latent_reg=w, **TINY), scene,
                     device="cpu")
        geo, _ = split_detail(tr.model.geometry)
        with torch.no_grad():
            geo.latent.add_(0.1)  # away from the mean, so that the term is not zero
        terms[w] = float(tr.method.extra_losses(tr.model)["latent_loss"].detach())
        assert tr.method.info()["latent_reg"] == (own if w is None else w)
    assert terms[None] > 0 and terms[0.0] == 0.0 and terms[4 * own] == pytest.approx(4 * terms[None], rel=1e-5)
    with pytest.raises(ValueError, match="prior_latent_reg"):
        make_config("fast", method="h3dnet", prior_latent_reg=-1.0)
