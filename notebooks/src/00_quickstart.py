# %% [markdown]
# # 00 · Quickstart: watch a model draft and verify
#
# **Question.** Speculative decoding lets a cheap *drafter* guess the next few tokens and the real model (the
# *target*) check all the guesses in **one** forward pass. What does that look like on a real model, token by
# token, and how much faster is it than plain decoding on this machine?
#
# You will see the answer fill in live: every generated token coloured by what happened to it.
#
# | colour | meaning |
# |---|---|
# | <span style="background:#d5f0dc">green</span> | drafted and **accepted** by the target |
# | <span style="background:#fbd9d6"><s>red</s></span> | drafted and **rejected** (not part of the output) |
# | <span style="background:#fdedb8">amber</span> | the target's **replacement** for a rejected draft |
# | <span style="background:#d6e6fb">blue</span> | a **bonus** token: all drafts accepted, the same forward gives one more for free |
#
# Hover any token to see the numbers that decided it.

# %% labkit-first-cell

# %% [markdown]
# ## The target
#
# The target is **Gemma 3 270M** (base model), shipped inside labkit's dependencies so nothing has to be
# downloaded. The first load ever prepares a cache (about a minute); after that it loads in seconds.

# %%
from labkit import SpeculativeDecoder, load_target, plain_decoder

target = load_target("gemma3-270m", device=DEVICE)
print(f"{target.name}: {sum(p.numel() for p in target.model.parameters()) / 1e6:.0f}M parameters, "
      f"{target.dtype}, on {target.device.type}")

# %% [markdown]
# ## The drafter
#
# labkit's best general drafter on its bench (`labkit/data/MODEL_CARD.md`) is a **hybrid** of two:
#
# * **prompt lookup** (an n-gram drafter) finds the last few tokens earlier in the text and proposes whatever
#   followed them there. It costs nothing, so where it finds a match it may draft long. It shines when the output
#   repeats the input — code, summaries, edits — and proposes nothing when there is no match.
# * everywhere else, labkit's **MTP head**: a small trained network (9M parameters, notebook 04) that reads the
#   target's own last hidden state and KV cache, the way Gemma 4's "assistant" drafters do. Every draft step costs
#   one pass of the head, and its guesses get less likely the further ahead they reach, so it drafts short.
#
# How long each drafts is decided round by round by a cost model fed this machine's measured verify cost (a forward
# over more tokens costs more on some machines than on others: notebook 01). Each round's record says which of the
# two drafted and why.
#
# One thing to know about this target: it is a small **base** model (not trained to chat or to stop). Under greedy
# decoding such a model often *loops*: "The capital of France is" continues "the capital of the country of France.
# It is the capital of the country of France. …". A loop repeats text already in the context, so prompt lookup
# drafts it perfectly — its wins on looping text come from the copying, not from cleverness. Every speed notebook
# therefore prints the generated text and its **repetition** (the share of generated 4-grams already seen).
#
# First, plain decoding: one target forward per token. It is the baseline every speedup divides by (it also
# warms the model up, so the comparison below is fair). Then this machine's verify cost, which the hybrid's
# cost model reads (measured once per session, shared by every notebook).

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.drafters import HybridDrafter, MTPDrafter
from labkit.measure.machine import reference

prompt = (
    "def is_prime(n: int) -> bool:\n"
    '    """Return True if n is a prime number."""\n'
    "    if n < 2:\n        return False\n"
    "    for i in range(2, int(n ** 0.5) + 1):\n        if n % i == 0:\n            return False\n"
    "    return True\n\n\n"
    "def is_even(n: int) -> bool:\n"
)
N = 64
K_MAX = 12  # the most either source may draft in one round
plain = plain_decoder(target).generate(prompt, max_new_tokens=N)
print(f"plain decoding: {N} tokens, {len(plain.rounds)} target forwards")
ref = reference(target)  # this machine's verify-cost curve T(k+1)/T(1)
print(f"verify cost: {ref.line(4)} ({ref.source})")


