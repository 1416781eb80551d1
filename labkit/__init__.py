"""labkit: see and measure speculative (draft/verify, MTP) decoding of real language models."""

from labkit.core.engine import SpeculativeDecoder, plain_decoder
from labkit.core.records import GenerationResult, KVTrace, RoundRecord, Stats
from labkit.core.sampling import MAX_K, SamplingConfig
from labkit.models.load import Target, load_target
from labkit.models.tiny import tiny_model, tiny_pair

__version__ = "0.1.0"
__all__ = ["SpeculativeDecoder", "plain_decoder", "GenerationResult", "KVTrace", "RoundRecord", "Stats", "Target",
           "load_target", "tiny_model", "tiny_pair", "MAX_K", "SamplingConfig"]
