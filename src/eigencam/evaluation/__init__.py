"""Evaluation of explanation maps: localization, faithfulness, robustness."""
