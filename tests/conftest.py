"""Shared pytest fixtures: the shared-data folder (skips with a reason when absent), CUDA availability, and one torch
thread for modules that train small networks."""
import os

import pytest
import torch

from headrecon import shared_dir
from headrecon._backend import has_cuda_backend

HAS_CUDA = bool(torch.cuda.is_available()) and has_cuda_backend()
# HEADRECON_REQUIRE_CUDA=1 (tools/gpu_check.sh sets it): the CUDA tests fail instead of skipping without a GPU
REQUIRE_CUDA = os.environ.get("HEADRECON_REQUIRE_CUDA") == "1"
if REQUIRE_CUDA and not HAS_CUDA:
    requires_cuda = pytest.mark.usefixtures("_cuda_is_required")
else:
    requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device and headrecon built with CUDA")


@pytest.fixture
def _cuda_is_required():
    pytest.fail(f"HEADRECON_REQUIRE_CUDA=1 but no CUDA: torch.cuda.is_available()={torch.cuda.is_available()}, "
                f"headrecon CUDA backend built: {has_cuda_backend()}")


@pytest.fixture(scope="session")
def shared_data():
    """Path to ``shared/data``; skips the test when the shared folder is absent."""
    root = shared_dir()
    if root is None:
        pytest.skip("shared data absent: set HEADRECON_SHARED or place shared/ beside the checkout")
    return root / "data"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): small networks train
    several times faster with one thread on a busy machine (no OpenMP contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
