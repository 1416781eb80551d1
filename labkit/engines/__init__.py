"""Engines behind one small protocol: labkit's own loop, transformers' generate, and a serving engine over HTTP
(llama.cpp's llama-server, vLLM, SGLang). Each returns labkit.core.metrics Counts, so every table takes any engine."""

from labkit.engines.base import Engine, EngineRun
from labkit.engines.local import LabkitEngine, TransformersEngine
from labkit.engines.server import ServerEngine, spec_counters

__all__ = ["Engine", "EngineRun", "LabkitEngine", "ServerEngine", "TransformersEngine", "spec_counters"]
