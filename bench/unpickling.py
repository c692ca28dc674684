"""Decode cost of one session value in each unpickling mode, with and without its guards.

Run from the repository root as ``python -m bench.unpickling`` (``python -m bench.codec``
runs it too). It prints figures and never fails on them. Every candidate runs in the same
process and is interleaved with the others in rounds:

* ``default, no guards``: the C unpickler handed the allowed classes themselves, as before
  issue 10 (kept callable here, for this comparison only);
* ``default, B6 stand-ins``: mutable classes replaced by their BUILD-proof stand-ins;
* ``default (today)``: stand-ins plus re-validated datetimes and argument shapes (B6, B8);
* ``strict (today)``: the opcode simulation, then the same loaders;
* ``memo-index walk``: the cheapest sound check for explicit memo indexes (item B12) that we
  know, a Python walk over the opcodes skipping their arguments, timed on its own.

With ``--main PATH`` it also times the default and strict decode of a checkout of the main
branch in a separate process, as a second "before".
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Callable

from bench import payloads

ROUNDS = 25
BATCH_NS = 8_000_000

Op = Callable[[], object]


def _values(name: str) -> list[bytes]:
    """The pickles our writer stores for each key of a payload."""
    from django_picklesessions.pickler import get_writer

    writer = get_writer()
    return [writer.dumps(key, value) for key, value in payloads.PAYLOADS[name]().items()]


# --- The cheapest sound memo-index check (B12), for its cost only ---------------------------

# Opcodes our writer emits whose argument has a fixed width: opcode byte -> argument bytes.
_FIXED = {
    **dict.fromkeys(b"\x94N\x88\x89(01]ae)t\x85\x86\x87}su\x8f\x90\x91\x93R\x81\x92b", 0),
    ord("h"): 1,
    ord("K"): 1,
    ord("M"): 2,
    ord("j"): 4,
    ord("J"): 4,
    ord("G"): 8,
    0x95: 8,
}
# Runs of fixed-width opcodes, matched in C; the loop below handles one length-prefixed
# opcode (text, bytes, LONG1/4, BYTEARRAY8) per iteration.
_RUN = re.compile(
    rb"(?:[\x94N\x88\x89(01\]ae)t\x85\x86\x87}su\x8f\x90\x91\x93R\x81\x92b]"
    rb"|[hK][\x00-\xff]|M[\x00-\xff]{2}|[jJ][\x00-\xff]{4}|[G\x95][\x00-\xff]{8})*"
)
_ONE_BYTE_LENGTH = frozenset(b"\x8c\x43\x8a")  # SHORT_BINUNICODE, SHORT_BINBYTES, LONG1
_FOUR_BYTE_LENGTH = frozenset(b"XB\x8b")  # BINUNICODE, BINBYTES, LONG4


def memo_index_walk(data: bytes) -> bool:
    """Return True if ``data`` holds only opcodes our writer emits (so no explicit memo index).

    Sound: it walks opcode boundaries, skipping each argument by its declared length, and
    refuses PUT, BINPUT and LONG_BINPUT (and anything else it does not know).
    """
    pos, end, match = 2, len(data), _RUN.match
    while True:
        pos = match(data, pos).end()
        if pos >= end:
            return False
        op = data[pos]
        if op in _ONE_BYTE_LENGTH:
            pos += 2 + data[pos + 1] if pos + 1 < end else end
        elif op in _FOUR_BYTE_LENGTH:
            pos += 5 + int.from_bytes(data[pos + 1 : pos + 5], "little", signed=True)
        elif op == 0x96:  # BYTEARRAY8
            pos += 9 + int.from_bytes(data[pos + 1 : pos + 9], "little")
        elif op == 0x2E:  # STOP
            return pos + 1 == end
        else:
            return False


# --- Timing ---------------------------------------------------------------------------------


def _batch(op: Op, calls: int) -> float:
    import gc
    import time

    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(calls):
            op()
        return (time.perf_counter_ns() - start) / calls
    finally:
        gc.enable()


def interleave(candidates: dict[str, Op], rounds: int = ROUNDS) -> dict[str, float]:
    """Median ns per call of each candidate, over rounds that rotate their order."""
    names = list(candidates)
    calls = {}
    for name in names:
        per_call = _batch(candidates[name], 20)
        calls[name] = max(1, int(BATCH_NS / max(per_call, 1.0)))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_batch(candidates[name], calls[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


class _Mode:
    """Stands in for the package's settings inside ``unpickler`` during the benchmark, so that
    switching modes costs one attribute store, the same for every candidate."""

    def __init__(self, strict: bool) -> None:
        self.STRICT_UNPICKLING = strict


def candidates(name: str) -> dict[str, Op]:
    """Each way of decoding every value of payload ``name`` once, through today's loads."""
    from django_picklesessions import unpickler
    from django_picklesessions.allowlist import get_allow_list

    values = _values(name)
    allow = get_allow_list()
    cls = unpickler._unpickler_class(allow)
    # Variants with their own stand-ins: sharing today's would add references to them,
    # which the check for class objects in a value counts.
    variants = {
        "no guards": unpickler.build_unpickler_class(allow.by_name, allow.new_object, False),
        "B6 only": unpickler.build_unpickler_class(allow.by_name, allow.new_object, shapes=False),
    }
    today = cls.loaders
    loads = unpickler.loads
    default_mode, strict_mode = _Mode(False), _Mode(True)

    def run(loaders: dict[tuple[str, str], type], mode: _Mode) -> Op:
        def op() -> None:
            cls.loaders = loaders
            unpickler.conf = mode  # type: ignore[assignment]
            for data in values:
                loads(data)

        return op

    return {
        "default, no guards": run(variants["no guards"].loaders, default_mode),
        "default, B6 stand-ins": run(variants["B6 only"].loaders, default_mode),
        "default (today)": run(today, default_mode),
        "strict, no guards": run(variants["no guards"].loaders, strict_mode),
        "strict (today)": run(today, strict_mode),
        "memo-index walk": lambda: [memo_index_walk(d) for d in values if len(d) > 17],
    }


