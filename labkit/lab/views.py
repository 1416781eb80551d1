"""Static views of a result: the token strip as HTML (hover tips need no JavaScript), a summary line, and
``save_html`` -- the strip plus the figures in one self-contained file, for places without a kernel.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from labkit.core.metrics import counts, decode_tok_s, metrics, speedup
from labkit.core.records import GenerationResult, RoundRecord
from labkit.lab.render import Span, round_spans


@cache


def web_asset(name: str) -> str:
    """A file shipped in ``labkit/web`` (the widget's JavaScript and CSS)."""
    return resources.files("labkit").joinpath("web", name).read_text(encoding="utf-8")


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def tip(span: Span, margin: float | None = None) -> str:
    """What hovering a token shows: its verdict and the numbers that decided it."""
    where = "" if span.position is None else f", draft position {span.position + 1}"
    head = f"{span.kind} · round {span.round}{where}"
    lines = [head, f"token {span.token}: {span.text!r}"]
    if span.kind in ("accepted", "rejected"):
        lines.append(f"p(x) = {_fmt(span.p)}   q(x) = {_fmt(span.q)}")
        if span.u is not None:
            ratio = min(1.0, span.p / span.q) if span.q else 1.0
            verdict = "keep" if span.kind == "accepted" else "reject"
            lines.append(f"u = {span.u:.3f}  vs  min(1, p/q) = {ratio:.3f}  → {verdict}")
        elif margin is not None:
            lines.append(f"greedy: target top-1 logit − this token's logit = {margin:.3f}"
                         + ("  (0 → it is the argmax)" if span.kind == "accepted" else ""))
    elif span.kind == "replacement":
        lines.append("drawn by the target after the rejection (residual max(0, p − q))")
    elif span.kind == "bonus":
        lines.append("all drafts accepted: a free token from the same target forward")
    else:
        lines.append("plain decoding: one target forward, one token")
    return "\n".join(lines)


def span_dicts(record: RoundRecord, tokenizer: Any = None) -> list[dict[str, Any]]:
    """The spans of one round as the widget and the HTML export draw them."""
    out = []
    for j, s in enumerate(round_spans(record, tokenizer)):
        margin = record.margin[s.position] if s.position is not None and record.margin else None
        text = s.text.replace("\n", "↵\n") if s.text else "∅"
        out.append({"text": text, "kind": s.kind, "round": s.round, "first": j == 0, "tip": tip(s, margin),
                    "token": s.token, "position": s.position, "p": s.p, "q": s.q, "u": s.u})
    return out


def result_span_dicts(result: GenerationResult, tokenizer: Any = None) -> list[dict[str, Any]]:
    return [d for r in result.rounds for d in span_dicts(r, tokenizer)]


def summary_html(result: GenerationResult | None = None, baseline: GenerationResult | float | None = None,
                 live_rounds: list[RoundRecord] | None = None) -> str:
    """The two numbers that matter: tokens per verify and speedup over plain decoding (when a baseline is known)."""
    rounds = result.rounds if result is not None else (live_rounds or [])
    if not rounds:
        return ""
    m = metrics(rounds)
    c = m.counts
    parts = [f"<b>{m.tokens_per_verify:.2f}</b> tokens per verify ({c.new_tokens} tokens, {c.rounds} target forwards)",
             f"draft acceptance rate {c.accepted}/{c.draft_tokens}"]
    base_tps = baseline_tps(baseline)
    if base_tps and m.decode_tok_s > 0:
        # live: the browser drawing each round shares the CPU, which a laptop's speed figure should admit
        where = " while drawing live" if result is None else ""
        parts.append(f"<b>{speedup(m.decode_tok_s, base_tps):.2f}×</b> speed of plain decoding{where} "
                     f"(decode {m.decode_tok_s:.1f} vs {base_tps:.1f} tok/s)")
    return " · ".join(parts)


ROW_COLUMNS = {  # sweep-row keys -> the glossary's names (docs/metrics.md), in the order a comparison shows them
    "tokens_per_verify": "tokens per verify", "speedup": "speedup", "decode_tok_s": "decode tok/s",
    "draft_acceptance_rate": "draft acceptance rate (accepted / drafted)", "alpha": "α (i.i.d. estimate)",
    "mean_acceptance_length": "mean acceptance length", "draft_cost": "c (draft cost)", "repetition": "repetition"}


def rows_frame(rows: list[dict[str, Any]], index: str = "drafter") -> Any:
    """Sweep / compare rows as a pandas table under the glossary's names, one row per ``index`` value."""
    import pandas as pd

    return pd.DataFrame([{name: r.get(key) for key, name in ROW_COLUMNS.items()} for r in rows],
                        index=pd.Index([r[index] for r in rows], name=index)).astype(float)


def baseline_tps(baseline: GenerationResult | float | None) -> float | None:
    """Plain decoding's tokens per second of decoding (prefill excluded, like the live numbers)."""
    if baseline is None:
        return None
    if isinstance(baseline, int | float):
        return float(baseline)
    return decode_tok_s(counts(baseline)) or None


def strip_html(result: GenerationResult, tokenizer: Any = None, title: str = "", prompt: str | None = None,
               baseline: GenerationResult | float | None = None) -> str:
    """The coloured token strip as an HTML fragment (CSS included; no JavaScript)."""
    if prompt is None:
        prompt = tokenizer.decode(result.prompt_ids, skip_special_tokens=True) if tokenizer is not None else ""
    spans = result_span_dicts(result, tokenizer)
    counts = {k: sum(s["kind"] == k for s in spans) for k in ("accepted", "rejected", "replacement", "bonus")}
    keys = "".join(f'<span class="lk-key lk-{k}" data-kind="{k}">{k} {n}</span>' for k, n in counts.items())
    toks = "".join(
        f'<span class="lk-tok lk-{s["kind"]}{" lk-first" if s["first"] else ""}" data-kind="{s["kind"]}" '
        f'data-round="{s["round"]}" data-tip="{html.escape(s["tip"], quote=True)}">{html.escape(s["text"])}</span>'
        for s in spans
    )
    summary = summary_html(result, baseline)
    foot = f'<div class="lk-foot">{summary}</div>' if summary else ""
    return (f'<style>{web_asset("token_strip.css")}</style><div class="lk-strip"><div class="lk-head">'
            f'<span class="lk-title">{html.escape(title)}</span>{keys}</div><div class="lk-text">'
            f'<span class="lk-prompt">{html.escape(prompt)}</span>{toks}</div>{foot}</div>')


def result_html(result: GenerationResult, tokenizer: Any = None, title: str | None = None,
                baseline: GenerationResult | float | None = None, plotlyjs: str | bool = True) -> str:
    """A whole page: strip, stats table and the figures (acceptance by position, draft vs verify, KV timeline).

    ``plotlyjs``: True embeds plotly.js (works offline, ~4 MB), "cdn" links it, False leaves it out.
    """
    from labkit.lab import figures

    title = title or f"labkit: {result.config.get('drafter', '')}, k={result.config.get('k', '')}"
    figs = [figures.acceptance_by_position(result), figures.draft_vs_verify_time(result),
            figures.kv_timeline(result, "target")]
    if any(r.drafter_kv is not None for r in result.rounds):
        figs.append(figures.kv_timeline(result, "drafter"))
    parts = []
    for i, fig in enumerate(figs):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=plotlyjs if i == 0 else False,
                                 default_width="100%", config={"displaylogo": False}))
    from labkit.core.metrics import table as metrics_table

    st = result.stats
    rows = [("new tokens", st.counts.new_tokens), ("target forwards (rounds)", st.counts.rounds)]
    rows += [(name, f"{value} = {formula}") for name, value, formula in metrics_table(st)]
    rows += [(k, v) for k, v in result.config.items()]
    table = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;max-width:1100px;"
            "margin:24px auto;padding:0 16px;color:#222}} table{border-collapse:collapse;margin:12px 0}"
            "th,td{text-align:left;padding:3px 12px 3px 0;border-bottom:1px solid #eee;font-size:13px}"
            "th{color:#555;font-weight:500}</style></head><body>"
            f"<h2>{html.escape(title)}</h2><p>Hover a token for p, q, u. Colours: accepted, "
            "<s>rejected</s>, replacement (drawn by the target after a rejection), bonus (free after a full "
            "acceptance).</p>"
            f"{strip_html(result, tokenizer, baseline=baseline)}<table>{table}</table>{''.join(parts)}</body></html>")


