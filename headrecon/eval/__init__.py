"""Evaluation with the H3DS protocol: alignment (landmarks, similarity ICP), Chamfer distances in mm for the
full head and the 95 mm face region, error-coloured meshes and heat maps."""
from .metrics import (
                      METRIC_KEYS,
                      EvalDetails,
                      evaluate,
                      evaluate_with_own_landmarks,
                      icp_similarity,
                      landmark_alignment,
                      observed_vertices,
                      point_to_surface,
)

__all__ = ["METRIC_KEYS", "EvalDetails", "evaluate", "evaluate_with_own_landmarks", "icp_similarity",
           "landmark_alignment", "observed_vertices", "point_to_surface"]
