"""The former module of ``eigencam attack``, now :mod:`eigencam.evaluation.attack`; its names
stay importable from here."""

from eigencam.evaluation.attack import *  # noqa: F403