def hybrid():
    """A fresh hybrid (its cost models learn within each generation): prompt lookup, else the MTP head."""
    return HybridDrafter(MTPDrafter.pretrained("gemma3-270m"), min_match=3, lookup_k="auto", model_k="auto",
                         k_max=K_MAX, verify_cost=ref.verify_cost)

# %% [markdown]
# ## Live: draft, verify all drafts in one forward, repeat
#
# Run the next cell and watch the strip fill. Each round the drafter proposes up to 12 tokens (prompt lookup) or
# a few (the MTP head); the target scores all of them in one forward and keeps the longest prefix it agrees with
# (greedy decoding: the target's own argmax). The panels below the strip update as rounds arrive: acceptance by draft position, time spent
# drafting vs verifying per round, and the target's KV cache.

# %%
from labkit.lab.widgets import LiveDashboard

dash = LiveDashboard(target.tokenizer, prompt=prompt, title="hybrid: prompt lookup, else the MTP head", baseline=plain)
display(dash)
decoder = SpeculativeDecoder(target, hybrid(), k=K_MAX, hooks=[dash])  # the dashboard is a hook
result = decoder.generate(prompt, max_new_tokens=N)

# %% [markdown]
# ## The two numbers that matter
#
# * **tokens per verify** — how many tokens each target forward produced (1.0 for plain decoding). This is what
#   the drafter buys.
# * **speedup** — *decode* speed (tokens per second of drafting + verifying, the prefill left out, because
#   speculation does not change it) relative to plain decoding's decode speed, both measured in this notebook.
#
# The live run above shared the CPU with your browser drawing the strip and the plots (on a 2-core laptop that
# alone can make it slower than plain decoding), and its first verify forwards met new input shapes. So the speed
# is timed on the same generation again without a display, interleaved with plain decoding (a few times each, in
# alternating order, medians kept) so that whatever else the machine does hits both alike.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.core import metrics
from labkit.measure.sweep import run_sweep

REPEATS = ci_scale(3, 2)
rows = run_sweep(target, {"plain": None, "hybrid": hybrid()}, [K_MAX], [prompt], max_new_tokens=N, repeats=REPEATS)
plain_row, timed_row = rows
timed = timed_row["results"][0]
assert timed.token_ids == result.token_ids  # hooks observe, they never change the result
tokens_per_verify = result.stats.tokens_per_verify
speedup = timed_row["speedup"]
noise = max(timed_row["speed_spread"] or 0, plain_row["speed_spread"] or 0)
print(f"tokens per verify: {tokens_per_verify:.2f}   (plain decoding: 1.00)")
print(f"speedup vs plain:  {speedup:.2f}×   (decode {timed_row['decode_tok_s']:.1f} vs {plain_row['decode_tok_s']:.1f} "
      f"tok/s, medians of {REPEATS} interleaved repeats, run-to-run spread {100 * noise:.0f}%)")
live = result.stats
print(f"the live run: end-to-end {live.end_to_end_tok_s:.1f} tok/s with its display's drawing (the hooks), "
      f"decode {live.decode_tok_s:.1f} tok/s without it")

# %% [markdown]
# Those are two of the quantities labkit reports. Every one of them has one name and one formula
# (`labkit.core.metrics`; the glossary is `docs/metrics.md`), the same in every notebook, the bench and the
# command line — and where vLLM and llama.cpp report the same thing (draft acceptance rate, mean acceptance length,
# acceptance by position), the same name and definition as theirs. Here is the glossary applied to the timed
# runs above (their repeats pooled: counts are added before any ratio is taken), each formula filled in with the
# runs' own counts:

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

timed_metrics = metrics.metrics(timed_row["results"])
pd.DataFrame(metrics.table(timed_metrics), columns=["quantity", "value", "formula with these runs' counts"])

# %% [markdown]
# Two pairs are easy to confuse. *Tokens per verify* counts every target forward; the *mean acceptance length*
# counts only verify steps that had a draft, so it is higher when neither drafter proposed anything in some rounds. *Decode tok/s* leaves the prefill out; *end-to-end tok/s* divides by the whole call.

