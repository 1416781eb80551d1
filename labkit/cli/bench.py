"""`labkit bench` (placeholder: the bench's own parser replaces this file at merge)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    from labkit.measure.bench import register_cli

    register_cli(sub)
