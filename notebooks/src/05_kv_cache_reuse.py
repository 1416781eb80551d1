# %% [markdown]
# # 05 · KV cache reuse: what is computed, kept and thrown away each round
#
# **Question.** The target keeps a key/value (KV) cache of every token it has processed, so each forward only
# computes the new positions. Speculative decoding adds positions that may be rejected. What happens to the cache
# in each round — how much is reused, computed, rolled back — and what does a drafter's *own* cache cost compared
# with an MTP drafter that reads the target's?
#
# Each round of the engine:
# 1. the drafter proposes *k* tokens (a draft model extends **its own** cache by *k* positions);
# 2. the target runs one forward over the pending token + the *k* drafts: **k + 1 new positions** are computed;
# 3. after verification the rejected positions are **rolled back** (the cache is cropped), in both caches.

# %% labkit-first-cell

# %%
from labkit import SpeculativeDecoder, load_target
from labkit.drafters import EarlyExitDrafter
from labkit.measure.prompts import prompt_set

target = load_target("gemma3-270m", device=DEVICE)
prompt = prompt_set()["conversation"][1]
N = ci_scale(48, 32)

# %% [markdown]
# ## Live: a drafter with its own cache
#
# The **early-exit** drafter runs the target's first 12 of 18 layers (sharing their weights) and keeps a cache
# for those 12 layers — structurally a small separate draft model. Watch both caches round by round: grey is reused
# from earlier rounds, green was computed this round and kept, red was computed and rolled back (rejected drafts).
# The draft model feeds only drafts 1 … k−1 into its cache (draft k is never an input), so after a full acceptance
# its cache trails the target's by one token; it feeds that token together with the next round's first input.

# %%
from labkit.lab.widgets import KVTimeline

timeline = KVTimeline(title="early exit (12 layers) ·")
display(timeline)
early = EarlyExitDrafter(12)
res_early = SpeculativeDecoder(target, early, k=4, hooks=[timeline]).generate(prompt, max_new_tokens=N)

# %%
# NBVAL_IGNORE_OUTPUT
df = res_early.to_dataframe()
df["target_computed"] = df.target_kv_after_verify - df.target_kv_before
df["target_rolled_back"] = df.target_kv_after_verify - df.target_kv_after_rollback
df[["index", "n_drafted", "accepted", "target_kv_before", "target_computed", "target_rolled_back",
    "drafter_kv_before", "drafter_kv_after_draft", "drafter_kv_after_rollback"]].head(10)

# %% [markdown]
# Totals over the generation: every position the target computed is either kept (it becomes part of the output)
# or rolled back. Rolled-back positions are the price of speculation — paid in arithmetic, which notebook 01
# showed is nearly free during a memory-bound forward.

# %%
# NBVAL_IGNORE_OUTPUT
computed = sum(r.target_kv.computed for r in res_early.rounds)
discarded = sum(r.target_kv.discarded for r in res_early.rounds)
print(f"target: {computed} positions computed in {len(res_early.rounds)} forwards, {discarded} rolled back "
      f"({100 * discarded / computed:.0f}%), {computed - discarded} kept")

# %% [markdown]
# ## Memory: a drafter's own cache vs a shared-KV MTP drafter
#
# A separate draft model needs a KV cache of its own, growing with the context just like the target's. An MTP
# drafter in the Gemma 4 style keeps **no** cache: its attention layers read the K/V the target has already
# computed (from one sliding-window layer and one global layer). Its extra memory is zero bytes per token.

# %%
from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.lab.experiments import cache_bytes, kv_bytes_per_token

mtp = MTPDrafter.pretrained("gemma3-270m")
mtp_timeline = KVTimeline(title="MTP ·", drafter=False)
display(mtp_timeline)
res_mtp = SpeculativeDecoder(target, mtp, k=4, hooks=[mtp_timeline]).generate(prompt, max_new_tokens=N)

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

per_tok = kv_bytes_per_token(target.model)
L = res_early.rounds[-1].target_kv.after_rollback
rows = [
    {"cache": "target (18 layers)", "bytes per token": per_tok, f"bytes at {L} tokens": per_tok * L},
    {"cache": "early-exit drafter (12 layers)", "bytes per token": per_tok * 12 // 18,
     f"bytes at {L} tokens": cache_bytes(early.cache)},
    {"cache": "separate 270M draft model (for a larger target)", "bytes per token": per_tok,
     f"bytes at {L} tokens": per_tok * L},
    {"cache": "MTP drafter (reads the target's)", "bytes per token": 0, f"bytes at {L} tokens": 0},
]
reads = [r.reused_target_state for r in res_mtp.rounds if r.drafted]
print(f"each MTP draft step attended to up to {max(reads)} cached target positions (the sliding window's and the "
      "global layer's K/V) and computed no K/V of its own")
pd.DataFrame(rows)

# %% [markdown]
# Note the early-exit cache's measured size can be larger than 12/18 of the target's per token: labkit asks
# transformers to keep the whole past in sliding-window layers (`activate_past_recording`) so a rollback never
# needs positions a window already dropped. At 270M parameters these are kilobytes per token; for a 31B target
# and a 1B draft model at 100k tokens of context, a draft model's cache is gigabytes — the memory an MTP drafter saves.
#
# ## Check
#
# After every round the target cache holds every committed token except the newest (it is the next forward's
# input), a draft model's cache matches it after a rejection and trails it by the one draft it never fed after a
# full acceptance, and the MTP drafter keeps no cache.

# %%
for res in (res_early, res_mtp):
    for r in res.rounds:
        kv = r.target_kv
        assert kv.after_rollback == r.context_len + len(r.emitted) - 1, r.index
        assert kv.computed == len(r.drafted) + 1 and kv.discarded == len(r.drafted) - (len(r.emitted) - 1)
for r in res_early.rounds:
    lag = r.target_kv.after_rollback - r.drafter_kv.after_rollback
    if r.drafted and r.finished != "eos":  # (a round that drafts nothing feeds nothing: the lag then grows)
        assert lag == (1 if r.accepted == len(r.drafted) else 0), (r.index, lag)
assert all(r.drafter_kv is None for r in res_mtp.rounds), "the MTP drafter keeps no cache of its own"
print("✓ caches consistent every round; rolled-back positions = rejected drafts; MTP adds no cache")
