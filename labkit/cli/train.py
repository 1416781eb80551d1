"""`labkit train-mtp` (placeholder: the trainer's own parser replaces this file at merge)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    from labkit.training.train_mtp import register_cli

    register_cli(sub)
