"""Measure what strict unpickling costs: µs per session value, default vs strict mode.

Run from the repository root as ``python -m fuzz.strict_cost``. It decodes every value of
the benchmark payloads (``bench/payloads.py``) through ``unpickler.loads`` in both modes and
prints the best-of-rounds time; it asserts nothing.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable

import django
from django.conf import settings

from bench import payloads

ROUNDS = 15
BATCH_NS = 20_000_000


def configure() -> None:
    """Configure Django for this script alone: no project settings are involved."""
    settings.configure(
        SECRET_KEY="strict-cost-" + "x7Kp2Vn8sYc5Hd3Jf6Gb1Qe0Ra" * 2,
        USE_TZ=True,
        INSTALLED_APPS=["django_picklesessions"],
        PICKLESESSIONS_ALLOWED_CLASSES=payloads.ALLOWED_CLASSES,
    )
    django.setup()


def per_call_us(func: Callable[[], object]) -> float:
    """Return the best per-call time in µs over ``ROUNDS`` batches of about 20 ms."""
    calls = 1
    while True:
        started = time.perf_counter_ns()
        for _ in range(calls):
            func()
        if time.perf_counter_ns() - started > BATCH_NS // 10:
            break
        calls *= 2
    calls = max(1, calls * 10)
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter_ns()
        for _ in range(calls):
            func()
        times.append((time.perf_counter_ns() - started) / calls / 1000)
    return min(times)


def main() -> None:
    configure()
    from django_picklesessions import unpickler
    from django_picklesessions.conf import conf

    for name, build in payloads.PAYLOADS.items():
        values = [pickle.dumps(value, 5) for value in build().values()]

        def decode_all(values: list[bytes] = values) -> None:
            for data in values:
                unpickler.loads(data)

        timings = {}
        for strict in (False, True):
            settings.PICKLESESSIONS_STRICT_UNPICKLING = strict
            conf.reset()
            timings[strict] = per_call_us(decode_all)
        size = sum(len(v) for v in values)
        print(
            f"{name:6} {len(values):3} values {size:7} bytes: default {timings[False]:8.1f} µs, "
            f"strict {timings[True]:8.1f} µs ({timings[True] / timings[False]:.1f}x)"
        )
    cart = pickle.dumps(payloads.cart_payload()["cart"], 5)
    for strict in (False, True):
        settings.PICKLESESSIONS_STRICT_UNPICKLING = strict
        conf.reset()
        label = "strict" if strict else "default"
        cost = per_call_us(lambda: unpickler.loads(cart))
        print(f"cart value alone ({len(cart)} bytes), {label}: {cost:.1f} µs")
    walk = per_call_us(lambda: unpickler.validate_opcodes(cart))
    print(f"strict simulation alone on the cart value: {walk:.1f} µs")


if __name__ == "__main__":
    main()
