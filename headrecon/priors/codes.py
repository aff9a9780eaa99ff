"""The code prior of an auto-decoder's latents when a reconstruction fits them: ``w (z - mean)^T P (z - mean)``.

``P`` is the identity by default (DeepSDF's isotropic Gaussian, ``w ||z - mean||^2``) or, with
:func:`code_precision`, the scaled inverse covariance of the model's own training codes (a Mahalanobis prior): the
directions in which the training shapes' codes vary move freely, the ones they never used are held. ``P`` is scaled
so that an isotropic code set gives the identity back, so the weight ``w`` keeps its meaning.
"""
from __future__ import annotations

import torch

__all__ = ["CodePrior", "code_precision", "code_prior"]


def code_precision(codes: torch.Tensor, shrink: float = 0.01) -> torch.Tensor:
    """``[D, D]`` precision of training ``codes [N, D]``: ``s (C + shrink s I)^-1`` with ``C`` their covariance and
    ``s = trace(C) / D`` (so isotropic codes give ``I / (1 + shrink)``); ``shrink`` bounds the weight of a direction
    the codes never used at ``1 / shrink`` times the isotropic one."""
    codes = torch.as_tensor(codes).detach().double()
    if codes.ndim != 2 or codes.shape[0] < 2:
        raise ValueError(f"need codes [N >= 2, D], got {tuple(codes.shape)}")
    if not shrink > 0:
        raise ValueError(f"shrink must be > 0, got {shrink}")
    d = codes.shape[1]
    cov = torch.cov(codes.T).reshape(d, d)
    s = float(torch.trace(cov)) / d
    if not s > 0:
        raise ValueError("the training codes do not vary: no covariance to take")
    prec = s * torch.linalg.inv(cov + shrink * s * torch.eye(d, dtype=cov.dtype))
    return (0.5 * (prec + prec.T)).float()


def code_prior(latent: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor | None = None) -> torch.Tensor:
    """``(z - mean)^T P (z - mean)`` (``||z - mean||^2`` when ``precision`` is None)."""
    d = latent - mean
    if precision is None:
        return d.pow(2).sum()
    return d @ precision.to(d.dtype) @ d


class CodePrior:
    """Mixin of an ``nn.Module`` that fits a latent code (parameter ``latent``, buffer ``latent_mean``): the code
    prior's weight ``latent_reg``, its optional precision buffer ``latent_precision`` (None: identity) and the term
    :meth:`latent_loss`. The module's ``__init__`` calls :meth:`init_code_prior` after ``nn.Module.__init__``."""

    def init_code_prior(self, latent_reg: float) -> None:
        self.latent_reg = float(latent_reg)
        self.register_buffer("latent_precision", None)  # set to code_precision(...) for a Mahalanobis prior

    def latent_loss(self) -> torch.Tensor:
        """``latent_reg * (z - mean)^T P (z - mean)`` (``P`` = ``latent_precision``, identity when None: the
        auto-decoder's Gaussian code prior ``latent_reg * ||z - mean||^2``)."""
        return self.latent_reg * code_prior(self.latent, self.latent_mean, self.latent_precision)
