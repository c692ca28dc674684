"""Draw the benchmark charts of docs/benchmarks.md from a JSON file of figures.

Run from the repository root as ``python -m bench.charts [DATA.json] [--out docs/figures]``
(``make charts``). The default data file is ``bench/results/2026-12-02.json``, figures
transcribed from that day's runs. Needs matplotlib (the ``bench`` dependency group); it
writes three PNG files and prints their paths.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "results" / "2026-12-02.json"
OUT = ROOT / "docs" / "figures"
# The palette of the example shop, so the pictures look like one project.
INK, MUTED, LINE = "#1f2a24", "#5d6b63", "#dfe5e0"
SERIES = ["#9cc3ad", "#2f6b4f", "#c98b3a", "#6d5a8c"]
CLEANUP_SERIES = {
    "ours": (SERIES[1], "ours"),
    "stock": (SERIES[2], "stock"),
    "floor": (SERIES[0], "unlink only (floor)"),
}


def _finish(figure: Figure, title: str) -> Figure:
    """Title the figure and give every panel the house style."""
    figure.suptitle(title, color=INK)
    for axes in figure.axes:
        axes.spines[["top", "right"]].set_visible(False)
        axes.tick_params(colors=INK)
        axes.grid(axis="y", color=LINE, linewidth=0.8)
        axes.set_axisbelow(True)
    figure.tight_layout()
    return figure


def _target(operation: dict[str, Any], payload: str, database: str) -> float | None:
    """Return the target of one bar: a figure, or maps by payload and then by database."""
    target = operation.get("target")
    if isinstance(target, dict):
        target = target.get(payload)
    if isinstance(target, dict):
        target = target.get(database)
    return None if target is None else float(target)


def ratios(data: dict[str, Any]) -> Figure:
    """Ours / stock per operation, payload and database, each bar's target a dash over it."""
    block = data["engines_ratio"]
    operations = block["operations"]
    databases = block["databases"]
    figure, panels = plt.subplots(1, len(operations), figsize=(12, 4.2), sharey=True)
    width = 0.8 / len(databases)
    middle = (len(databases) - 1) / 2
    for axes, (name, operation) in zip(panels, operations.items(), strict=True):
        payloads = list(operation["ratios"])
        for index, database in enumerate(databases):
            values = [operation["ratios"][payload][index] for payload in payloads]
            positions = [p + (index - middle) * width for p in range(len(payloads))]
            axes.bar(positions, values, width, color=SERIES[index], label=database)
            for payload, position in zip(payloads, positions, strict=True):
                target = _target(operation, payload, database)
                if target is not None:
                    axes.hlines(
                        target,
                        position - width / 2,
                        position + width / 2,
                        color=INK,
                        linewidth=1.8,
                        label="target",
                    )
        axes.axhline(1.0, color=MUTED, linewidth=0.8)
        axes.set_xticks(range(len(payloads)), payloads)
        axes.set_title(name, color=INK, fontsize=10)
    panels[0].set_ylabel("ours / stock time (lower is better)")
    # One entry per label over every panel: each dash is labelled, and may first appear in
    # any panel.
    handles = {
        label: handle
        for axes in panels
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True)
    }
    panels[0].legend(handles.values(), handles.keys(), frameon=False, fontsize=8, loc="upper left")
    return _finish(figure, "Session requests: ours vs Django's engines, per payload and database")


def cleanup(data: dict[str, Any]) -> Figure:
    """``clear_expired`` time against the number of sessions, ours and stock, per store."""
    block = data["cleanup_seconds"]
    stores = block["stores"]
    figure, panels = plt.subplots(1, len(stores), figsize=(11, 3.6))
    for axes, (name, store) in zip(panels, stores.items(), strict=True):
        for who, (color, label) in CLEANUP_SERIES.items():
            if who in store:
                axes.plot(store["sessions"], store[who], marker="o", color=color, label=label)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(store["sessions"], [f"{n:,}" for n in store["sessions"]])
        axes.minorticks_off()
        axes.set_title(name, color=INK)
        axes.set_xlabel("sessions (half expired)", color=MUTED)
        axes.legend(frameon=False, fontsize=8)
    panels[0].set_ylabel("seconds (log)")
    return _finish(figure, "clear_expired: time against the number of sessions")


def contention(data: dict[str, Any]) -> Figure:
    """Saves per second of 1-8 writers racing on one session, per engine."""
    block = data["contention_saves_per_second"]
    figure, axes = plt.subplots(figsize=(8, 4))
    for index, (name, values) in enumerate(block["engines"].items()):
        axes.plot(block["writers"], values, marker="o", color=SERIES[index], label=name)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(block["writers"], [str(n) for n in block["writers"]])
    axes.minorticks_off()
    axes.set_xlabel("concurrent writers on one session", color=MUTED)
    axes.set_ylabel("saves per second (log)")
    axes.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _finish(figure, "Contended saves: compare-and-swap, no update lost")


CHARTS = {
    "bench-ratios.png": ratios,
    "bench-cleanup.png": cleanup,
    "bench-contention.png": contention,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.charts", description=__doc__)
    parser.add_argument("data", nargs="?", type=Path, default=DATA, help="JSON of figures")
    parser.add_argument("--out", type=Path, default=OUT, help="directory of the PNG files")
    args = parser.parse_args(argv)
    data = json.loads(args.data.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in CHARTS.items():
        figure = draw(data)
        # No timestamp or software version in the file: regenerating gives the same bytes.
        figure.savefig(args.out / name, dpi=110, metadata={"Software": None})
        plt.close(figure)
        print(args.out / name)


if __name__ == "__main__":
    main()
