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
# The simplest drafter costs nothing: **prompt lookup** (an n-gram drafter). It finds the last few tokens
# earlier in the text and proposes whatever followed them there. It shines when the output repeats the input —
# code, summaries, edits — and proposes nothing when there is no match.
#
# One thing to know about this target: it is a small **base** model (not trained to chat or to stop). Under greedy
# decoding such a model often *loops*: "The capital of France is" continues "the capital of the country of France.
# It is the capital of the country of France. …". A loop repeats text already in the context, so prompt lookup
# drafts it perfectly — its wins on looping text come from the copying, not from cleverness. Every speed notebook
# therefore prints the generated text and its **repetition** (the share of generated 4-grams already seen).
#
# First, plain decoding: one target forward per token. It is the baseline every speedup divides by (it also
# warms the model up, so the comparison below is fair).

# %%
from labkit.drafters import NGramDrafter

prompt = (
    "def is_prime(n: int) -> bool:\n"
    '    """Return True if n is a prime number."""\n'
    "    if n < 2:\n        return False\n"
    "    for i in range(2, int(n ** 0.5) + 1):\n        if n % i == 0:\n            return False\n"
    "    return True\n\n\n"
    "def is_even(n: int) -> bool:\n"
)
N = 64
plain = plain_decoder(target).generate(prompt, max_new_tokens=N)
print(f"plain decoding: {N} tokens, {len(plain.rounds)} target forwards")

# %% [markdown]
# ## Live: draft 4, verify 4 in one forward, repeat
#
# Run the next cell and watch the strip fill. Each round the drafter proposes up to `k = 4` tokens; the target
# scores all of them in one forward and keeps the longest prefix it agrees with (greedy decoding: the target's
# own argmax). The panels below the strip update as rounds arrive: acceptance by draft position, time spent
# drafting vs verifying per round, and the target's KV cache.

# %%
from labkit.lab.widgets import LiveDashboard

dash = LiveDashboard(target.tokenizer, prompt=prompt, title="prompt lookup, k = 4", baseline=plain)
display(dash)
decoder = SpeculativeDecoder(target, NGramDrafter(3), k=4, hooks=[dash])  # the dashboard is a hook
result = decoder.generate(prompt, max_new_tokens=N)

# %% [markdown]
# ## The two numbers that matter
#
# * **tokens per verify** — how many tokens each target forward produced (1.0 for plain decoding). This is what
#   the drafter buys.
# * **speedup** — wall-clock decoding speed relative to plain decoding. Tokens per verify only turn into speed if
#   drafting is cheap and one forward over 5 tokens costs about what a forward over 1 costs (notebook 01).
#
# The live run above shared the CPU with your browser drawing the strip and the plots (on a 2-core laptop that
# alone can make it slower than plain decoding), and its first verify forwards met new input shapes. So the speed
# is timed on the same generation run again without a display: same tokens, no drawing.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.measure.sweep import decode_tps

timed = SpeculativeDecoder(target, NGramDrafter(3), k=4).generate(prompt, max_new_tokens=N)  # no hooks: no drawing
assert timed.token_ids == result.token_ids  # hooks observe, they never change the result
tokens_per_verify = result.stats.mean_accepted_length
speedup = decode_tps(timed) / decode_tps(plain)
print(f"tokens per verify: {tokens_per_verify:.2f}   (plain decoding: 1.00)")
print(f"speedup vs plain:  {speedup:.2f}×   ({decode_tps(timed):.1f} vs {decode_tps(plain):.1f} tok/s; "
      f"the live run with its display: {decode_tps(result):.1f} tok/s)")
print(timed.stats.summary())

# %% [markdown]
# What was generated, how much of it repeats earlier text, and what this run's numbers say about speed (the
# sentence is chosen from the measured numbers — speedup, tokens per verify, the verify cost measured just now, the
# machine's load — so it can say "slower" as well as "faster"):

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab.explain import explain_repetition, explain_speed, outcome_now
from labkit.measure.sweep import estimate_alpha_c
from labkit.measure.text import repetition
from labkit.measure.timing import verify_cost_curve

print(prompt + result.text)
print("---")
share = repetition(target.tokenizer(prompt, add_special_tokens=False)["input_ids"], result.token_ids)
verify_cost = verify_cost_curve(target, [4], repeats=ci_scale(5, 2))[4]
alpha, c = estimate_alpha_c([timed])
print(explain_repetition(share))
print(explain_speed(outcome_now(speedup=speedup, tokens_per_verify=tokens_per_verify, k=4, verify_cost=verify_cost,
                                c=c, alpha=alpha), what="prompt lookup"))
print("(The code is the target's own greedy continuation — speculative decoding never changes it. A 270M base "
      "model writes plausible code, not necessarily correct code.)")

# %% [markdown]
# The dashboard above is live: it needs a running kernel to be drawn. Its acceptance panel as a static figure, which
# stays readable in the saved notebook:

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab import figures

figures.acceptance_by_position({"prompt lookup, k = 4": result}, title="Acceptance by draft position")

# %% [markdown]
# Same result, as a table (one row per round) — everything the engine recorded is plain data you can analyse:

# %%
# NBVAL_IGNORE_OUTPUT
result.to_dataframe()[["index", "drafted", "accepted", "next_kind", "emitted", "draft_seconds", "verify_seconds"]].head(8)

# %% [markdown]
# A static copy of this view (strip, numbers and figures in one HTML file) works without a kernel — handy for
# sharing. The command line does the same: `labkit generate "..." --drafter ngram --html out.html`.

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
assert len(result.rounds) < len(plain.rounds), "fewer target forwards than plain decoding"
print("✓ the strip shows accepted and rejected drafts; fewer target forwards than plain decoding")
