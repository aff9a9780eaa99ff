"""Learned head priors, one folder each: :mod:`.h3dnet` (DeepSDF auto-decoder of H3D-Net) and :mod:`.sira`
(SIRA++ shape-and-appearance model). Shared here: the prior frame (:mod:`.normalization`: a fixed similarity
between ICT-FaceKit millimetres and the unit sphere, and where a scene's prior frame comes from), the raw
training scans (:mod:`.scans`), point sampling (:mod:`.sampling`), the training machinery (:mod:`.training`:
DDP, checkpoints, resume) and the ``headrecon-train-prior`` command (:mod:`.cli`).

Identities (ICT-FaceKit seeds of :func:`headrecon.data.ict.sample_ict_head`):
  * ``TRAIN_SEEDS = range(0, 100000)`` — training identities; a prior trained on N ICT shapes uses seeds
    ``0 .. N-1`` (training index i = seed i).
  * ``HELDOUT_SEEDS = range(100000, 200000)`` — held-out identities, never used for training: the latent-fit
    check and the reconstruction benchmarks use seeds ``100000, 100001, ...``.
"""
from .normalization import CENTER_MM, MM_PER_UNIT, Normalization, prior_normalization

TRAIN_SEEDS = range(0, 100000)
HELDOUT_SEEDS = range(100000, 200000)

__all__ = ["Normalization", "prior_normalization", "CENTER_MM", "MM_PER_UNIT", "TRAIN_SEEDS", "HELDOUT_SEEDS",
           "heldout_seeds"]


def heldout_seeds(n: int) -> list[int]:
    """The first ``n`` held-out ICT seeds (100000, 100001, ...), for tests and benchmarks."""
    return list(HELDOUT_SEEDS[: int(n)])
