"""Adversarial attacks used by the robustness experiments (DeepFool)."""

from eigencam.attacks.deepfool import DeepFoolResult, deepfool, input_bounds

__all__ = ["DeepFoolResult", "deepfool", "input_bounds"]
