"""Sentences chosen from measured numbers: what the notebooks, the demo and the doctor say about speed.

Every sentence here follows from the numbers passed in (measured in the same run), never from fixed prose, so a
reader on a busy 2-core box and one on an idle workstation each read what their own machine did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labkit.threads import cores, load_average

EVEN = 0.05  # |speedup - 1| below this is "about even": run-to-run noise on a CPU is of that order
COSTLY_VERIFY = 1.5  # T(k+1)/T(1) from which the verify is not "about as cheap as one token" any more
DRAFT_DIFF = 0.15  # mean k drafted this much (relative) shorter or longer than another's is "shorter" / "longer"
IMPOSSIBLE_MARGIN = 1.10  # a speedup this much above tokens per verify cannot come from the method itself


@dataclass
class Outcome:
    """One measured configuration against plain decoding on the same prompts."""

    speedup: float  # decoding tok/s over plain decoding's
    tokens_per_verify: float  # tokens per target forward, bonus included (1.0 = plain)
    k: int  # draft length
    verify_cost: float | None = None  # T(k+1)/T(1): a verify forward in one-token forwards (measured)
    c: float | None = None  # labkit.core.metrics.draft_cost: one draft step in verify forwards (measured)
    alpha: float | None = None  # labkit.core.metrics.alpha: i.i.d. acceptance estimate (measured)
    load: float | None = None  # 1-minute load average while measuring
    n_cores: int | None = None


def outcome_now(**fields: float | int | None) -> Outcome:
    """An Outcome with this machine's load average and core count filled in."""
    return Outcome(**{"load": load_average(), "n_cores": cores(), **fields})


def busy(load: float | None, n_cores: int | None) -> bool:
    """More runnable processes than cores: timings include waiting for a core."""
    return load is not None and n_cores is not None and load > n_cores


def impossible_speedup(speedup: float, tokens_per_verify: float) -> bool:
    """Faster than tokens per verify allows: each round costs at least one forward of the target, which is at
    least what one plain step costs, so the plain baseline must have been slowed by something else."""
    return speedup > IMPOSSIBLE_MARGIN * tokens_per_verify


def measurement_problem(speedup: float, tokens_per_verify: float) -> str | None:
    """One line flagging an impossible speedup, or None when the numbers are consistent."""
    if not impossible_speedup(speedup, tokens_per_verify):
        return None
    return (f"measurement problem: a {speedup:.2f}x speedup at {tokens_per_verify:.2f} tokens per verify is "
            "impossible (every round costs at least one target forward); the plain baseline was slowed by "
            "something else (threads, load, warm-up): rerun, ideally on an idle machine")


def predicted_speedup(o: Outcome) -> float | None:
    """What the measured parts predict: tokens per verify / (T(k+1)/T(1) * (1 + k c)) (labkit.measure.theory)."""
    if o.verify_cost is None or o.c is None:
        return None
    return o.tokens_per_verify / (o.verify_cost * (1 + o.k * o.c))


def reasons_slow(o: Outcome) -> list[str]:
    """Why speculation did not pay, from the numbers: each a sentence with what would change it."""
    out = []
    if o.verify_cost is not None and o.verify_cost >= max(COSTLY_VERIFY, 0.75 * o.tokens_per_verify):
        out.append(f"A verify forward over {o.k + 1} tokens cost {o.verify_cost:.2f}x a one-token forward, close to "
                   f"the {o.tokens_per_verify:.2f} tokens it produced: this processor pays for nearly every extra "
                   "token (the forward is compute-bound here, e.g. without native bf16 arithmetic). A smaller k, "
                   "or hardware where the forward is memory-bound (native bf16, a GPU), would change that.")
    if o.c is not None and o.k * o.c >= 0.25:
        out.append(f"Drafting cost c = {o.c:.3f} of a verify forward per token, {o.k * o.c:.2f} verify forwards per "
                   f"round of k = {o.k}: a cheaper drafter or a smaller k would leave more of the gain.")
    if o.tokens_per_verify < 1.5:
        acc = f" (alpha {o.alpha:.2f})" if o.alpha is not None else ""
        out.append(f"Each verify produced only {o.tokens_per_verify:.2f} tokens{acc}: most drafts were rejected. "
                   "Text that repeats earlier text, or a drafter trained for this target, would raise it.")
    if busy(o.load, o.n_cores):
        out.append(f"The machine was busy (load average {o.load:.1f} on {o.n_cores} cores): every timing includes "
                   "waiting for a core, which hurts the k-token verify and the drafter alike; rerun when it is idle.")
    return out


