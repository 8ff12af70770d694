"""A sweep's tables and picture: one row per run, a summary per configuration over
seeds (median and spread of the test error), written as CSV and JSON, and drawn."""
from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..training.loop import write_json, write_text
from .plots import save_figure

if TYPE_CHECKING:
    from .sweep import SweepResult
    from .sweep_grid import Configuration

#: The settings a grid may vary, in the order they appear in names and tables;
#: configurations are enumerated with the last (seed) varying fastest.
SETTINGS = ("lr", "batch", "epochs", "optimizer", "seed")
RUNS_CSV, SUMMARY_CSV, SWEEP_JSON, SWEEP_PNG = "sweep.csv", "summary.csv", "sweep.json", \
    "sweep.png"
ROW_FIELDS = ("name", *SETTINGS, "dtype", "status", "test_error", "val_error", "train_loss",
              "test_loss", "seconds", "error")
SUMMARY_FIELDS = ("name", *SETTINGS[:-1], "runs", "ok", "test_error_median",
                  "test_error_min", "test_error_max", "seeds")


def summarize(found: Sequence[Configuration], rows: Sequence[dict]) -> list[dict]:
    """Per configuration over seeds (same group): how many runs, how many ended well,
    and the median, least and largest test error of those."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(found):
        groups.setdefault(c.group, []).append(i)
    summary = []
    for name, members in groups.items():
        ok = [rows[i] for i in members if rows[i]["status"] == "ok"]
        errors = [r["test_error"] for r in ok]
        first = found[members[0]].settings
        summary.append({"name": name, **{k: first[k] for k in SETTINGS[:-1]},
                        "runs": len(members), "ok": len(ok),
                        "test_error_median": statistics.median(errors) if errors else None,
                        "test_error_min": min(errors) if errors else None,
                        "test_error_max": max(errors) if errors else None,
                        "seeds": [found[i].settings["seed"] for i in members]})
    return summary


def write_tables(result: SweepResult, out: Path, *, model: str, grid: dict, fixed: dict,
                 draw: bool) -> list[Path]:
    """sweep.csv, summary.csv, sweep.json and (``draw``) sweep.png, each written
    atomically; returns their paths."""
    out = Path(out)
    written = [out / RUNS_CSV, out / SUMMARY_CSV, out / SWEEP_JSON]
    write_text(written[0], _csv(result.rows, ROW_FIELDS))
    write_text(written[1], _csv([{**s, "seeds": " ".join(map(str, s["seeds"]))}
                                  for s in result.summary], SUMMARY_FIELDS))
    write_json(written[2], {"model": model, "grid": grid, "varying": result.varying,
                            "fixed": fixed, "interrupted": result.interrupted,
                            "runs": result.rows, "summary": result.summary})
    if draw and any(r["status"] == "ok" for r in result.rows):
        written.append(out / SWEEP_PNG)
        draw_sweep(result, model, written[-1])
    return written


def _csv(rows, fields) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if row.get(k) is None else row[k] for k in fields} for row in rows)
    return buffer.getvalue()


def draw_sweep(result: SweepResult, model: str, path: Path) -> None:
    """Test error per configuration: one point per seed, the median as a bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = [s["name"] for s in result.summary]
    by_group = {g: [] for g in groups}
    others = {g: Counter() for g in groups}  # diverged, failed ... runs per group
    for row, group in zip(result.rows, result.groups):
        if row["status"] == "ok":
            by_group[group].append(100 * row["test_error"])
        else:
            others[group][row["status"]] += 1
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(groups) + 2), 4))
    for x, group in enumerate(groups):
        errors = by_group[group]
        offsets = [0.0] if len(errors) < 2 else \
            [-0.15 + 0.3 * k / (len(errors) - 1) for k in range(len(errors))]
        ax.scatter([x + o for o in offsets][:len(errors)], errors, s=24, color="#3a6ea5",
                   zorder=3, label="one seed" if x == 0 else None)
        if errors:
            ax.hlines(statistics.median(errors), x - 0.3, x + 0.3, color="#c0392b", lw=2.5,
                      zorder=4, label="median" if x == 0 else None)
        if others[group]:
            note = ", ".join(f"{n} {status}" for status, n in sorted(others[group].items()))
            ax.annotate(note, (x, 0), xycoords=("data", "axes fraction"),
                        xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8,
                        color="#c0392b")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30 if len(groups) > 3 else 0,
                       ha="right" if len(groups) > 3 else "center", fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set(xlabel="configuration", ylabel="test error (%)",
           title=f"{Path(model).name}: test error per configuration")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
