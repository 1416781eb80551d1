"""The project's evaluation prompt set: 6 categories x 5 prompts, never used for training."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

CATEGORIES = ("conversation", "code", "summarization", "qa", "math", "translation")


@cache


def prompt_set() -> dict[str, list[str]]:
    """{category: [prompt, ...]} for the six categories."""
    data = json.loads(resources.files("labkit").joinpath("data/prompts.json").read_text(encoding="utf-8"))
    return {c: list(data[c]) for c in CATEGORIES}
