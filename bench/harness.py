"""Shared timing and reporting helpers of the storage benchmarks (engines, cleanup, http).

The machine is small and shared, so every comparison interleaves its candidates in rounds
(rotating their order) and reports medians: drift and bursts of other work hit every
candidate alike instead of whichever happened to run last.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import django

Op = Callable[[], object]


@dataclass
class Candidate:
    """One thing to time: ``op`` is timed; ``after`` runs untimed after each batch."""

    op: Op
    after: Callable[[], None] | None = None


@dataclass
class Timing:
    """Nanoseconds per call of one candidate, one sample per round."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)


def batch_ns(candidate: Candidate, calls: int) -> float:
    """Return the mean time of ``calls`` calls, collector paused, then run ``after``."""
    op = candidate.op
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(calls):
            op()
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    if candidate.after is not None:
        candidate.after()
    return elapsed / calls


def calls_per_batch(candidate: Candidate, target_ns: float, max_calls: int = 100_000) -> int:
    """Pick how many calls make one batch of about ``target_ns``, after a short warm-up."""
    calls = 1
    while True:
        per_call = batch_ns(candidate, calls)
        if per_call * calls >= target_ns / 10 or calls >= max_calls:
            return max(1, min(max_calls, int(target_ns / per_call)))
        calls *= 2


def interleave(
    candidates: dict[str, Candidate], rounds: int, target_ns: float
) -> dict[str, Timing]:
    """Time every candidate once per round, rotating their order, and return the samples."""
    names = list(candidates)
    calls = {name: calls_per_batch(candidates[name], target_ns) for name in names}
    timings = {name: Timing() for name in names}
    gc.collect()
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            timings[name].samples.append(batch_ns(candidates[name], calls[name]))
    return timings


def per_round(num: Timing, den: Timing) -> tuple[float, float, float]:
    """Median and quartiles of ``num / den`` taken round by round (both ran in every round)."""
    ratios = [a / b for a, b in zip(num.samples, den.samples, strict=True)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    low, _, high = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), low, high


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` quantile of ``values`` (nearest rank; values need not be sorted)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def verdict(met: bool) -> str:
    """Say whether a target was met; targets are printed, never asserted."""
    return "met" if met else "NOT MET"


def machine_line(name: str) -> str:
    """Return the one-line description of where and with what a benchmark ran."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{name}: {time.strftime('%Y-%m-%d %H:%M')}, Python {platform.python_version()}, "
        f"Django {django.get_version()}, {os.cpu_count()} CPUs, load average {load:.2f} "
        f"at start ({platform.machine()}, {platform.system()} {platform.release()})"
    )


def remove_redis_keys(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` that a benchmark left in the Redis at ``url``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()