def save_html(result: GenerationResult, tokenizer: Any, path: str | Path, title: str | None = None,
              baseline: GenerationResult | float | None = None, plotlyjs: str | bool = True) -> Path:
    """Write ``result_html`` to ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result_html(result, tokenizer, title, baseline, plotlyjs), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- one round, in detail

_CELL = ("display:inline-block;min-width:22px;padding:2px 4px;margin:1px;border-radius:3px;font:12px ui-monospace,"
         "monospace;text-align:center;white-space:pre;vertical-align:top")
_BG = {"reused": "#e4e7ec", "kept": "#d5f0dc", "rolled back": "#fbd9d6", "caught up": "#d6e6fb"}


def _piece(tokenizer: Any, tok: int) -> str:
    text = tokenizer.decode([tok], skip_special_tokens=False) if tokenizer is not None else f"<{tok}>"
    return text.replace("\n", "↵")


def _cache_row(name: str, kv: Any, labels: list[str]) -> str:
    """``labels[pos]`` names the token at cache position ``pos``."""
    if kv is None:
        return (f"<div><b>{name}</b>: keeps no KV cache of its own "
                "(an MTP drafter reads the target's cache instead)</div>")
    top = max(kv.after_verify, kv.after_draft)
    cells = [f'<span style="{_CELL};background:{_BG["reused"]};min-width:90px">0 … {kv.before - 1}<br>'
             f"{kv.before} reused</span>"] if kv.before else []
    for pos in range(kv.before, max(top, kv.after_rollback)):
        kind = ("kept" if pos < min(kv.after_rollback, top) else "rolled back" if pos < top else "caught up")
        lab = labels[pos] if pos < len(labels) else ""
        cells.append(f'<span style="{_CELL};background:{_BG[kind]}" title="position {pos}: {kind}">{pos}<br>'
                     f"{html.escape(lab)}</span>")
    return (f"<div style='margin:4px 0'><b>{name}</b> cache: {kv.before} → {top} after "
            f"{'verify' if name == 'target' else 'drafting'} → {kv.after_rollback} after rollback "
            f"(+{max(0, kv.after_rollback - kv.before)} kept, {max(0, top - kv.after_rollback)} rolled back)<br>"
            f"{''.join(cells)}</div>")


def round_html(result: GenerationResult, index: int, tokenizer: Any = None, prompt: str | None = None) -> str:
    """Everything one round decided: drafts with q(x), p(x), u and verdicts; replacement or bonus; KV caches."""
    r = result.rounds[index]
    sampling = bool(r.u) or float(result.config.get("temperature") or 0) > 0
    done = [t for rr in result.rounds[:index] for t in rr.emitted]
    if prompt is None:
        prompt = tokenizer.decode(result.prompt_ids, skip_special_tokens=True) if tokenizer is not None else ""
    before = (tokenizer.decode(done, skip_special_tokens=True) if tokenizer is not None else
              " ".join(f"<{t}>" for t in done))
    context = (prompt + before)[-400:]
    strip = "".join(
        f'<span class="lk-tok lk-{s["kind"]}{" lk-first" if s["first"] else ""}" data-tip="'
        f'{html.escape(s["tip"], quote=True)}">{html.escape(s["text"])}</span>' for s in span_dicts(r, tokenizer))
    rows = []
    for i, tok in enumerate(r.drafted):
        verdict = ("accepted" if i < r.accepted else "rejected" if i == r.accepted else "unverified")
        color = {"accepted": "#14532d", "rejected": "#8f1d16"}.get(verdict, "#888")
        p, q = r.p[i], r.q[i]
        if r.u:
            test = f"u = {r.u[i]:.3f} {'<' if r.u[i] * q < p else '≥'} min(1, p/q) = {min(1.0, p / q if q else 1):.3f}"
        else:
            m = r.margin[i] if r.margin else 0.0
            test = "x = argmax p" if m == 0 and verdict == "accepted" else f"argmax p is another token (gap {m:.3f})"
        if verdict == "unverified":
            test = "after a rejection the rest is discarded"
        rows.append(f"<tr><td>{i + 1}</td><td><code>{html.escape(repr(_piece(tokenizer, tok)))}</code></td>"
                    f"<td>{q:.3f}</td><td>{p:.3f}</td><td>{test}</td>"
                    f"<td style='color:{color};font-weight:600'>{verdict}</td></tr>")
    nxt = repr(_piece(tokenizer, r.next_token))
    if not r.drafted:
        outcome = f"Nothing was drafted: the target forward gave one token, <code>{html.escape(nxt)}</code>."
    elif r.next_kind == "bonus":
        outcome = (f"All {len(r.drafted)} drafts accepted. The same forward also scored position {len(r.drafted) + 1}:"
                   f" bonus token <code>{html.escape(nxt)}</code> drawn from p there — free.")
    else:
        how = ("drawn from the residual norm(max(0, p − q)): the probability mass the drafter under-covered"
               if sampling else "the target's argmax at that position")
        outcome = (f"Draft {r.accepted + 1} rejected; the rest are discarded. Replacement "
                   f"<code>{html.escape(nxt)}</code>, {how}.")
    # Cache position p holds the token at index p of prompt + earlier output + this round's drafts.
    seq = list(result.prompt_ids) + done + list(r.drafted)
    lo = min(r.target_kv.before, r.drafter_kv.before if r.drafter_kv is not None else r.target_kv.before)
    labels = [""] * lo + [_piece(tokenizer, t) for t in seq[lo:]]
    head = "<th>#</th><th>drafted x</th><th>q(x)</th><th>p(x)</th><th>test</th><th>verdict</th>"
    return (
        f'<style>{web_asset("token_strip.css")}</style><div class="lk-round" style="font:13px system-ui,sans-serif;'
        'line-height:1.5">'
        f"<div><b>Round {r.index}</b> · {r.context_len} committed tokens · drafted {len(r.drafted)} · "
        f"accepted {r.accepted} · emitted {len(r.emitted)} ({'sampling' if sampling else 'greedy'})</div>"
        f"<div style='color:#666;white-space:pre-wrap;font:12px ui-monospace,monospace;margin:4px 0'>…"
        f"{html.escape(context)}</div>"
        f'<div class="lk-strip"><div class="lk-text">{strip}</div></div>'
        f"<table><tr>{head}</tr>{''.join(rows)}</table>"
        f"<div>{outcome}</div>"
        f"{_cache_row('target', r.target_kv, labels)}{_cache_row('drafter', r.drafter_kv, labels)}"
        f"<div style='color:#555;font-size:12px'>Draft {1e3 * r.draft_seconds:.1f} ms · verify "
        f"{1e3 * r.verify_seconds:.1f} ms</div></div>"
    )
