"""The SIRA++ shape-and-appearance model: :mod:`.model` (configuration, networks, losses, persistence,
reconstruction modules) and :mod:`.train` (``headrecon-train-prior ict --model sira``)."""
from .model import SiraConfig, SiraPrior, load_sira

__all__ = ["SiraConfig", "SiraPrior", "load_sira"]
