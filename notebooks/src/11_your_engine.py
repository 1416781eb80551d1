# %% [markdown]
# # 11 · Your engine: what llama.cpp does with the same model on this machine
#
# **Question.** You run llama.cpp (or Ollama, LM Studio, vLLM), not labkit. Turn on its speculative decoding: how
# many drafts does it accept, by position, how much faster is it, and how does that compare with what labkit's
# lab measures? And what can the server *not* tell you?
#
# **What we run.** llama.cpp's own `llama-server`, built from source once per machine (`labkit llama-server build`,
# or `make test` does it), on the **same GGUF file** labkit's embedded target comes from (Gemma 3 270M, Q4_K_M).
# labkit starts each configuration as its own server on 127.0.0.1, talks to it over its HTTP API, reads its
# Prometheus counters (`/metrics`: `llamacpp:spec_decode_*`, the same counters vLLM exports), and stops every server
# when the notebook is done with it — also after an error, Ctrl-C or a killed kernel. The counters go through the
# lab's one metrics module, so "mean acceptance length" here means what it means in vLLM, in llama.cpp and in
# every other notebook (`docs/metrics.md`).

# %% labkit-first-cell

# %%
from labkit.engines import llama_cpp
from labkit.measure.prompts import prompt_set
from labkit.models.embedded import gguf_path

binary = llama_cpp.find_binary()  # --llama-server PATH / $LABKIT_LLAMA_SERVER / labkit's build, in that order
gguf = gguf_path()
ps = prompt_set()
PROMPTS = [prompts[0] for prompts in ps.values()][: ci_scale(6, 3)]  # one per bench category
N = ci_scale(96, 48)
KS = ci_scale([1, 2, 4, 8], [2, 4])
print(f"llama-server: {binary}\nmodel: {gguf.name}; {len(PROMPTS)} prompts x {N} tokens, greedy")

# %% [markdown]
# ## Plain decoding and llama.cpp's n-gram drafter, side by side
#
# One server per configuration: plain decoding, `--spec-default` (llama.cpp's recommended n-gram drafter,
# *ngram-mod*, with its own draft lengths), and `--spec-type ngram-simple --spec-draft-n-max k` for each *k*
# (llama.cpp compiles out per-request draft lengths, so each *k* is its own server). All of them run every prompt,
# in a shuffled order per prompt (labkit's one sweep runner), twice, so that the machine's noise hits them alike.
# Speed is end-to-end tokens per second of each request, timed by labkit around the HTTP call, and decode tokens per
# second from the server's own timings (`predicted_ms`: the prompt's processing and the HTTP round trip left out, as
# labkit's decode tok/s leaves out the prefill).

# %%
# NBVAL_IGNORE_OUTPUT
import contextlib

from labkit.engines.llama_cpp import LlamaCppEngine
from labkit.measure.sweep import run_side_by_side

configs = {"plain": ("plain", 0), "ngram-mod (--spec-default)": ("ngram-mod", 0),
           **{f"ngram-simple k={k}": ("ngram-simple", k) for k in KS}}
stack = contextlib.ExitStack()  # every server stops when the stack closes, whatever happens in between
engines = {label: stack.enter_context(LlamaCppEngine(gguf, method, k)) for label, (method, k) in configs.items()}

records = run_side_by_side(engines, {"": PROMPTS}, N, repeats=ci_scale(2, 1))
print(f"{len(records)} requests to {len(engines)} servers")

# %% [markdown]
# The table: each configuration's counters pooled over its requests, through `labkit.core.metrics`. The server
# counts drafts, draft tokens, accepted tokens and accepted tokens per position; the verify steps follow from them
# (every step emits one token of the target's own plus its accepted drafts). What it does not count — rejections,
# the probability of each draft — leaves α and the conditional view empty: only labkit's glass box has those.

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

from labkit.core import metrics

