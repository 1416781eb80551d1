# %% [markdown]
# # 04 · MTP drafters: drafting from the target's own state
#
# **Question.** Gemma 4 ships each model with a small "assistant" that drafts tokens for it — a multi-token
# prediction (MTP) drafter. What does it reuse from the target (hidden state, KV cache, embedding, LM head), what
# does it add, and how does it compare with other drafters on the same prompts?
#
# A separate draft model re-reads the whole context with its own weights and keeps its own KV cache. An MTP drafter
# starts from what the target has **already computed**:
#
# | reused from the target | how |
# |---|---|
# | last **hidden state** | the target's final-layer state at the last position is the drafter's input |
# | **KV cache** | the drafter's attention layers read the target's cached K/V (its last sliding and last global layer); it computes no K/V of its own and needs no prefill |
# | input **embedding** | the embedding of the last token is concatenated with the hidden state |
# | **LM head** | logits come from the target's (tied) output embedding — here restricted to a frequent-token subset, the way E2B/E4B's assistants score only ~4k of 262k tokens |
#
# Per draft step: `x = pre_projection(concat(embed(last token), hidden))` → 1–2 decoder layers attending to the
# target's K/V → `post_projection` → a predicted *next* hidden state, scored by the LM head and fed to the next
# step. The position id stays at the last committed token for every step of a round.
#
# labkit's `MTPDrafter` has this architecture, trained (by self-distillation, notebook 07) for the embedded
# Gemma 3 270M; the real Gemma 4 assistants run through the same loop (last section, GPU only).

# %% labkit-first-cell

# %%
# NBVAL_IGNORE_OUTPUT
from labkit import load_target
from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.models.geometry import kv_source_layers

target = load_target("gemma3-270m", device=DEVICE)
mtp = MTPDrafter.pretrained("gemma3-270m")
head = mtp.head
n_target = sum(p.numel() for p in target.model.parameters())
n_head = sum(p.numel() for p in head.parameters())
print(f"target: {n_target / 1e6:.0f}M parameters; MTP head: {n_head / 1e6:.1f}M of its own "
      f"({100 * n_head / n_target:.1f}%)")
print(f"head layers read the target's K/V from: {kv_source_layers(target.model)}")
print(f"scores {head.vocab_ids.numel():,} of {target.vocab_size:,} tokens "
      f"(LM head {target.vocab_size // head.vocab_ids.numel()}× cheaper than the full vocabulary)")
head

# %% [markdown]
# ## Inside one round
#
# Hooks on the head's modules record what flows through them during one real round with *k* = 3: every step
# starts from a 2 × 640 concatenation, attends to the target's cached K/V (the sequence axis is the context, and
# it is the *target's*), and produces a 640-wide predicted hidden state. Only step 1 reads what the target
# computed (the pending token and the target's own last hidden state); step 2 reads the token step 1 drafted and
# the hidden state step 1's `post_projection` predicted, step 3 those of step 2 — each row says which.

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

from labkit import SpeculativeDecoder
from labkit.lab.experiments import mtp_walkthrough

prompt = "The three primary colours are red, yellow and"
walk = pd.DataFrame(mtp_walkthrough(target, mtp, prompt, k=3))
# the same round again (greedy: the same drafts), to name each step's input token
first_round = SpeculativeDecoder(target, mtp, k=3).generate(prompt, max_new_tokens=4)
pending, drafted = first_round.prompt_ids[-1], first_round.rounds[0].drafted


def step_input(n):
    """What draft step n's pre_projection concatenates: the target's state at step 1, the previous step's after."""
    if n == 1:
        return (f"concat(target embedding of the pending token {target.tokenizer.decode([pending])!r} (the last "
                "committed one), the target's own last hidden state) → head width")
    return (f"concat(target embedding of draft {n - 1}'s token {target.tokenizer.decode([drafted[n - 2]])!r}, "
            f"step {n - 1}'s post_projection output) → head width")


pre = walk["module"] == "pre_projection"
walk.loc[pre, "what"] = [step_input(n) for n in walk.loc[pre, "draft step"]]
walk.style.set_properties(subset=["what"], **{"white-space": "normal", "text-align": "left", "min-width": "24em"})

