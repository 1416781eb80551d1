"""The decoding core: the draft/verify round (engine), acceptance, sampling, KV cache, records."""
