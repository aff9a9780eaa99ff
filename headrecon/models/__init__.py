"""Networks of the reconstruction: positional encoding, the neural SDF (geometry) and the appearance networks.

* :class:`PositionalEncoding` — log-spaced sin/cos encoding with coarse-to-fine frequency weights.
* :class:`GeometryNetwork` — IDR implicit network ``x -> (sdf, feature)`` with geometric (sphere) init and an
  optional DeepSDF latent code.
* :class:`RenderingNetwork` — IDR rendering network ``(x, n, v, z) -> rgb in [0, 1]``.
* :class:`FeatureNetwork` — geometry-free feature MLP ``x -> z`` (H3D-Net-style split of geometry and appearance).
"""
from .encoding import PositionalEncoding
from .geometry import GeometryNetwork
from .rendering import FeatureNetwork, RenderingNetwork

__all__ = ["PositionalEncoding", "GeometryNetwork", "RenderingNetwork", "FeatureNetwork"]
