"""Runs over image files: ``explain`` (:mod:`~eigencam.pipeline.explain`) and ``compare``."""

from eigencam.pipeline.explain import ExplainReport, OutputOptions, explain_files

__all__ = ["ExplainReport", "OutputOptions", "explain_files"]
