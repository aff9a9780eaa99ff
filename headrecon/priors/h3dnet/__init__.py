"""The H3D-Net head prior: a DeepSDF-style auto-decoder trained on raw (incomplete, noisy) head scans.

Model (:mod:`.model`): an SDF decoder ``F(x, z)`` — a :class:`headrecon.models.GeometryNetwork` over the
positionally encoded point (6 frequencies) concatenated with a per-shape latent ``z`` (256 by default), 8 x 512
Softplus MLP with a skip connection from the input to the 4th layer — and one latent per training shape
(``nn.Embedding``). Presets in :mod:`.config` (``paper``; ``fast`` for CPUs).

Training (:mod:`.train`, CLI ``headrecon-train-prior``): surface loss ``|F|`` on scan points, eikonal loss on
volume samples, optional IGR normal loss, a boundary term (``F >= 0`` on the unit sphere, so open scans close
inside it), latent loss ``||z||^2 / sigma^2``; Adam with step decay; periodic checkpoints and exact resume;
DistributedDataParallel under ``torchrun`` (gloo on CPU, nccl on CUDA). :mod:`.methods` registers
``--method h3dnet`` with the reconstruction loop.

Data (:mod:`.scans`): ICT-FaceKit heads turned into raw scans (missing back of the head, holes, sensor noise)
or a folder of the user's scans (ply/obj/stl/off/glb point clouds or meshes).

Coordinate frame (:mod:`.normalization`): the prior lives in the reconstruction's unit-sphere frame, with a
fixed similarity for all heads: ``x_mm = 250 * x_unit + (0, -24, 19.3)`` in the ICT model frame (+Y up, +Z out
of the face, mm). :func:`prior_normalization` gives the ``scale_mat`` that aligns a user's head (mesh or
landmarks) with it.

Identities (ICT-FaceKit seeds of :func:`headrecon.data.ict.sample_ict_head`):
  * ``TRAIN_SEEDS = range(0, 100000)`` — training identities; a prior trained on N ICT shapes uses seeds
    ``0 .. N-1`` (training index i = seed i).
  * ``HELDOUT_SEEDS = range(100000, 200000)`` — held-out identities, never used for training: the latent-fit
    check (:mod:`.fit`) and the reconstruction benchmarks use seeds ``100000, 100001, ...``.

Sanity tools: :mod:`.fit` (auto-decoder inference: optimise only the latent of a held-out raw scan, mesh it,
report the error in mm; ``python -m headrecon.priors.h3dnet.fit``) and :mod:`.interpolate` (render a latent
interpolation strip to a PNG; ``python -m headrecon.priors.h3dnet.interpolate``).

Using the prior in a reconstruction (H3D-Net)::

    from . import load_prior
    from .. import prior_normalization
    prior = load_prior()                       # the shipped prior (headrecon/assets/prior_h3dnet_bust.pt)
    S = prior_normalization(landmarks=lm_mm)   # prior unit -> scene mm; or use the scene's scale_mat and
    frame = np.linalg.inv(S) @ scene.scale_mat #   compose the frames (scene unit -> prior unit)
    net = prior.geometry_network(z=None, frame=frame)  # LatentGeometry, latent initialised to the mean
    net.set_phase("latent")   # phase 1: optimise net.latent only (add net.latent_loss())
    net.set_phase("all")      # phase 2: latent and decoder weights
    sdf, feature = net(x)     # same interface as GeometryNetwork (feature rows are untrained by the prior)
"""
from .config import PRESETS, PriorConfig, preset
from .model import LatentGeometry, ShapePrior, default_prior_path, load_prior

PriorModel = ShapePrior  # alias

__all__ = ["PriorConfig", "PRESETS", "preset", "ShapePrior", "PriorModel", "LatentGeometry", "load_prior",
           "default_prior_path"]