by_config = {label: [r for r in records if r["config"] == label] for label in configs}
pooled = {label: metrics.metrics(r["result"].counts for r in rs) for label, rs in by_config.items()}
tok_s = {label: metrics.median_over(metrics.end_to_end_tok_s(metrics.counts(r["result"].counts
                                                                            for r in rs if r["repeat"] == rep))
                                    for rep in {r["repeat"] for r in rs}) for label, rs in by_config.items()}
table = pd.DataFrame({label: {"end-to-end tok/s": tok_s[label],
                              "x llama.cpp plain": metrics.speedup(tok_s[label], tok_s["plain"]),
                              "decode tok/s (its timings)": m.decode_tok_s,
                              "x plain, decode": metrics.speedup(m.decode_tok_s, pooled["plain"].decode_tok_s),
                              "tokens per verify": m.tokens_per_verify,
                              "mean acceptance length": m.mean_acceptance_length,
                              "draft acceptance rate": m.draft_acceptance_rate,
                              "drafts": m.counts.drafts, "draft tokens": m.counts.draft_tokens}
                      for label, m in pooled.items()}).T
table.round(3)

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab import figures

spec = {label: m.counts for label, m in pooled.items() if m.counts.drafts}
figures.acceptance_by_position(spec, title="llama.cpp: acceptance by draft position (from its /metrics counters)")

# %% [markdown]
# ## Is it lossless?
#
# Greedy decoding with a drafter should produce plain decoding's tokens: llama.cpp keeps a draft only if it is the
# target's own greedy choice. But the verify scores several tokens in one batched forward, and batched arithmetic
# rounds differently from a one-token forward — the bf16 effect of notebook 03, here in llama.cpp's quantized
# kernels. Where the target's top two tokens are nearly tied, that can flip the choice, and the texts part ways from
# there. So each difference is checked: at the first differing token, are plain decoding's top two log-probabilities
# (asked of the plain server again) the two tokens chosen, and within 0.25 nats?

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.engines.llama_cpp import greedy_difference

plain_runs = {r["prompt"]: r["tokens"] for r in by_config["plain"] if r["repeat"] == 0}
diffs = {label: [d for r in rs if r["repeat"] == 0
                 if (d := greedy_difference(engines["plain"], PROMPTS[r["prompt"]], plain_runs[r["prompt"]],
                                            r["tokens"]))]
         for label, rs in by_config.items() if label != "plain"}
for label, ds in diffs.items():
    if not ds:
        print(f"{label}: the same tokens as plain decoding on every prompt")
    else:
        print(f"{label}: differs from plain decoding on {len(ds)} of {len(PROMPTS)} prompts, each at a near-tie "
              if all(d["near_tie"] for d in ds) else f"{label}: differs where the target was not near a tie: ",
              ", ".join(f"token {d['position']} ({d['gap']:.2f} nats between the top two)" for d in ds))

# %% [markdown]
# ## llama.cpp's own verify cost, and what the theory predicts from it
#
# The lab's theory needs T(n)/T(1), a forward over n tokens against one over 1 token, measured **in the engine that
# verifies**. llama.cpp's per-request timings give it: the time to process one batch of n tokens
# (`timings.prompt_ms`) is the work of a verify over n tokens (here on an empty cache: llama.cpp cannot roll Gemma
# 3's sliding-window cache back to an arbitrary prefix). Interleaved over several rounds, medians.
# With it, each configuration's predicted speedup is its tokens per verify over the average cost of its verify
# steps (`labkit.measure.theory.served_speedup`: n-gram drafting is free next to a forward).

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.measure.theory import served_speedup

cost = engines["plain"].client.verify_cost(KS, rounds=ci_scale(7, 4))  # a VerifyCost keyed by draft length k
print("llama.cpp verify cost T(n)/T(1): " + ", ".join(f"{k + 1} tokens {cost.raw[k]:.2f}x (±{cost.half_spread(k):.2f})"
                                                       for k in cost.ks))
pred = {label: served_speedup(m.counts, cost) for label, m in pooled.items() if label.startswith("ngram-simple")}
print(pd.DataFrame({label: {"measured x plain, decode": table.loc[label, "x plain, decode"], "predicted": p}
                    for label, p in pred.items()}).T.round(2))
