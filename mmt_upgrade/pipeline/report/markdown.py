"""report.md from report.json: the headline sentences, then the tables they come from."""
from __future__ import annotations

from typing import Any, Mapping

LABEL = {"step": "cumulative step", "steps": "cumulative steps (ladder runs between not run)",
         "leave-one-out": "leave-one-out", "variant": "variant",
         "full-vs-naive": "full vs naive", "forgetting-vs-continue": "forgetting vs continue",
         "forgetting-vs-old-model": "forgetting vs the old model"}


def fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}" if abs(x) >= 1000 else f"{x:.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def ms(v: Any) -> str:
    """`mean ± spread/2` of a group figure (the spread is max - min over seeds)."""
    if not isinstance(v, Mapping):
        return fmt(v)
    return f"{v['mean']:.1f}" + (f" ± {v['spread'] / 2:.1f}" if v["spread"] else "")


def interval(c: Mapping[str, Any]) -> str:
    if "low" not in c:
        return f"{c['delta_of_means']:+.1f} ({c['verdict']})"
    return (f"{c['delta']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}], p {c['p_value']:.3f}"
            + (f", seed spread {c['spread']:.2f}" if c["spread"] else "") + f": **{c['verdict']}**")


def find(s: Mapping[str, Any], kind: str, a: str, group: str, metric: str = "chrfpp") -> dict | None:
    return next((c for c in s["comparisons"] if (c["kind"], c["a"], c["group"], c["metric"]) == (kind, a, group, metric)),
                None)


def headline(s: Mapping[str, Any]) -> list[str]:
    lines, iso = [], s["iso_quality"]
    upgraded = [g for g in main_groups(s) if s["runs"][s["groups"][g]["replicas"][0]]["start"] == "upgrade"]
    run = "full" if "full" in upgraded else (upgraded or [""])[-1]
    if not run:
        lines.append(f"- (a) no upgraded run scored on `{s['eval']['split']}` yet.")
    for g, label in (("new", "new directions"), ("all", "all directions")) if run else ():
        r = (iso.get("groups") or {}).get(run, {}).get(g)
        if not iso or r is None:
            lines.append(f"- (a) {label}: no `scratch` run to compare `{run}` with.")
        elif r["bound"] == "mixed":
            lines.append(f"- (a) {label}: `{run}`'s seeds lie on both sides of `scratch`'s curve: no fraction.")
        elif not r["reached"]:
            u, t = r["upgrade"], r["total"]
            lines.append(f"- (a) {label}: `scratch` never reaches `{run}`'s chrF++ {r['chrfpp']:.1f} (its final: "
                         f"{iso['scratch_final'][g]:.1f} after {fmt(iso['scratch_compute']['updates'])} updates), so "
                         f"`{run}` spends less than {fmt(u['updates'], 2)} of the updates, {fmt(u['target_tokens'], 2)} "
                         f"of the target tokens, {fmt(u['train_wall_s'], 2)} of the wall time scratch would need "
                         f"(upper bounds); with the old model's training counted, less than {fmt(t['updates'], 2)} / "
                         f"{fmt(t['target_tokens'], 2)} / {fmt(t['train_wall_s'], 2)}.")
        else:
            u, t = r["upgrade"], r["total"]
            most = r["bound"] == "at most"  # below scratch's first point: its compute bounded above
            lines.append(f"- (a) {label}: `scratch` needs {'at most ' if most else ''}"
                         f"{fmt(r['scratch_compute']['updates'], 0)} updates / {fmt(r['scratch_compute']['target_tokens'], 0)} "
                         f"target tokens to reach `{run}`'s chrF++ {r['chrfpp']:.1f}: `{run}` spends "
                         f"{'at least ' if most else ''}{fmt(u['updates'], 2)} of its updates, {fmt(u['target_tokens'], 2)} of its target tokens, "
                         f"{fmt(u['train_wall_s'], 2)} of its wall time; with the old model's training counted, "
                         f"{fmt(t['updates'], 2)} / {fmt(t['target_tokens'], 2)} / {fmt(t['train_wall_s'], 2)}.")
    for r in ("full", "naive"):
        for kind in ("forgetting-vs-continue", "forgetting-vs-old-model"):
            c = find(s, kind, r, "old")
            if c:
                lines.append(f"- (b) `{r}` {LABEL[kind]} (old directions, chrF++): {interval(c)}.")
    c = find(s, "forgetting-vs-old-model", s["references"].get("continue") or "", "old")
    if c:
        lines.append(f"- (b) `continue` against the old model (what more training alone gives): {interval(c)}.")
    for c in s["comparisons"]:
        if c["kind"] in ("step", "steps", "leave-one-out", "variant", "full-vs-naive") and c["metric"] == "chrfpp" \
                and c["group"] in ("new", "old"):
            lines.append(f"- (c) {LABEL[c['kind']]} `{c['a']}` − `{c['b']}`, {c['group']}: {interval(c)}.")
    return lines + sweep_headline(s)


def main_groups(s: Mapping[str, Any]) -> list[str]:
    """The runs whose finals are on the evaluation split (not the dev sweep's)."""
    return [g for g, r in s["groups"].items() if s["runs"][r["replicas"][0]]["split"] == s["eval"]["split"]]


def sweep_headline(s: Mapping[str, Any]) -> list[str]:
    if not s["sweep"]["chosen"]:
        return []
    return [f"- (d) distillation sweep on dev: `{s['sweep']['chosen']}` ({s['sweep']['rule']})."]


def translator(e: Mapping[str, Any], backend: str) -> str:
    """Who translated, from the experiment's `evaluate:` section (results.json's signatures give the details)."""
    if backend == "ct2":
        return f"CTranslate2 ({e.get('ct2_quantization', 'int8')})"
    return "fairseq-generate"


def markdown(s: Mapping[str, Any], name: str) -> str:
    e, o = s["eval"], s["old_model"]
    final_pairs = e.get("final_max_pairs", -1)
    lines = [f"# Experiment `{name}`", "",
             f"Curve points: {e['max_pairs']} sentences per direction (`{e['split']}`, the same for every run), beam "
             f"{e['beam']}, by {translator(e, e.get('backend', ''))}, every {e['every']} updates. Finals: "
             + ("the curve's last point" if final_pairs == -1 else
                f"{'the whole split' if final_pairs == 0 else f'{final_pairs} sentences per direction'}, beam "
                f"{e.get('final_beam') or e['beam']}, by "
                f"{translator(e, e.get('final_backend') or e.get('backend', ''))}") +
             f" ({fmt(o['sentences'])} sentences per direction for the old model). chrF++ = sacrebleu "
             "`CHRF(word_order=2)`, BLEU `tok:13a`. Significance: sacrebleu's paired bootstrap "
             f"({s['n_samples']} resamples) on each group's directions concatenated; a verdict needs every seed "
             "pair's 95 % interval on one side of 0 and the mean difference beyond the seed spread. The interval shown "
             "spans every seed pair's, the p-value is the largest of theirs (a small p with an interval across 0: "
             "the seeds differ significantly in opposite directions).", "",
             "## Headline", "", *headline(s), "", "## Old model (its own training, reported apart)", "",
             f"chrF++ {o['chrfpp_old']:.1f} / BLEU {o.get('bleu_all', 0.0):.1f} on the old directions; "
             f"{fmt(o['updates'])} updates, {fmt(o['target_tokens'])} target tokens ({o['target_tokens_from']}), "
             f"{fmt(o['train_wall_s'])} s of training.", "", "## Runs (finals; mean ± half the seed range)", "",
             "| run | seeds | updates | target tokens | train s | chrF++ new | chrF++ old | chrF++ all | BLEU new "
             "| BLEU old | old − old model | old − continue |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in main_groups(s):
        r = s["groups"][g]
        seeds = ",".join(str(x) for x in r["seeds"] if x is not None) or "-"
        lines.append(f"| {g} | {seeds} | {fmt(r.get('updates'), 0)} | {fmt(r.get('target_tokens'), 0)} | "
                     f"{fmt(r.get('train_wall_s'), 0)} | " + " | ".join(ms(r.get(k)) for k in (
                         "chrfpp_new", "chrfpp_old", "chrfpp_all", "bleu_new", "bleu_old", "forgetting_chrfpp",
                         "forgetting_vs_continue_chrfpp")) + " |")
    for run, b in s["baselines"].items():
        lines += [] if not b else ["", "Baselines on the same finals' test set (chrF++): " + "; ".join(
            f"{k}: " + ", ".join(f"{g} {v:.1f}" for g, v in b[k].items()) for k in b) + "."]
    lines += ["", "## Comparisons (a − b on the finals)", "",
              "| comparison | a | b | group | metric | Δ [95 % interval], p | verdict |", "|---|---|---|---|---|---|---|"]
    for c in s["comparisons"]:
        lines.append(f"| {LABEL[c['kind']]} | {c['a']} | {c['b']} | {c['group']} | {c['metric']} | "
                     + (f"{c['delta']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}], p {c['p_value']:.3f}"
                        if "low" in c else f"{c['delta_of_means']:+.2f}") + f" | {c['verdict']} |")
    lines += iso_lines(s) + sweep_lines(s)
    if s["missing_runs"]:
        lines += ["", f"Not finished (left out): {', '.join(s['missing_runs'])}."]
    lines += ["", "Plots: `plots/curves.png` (chrF++ against target tokens, scratch's curve and the iso-quality "
              "readings), `plots/forgetting.png` (old-direction chrF++ against `continue` and the old model, with "
              "intervals), `plots/distillation.png` (kd_loss against cross-entropy, when a run distils).", ""]
    return "\n".join(lines)


def iso_lines(s: Mapping[str, Any]) -> list[str]:
    iso = s["iso_quality"]
    if not iso:
        return []
    out = ["", f"## Compute at equal quality (against `{iso['scratch']}`'s curve, curve sample)", "",
           f"The old model's own training: {fmt(iso['old_compute']['updates'])} updates, "
           f"{fmt(iso['old_compute']['target_tokens'])} target tokens, {fmt(iso['old_compute']['train_wall_s'])} s.", "",
           "| run | group | chrF++ | scratch updates needed | upgrade / scratch (updates, tokens, time) | "
           "(old + upgrade) / scratch |", "|---|---|---:|---:|---|---|"]
    for run, groups in iso["groups"].items():
        for g, r in groups.items():
            if r["bound"] == "mixed":
                out.append(f"| {run} | {g} | {r['chrfpp']:.1f} | seeds on both sides of the curve | - | - |")
                continue
            u, t = r["upgrade"], r["total"]
            need, frac = {"at most": ("≤ ", "≥ "), "more than": ("> ", "< ")}.get(r["bound"], ("", ""))
            out.append(f"| {run} | {g} | {r['chrfpp']:.1f} | {need}{fmt(r['scratch_compute']['updates'], 0)} | "
                       f"{frac}{fmt(u['updates'], 2)}, {fmt(u['target_tokens'], 2)}, {fmt(u['train_wall_s'], 2)} | "
                       f"{frac}{fmt(t['updates'], 2)}, {fmt(t['target_tokens'], 2)}, {fmt(t['train_wall_s'], 2)} |")
    return out


def sweep_lines(s: Mapping[str, Any]) -> list[str]:
    out = []
    if s["sweep"]["runs"]:
        out += ["", "## Distillation sweep (dev split)", "", "| run | chrF++ new | chrF++ old | chrF++ all |",
                "|---|---:|---:|---:|"]
        out += [f"| {g} | {fmt(r.get('chrfpp_new'))} | {fmt(r.get('chrfpp_old'))} | {fmt(r.get('chrfpp_all'))} |"
                for g, r in s["sweep"]["runs"].items()]
        out.append(f"\nChosen: `{s['sweep']['chosen']}` ({s['sweep']['rule']}).")
    if s["distillation"]:
        out += ["", "## Distillation terms (fairseq's training log, per target token, base 2)", "",
                "| replica | updates | ce_loss first → last | kd_loss first → last | kd / ce (last) |",
                "|---|---:|---|---|---:|"]
        for n, st in s["distillation"].items():
            a, b = st[0], st[-1]
            ratio = b["kd_loss"] / b["ce_loss"] if b.get("ce_loss") else None
            out.append(f"| {n} | {fmt(int(b['num_updates']))} | {fmt(a.get('ce_loss'), 3)} → {fmt(b.get('ce_loss'), 3)} "
                       f"| {fmt(a['kd_loss'], 3)} → {fmt(b['kd_loss'], 3)} | {fmt(ratio, 3)} |")
    return out