def report(main: str | None = None) -> None:
    """Print the per-value decode costs of every payload, and the guards' share."""
    from django_picklesessions import unpickler
    from django_picklesessions.allowlist import get_allow_list

    print("\n== unpickling: µs per value, median of interleaved rounds (bench.unpickling)")
    print("   (strict- is strict mode without the B6/B8 guards; walk is the memo-index walk alone)")
    before_main = _main_figures(main) if main else None
    head = ["no guards", "B6 only", "B6+B8", "strict-", "strict", "walk"]
    print(f"   {'payload':<8}{'values':>7}" + "".join(f"{h:>11}" for h in head))
    real_conf = unpickler.conf
    cls = unpickler._unpickler_class(get_allow_list())
    real_loaders = cls.loaders
    try:
        for name in payloads.PAYLOADS:
            count = len(_values(name))
            timed = interleave(candidates(name))
            per = {k: v / count / 1000 for k, v in timed.items()}
            row = [per[k] for k in timed]
            base = per["default, no guards"]
            print(f"   {name:<8}{count:>7}" + "".join(f"{x:11.2f}" for x in row))
            print(
                f"   {'':<15}B6 stand-ins {per['default, B6 stand-ins'] / base - 1:+.1%}, "
                f"B6+B8 {per['default (today)'] / base - 1:+.1%} of the unguarded default; "
                f"strict {per['strict (today)'] / per['default (today)']:.1f}× default; "
                f"memo-index walk alone {per['memo-index walk'] / base:.2f}× the default decode"
            )
            if before_main:
                old = before_main[name]
                print(
                    f"   {'':<15}main checkout (own process): default {old['default']:.2f}, "
                    f"strict {old['strict']:.2f} µs per value"
                )
    finally:
        unpickler.conf = real_conf
        cls.loaders = real_loaders


def _main_figures(path: str) -> dict[str, dict[str, float]] | None:
    """Time the main checkout's loads in its own process; None if it cannot run."""
    env = {**os.environ, "PYTHONPATH": os.path.abspath(path), "PYTHONHASHSEED": "0"}
    # The package and bench.payloads come from the main checkout (the working directory);
    # only this file is loaded from here, by path.
    script = (
        "import importlib.util, json, sys;"
        "spec = importlib.util.spec_from_file_location('bench_unpickling', sys.argv[1]);"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module);"
        "print(json.dumps(module._simple_figures()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, os.path.abspath(__file__)],
        env=env,
        cwd=os.path.abspath(path),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print(f"   (main checkout at {path} not timed: {result.stderr.strip()[-200:]})")
        return None
    figures: dict[str, dict[str, float]] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def _simple_figures() -> dict[str, dict[str, float]]:
    """Default and strict decode per value of whatever package is first on sys.path."""
    from bench.codec import configure

    configure()
    from django.test import override_settings

    from django_picklesessions import unpickler

    out = {}
    for name in payloads.PAYLOADS:
        values = _values(name)

        def default(values: list[bytes] = values) -> None:
            for data in values:
                unpickler.loads(data)

        def strict(values: list[bytes] = values) -> None:
            with override_settings(PICKLESESSIONS_STRICT_UNPICKLING=True):
                for data in values:
                    unpickler.loads(data)

        timed = interleave({"default": default, "strict": strict})
        out[name] = {k: v / len(values) / 1000 for k, v in timed.items()}
    return out


def main() -> None:
    from bench.codec import configure

    configure()
    main_path = None
    if "--main" in sys.argv:
        main_path = sys.argv[sys.argv.index("--main") + 1]
    report(main_path)


if __name__ == "__main__":
    main()
