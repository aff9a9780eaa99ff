"""Launch a two-process gloo run with ``torch.distributed.run`` for the DDP tests of the priors' trainers, with one
OpenMP thread per process and Python's faulthandler on (a crashing worker prints every thread's Python stack)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

# A gloo worker of the Xu et al. DDP test has died of a signal in full runs of the README's test command and never
# in that launch repeated alone (32 runs, then 57 more, 17 of them beside a busy process): twice SIGABRT with C++'s
# "terminate called without an active exception", once SIGSEGV. The stacks of the third (faulthandler, shown since)
# hold no Python frame: the worker had finished its script (destroy_process_group included) and died in the
# interpreter's teardown, the kind of exit crash pytorch/pytorch#179291 and #190489 report. The tests' scripts now end
# their workers as `headrecon-train-prior` does (finish_ddp_worker: no teardown). A launch that still crashes is
# retried once with a warning that carries the crash's stacks; a second crash, or any other failure (an exception,
# a wrong result), fails the test.
WORKER_SIGNALS = ("(SIGABRT)", "(SIGSEGV)")


def crash_report(stderr: str) -> str:
    """The faulthandler sections of ``stderr`` (each from "Fatal Python error" to the stacks' end, without the long
    list of loaded extension modules that follows them), or "" when no worker crashed."""
    sections = re.findall(r"Fatal Python error.*?(?=\nExtension modules:|\Z)", stderr, flags=re.S)
    return "\n".join(s[:6000] for s in sections)


def worker_crashed(r: subprocess.CompletedProcess) -> bool:
    """A worker of the launch died of SIGABRT or SIGSEGV (torchrun's failure summary names the signal)."""
    return r.returncode != 0 and any(s in r.stderr for s in WORKER_SIGNALS)


def describe(r: subprocess.CompletedProcess) -> str:
    """The crash's stacks, then the ends of the launch's output."""
    crash = crash_report(r.stderr)
    tail = re.sub(r"\nExtension modules:[^\n]*", "", r.stderr)[-4000:]
    return (f"crash stacks:\n{crash}\n" if crash else "") + r.stdout[-2000:] + tail


def run_torchrun(args, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node=2 *args``: asserts that it succeeded (showing
    the crash's stacks and the ends of its output otherwise) and returns the finished process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if worker_crashed(r):
        warnings.warn(f"a gloo worker died of a signal; launched once more. Its output:\n{describe(r)}",
                      RuntimeWarning, stacklevel=2)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, describe(r)
    return r
