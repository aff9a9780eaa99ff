"""Shared pytest fixtures: the shared-data folder (skips with a reason when absent) and CUDA availability."""
import pytest
import torch

from headrecon import shared_dir
from headrecon._backend import has_cuda_backend

HAS_CUDA = bool(torch.cuda.is_available()) and has_cuda_backend()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device and headrecon built with CUDA")


@pytest.fixture(scope="session")
def shared_data():
    """Path to ``shared/data``; skips the test when the shared folder is absent."""
    root = shared_dir()
    if root is None:
        pytest.skip("shared data absent: set HEADRECON_SHARED or place shared/ beside the checkout")
    return root / "data"