def explain_speed(o: Outcome, what: str = "speculative decoding") -> str:
    """A short paragraph chosen from the measured outcome: did it pay, by how much, and why (or why not)."""
    problem = measurement_problem(o.speedup, o.tokens_per_verify)
    if problem:
        return problem[0].upper() + problem[1:] + "."
    pred = predicted_speedup(o)
    parts = [f"{o.tokens_per_verify:.2f} tokens per verify"]
    if o.verify_cost is not None:
        parts.append(f"a {o.k + 1}-token verify costing {o.verify_cost:.2f}x a one-token forward")
    if o.c is not None:
        parts.append(f"drafting at c = {o.c:.3f}")
    numbers = ", ".join(parts)
    if o.speedup >= 1 + EVEN:
        text = f"Here {what} was {o.speedup:.2f}x as fast as plain decoding ({numbers})."
    elif o.speedup > 1 - EVEN:
        text = f"Here {what} came out about even with plain decoding ({o.speedup:.2f}x; {numbers})."
    else:
        text = f"Here {what} was slower than plain decoding ({o.speedup:.2f}x; {numbers})."
    if pred is not None:
        text += f" Those parts predict {pred:.2f}x."
    if o.speedup < 1 + EVEN:
        reasons = reasons_slow(o)
        text += " " + (" ".join(reasons) if reasons else "No single cause stands out in these numbers: the rest is "
                       "the loop's own overhead per round (Python, cache bookkeeping), which a larger model hides.")
    elif busy(o.load, o.n_cores):
        text += (f" The machine was busy (load average {o.load:.1f} on {o.n_cores} cores), so expect these numbers "
                 "to move on a rerun.")
    return text


def explain_best_k(k_measured: int, s_measured: float, k_theory: int, s_theory: float) -> str:
    """Compare the best k measured with the best k the theory (with the measured verify cost) predicts."""
    if k_measured == 0:
        head = "No draft length beat plain decoding in this run"
    else:
        head = f"The fastest draft length measured was k = {k_measured} ({s_measured:.2f}x)"
    if k_theory == 0:
        theory = "the theory, fed this run's acceptance, drafting cost and verify cost, also predicts no gain"
    else:
        theory = f"the theory, fed this run's numbers, predicts k = {k_theory} ({s_theory:.2f}x)"
    agree = "they agree" if k_theory == k_measured else "they differ"
    return f"{head}; {theory}: {agree}."


def explain_repetition(share: float, n: int = 4, drafter: str = "prompt lookup") -> str:
    """What the output's repetition (share of its n-grams seen before) means for a drafter's acceptance."""
    pct = f"{100 * share:.0f}%"
    lookup = drafter == "prompt lookup"
    if share >= 0.5:
        why = ("which is exactly what prompt lookup drafts from, so its acceptance here says more about the "
               "repetition than about the drafter" if lookup else
               f"which makes it easy to predict, for {drafter} too (and free for prompt lookup): expect lower "
               "acceptance on text that does not repeat")
        return f"{pct} of the generated {n}-grams had already appeared in the prompt or earlier in the output: the " \
               f"text loops or copies, {why}."
    if share >= 0.15:
        return (f"{pct} of the generated {n}-grams had already appeared: some copying, which prompt lookup "
                "turns into accepted drafts; new text gives it nothing to copy.")
    return (f"Only {pct} of the generated {n}-grams had appeared before: little to copy, so prompt lookup has "
            "little to propose here.")


def explain_verify_cost(ms_by_n: dict[int, float], n: int = 8, ratio: float | None = None) -> str:
    """How a forward over n tokens compares with one over 1 token and with n one-token forwards (notebook 01).
    ``ms_by_n``: median ms of a forward over n tokens, by n (labkit.measure.machine.Reference.ms_by_n). ``ratio``:
    T(n)/T(1) as the machine reference measured it (its ``verify_cost.at(n - 1)``: the median of per-round ratios,
    which is what the lab computes with); without it, the ratio of the two medians."""
    one, many = ms_by_n[1], ms_by_n[n]
    if ratio is None:
        ratio = many / one
        head = f"A forward over {n} tokens took {many:.1f} ms, {ratio:.2f}x one over 1 token ({one:.1f} ms); "
    else:
        head = (f"A forward over {n} tokens cost {ratio:.2f}x one over 1 token (the median of interleaved per-round "
                f"ratios; median times {many:.1f} and {one:.1f} ms); ")
    head += f"{n} one-token forwards would take {n * one:.0f} ms."
    if ratio < 2:
        return head + (" The cost grows slowly with k: the forward mostly waits for the weights to arrive from memory, "
                       "and checking several drafted tokens at once is nearly free here.")
    if ratio < n / 2:
        return head + (f" The cost grows noticeably: checking {n} tokens costs {ratio:.1f} one-token forwards, so a "
                       "drafter must get several accepted per round before speculation pays.")
    return head + (" The cost grows almost with k: this processor is compute-bound even for a few tokens (e.g. no "
                   "native bf16), so speculative decoding has little room to pay here.")


def _ms_per_round(row: Mapping[str, Any]) -> float:
    """Decode time of one round: tokens per verify over tokens per second."""
    return 1e3 * row["tokens_per_verify"] / row["decode_tok_s"] if row["decode_tok_s"] else float("nan")


