"""How often one training iteration makes the host wait for the device (counted through headrecon._sync, where
the tracer and the trainer make every such wait): bounded, and independent of the batch size.

Measured on CPU with the fast preset on a tiny scene (per iteration, 10 iterations): sphere tracing 42-47 (one
compaction per sphere-tracing step, at most ``max_steps`` = 30, plus the search of the unresolved rays), the
coarse/fine search 17, the search with the SDF cache 32 (one compaction per cached network call). The bounds
below leave room for scene-dependent step counts; a wait added per network call or per ray would break them."""
import pytest
from test_recon import TINY, ellipsoid_mesh, one_thread  # noqa: F401  (one_thread is autouse)

from headrecon import _sync
from headrecon.data import load_scene
from headrecon.data.synthetic import make_scene
from headrecon.recon.config import make_config
from headrecon.recon.trainer import Trainer


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("syncs") / "s"
    make_scene(ellipsoid_mesh(), d, views=8, size=64, progress=False)
    return load_scene(d, views="3")


@pytest.mark.parametrize("strategy,cache,bound", [("sphere", False, 30 + 20), ("search", False, 24),
                                                  ("search", True, 40)])
@pytest.mark.parametrize("batch", [128, 512])
def test_host_syncs_per_iteration(scene, strategy, cache, bound, batch):
    cfg = make_config("fast", iterations=20, strategy=strategy, sdf_cache=cache, **dict(TINY, batch_rays=batch))
    assert cfg.max_steps == 30
    tr = Trainer(cfg, scene, device="cpu")
    counts = []
    for _ in range(6):
        c0 = _sync.count()
        tr.step()
        tr.iteration += 1
        counts.append(_sync.count() - c0)
    assert max(counts) <= bound, counts
    assert min(counts) >= 5, counts  # the count sees the tracer's and the trainer's compactions
