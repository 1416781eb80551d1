"""What `labkit bench` writes: a terminal table, bench.json, bench.csv and bench.html (plotly charts)."""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import Any

CSV_COLUMNS = ("engine", "method", "k", "policy", "mean_draft_length", "decoding", "category", "end_to_end_tok_s",
               "ratio_vs_hf_greedy", "ratio_vs_plain", "ratio_vs_llama_plain", "tok_s_cpu", "ratio_cpu_vs_hf_greedy",
               "runs", "new_tokens", "repetition", "tokens_per_verify", "mean_acceptance_length",
               "draft_acceptance_rate", "alpha", "draft_cost", "acceptance_by_position",
               "conditional_acceptance_by_position", "same_as_hf_greedy", "weight_gbps", "target_forward_gbps")


def label(r: dict[str, Any]) -> str:
    sampled = r.get("decoding", "greedy") != "greedy"
    k = (f" {r['policy']}" + (f" k<={r['k']}" if r["k"] else "")) if r.get("policy") else (f" k={r['k']}" if r["k"]
                                                                                           else "")
    return f"{r['engine']} {r['method']}{k}" + (" sampled" if sampled else "")


def policy_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Each dynamic draft-length row against the best fixed k of the same drafter and decoding (x labkit plain)."""
    lines = []
    overall = [r for r in rows if r["category"] == "all" and r["engine"] == "labkit"]
    for r in (r for r in overall if r.get("policy") and r.get("ratio_vs_plain")):
        fixed = [x for x in overall if x["method"] == r["method"] and x.get("decoding") == r.get("decoding")
                 and not x.get("policy") and x["k"] > 0 and x.get("ratio_vs_plain")]
        if fixed:
            best = max(fixed, key=lambda x: x["ratio_vs_plain"])
            verdict = "at least as fast as" if r["ratio_vs_plain"] >= best["ratio_vs_plain"] else "slower than"
            lines.append(f"{label(r)}: {r['ratio_vs_plain']:.2f}x plain, mean draft length "
                         f"{r['mean_draft_length']:.1f}; {verdict} the best fixed k ({best['k']}: "
                         f"{best['ratio_vs_plain']:.2f}x)")
    return lines


def _f(x: Any, fmt: str, width: int) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:>{width}{fmt}}"


def verify_cost_lines(curve: dict[str, Any], reference: dict[str, Any] | None = None) -> list[str]:
    """The header's verify cost T(k+1)/T(1) (labkit.measure.machine's reference: with its spread, when and where it
    was measured), and what `labkit doctor` concludes from it. ``curve``: a VerifyCost's dict, or an older bench
    JSON's plain {k: ratio}."""
    from labkit.core.verify_cost import VerifyCost, as_verify_cost
    from labkit.measure.doctor import verdict

    vc = VerifyCost.from_dict(curve) if "ratios" in curve else as_verify_cost(curve)
    if reference:
        from labkit.measure.machine import Reference

        head = Reference.from_dict(reference).text().splitlines()
    else:
        head = [f"verify cost against a 1-token forward: {vc.text()}"]
    return [*head, *verdict(vc).text(with_curve=False).splitlines()]


def format_table(result: dict[str, Any]) -> str:
    """One line per configuration: end-to-end tok/s over all categories, ratio to transformers' greedy (mean over
    categories), the ratio per category, ratio to labkit plain decoding with the same decoding (greedy or sampled),
    tokens per verify, mean acceptance length (MAL), draft acceptance rate, c (labkit.core.metrics names),
    repetition (share of generated 4-grams seen before), text equal to greedy's."""
    rows = result["rows"]
    cats = list(result["meta"]["prompts"])
    llama = any(r.get("ratio_vs_llama_plain") for r in rows)  # llama.cpp ran: every row against its plain too
    cols = f"{'configuration':<42}{'e2e tok/s':>10}{'x greedy':>9}" + "".join(f"{c[:8]:>9}" for c in cats)
    cols += f"{'x plain':>8}" + (f"{'x llama':>8}" if llama else "")
    cols += f"{'cpu x':>7}{'tok/ver':>8}{'MAL':>6}{'acc rate':>9}{'c':>7}{'rep4':>6}{'=greedy':>8}"
    lines = [*header_lines(result), COLUMNS_TEXT, cols, "-" * len(cols)]
    lines += [_line(r, rows, cats, llama) for r in rows if r["category"] == "all"]
    lines += policy_lines(rows)
    lines += [f"skipped {what}: {why}" for what, why in result.get("skipped", {}).items()]
    return "\n".join(lines)


