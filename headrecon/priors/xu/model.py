"""The prior of Xu et al. ("Deformable Model Driven Neural Rendering for High-fidelity 3D Reconstruction of Human
Heads Under Low-View Settings"): a template SDF, a code-conditioned deformation field and a colour network, learnt
**from images** of many heads by VolSDF volume rendering (no 3D supervision).

The networks are those of the SIRA++ model (:class:`headrecon.priors.sira.model.SiraPrior`, same structure:
``f_i(x) = T(x + D(x, z_i))`` with a template ``T`` and a deformation ``D`` conditioned on a per-head shape code,
and a colour network ``c(x_ref, n, v, gamma; z_c)`` with a per-head colour code), plus VolSDF's learnable density
scale ``beta``. What differs from SIRA++ is how it is learnt (:mod:`headrecon.priors.xu.train`: volume rendering of
posed images, Xu et al.'s losses) and how it is used (:mod:`headrecon.methods.xu`: volume rendering at test time,
then a displacement field). Differences from the paper's networks, by choice (docs/methods/xu.md): the template
feeds no feature vector to the colour network (the colour network reads the template point, the deformation
feature and the colour code), and the sizes are CPU-sized in the ``fast`` preset.

The model lives in a prior frame (:mod:`headrecon.priors.normalization`; the bust frame for busts) like the other
priors, so a reconstruction places it with :func:`headrecon.photos.frame.scene_prior_frame`.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ...weights import save_weights
from ..normalization import Normalization
from ..sira.model import SiraConfig, SiraPrior

__all__ = ["XU_FORMAT", "XuPrior", "xu_network_config", "load_xu", "default_xu_path"]

XU_FORMAT = "headrecon-xu"
XU_VERSION = 1


def xu_network_config(preset: str = "fast", **overrides) -> SiraConfig:
    """The networks of the Xu et al. prior (a :class:`SiraConfig`; only its network fields and ``latent_reg`` are
    used). ``paper``: the public code's sizes (template 8 x 256 with a skip at 4, deformation 4 x 256, 128-d shape and
    colour codes, colour network 4 x 256); ``fast``: CPU sizes."""
    if preset == "paper":
        cfg = dict(def_hidden=256, def_layers=4, def_freqs=6, ref_hidden=256, ref_layers=8, ref_skip=(4,), ref_freqs=6,
                   latent_dim=128, app_latent_dim=128, d_gamma=64, render_hidden=256, render_layers=4, view_freqs=4,
                   sphere_radius=0.5, latent_reg=1e-3, preset="xu-paper")
    elif preset == "fast":
        cfg = dict(def_hidden=96, def_layers=3, def_freqs=4, ref_hidden=128, ref_layers=4, ref_skip=(2,), ref_freqs=6,
                   latent_dim=32, app_latent_dim=16, d_gamma=16, render_hidden=64, render_layers=2, view_freqs=4,
                   sphere_radius=0.5, latent_reg=1e-3, preset="xu-fast")
    else:
        raise ValueError(f"unknown Xu et al. preset {preset!r}; choose 'fast' or 'paper'")
    cfg.update(overrides)
    return SiraConfig(**cfg)


class XuPrior(SiraPrior):
    """Template + deformation + colour network + per-head codes (:class:`SiraPrior`'s networks) and the learnable
    VolSDF density scale ``beta = beta_min + exp(log_beta)``."""

    def __init__(self, config: SiraConfig, num_latents: int, norm: Normalization | None = None,
                 data: dict | None = None, meta: dict | None = None, beta_init: float = 0.05,
                 beta_min: float = 1e-4):
        super().__init__(config, num_latents, norm=norm, data=data, meta=meta)
        if not beta_init > beta_min >= 0:
            raise ValueError(f"need beta_init > beta_min >= 0, got {beta_init}, {beta_min}")
        self.beta_min = float(beta_min)
        self.log_beta = nn.Parameter(torch.tensor(math.log(beta_init - beta_min)))

    def beta(self) -> torch.Tensor:
        return self.beta_min + self.log_beta.exp()

    # ------------------------------------------------------------------ persistence
    def state(self, dtype: torch.dtype | None = None) -> dict:
        st = super().state(dtype)
        st.update(format=XU_FORMAT, version=XU_VERSION, beta_min=self.beta_min)
        return st

    def save(self, path, half: bool = False) -> Path:
        return save_weights(self.state(torch.float16 if half else None), path)

    @classmethod
    def from_state(cls, state: dict, source: str = "checkpoint") -> "XuPrior":
        if not isinstance(state, dict) or state.get("format") != XU_FORMAT:
            raise ValueError(f"{source}: not a headrecon Xu et al. prior (missing format={XU_FORMAT!r}); train one "
                             "with 'headrecon-train-prior ict --model xu --out PATH'")
        if int(state.get("version", 0)) > XU_VERSION:
            raise ValueError(f"{source}: Xu et al. prior version {state['version']} is newer than this code supports")
        w = state["weights"]
        model = cls(SiraConfig.from_dict(state["config"]), num_latents=int(w["z_sdf.weight"].shape[0]),
                    norm=Normalization.from_dict(state["normalization"]), data=state.get("data"),
                    meta=state.get("meta"), beta_min=float(state.get("beta_min", 1e-4)))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in w.items()})
        return model

    _KIND, _CLI_MODEL, _FORMAT = "Xu et al. prior", "xu", XU_FORMAT

    @classmethod
    def _default_path(cls) -> Path:
        return default_xu_path()


def default_xu_path() -> Path:
    """The shipped prior (``headrecon/assets/prior_xu.pt``)."""
    return Path(__file__).resolve().parents[2] / "assets" / "prior_xu.pt"


def load_xu(path=None, device="cpu") -> XuPrior:
    """``XuPrior.load(path or the shipped prior)`` in eval mode."""
    return XuPrior.load(path, map_location=device).eval()
