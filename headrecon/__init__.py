"""headrecon: few-shot full-head 3D reconstruction (H3D-Net / SIRA++) with a C++/CUDA ray-marching engine.

Layout: the engine's kernels are in ``csrc/`` and exposed by ``headrecon.ops`` and ``headrecon.render``; networks in
``headrecon.models``; the learned head prior in ``headrecon.prior``; the fitting loop in ``headrecon.recon``; scenes in
``headrecon.data``; metrics in ``headrecon.eval``.

Importing this package never compiles anything and never fails on a CPU-only machine: the compiled extension
``headrecon._C`` is loaded lazily on first use (see :func:`build_info`).
"""
from ._backend import build_info
from .paths import shared_dir

__version__ = "0.1.0"
__all__ = ["build_info", "shared_dir", "__version__"]
