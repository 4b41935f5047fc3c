"""pdstudy: a reproducibility study package for Progressive Distill (PD) on gastric-cancer CT."""

__version__ = "0.1.0"