# %% [markdown]
# What is shared is shared *by reference*, not copied — the drafter's embedding is the target's module:

# %%
from labkit.lab.experiments import mtp_shared_parts

shared = mtp_shared_parts(target, mtp)
shared

# %% [markdown]
# ## Drafters compared on the same prompts
#
# Plain decoding, prompt lookup (free, works on repetitive text), early exit (the target's first 6 layers,
# untrained for drafting), the MTP head, and two hybrids of the two (prompt lookup where the last 3 tokens occurred
# before, the MTP head everywhere else) — greedy, the same prompts for each: three from labkit's prompt set (a
# conversation, a summarization and a code prompt; the CI run uses the conversation and code ones). Every drafter
# drafts *k* = 4 but the second hybrid, which gives each source its own length: lookup drafts cost nothing, so
# they may run up to 12 tokens, while each MTP step costs a head forward and its acceptance falls with the position,
# so the head drafts short. A cost model per source, fed the verify cost measured on this machine, picks both
# lengths round by round (`HybridDrafter(..., lookup_k="auto", model_k="auto")`; each round's record says which
# source drafted and why). All of them run interleaved against one plain baseline.
# Notebook 06 measures the same MTP head on other prompts of the set, so its α differs from this one: acceptance
# depends on the text as much as on the drafter.
#
# The two numbers from notebook 00 (tokens per verify, speedup), plus, under their glossary names
# (`docs/metrics.md`): the **draft acceptance rate** (accepted / drafted tokens, what vLLM and llama.cpp report),
# **α** (accepted / (accepted + rejections): the i.i.d. acceptance estimate the theory uses; it counts only the
# positions the target judged, so it is never below the draft acceptance rate, which also counts the drafts after
# a rejection) and *c* (the draft cost: one draft step in target forwards).

# %%
from labkit.drafters import EarlyExitDrafter, HybridDrafter, NGramDrafter
from labkit.measure.machine import reference
from labkit.measure.prompts import prompt_set
from labkit.measure.sweep import compare

ref = reference(target)  # this machine's verify-cost curve (below): the split hybrid's cost models read it


def split_hybrid():
    return HybridDrafter(mtp, min_match=3, lookup_k="auto", model_k="auto", k_max=12, verify_cost=ref.verify_cost)


SPLIT = "hybrid, a length per source"
ps = prompt_set()
prompts = ci_scale([ps["conversation"][3], ps["summarization"][3], ps["code"][2]],
                   [ps["conversation"][3], ps["code"][2]])
drafters = {"plain": None, "prompt lookup": NGramDrafter(3), "early exit (6 layers)": EarlyExitDrafter(6), "MTP": mtp,
            "hybrid (lookup, else MTP)": HybridDrafter(mtp, min_match=3), SPLIT: split_hybrid()}
rows = compare(target, drafters, prompts, k=4, max_new_tokens=ci_scale(40, 32), own_k={SPLIT: 12})

# %% [markdown]
# The verify cost on this machine — a forward over 5 tokens (4 drafts + 1) against one over 1 token; every speed
# sentence below reads the same curve at its own k. It is the machine reference, measured once per session and
# shared by every notebook (notebook 01 explains why it differs between machines). Where it came from is printed
# under it:

# %%
# NBVAL_IGNORE_OUTPUT
print(ref.line(4))
print("source:", ref.source, ref.when)

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab.views import rows_frame

rows_frame(rows).round(3)

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab import figures

results = {r["drafter"]: r["results"] for r in rows if r["drafter"] != "plain"}
merged = {name: rs[0] for name, rs in results.items()}  # first prompt: one bar group per drafter
figures.acceptance_by_position({n: r for n, r in merged.items()}, title="Acceptance by draft position (first prompt)")

# %%
# NBVAL_IGNORE_OUTPUT
figures.draft_vs_verify_time(merged, title="Mean time per round: drafting vs verifying (first prompt)")

