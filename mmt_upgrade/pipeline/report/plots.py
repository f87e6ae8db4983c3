"""The report's plots (matplotlib, Agg): chrF++ against target tokens with scratch's curve and the iso-quality
readings, forgetting with intervals, and distillation's term against cross-entropy."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from mmt_upgrade.pipeline.records import CurvePoint


def _curve(points: list[Mapping[str, Any]]) -> list[CurvePoint]:
    return sorted((CurvePoint.from_json(p) for p in points), key=lambda p: p.updates)


def plot(s: Mapping[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    iso, written = s["iso_quality"], []
    scratch = iso.get("scratch")
    firsts = [r["replicas"][0] for r in s["groups"].values()]  # one replica per run; continue has no new group
    shown = [n for n in firsts if s["runs"][n]["split"] == s["eval"]["split"] and s["runs"][n]["start"] != "continue"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, group in zip(axes, ("new", "all")):
        for name in shown:
            pts = [p for p in _curve(s["curves"][name]) if p.target_tokens is not None and group in p.groups]
            if pts:
                ax.plot([p.target_tokens / 1e6 for p in pts], [p.chrfpp(group) for p in pts], marker="o",
                        linewidth=2.5 if name == scratch else 1, color="black" if name == scratch else None,
                        label=name, markersize=3)
        for name, reading in (iso.get("runs") or {}).items():
            r = reading[group]["final"]
            if name.split("@")[0] == "full" and r["reached"] and r["compute"]["target_tokens"] is not None:
                mine = s["runs"][name]["target_tokens"] or 0
                x = r["compute"]["target_tokens"] / 1e6
                ax.hlines(r["chrfpp"], mine / 1e6, x, colors="red", linestyles="dashed", linewidth=1)
                ax.vlines(x, 0, r["chrfpp"], colors="red", linestyles="dotted", linewidth=1)
                ax.annotate(f"{name}: scratch needs {x:.2f}M", (x, r["chrfpp"]), fontsize=7, color="red")
        ax.set_xlabel("target tokens (millions, the run's own training)")
        ax.set_ylabel(f"chrF++ ({group} directions, curve sample)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    written.append(out / "curves.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    bars = [c for c in s["comparisons"] if c["kind"].startswith("forgetting") and c["metric"] == "chrfpp"]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(bars)), 4))
    labels = [f"{c['a']} − {'cont.' if c['kind'] == 'forgetting-vs-continue' else 'old'}" for c in bars]
    deltas = [c.get("delta", c["delta_of_means"]) for c in bars]
    errs = [[d - c.get("low", d) for c, d in zip(bars, deltas)], [c.get("high", d) - d for c, d in zip(bars, deltas)]]
    ax.bar(range(len(bars)), deltas, yerr=errs, capsize=3,
           color=["tab:blue" if c["kind"] == "forgetting-vs-continue" else "tab:gray" for c in bars])
    ax.set_xticks(range(len(bars)), labels, rotation=60, ha="right", fontsize=7)
    ax.axhline(0, color="black", linewidth=1)
    ax.set_ylabel("old-direction chrF++ difference (95 % interval)")
    ax.set_title("forgetting: against continue (blue) and the old model (grey)")
    fig.tight_layout()
    written.append(out / "forgetting.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    if s["distillation"]:
        fig, ax = plt.subplots(figsize=(8, 4))
        for name, stats in s["distillation"].items():
            ups = [x["num_updates"] for x in stats]
            line, = ax.plot(ups, [x.get("ce_loss", float("nan")) for x in stats], label=f"{name} ce_loss")
            ax.plot(ups, [x["kd_loss"] for x in stats], linestyle="--", color=line.get_color(),
                    label=f"{name} kd_loss")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel("updates")
        ax.set_ylabel("per-token loss (base 2)")
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        written.append(out / "distillation.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written
