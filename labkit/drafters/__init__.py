"""Drafters: everything that proposes tokens for the target to verify. All implement ``base.Drafter``."""

from .base import DraftContext, Drafter, Proposal
from .draft_model import DraftModelDrafter
from .early_exit import EarlyExitDrafter
from .ngram import NGramDrafter
from .synthetic import SyntheticDrafter

__all__ = ["DraftContext", "Drafter", "Proposal", "DraftModelDrafter", "EarlyExitDrafter", "NGramDrafter",
           "SyntheticDrafter"]