# %% [markdown]
# What was generated, how much of it repeats earlier text, and what this run's numbers say about speed (the
# sentence is chosen from the measured numbers — speedup, tokens per verify, the verify cost measured just now, the
# machine's load — so it can say "slower" as well as "faster"):

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab.explain import explain_repetition, explain_speed, outcome_now
from labkit.measure.text import repetition

print(prompt + result.text)
print("---")
share = repetition(target.tokenizer(prompt, add_special_tokens=False)["input_ids"], result.token_ids)
k_mean = max(1, round(timed_row["mean_draft_length"]))  # the round's k varies: judge it at its typical length
cost_at_k = ref.verify_cost.at(k_mean)  # interpolated between the measured draft lengths
# which source drafted each drafting round, as its record says (rounds that drafted nothing are not counted)
sources = pd.Series(["prompt lookup" if r.draft_reason.startswith("hybrid: prompt lookup") else "MTP head"
                     for r in result.rounds if r.drafted]).value_counts()
print(explain_repetition(share))
print(explain_speed(outcome_now(speedup=speedup, tokens_per_verify=timed_row["tokens_per_verify"], k=k_mean,
                                verify_cost=cost_at_k, c=timed_row["draft_cost"], alpha=timed_row["alpha"]),
                    what="the hybrid"))
print(f"(Rounds drafted by each source in the live run: {sources.to_dict()}; "
      f"{timed_row['mean_draft_length']:.1f} tokens drafted per round on average, where a {k_mean + 1}-token verify "
      f"costs {cost_at_k:.2f}x a one-token forward; {ref.source}, {ref.when}.)")
print("(The code is the target's own greedy continuation — speculative decoding never changes it. A 270M base "
      "model writes plausible code, not necessarily correct code.)")

# %% [markdown]
# The dashboard above is live: it needs a running kernel to be drawn. Its acceptance panel as a static figure, which
# stays readable in the saved notebook:

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab import figures

figures.acceptance_by_position({"hybrid": result}, title="Acceptance by draft position")

# %% [markdown]
# Same result, as a table (one row per round) — everything the engine recorded is plain data you can analyse:

# %%
# NBVAL_IGNORE_OUTPUT
result.to_dataframe()[["index", "drafted", "accepted", "next_kind", "emitted", "draft_seconds", "verify_seconds",
                       "draft_reason"]].head(8)

# %% [markdown]
# A static copy of this view (strip, numbers and figures in one HTML file) works without a kernel — handy for
# sharing. The command line does the same: `labkit generate "..." --drafter hybrid:3:auto:auto --html out.html`.

# %%
from labkit.lab.views import save_html

path = save_html(result, target.tokenizer, "build/quickstart.html", baseline=plain)
print("wrote", path)

# %% [markdown]
# ## Check
#
# Greedy speculative decoding keeps only tokens the target itself would pick, so with a drafter that finds
# matches it can only save target forwards — whether that saves *time* is what the sentence above measured. (In
# bf16 a *near-tie* between the top two tokens can still flip one token — notebook 03 explains
# why; here we check the parts that must hold.)

# %%
kinds = dash.strip.kinds()
assert len(result.token_ids) == N, "generated the requested number of tokens"
assert kinds.get("accepted", 0) > 0 and kinds.get("rejected", 0) > 0, kinds
assert sum(len(r.emitted) for r in result.rounds) == N, "every emitted token is in a round record"
assert tokens_per_verify > 1.2, f"the drafter should buy tokens on code: {tokens_per_verify:.2f}"
assert set(sources.index) == {"prompt lookup", "MTP head"}, f"both sources drafted: {sources.to_dict()}"
assert all(r.draft_reason.startswith("hybrid: ") for r in result.rounds if r.drafted), "each round names its source"
assert len(result.rounds) < len(plain.rounds), "fewer target forwards than plain decoding"
print("✓ the strip shows accepted and rejected drafts; both sources drafted, each round says which; fewer target "
      "forwards than plain decoding")