for label, p in pred.items():
    got = table.loc[label, "x plain, decode"]
    print(f"{label}: measured {got:.2f}x against {p:.2f}x predicted from tokens per verify and the verify cost"
          + (": the verify cost explains it" if abs(got - p) <= 0.1 * p else
             ": below the prediction, so something else costs time per step (drafting, sampling and bookkeeping "
             "the batch timing leaves out)" if got < p else ": above the prediction (the batch timing overstates "
             "a verify's cost)"))

# %%
stack.close()  # every server stopped
print("servers running:", sum(e.server.alive() for e in engines.values()))

# %% [markdown]
# ## What only the glass box shows
#
# The server's counters say *how many* drafts were accepted, at which positions. They do not say *why*: for an
# accepted draft llama.cpp reports probability 1.0, and nothing about a rejected one. labkit's engine records, for
# every drafted token, the target's p(x), the drafter's q(x), the draw u and the verdict, and the KV cache before
# and after every round (notebooks 00, 02, 05). Here is one labkit round on the same prompt with the same kind of
# drafter, next to what the server counted:

# %%
# NBVAL_IGNORE_OUTPUT
from labkit import SpeculativeDecoder, load_target
from labkit.drafters import NGramDrafter

target = load_target("gemma3-270m", device=DEVICE)
glass = SpeculativeDecoder(target, NGramDrafter(3), k=4).generate(PROMPTS[0], max_new_tokens=N)
first = next(r for r in glass.rounds if r.drafted)
print(f"labkit round {first.index}: drafted {first.drafted}, p(x) {[round(p, 3) for p in first.p]}, accepted "
      f"{first.accepted}, KV {first.target_kv.before} -> {first.target_kv.after_verify} -> "
      f"{first.target_kv.after_rollback}")
server = pooled[f"ngram-simple k={KS[-1]}"].counts
print(f"llama.cpp ngram-simple k={KS[-1]}: {server.drafts} drafts, {server.accepted} of {server.draft_tokens} draft "
      f"tokens accepted, by position {list(server.accepted_per_pos)} — and no p, q, u or rollback")

# %% [markdown]
# ## Your own server
#
# Any llama-server started with `--metrics`, or a vLLM / SGLang server, works the same way:
#
# ```python
# from labkit.engines import ServerEngine
# from labkit.core import metrics
# eng = ServerEngine("http://127.0.0.1:8080")           # a llama-server you started, or vLLM's :8000
# runs = [eng.run("Once upon a time", 64) for _ in range(3)]
# metrics.metrics(r.counts for r in runs)                # the same quantities as every table in the lab
# ```
#
# For vLLM, start it with a speculative config and `--per-request-spec-decode-metrics summary`; its per-request
# acceptance lands in `run.raw`. (vLLM's counters are parsed from the format vLLM documents; this notebook has not
# run against a live vLLM, which needs a GPU.) `labkit bench --engines labkit,transformers,llama.cpp` puts llama.cpp
# into the bench's one table.
#
# ## Check

# %%
assert not any(e.server.alive() for e in engines.values()), "no server outlives the notebook"
assert all(d["near_tie"] for ds in diffs.values() for d in ds), f"every difference from plain is a near-tie: {diffs}"
assert pooled["plain"].counts.drafts == 0 and pooled[f"ngram-simple k={KS[-1]}"].counts.drafts > 0
for label, m in pooled.items():
    if m.counts.drafts:
        assert all(a >= b for a, b in zip(m.acceptance_by_position, m.acceptance_by_position[1:], strict=False))
        assert 1 < m.mean_acceptance_length <= 1 + max(len(m.acceptance_by_position), 1)
assert all(v > 0 for v in cost.raw.values()) and cost.ks == sorted(KS)
print("✓ llama.cpp's drafters keep plain decoding's tokens; its counters give the lab's quantities; no server left")