COLUMNS_TEXT = ("columns: e2e tok/s = end-to-end tokens per second; x plain = against the same engine's plain "
                "decoding (transformers: labkit's); x llama = against llama.cpp plain; tok/ver = tokens per verify; "
                "MAL = mean acceptance length; acc rate = draft acceptance rate; c = draft cost (docs/metrics.md)")


def header_lines(result: dict[str, Any]) -> list[str]:
    """What the run was (model, machine, settings) and what it measured beside the rows: int8 quality, llama.cpp's
    counter check and verify cost, this machine's verify cost and its verdict, the sampling settings."""
    meta = result["meta"]
    st = meta["settings"]
    heads = [f"{meta['model']} ({meta['dtype']}, {meta['device']}, {meta['threads']} threads), "
             f"{st['max_new_tokens']} new tokens, median of {st['repeats']} repeats; "
             f"ratios vs transformers greedy in this run; copy rate {meta['copy_gbps']:.1f} GB/s, "
             f"weights {meta['weight_bytes'] / 1e6:.0f} MB; labkit cache {st.get('cache', 'dynamic')}"
             + (f", compiled ({st['compile_mode']})" if st.get("compile_mode") else "")]
    if meta.get("prompts_file"):  # the user's prompts: which file, exactly (its sha256)
        pf = meta["prompts_file"]
        heads.append(f"prompts: {pf['path']} ({pf['prompts']} prompts in {len(pf['categories'])} categories, "
                     f"sha256 {pf['sha256'][:12]})")
    if meta.get("load_average") is not None:
        heads.append(f"load average {meta['load_average']:.2f} on {meta.get('cpu_count')} cores when the runs ended")
    if meta.get("quality_vs_bf16"):
        q = meta["quality_vs_bf16"]
        heads.append(f"int8 against bf16 on the bench's own text ({q['positions']} positions, teacher-forced): "
                     f"greedy agreement {q['greedy_agreement']:.3f}, KL mean {q['kl_mean']:.4f} nats "
                     f"(90th percentile {q['kl_p90']:.4f}); speculative decoding is lossless against the int8 target")
    if meta.get("counter_check"):
        cc = meta["counter_check"]
        heads.append(f"server counters (llama.cpp, vLLM): per-request figures equal the /metrics deltas in "
                     f"{cc['agree']} of {cc['requests']} requests")
    synth = [r for r in result["rows"] if r.get("verify_cost") and r["category"] == "all"]
    if synth:
        heads.append("llama.cpp's verify cost T(k+1)/T(1) from its synthetic-acceptance rows (drafting free, "
                     "T(1) from its plain rows): " + ", ".join(f"{r['k'] + 1} tokens {r['verify_cost']:.2f}x"
                                                                 f" ({r['method']})" for r in synth))
    if meta.get("verify_cost"):  # the same verdict as `labkit doctor`, from the session's one machine reference
        heads += verify_cost_lines(meta["verify_cost"], meta.get("machine_reference"))
    if st.get("temperature"):
        sampling = " ".join([f"T={st['temperature']:g}"] + ([f"top-k={st['top_k']}"] if st.get("top_k") else [])
                            + ([f"top-p={st['top_p']:g}"] if st.get("top_p") else []))
        heads.append(f"sampled rows: {sampling}, seed {st.get('seed', 0)}; 'x plain' is against labkit plain "
                     "decoding with the same sampling")
    return heads


def _line(r: dict[str, Any], rows: list[dict[str, Any]], cats: list[str], llama: bool) -> str:
    """One configuration's line of the table (its "all" row, with its per-category ratios)."""
    per = {x["category"]: x["ratio_vs_hf_greedy"] for x in rows if _same(x, r) and x["category"] != "all"}
    acc = None if r["draft_acceptance_rate"] is None else 100 * r["draft_acceptance_rate"]
    return (f"{label(r):<42}{r['end_to_end_tok_s']:>10.2f}{r['ratio_vs_hf_greedy']:>8.2f}x"
            + "".join(f"{per[c]:>8.2f}x" for c in cats) + _f(r.get("ratio_vs_plain"), ".2f", 7) + "x"
            + ((_f(r.get("ratio_vs_llama_plain"), ".2f", 7) + "x") if llama else "")
            + _f(r.get("ratio_cpu_vs_hf_greedy"), ".2f", 6) + "x"
            + _f(r["tokens_per_verify"], ".2f", 8) + _f(r["mean_acceptance_length"], ".2f", 6)
            + _f(acc, ".0f", 8) + ("%" if acc is not None else " ")
            + _f(r["draft_cost"], ".3f", 7) + _f(r.get("repetition"), ".2f", 6)
            + f"{100 * r['same_as_hf_greedy']:>7.0f}%")


