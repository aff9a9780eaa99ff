"""Launch a two-process gloo run with ``torch.distributed.run`` for the DDP tests of the priors' trainers, with one
OpenMP thread per process and Python's faulthandler on (a crashing worker prints every thread's Python stack)."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

# C++'s message when std::terminate runs outside an exception: a worker of the Xu et al. test aborted with it
# (SIGABRT) once, in a full run of the README's test command; 32 runs of that test alone (quiet, or beside two
# benchmark jobs) never did. Such a launch is retried once with a warning that carries its output (faulthandler's
# stacks included); a second abort, or any other failure, fails the test.
TEARDOWN_ABORT = "terminate called without an active exception"


def run_torchrun(args, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node=2 *args``: asserts that it succeeded (showing
    the ends of its output otherwise) and returns the finished process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0 and TEARDOWN_ABORT in r.stderr and "SIGABRT" in r.stderr:
        warnings.warn(f"a gloo worker aborted ({TEARDOWN_ABORT!r}); launched once more. Its output:\n"
                      f"{r.stdout[-2000:]}{r.stderr[-6000:]}", RuntimeWarning, stacklevel=2)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r
