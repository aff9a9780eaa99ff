"""The Xu et al. prior: template + deformation + colour network learnt from images by volume rendering
(:mod:`.model`; training: :mod:`.train`; reconstruction: :mod:`headrecon.methods.xu`)."""
from .model import XuPrior, default_xu_path, load_xu, xu_network_config

__all__ = ["XuPrior", "default_xu_path", "load_xu", "xu_network_config"]