def _same(a: dict, b: dict) -> bool:
    return all(a.get(f) == b.get(f) for f in ("engine", "method", "k", "decoding", "policy"))


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            d = dict(r)
            for key in ("acceptance_by_position", "conditional_acceptance_by_position"):
                if d.get(key) is not None:
                    d[key] = ";".join("" if x is None else f"{x:.4f}" for x in d[key])
            w.writerow(d)


def write_all(result: dict[str, Any], out_dir: str | Path) -> list[str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.csv", out / "bench.html"]
    body = {k: v for k, v in result.items() if k != "files"}
    paths[0].write_text(json.dumps(body, indent=1), encoding="utf-8")
    write_csv(result["rows"], paths[1])
    paths[2].write_text(html_report(result), encoding="utf-8")
    return [str(p) for p in paths]


# ----------------------------------------------------------------------------------------------- charts


def fig_speed(rows: list[dict]) -> Any:
    """Speed vs k per drafter (all categories), as ratio to transformers' greedy; k = 0 methods as flat lines."""
    import plotly.graph_objects as go

    fig = go.Figure()
    overall = [r for r in rows if r["category"] == "all"]
    ks = sorted({r["k"] for r in overall})
    # a dynamic draft length has no one k: drawn flat across, like plain decoding
    kind = lambda r: (r["engine"], r["method"], r.get("decoding", "greedy"), r.get("policy") or "")  # noqa: E731
    for name in dict.fromkeys(kind(r) for r in overall):
        mine = sorted((r for r in overall if kind(r) == name), key=lambda r: r["k"])
        flat = len(mine) == 1 and (mine[0]["k"] == 0 or bool(name[3]))
        x = [ks[0], ks[-1]] if flat else [r["k"] for r in mine]
        y = [mine[0]["ratio_vs_hf_greedy"]] * 2 if flat else [r["ratio_vs_hf_greedy"] for r in mine]
        rep = [mine[0].get("repetition")] * 2 if flat else [r.get("repetition") for r in mine]
        words = " ".join(x for x in (name[0], name[1], name[2] if name[2] != "greedy" else "", name[3]) if x)
        fig.add_trace(go.Scatter(x=x, y=y, name=words, mode="lines" if flat else "lines+markers",
                                 customdata=[-1.0 if v is None else v for v in rep],
                                 hovertemplate="k=%{x}: %{y:.2f}x, repetition %{customdata:.2f}<extra>" + words
                                 + "</extra>",
                                 line={"dash": "dot" if name[0] == "transformers" else
                                       ("dashdot" if name[3] else ("dash" if name[2] != "greedy" else "solid"))}))
    fig.update_layout(title="Speed vs k (all categories): ratio to transformers greedy; hover: repetition (share "
                      "of generated 4-grams seen before)", xaxis_title="k", yaxis_title="x transformers greedy")
    return fig


def fig_positions(rows: list[dict], curves: list[dict]) -> Any:
    """Acceptance by draft position at each drafter's largest k, against alpha^i (i.i.d. acceptance)."""
    import plotly.graph_objects as go

    from labkit.measure.theory import expected_acceptance_by_position

    fig = go.Figure()
    alphas = {c["drafter"]: c["alpha"] for c in curves}
    for name in dict.fromkeys(r["method"] for r in rows if r["engine"] == "labkit" and r["k"] > 0):
        mine = [r for r in rows if r["engine"] == "labkit" and r["method"] == name and r["category"] == "all"
                and not r.get("policy")]
        r = max(mine, key=lambda r: r["k"])
        pos = r["acceptance_by_position"] or []
        fig.add_trace(go.Bar(x=list(range(1, len(pos) + 1)), y=pos, name=f"{name} k={r['k']}"))
        if name in alphas and pos:
            expected = expected_acceptance_by_position(alphas[name], len(pos))
            fig.add_trace(go.Scatter(x=list(range(1, len(pos) + 1)), y=expected,
                                     name=f"{name}: alpha^i, alpha={alphas[name]:.2f}", mode="lines",
                                     line={"dash": "dot"}))
    fig.update_layout(title="Acceptance by draft position", xaxis_title="position i",
                      yaxis_title="P(position i accepted | drafted)", barmode="group")
    return fig


def fig_theory(curves: list[dict]) -> Any:
    """labkit.measure.theory's speedup from measured alpha and c, against measured speedup over labkit plain."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for c in curves:
        fig.add_trace(go.Scatter(x=[p["k"] for p in c["curve"]], y=[p["speedup"] for p in c["curve"]],
                                 mode="lines", name=f"theory {c['drafter']} (alpha={c['alpha']:.2f}, c={c['c']:.3f})"))
        fig.add_trace(go.Scatter(x=[p["k"] for p in c["measured"]], y=[p["speedup"] for p in c["measured"]],
                                 mode="markers", name=f"measured {c['drafter']}"))
    fig.update_layout(title="Theory (Leviathan et al.) vs measured: speedup over labkit plain", xaxis_title="k",
                      yaxis_title="speedup")
    return fig


def fig_roofline(rows: list[dict], meta: dict) -> Any:
    """tok/s against tokens per target forward; the roof is copy rate / weight bytes per forward."""
    import plotly.graph_objects as go

    roof = meta["copy_gbps"] * 1e9 / meta["weight_bytes"]
    pts = [r for r in rows if r["category"] == "all" and r.get("tokens_per_verify")]
    xmax = max([r["tokens_per_verify"] for r in pts] + [1.0]) * 1.1
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, xmax], y=[0, roof * xmax], mode="lines", name=(
        f"memory roof: {meta['copy_gbps']:.1f} GB/s / {meta['weight_bytes'] / 1e6:.0f} MB per forward")))
    fig.add_trace(go.Scatter(x=[r["tokens_per_verify"] for r in pts], y=[r["end_to_end_tok_s"] for r in pts],
                             mode="markers", text=[label(r) for r in pts], name="configurations",
                             customdata=[r["weight_gbps"] for r in pts],
                             hovertemplate="%{text}<br>%{y:.1f} tok/s = %{customdata:.1f} GB/s of weights"))
    fig.update_layout(title="Roofline: tokens/s x weight bytes per token against the measured copy rate",
                      xaxis_title="tokens per target forward", yaxis_title="tokens / s")
    return fig


def fig_repetition(rows: list[dict]) -> Any:
    """Speed against repetition, one point per configuration and category: prompt lookup wins where text repeats."""
    import plotly.graph_objects as go

    fig = go.Figure()
    pts = [r for r in rows if r["category"] != "all" and r.get("repetition") is not None and r["k"] > 0]
    series = [label({**r, "k": 0}) for r in pts]  # one series per engine/method/decoding, every k in it
    for name in dict.fromkeys(series):
        mine = [r for r, n in zip(pts, series, strict=True) if n == name]
        fig.add_trace(go.Scatter(x=[r["repetition"] for r in mine], y=[r.get("ratio_vs_plain") for r in mine],
                                 mode="markers", name=name, text=[f"{r['category']} k={r['k']}" for r in mine],
                                 hovertemplate="%{text}: repetition %{x:.2f}, %{y:.2f}x plain"))
    fig.update_layout(title="Speed against repetition (share of generated 4-grams seen in prompt + output)",
                      xaxis_title="repetition", yaxis_title="x labkit plain (same decoding)", xaxis_range=[0, 1])
    return fig


def fig_categories(rows: list[dict]) -> Any:
    import plotly.graph_objects as go

    overall = [r for r in rows if r["category"] == "all"]
    cats = list(dict.fromkeys(r["category"] for r in rows if r["category"] != "all"))
    ratios = [[next(x["ratio_vs_hf_greedy"] for x in rows if _same(x, r) and x["category"] == c) for c in cats]
              for r in overall]
    # colour by log2(ratio): 2x faster and 2x slower sit equally far from "as fast" (white); the text shows the ratio
    z = [[math.log2(v) if v and v > 0 else None for v in row] for row in ratios]
    fig = go.Figure(go.Heatmap(z=z, x=cats, y=[label(r) for r in overall], colorscale="RdBu", zmid=0.0,
                               text=ratios, texttemplate="%{text:.2f}x", colorbar={"title": "log2 ratio"}))
    fig.update_layout(title="Ratio to transformers greedy per category", height=200 + 22 * len(overall))
    return fig


def html_report(result: dict[str, Any], plotlyjs: str | bool = True) -> str:
    meta, rows, curves = result["meta"], result["rows"], result["theory"]
    figs = [fig_speed(rows), fig_repetition(rows), fig_categories(rows), fig_positions(rows, curves),
            fig_theory(curves), fig_roofline(rows, meta)]
    parts = [f.to_html(full_html=False, include_plotlyjs=plotlyjs if i == 0 else False) for i, f in enumerate(figs)]
    table = html.escape(format_table(result))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>labkit bench</title></head><body>"
            "<h1>labkit bench</h1><pre>" + table + "</pre>" + "".join(f"<div>{p}</div>" for p in parts)
            + "<h2>Settings</h2><pre>" + html.escape(json.dumps(meta, indent=1)) + "</pre></body></html>")
