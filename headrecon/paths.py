"""Where the shared, non-redistributable data lives (ICT-FaceKit model, Lee Perry-Smith scan).

The data is never part of the repository. It is looked up in ``$HEADRECON_SHARED`` (a folder that contains
``data/``), else in ``../shared`` beside the repository checkout.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir(required: bool = False) -> Path | None:
    """The shared folder (containing ``data/ict_facekit`` and ``data/scans``), or None when absent.

    With ``required=True`` a missing folder raises FileNotFoundError naming both places that were tried.
    """
    env = os.environ.get("HEADRECON_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared")
    for c in candidates:
        if (c / "data").is_dir():
            return c
    if required:
        raise FileNotFoundError(
            "shared data not found; looked in " + ", ".join(str(c) for c in candidates)
            + ". Set HEADRECON_SHARED to the folder that contains data/ict_facekit and data/scans."
        )
    return None
