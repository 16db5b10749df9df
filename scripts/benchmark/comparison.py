"""`--system both`: the product and the DBOS Transact alternative measured in alternating runs, and each
phase's ratio of the two rates. Only a pair of runs next to each other is compared: the machine's speed drifts
over minutes, and a ratio of two rates taken a minute apart holds where the rates themselves do not."""

from __future__ import annotations

from typing import Any

from .stats import percentile

SYSTEMS = ("sagaflow", "dbos")


def comparison_figures(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """{phase: each round's sagas/s of both and their ratio, and the median ratio}, for the phases both
    measured. Pure."""
    phases = [name for name in rounds[0]["sagaflow"]["phases"] if name in rounds[0]["dbos"]["phases"]] if rounds else []
    figures: dict[str, dict[str, Any]] = {}
    for name in phases:
        pairs = []
        for pair in rounds:
            ours, theirs = (pair[system]["phases"].get(name, {}).get("sagas_per_s") for system in SYSTEMS)
            ratio = round(ours / theirs, 2) if ours and theirs else None
            pairs.append({"sagaflow_sagas_per_s": ours, "dbos_sagas_per_s": theirs, "ratio": ratio})
        ratios = [p["ratio"] for p in pairs if p["ratio"] is not None]
        median = percentile(ratios, 0.5)
        figures[name] = {"rounds": pairs, "median_ratio": round(median, 2) if median is not None else None}
    return figures


def comparison_lines(figures: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "\n== sagaflow against DBOS Transact, alternating runs ==",
        f"{'phase':<12}  sagaflow / DBOS sagas/s (ratio), round by round",
    ]
    for name, f in figures.items():
        rounds = ", ".join(
            f"{p['sagaflow_sagas_per_s']} / {p['dbos_sagas_per_s']} ({p['ratio']}x)" for p in f["rounds"]
        )
        lines.append(f"{name:<12}  {rounds}; median {f['median_ratio']}x")
    return lines
