"""The former module of ``eigencam localize``'s outputs, now
:mod:`eigencam.evaluation.localization.report`; its names stay importable from here."""

from eigencam.evaluation.localization.report import *  # noqa: F403
