"""labkit: see and measure speculative (draft/verify, MTP) decoding of real language models."""

from .engine import SpeculativeDecoder, plain_decoder
from .events import GenerationResult, KVTrace, RoundRecord, Stats
from .models import Target, load_target, tiny_model, tiny_pair
from .sampling import MAX_K, SamplingConfig

__version__ = "0.1.0"
__all__ = ["SpeculativeDecoder", "plain_decoder", "GenerationResult", "KVTrace", "RoundRecord", "Stats", "Target",
           "load_target", "tiny_model", "tiny_pair", "MAX_K", "SamplingConfig"]
