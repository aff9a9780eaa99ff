"""The SIRA++ model's own ``headrecon-train-prior`` flags, one table (flag, type, help): the parser
(:mod:`headrecon.priors.cli`) adds them, refuses them with another ``--model``, and :mod:`.train` maps each to the
same-named :class:`~headrecon.priors.sira.model.SiraConfig` field, so a new option is one line here."""
from __future__ import annotations

__all__ = ["SIRA_OPTIONS", "option_field"]

SIRA_OPTIONS = (
    ("--def-hidden", int, "deformation network width (preset: 128)"),
    ("--def-freqs", int, "positional-encoding frequencies of the deformation network's input (preset: 4)"),
    ("--face-fraction", float, "share of the surface samples drawn within 95 mm of each training head's nose tip (the "
                               "evaluated face; default 0: uniform over the scan, where a bust's larger surface "
                               "outweighs the face)"),
    ("--corr-hidden", int, "width of a correction field added to the warped reference SDF (not in the paper; default "
                           "0: none)"),
)


def option_field(flag: str) -> str:
    """The parsed argument and :class:`~headrecon.priors.sira.model.SiraConfig` field of ``flag``
    (``--corr-hidden`` -> ``corr_hidden``)."""
    return flag[2:].replace("-", "_")