# %% [markdown]
# What each drafter's run actually generated on the first prompt (greedy: the same text for every drafter, since
# verification keeps only the target's own choices), and how much of the output repeats earlier text — which is
# what prompt lookup copies from. A small *base* model like this one often loops under greedy decoding (it repeats
# a phrase it has already written); every loop is free accepted drafts for prompt lookup, so read its acceptance
# next to this figure.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.measure.text import repetition

tok = target.tokenizer
plain_runs = rows[0]["results"]
print(f"--- greedy continuation of the first prompt:\n{plain_runs[0].text}\n")
shares = {f"prompt {i + 1}": repetition(tok(p, add_special_tokens=False)["input_ids"], r.token_ids)
          for i, (p, r) in enumerate(zip(prompts, plain_runs))}
figures.repetition_bars(shares)

# %% [markdown]
# **Reading it.** The sentences below are chosen from this run's table: *c* (drafting cost per token, in target
# forwards), α, tokens per verify, the measured verify cost and the machine's load. Prompt lookup is free
# (*c* ≈ 0) but only fires on repetition. Early exit drafts with the target's first 6 layers and is untrained for
# drafting. The MTP head is small (two layers and a reduced LM head) and informed (it starts from the target's own
# final hidden state). Whether any of them is *faster* than plain decoding depends on this machine.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab.explain import explain_repetition, explain_speed, outcome_now


def by_name(rows):
    return {r["drafter"]: r for r in rows}


def sentence(r):
    """The speed sentence of one row, judged at k = 4, or at the split hybrid's typical draft length."""
    k = 4 if r["drafter"] != SPLIT else max(1, round(r["mean_draft_length"]))
    o = outcome_now(speedup=r["speedup"], tokens_per_verify=r["tokens_per_verify"], k=k,
                    verify_cost=ref.verify_cost.at(k), c=r["draft_cost"], alpha=r["alpha"])
    return explain_speed(o, what=r["drafter"])


for r in rows[1:]:
    print(f"{r['drafter']}: {sentence(r)}\n")
split_rounds = [x for res in by_name(rows)[SPLIT]["results"] for x in res.rounds if x.drafted]
print(f"{SPLIT}: of its {len(split_rounds)} drafting rounds, "
      f"{sum(x.draft_reason.startswith('hybrid: prompt lookup') for x in split_rounds)} were prompt lookup's; "
      f"for example: {split_rounds[0].draft_reason!r}")
print(explain_repetition(sum(shares.values()) / len(shares)))

# %% [markdown]
# ## Under sampling
#
# People run Gemma with sampling (Gemma's recommended temperature 1.0, top-k 64, top-p 0.95), and greedy loops
# mostly vanish there. Sampling changes the acceptance rule: a drafted token x is kept with probability
# min(1, p(x)/q(x)). Prompt lookup proposes one token with certainty (q(x) = 1), so it is kept with probability p(x)
# only; the MTP head samples its draft from its own q, and when q is close to p most drafts survive. The same
# prompts and k, sampled with a fixed seed:

# %%
# NBVAL_IGNORE_OUTPUT
sampled = compare(target, {"plain": None, "prompt lookup": NGramDrafter(3), "MTP": mtp,
                           "hybrid (lookup, else MTP)": HybridDrafter(mtp, min_match=3), SPLIT: split_hybrid()},
                  prompts, k=4, max_new_tokens=ci_scale(40, 32), own_k={SPLIT: 12}, temperature=1.0, top_k=64,
                  top_p=0.95, seed=0)
rows_frame(sampled).round(3)

# %%
# NBVAL_IGNORE_OUTPUT
by_sampled = {r["drafter"]: r for r in sampled}
lookup, head = by_sampled["prompt lookup"], by_sampled["MTP"]
lookup_acc, mtp_acc = lookup["draft_acceptance_rate"] or 0.0, head["draft_acceptance_rate"] or 0.0
print(f"Sampled (T = 1, top-k 64, top-p 0.95): repetition fell to {by_sampled['plain']['repetition']:.0%} of "
      f"4-grams (greedy: {rows[0]['repetition']:.0%}). Draft acceptance rate (accepted / drafted): MTP "
      f"{mtp_acc:.2f}, prompt lookup {lookup_acc:.2f} — " + ("the head's sampled drafts survive more often."
                                                              if mtp_acc > lookup_acc
                                                              else "prompt lookup's drafts survive at least as often."))
