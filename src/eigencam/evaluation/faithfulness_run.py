"""The former module of ``eigencam faithfulness``, now :mod:`eigencam.evaluation.faithfulness`;
its names stay importable from here."""

from eigencam.evaluation.faithfulness import *  # noqa: F403
