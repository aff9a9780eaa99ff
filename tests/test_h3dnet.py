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


def test_head_rays_pass_the_axis_above_the_floor():
    """:func:`head_rays` (identity frame, floor 0): a ray through the axis above the floor is the head's, one below
    it is not, one along the axis is, one pointing away from the axis counts at its origin's height."""
    from headrecon.methods.base import head_rays

    o = torch.tensor([[0.0, 0.5, 3.0], [0.0, -0.5, 3.0], [0.0, 3.0, 0.0], [2.0, 0.3, 0.0], [2.0, -0.3, 0.0],
                      [0.0, -0.2, 3.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0],
                      [0.0, 0.6, -0.8]])  # the last one climbs: from y -0.2 to 2.05 where it passes the axis
    keep = head_rays(o, d, lambda x: x, 0.0)
    assert keep.tolist() == [True, False, True, True, False, True]
    # a similarity frame moves the floor with the prior: shift the prior up by 1 and nothing of the above is head
    # but the ray along the axis
    keep = head_rays(o, d, lambda x: x - torch.tensor([0.0, 1.0, 0.0]), 0.0)
    assert keep.tolist() == [False, False, True, False, False, True]


def test_head_rays_restrict_the_latent_phase_or_the_run(three_view_scene_dir, tmp_path):  # noqa: F811
    """``--head-rays latent``: the latent phase draws only the placed prior's head rays (some, not all, of the
    pixels), phase 2 every pixel again; ``all``: phase 2 too; a resumed run is bit-identical; other methods
    refuse the option."""
    from exact_resume import assert_resume_is_exact

    from headrecon.methods.base import head_rays

    scene = load_scene(three_view_scene_dir, views="3")
    cfg = make_config("fast", method="h3dnet", iterations=4, prior_latent_fraction=0.5, strategy="search",
                      head_rays="latent", **dict(TINY, batch_rays=256))

    def make(c=cfg):
        return Trainer(c, scene, device="cpu")

    tr = make()
    tr.train(stop_after=1)
    keep = tr.sampler.keep
    assert keep is not None and 0.05 < keep.mean() < 0.95, keep.mean()
    assert tr.method.head_ray_share == pytest.approx(float(keep.mean()))
    assert keep[tr.sampler.last_idx.cpu().numpy()].all(), "a body ray was drawn in the latent phase"
    lm, mm = tr.method.prior_landmarks, tr.method.prior_mm_per_unit
    floor = 0.5 * (lm["left_lips"][1] + lm["right_lips"][1]) - cfg.head_rays_floor_mm / mm
    geo = tr.model.geometry.base if hasattr(tr.model.geometry, "base") else tr.model.geometry
    assert (head_rays(tr.bank.origins, tr.bank.dirs, geo.to_prior, floor).numpy() == keep).all()
    tr.train(stop_after=3)  # into phase 2
    assert tr.sampler.keep is None and tr.sampler.pool.numel() == int(tr.sampler.active.sum())
    assert_resume_is_exact(make, tmp_path / "ckpt.pt", stop_after=1)
    tr = make(make_config("fast", method="h3dnet", iterations=4, prior_latent_fraction=0.5, strategy="search",
                          head_rays="all", **dict(TINY, batch_rays=256)))
    tr.train(stop_after=3)
    assert tr.phases[tr.phase_index].name == "all" and (tr.sampler.keep == keep).all()
    assert keep[tr.sampler.last_idx.cpu().numpy()].all(), "a body ray was drawn in phase 2 with head_rays all"
    with pytest.raises(ValueError, match="head_rays"):
        make_config("fast", method="idr", head_rays="latent")
    with pytest.raises(ValueError, match="head_rays"):
        make_config("fast", method="sira", head_rays="head")


def test_freeze_codes_keeps_the_latent_phase_code(three_view_scene_dir, tmp_path):  # noqa: F811
    """``--freeze-codes``: phase 2 trains the detail field and the rendering network, not the code, which stays
    bit-for-bit where the latent phase left it (default: the code trains on); a resumed run is bit-identical;
    methods without a prior refuse the option."""
    from exact_resume import assert_resume_is_exact

    scene = load_scene(three_view_scene_dir, views="3")

    def make(freeze=True):
        return Trainer(make_config("fast", method="h3dnet", iterations=6, prior_latent_fraction=0.5,
                                   strategy="search", freeze_codes=freeze,
                                   **dict(TINY, batch_rays=256, detail="hashgrid")), scene, device="cpu")

    for freeze in (True, False):
        tr = make(freeze)
        geo = tr.model.geometry.base
        tr.train(stop_after=3)
        z1 = geo.latent.detach().clone()
        tr.train(stop_after=6)
        names = {g["name"] for g in tr.optimizer.param_groups}
        assert tr.phases[tr.phase_index].name == "all" and {"detail", "rendering"} <= names
        assert ("latent" in names) != freeze and geo.latent.requires_grad != freeze
        assert torch.equal(geo.latent, z1) == freeze
    assert_resume_is_exact(make, tmp_path / "ckpt.pt", stop_after=4)
    with pytest.raises(ValueError, match="freeze_codes"):
        make_config("fast", method="idr", freeze_codes=True)


def test_finetune_decoder_trains_the_decoder_under_the_detail_field(three_view_scene_dir):  # noqa: F811
    """``--finetune-decoder``: phase 2 trains the prior's decoder (at finetune_lr) as well as the detail field; by
    default the decoder stays frozen under the field; without a detail field the option is refused."""
    scene = load_scene(three_view_scene_dir, views="3")
    for on in (True, False):
        tr = Trainer(make_config("fast", method="h3dnet", iterations=6, prior_latent_fraction=0.5,
                                 strategy="search", finetune_decoder=on,
                                 **dict(TINY, batch_rays=256, detail="hashgrid")), scene, device="cpu")
        net = tr.model.geometry.base.net
        tr.train(stop_after=3)
        w1 = [p.detach().clone() for p in net.parameters()]
        tr.train(stop_after=6)
        groups = {g["name"]: g for g in tr.optimizer.param_groups}
        assert {"detail", "latent", "rendering"} <= set(groups) and ("geometry" in groups) == on
        if on:
            assert groups["geometry"]["lr"] == pytest.approx(0.1 * groups["rendering"]["lr"])  # finetune_lr: lr / 10
        changed = any(not torch.equal(a, b) for a, b in zip(w1, net.parameters()))
        assert changed == on and all(p.requires_grad == on for p in net.parameters())
    with pytest.raises(ValueError, match="finetune_decoder needs --detail hashgrid"):
        make_config("fast", method="h3dnet", detail="none", finetune_decoder=True)