def _config(row: Mapping[str, Any]) -> str:
    return str(row.get("config") or row.get("policy") or f"k = {row['k']}")


def why_policy_lost(policy: Mapping[str, Any], fixed: Mapping[str, Any]) -> str:
    """Why a policy's row was slower than a fixed k's, in measured terms: speed = tokens per round / time per round,
    so it drafted shorter or longer, kept fewer tokens per verify, or paid more per round."""
    mp, mf = policy["mean_draft_length"], fixed["mean_draft_length"]
    tp, tf = policy["tokens_per_verify"], fixed["tokens_per_verify"]
    rp, rf = _ms_per_round(policy), _ms_per_round(fixed)
    if mp < (1 - DRAFT_DIFF) * mf:
        drafted = f"it drafted shorter on average ({mp:.1f} tokens a round against {mf:.1f})"
    elif mp > (1 + DRAFT_DIFF) * mf:
        drafted = f"it drafted longer on average ({mp:.1f} tokens a round against {mf:.1f})"
    else:
        drafted = f"it drafted about as many tokens a round ({mp:.1f} against {mf:.1f})"
    yields = f"{tp:.2f} tokens per verify against {tf:.2f}"
    if policy.get("alpha") is not None and fixed.get("alpha") is not None:
        yields += f" (alpha {policy['alpha']:.2f} against {fixed['alpha']:.2f})"
    fewer, dearer = tp < (1 - EVEN) * tf, rp > (1 + EVEN) * rf
    if fewer and dearer:
        cause = "fewer tokens per round and dearer rounds"
    elif fewer:
        cause = "fewer tokens per round" + (", which its cheaper rounds did not make up for" if rp < (1 - EVEN) * rf
                                            else "")
    elif dearer:
        cause = "dearer rounds" + (", which its extra tokens per round did not pay for" if tp > (1 + EVEN) * tf else
                                   " (the policy's own work per round, such as reading the drafter's probability "
                                   "after each drafted token, or machine noise)")
    else:
        cause = "small differences in both tokens per round and time per round, none large on its own"
    return f"Why: {drafted}, which gave {yields} at {rp:.1f} ms a round against {rf:.1f} ms: it lost on {cause}."


def explain_policy(rows: Sequence[Mapping[str, Any]]) -> str:
    """Fixed k against draft-length policies (rows as run_sweep / PolicySweep.rows give them: k, policy (None for a
    fixed k), speedup, decode_tok_s, tokens_per_verify, mean_draft_length, alpha, optional config label): which
    configuration was fastest, by how much against the best fixed k, and, when the policies lost, why in measured
    terms. "About even" means within the rows' own run-to-run spread (``speed_spread``, from repeats) when they carry
    one, else within EVEN, said as such."""
    drafting = [r for r in rows if r["k"] > 0]
    fixed = [r for r in drafting if r.get("policy") is None]
    policies = [r for r in drafting if r.get("policy") is not None]
    if not fixed or not policies:
        raise ValueError("rows: need at least one fixed-k row and one policy row (both with k > 0)")
    best_fixed = max(fixed, key=lambda r: r["speedup"])
    best_policy = max(policies, key=lambda r: r["speedup"])
    fastest = max(drafting, key=lambda r: r["speedup"])
    gap = best_policy["speedup"] / best_fixed["speedup"] - 1
    fixed_text = f"the best fixed k = {best_fixed['k']} ({best_fixed['speedup']:.2f}x)"
    head = f"The fastest configuration was {_config(fastest)}, at {fastest['speedup']:.2f}x plain decoding"
    spreads = [r.get("speed_spread") for r in (best_fixed, best_policy)]
    measured = all(x is not None for x in spreads)
    noise = max(spreads) if measured else EVEN
    if abs(gap) < noise:
        why = (f"within the {100 * noise:.0f}% spread its repeats showed here" if measured else
               f"under {100 * EVEN:.0f}%, a gap this run did not measure against its own repeats")
        return (f"{head}; the best policy, {_config(best_policy)} ({best_policy['speedup']:.2f}x), came out about even "
                f"with {fixed_text}: {100 * gap:+.0f}%, {why}.")
    if gap > 0:
        return (f"{head}, {100 * gap:.0f}% faster than {fixed_text}, drafting "
                f"{best_policy['mean_draft_length']:.1f} tokens a round on average against "
                f"{best_fixed['mean_draft_length']:.1f}, with {best_policy['tokens_per_verify']:.2f} tokens per verify "
                f"against {best_fixed['tokens_per_verify']:.2f}.")
    return (f"{head}: the best fixed k beat every policy; the best policy, {_config(best_policy)}, reached "
            f"{best_policy['speedup']:.2f}x, {100 * -gap:.0f}% slower. " + why_policy_lost(best_policy, best_fixed))
