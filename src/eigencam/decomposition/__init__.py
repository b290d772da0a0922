"""Decomposition of captured activations: the Eigen-CAM maths and its eigen-solvers."""

from eigencam.decomposition.projection import Decomposition, eigen_cam
from eigencam.decomposition.solvers import SOLVERS

__all__ = ["SOLVERS", "Decomposition", "eigen_cam"]
