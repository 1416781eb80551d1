"""Engines behind one small protocol: labkit's own loop, transformers' generate, and a serving engine over HTTP
(llama.cpp, vLLM, SGLang, LM Studio; every engine's format is read in formats.py). Each returns
labkit.core.metrics Counts, so every table takes any engine."""

from labkit.engines.base import Engine, EngineRun
from labkit.engines.formats import spec_counters
from labkit.engines.local import LabkitEngine, TransformersEngine
from labkit.engines.server import ServerEngine

__all__ = ["Engine", "EngineRun", "LabkitEngine", "ServerEngine", "TransformersEngine", "spec_counters"]
