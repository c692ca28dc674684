"""Draw docs/figures/architecture.png: the path of a session from the cookie to the storage.

Run from the repository root as ``python docs/figures/architecture.py`` (``make charts``
runs it too). Needs matplotlib (the ``bench`` dependency group).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent / "architecture.png"
INK, MUTED, ACCENT, PAPER, LINE = "#1f2a24", "#5d6b63", "#2f6b4f", "#fbfaf6", "#c3dccc"

# (x, y, title, detail): box centres in a 100 x 40 drawing.
BOXES = {
    "cookie": (8, 29, "cookie", "sessionid: 32 random\n[a-z0-9]; never stored"),
    "middleware": (27.5, 29, "SessionMiddleware", "Django's own: loads\nlazily, saves if modified"),
    "base": (
        47,
        29,
        "store base",
        "lazy per-key decoding,\nchange detection,\ncompare-and-swap saves",
    ),
    "record": (
        67,
        29,
        "record",
        "size cap → structure →\nHMAC-SHA256 → signed\nexpiry → decompress",
    ),
    "unpickler": (87.5, 29, "unpickler", "exact-class allow-list,\nper key, on first read"),
    "storage": (
        47,
        8,
        "storage",
        "db row or file, addressed by SHA-256(key):\nsigned record bytes + version + expiry",
    ),
}
WIDTH, HEIGHT = 14.5, 12


def main() -> None:
    figure, axes = plt.subplots(figsize=(11, 4.4))
    axes.set_xlim(0, 100)
    axes.set_ylim(0, 40)
    axes.axis("off")
    for name, (x, y, title, detail) in BOXES.items():
        width = 38 if name == "storage" else WIDTH
        axes.add_patch(
            FancyBboxPatch(
                (x - width / 2, y - HEIGHT / 2), width, HEIGHT,
                boxstyle="round,pad=0.4,rounding_size=1.2",
                facecolor="#ffffff" if name != "unpickler" else "#e6f1ea",
                edgecolor=ACCENT, linewidth=1.4,
            )
        )  # fmt: skip
        axes.text(x, y + 3.4, title, ha="center", va="center", color=INK, fontsize=10,
                  fontweight="bold")  # fmt: skip
        axes.text(x, y - 1.6, detail, ha="center", va="center", color=MUTED, fontsize=8)

    def arrow(start: tuple[float, float], end: tuple[float, float], label: str = "") -> None:
        axes.add_patch(
            FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=INK,
                            linewidth=1.2)
        )  # fmt: skip
        if label:
            middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
            axes.text(middle[0] + 0.8, middle[1], label, fontsize=8, color=ACCENT, va="center")

    for left, right in (("cookie", "middleware"), ("middleware", "base"), ("base", "record"),
                        ("record", "unpickler")):  # fmt: skip
        (x1, y1, *_), (x2, y2, *_) = BOXES[left], BOXES[right]
        arrow((x1 + WIDTH / 2 + 0.6, y1), (x2 - WIDTH / 2 - 0.6, y2))
    x, y = BOXES["base"][0], BOXES["base"][1] - HEIGHT / 2 - 0.6
    bottom = BOXES["storage"][1] + HEIGHT / 2 + 0.6
    arrow((x - 2, bottom), (x - 2, y))
    arrow((x + 2, y), (x + 2, bottom), "a load reads once;\na save is one\ncompare-and-swap write")
    axes.text(50, 38.5, "A request's session, from the cookie to the storage", ha="center",
              color=INK, fontsize=12)  # fmt: skip
    axes.text(77, 19.5, "nothing is unpickled before the MAC and the expiry verify",
              ha="center", color=ACCENT, fontsize=8, style="italic")  # fmt: skip
    figure.patch.set_facecolor(PAPER)
    figure.tight_layout()
    figure.savefig(OUT, dpi=110, metadata={"Software": None}, facecolor=PAPER)
    print(OUT)


if __name__ == "__main__":
    main()
