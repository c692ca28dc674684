"""Draw the benchmark charts of docs/benchmarks.md from a JSON file of figures.

Run from the repository root as ``python -m bench.charts [DATA.json] [--out docs/figures]``
(``make charts``). The default data file is ``bench/results/2026-11-27.json``, figures
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
DATA = ROOT / "bench" / "results" / "2026-11-27.json"
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


def ratios(data: dict[str, Any]) -> Figure:
    """Ours / stock per operation, payload and database, with each target as a line."""
    block = data["engines_ratio"]
    operations = block["operations"]
    figure, panels = plt.subplots(1, len(operations), figsize=(11, 3.8), sharey=True)
    width = 0.8 / len(block["databases"])
    for axes, (name, operation) in zip(panels, operations.items(), strict=True):
        for index, database in enumerate(block["databases"]):
            values = [operation["ratios"][payload][index] for payload in block["payloads"]]
            positions = [p + (index - 1) * width for p in range(len(block["payloads"]))]
            axes.bar(positions, values, width, color=SERIES[index], label=database)
        axes.axhline(1.0, color=INK, linewidth=1)
        axes.axhline(operation["target"], color=INK, linewidth=1, linestyle="--", label="target")
        axes.set_xticks(range(len(block["payloads"])), block["payloads"])
        axes.set_title(f"{name} (target ≤ {operation['target']}×)", color=INK)
    panels[0].set_ylabel("ours / stock time (lower is better)")
    panels[0].legend(frameon=False, fontsize=8, loc="upper left")
    return _finish(figure, "Session operations: ours vs Django's engines, per payload")


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
