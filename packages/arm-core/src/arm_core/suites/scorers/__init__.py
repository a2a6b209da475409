"""Suite scorers (kind ``scorer``, entry-point group ``arm.scorers``); the interface is in :mod:`.base`."""

from arm_core.suites.scorers.base import Scorer, ScoreRecord, ScorerError, ScoreTable, SuiteItem

__all__ = ["Scorer", "ScoreRecord", "ScorerError", "ScoreTable", "SuiteItem"]
