"""Pipelines over files: threaded loading, batched explanation, atomic writing."""

from eigencam.pipeline.explain import ExplainReport, OutputOptions, explain_files
from eigencam.runs.source import LoadedImage, LoadFailure, iter_batches

__all__ = [
    "ExplainReport",
    "LoadFailure",
    "LoadedImage",
    "OutputOptions",
    "explain_files",
    "iter_batches",
]