print(f"Tokens per verify: MTP {head['tokens_per_verify']:.2f}, prompt lookup {lookup['tokens_per_verify']:.2f}"
      + (" — prompt lookup drafts only where the text repeats, the head drafts every round."
         if head["tokens_per_verify"] > lookup["tokens_per_verify"] else "."))
for r in sampled[1:]:
    print(f"{r['drafter']}, sampled: {sentence(r)}")

# %% [markdown]
#
# ## The real Gemma 4 assistant (tiny, on CPU)
#
# `MTPDrafter.from_assistant` wraps transformers' `Gemma4AssistantForCausalLM` and feeds it the way transformers'
# candidate generator does (shared K/V, fixed position id) — but inside labkit's loop, with sampled drafts and the
# exact target cache. A tiny random Gemma 4 pair shows the code path runs here; its acceptance means nothing.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit import SpeculativeDecoder
from labkit.models.tiny import tiny_gemma4_pair

g4_target, g4_assistant = tiny_gemma4_pair(vocab_size=64, seed=0)
g4 = SpeculativeDecoder(g4_target, MTPDrafter.from_assistant(g4_assistant), k=3)
tiny = g4.generate([1, 5, 9, 12], max_new_tokens=16, temperature=1.0, seed=0)
print(tiny.stats.summary())

# %% [markdown]
# ## The real pair on a GPU
#
# With a GPU and network access to the Hugging Face hub (and the Gemma licence accepted there), the next cell loads
# `google/gemma-4-E2B-it` and its assistant `google/gemma-4-E2B-it-assistant` and compares plain decoding with the
# assistant on the same prompts. Without a GPU — or when the weights cannot be downloaded — it explains why it did
# nothing and moves on.

# %%
# NBVAL_IGNORE_OUTPUT
if DEVICE != "cuda":
    print("No GPU here: skipping the Gemma 4 E2B + assistant comparison (it needs ~10 GB of GPU memory). "
          "On Colab: Runtime → Change runtime type → GPU, then rerun this notebook.")
else:
    from labkit.lab.real_pair import real_pair_comparison
    from labkit.lab.views import rows_frame
    from labkit.models.load import ModelNotAvailableError

    try:  # the model's default dtype for this GPU: bf16, or fp16 where bf16 is slow (T4)
        g4 = real_pair_comparison(prompts, device=DEVICE, k=4, max_new_tokens=64)
        display(rows_frame(g4["rows"]).round(3))
        print(g4["summary"], "Acceptance by position (unconditional: accepted at i / drafts):",
              ", ".join(f"{a:.2f}" for a in g4["acceptance_by_position"]))
    except ModelNotAvailableError as e:  # gated, offline or missing: one line saying what to do
        print(f"Skipped the Gemma 4 comparison: {e}")

# %% [markdown]
# ## Check

# %%
by = {r["drafter"]: r for r in rows}
assert all(shared.values()), f"the MTP drafter reuses the target's embedding, LM head and cache: {shared}"
assert n_head < 0.2 * n_target, "the head is small next to the target"
assert all(r.drafter_kv is None for res in by["MTP"]["results"] for r in res.rounds), "no KV cache of its own"
assert by["MTP"]["alpha"] > by["early exit (6 layers)"]["alpha"], "a trained MTP head beats early exit"
assert by["MTP"]["tokens_per_verify"] > 1.2, by["MTP"]["tokens_per_verify"]
assert all(x.draft_reason.startswith("hybrid: ") for x in split_rounds), "each split-hybrid round names its source"
assert max(len(x.drafted) for x in split_rounds) > 4, "its lookup drafts ran longer than the others' k = 4"
assert len(tiny.token_ids) == 16
assert set(by_sampled) == set(drafters) - {"early exit (6 layers)"}, "every drafter ran sampled too"
assert by_sampled["plain"]["repetition"] < rows[0]["repetition"], "sampled text repeats less than greedy text"
print("✓ MTP reuses the target's state, keeps no cache, and out-drafts early exit; sampled text repeats less than greedy")
