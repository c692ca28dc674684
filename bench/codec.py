"""Codec benchmark: our signed pickle records vs Django's JSON sessions vs a pickle+HMAC floor.

Run from the repository root as ``python -m bench.codec``. It prints timings and never fails
on them: the numbers depend on the machine, the targets are what we aim for.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import platform
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import django
from django.conf import settings
from django.contrib.sessions.backends.signed_cookies import SessionStore as StockStore

from bench import harness, payloads, unpickling
from django_picklesessions.backends.locmem import SessionStore

# Deterministic, bench-only secret: 60 characters that pass Django's W009 rules.
SECRET_KEY = "q7Lr-bench-codec-Zt4x9WmKp2Vn8sYc5Hd3Jf6Gb1Qe0Ra-uTyEiOoPlAsD"
SESSION_KEY = "a" * 32
MAC_SIZE = 32

ROUNDS = 31
#: Target wall time of one candidate's batch within a round.
BATCH_NS = 12_000_000

#: Targets (issue 12), checked and only printed at the end: round trip ÷ the pickle+HMAC floor
#: per payload, login round trip ÷ stock, and an auth-only read ÷ a full decode of ``big``.
TARGET_ROUND_TRIP_VS_FLOOR = {"login": 3.0, "cart": 1.4, "big": 1.15}
TARGET_LOGIN_VS_STOCK = 0.5
TARGET_AUTH_ONLY_SHARE = 0.05

Op = Callable[[], object]
OPS = ("encode", "decode", "round trip")
CANDIDATES = ("ours", "stock", "stock + conversion", "floor")


def configure() -> None:
    """Configure Django for the benchmark alone: no project settings are involved."""
    settings.configure(
        SECRET_KEY=SECRET_KEY,
        USE_TZ=True,
        INSTALLED_APPS=["django_picklesessions"],
        PICKLESESSIONS_ALLOWED_CLASSES=payloads.ALLOWED_CLASSES,
    )
    django.setup()


# --- Timing -----------------------------------------------------------------------------

# Timing, interleaving and per-round ratios are bench.harness's; ``Op`` is a bare callable here.
Timing = harness.Timing
per_round = harness.per_round


def interleave(candidates: dict[str, Op]) -> dict[str, Timing]:
    """Time every candidate once per round, rotating their order, so drift hits all alike."""
    wrapped = {name: harness.Candidate(op) for name, op in candidates.items()}
    return harness.interleave(wrapped, ROUNDS, BATCH_NS)


# --- Candidates -------------------------------------------------------------------------


def floor_encode(key: bytes, session: dict[str, Any]) -> bytes:
    """Pickle the whole dict and append its HMAC: the least any signed pickle can cost."""
    data = pickle.dumps(session, 5)
    return data + hmac.digest(key, data, "sha256")


def floor_decode(key: bytes, data: bytes) -> Any:
    """Check the HMAC, then unpickle the whole dict, with no allow-list."""
    body = data[:-MAC_SIZE]
    if not hmac.compare_digest(hmac.digest(key, body, "sha256"), data[-MAC_SIZE:]):
        raise ValueError("bad MAC")
    return pickle.loads(body)


def ours_store() -> SessionStore:
    """Return a store with a fixed session key: records are bound to it."""
    return SessionStore(SESSION_KEY)


def build_candidates(
    store: SessionStore, stock: StockStore, floor_key: bytes, session: dict[str, Any]
) -> dict[str, dict[str, Op]]:
    """Return, for each operation, each candidate as a no-argument callable."""
    ours_record = store.encode(session)
    json_safe = payloads.to_json_safe(session)
    stock_record = stock.encode(json_safe)
    floor_record = floor_encode(floor_key, session)
    to_json, from_json = payloads.to_json_safe, payloads.from_json_safe

    return {
        "encode": {
            "ours": lambda: store.encode(session),
            "stock": lambda: stock.encode(json_safe),
            "stock + conversion": lambda: stock.encode(to_json(session)),
            "floor": lambda: floor_encode(floor_key, session),
        },
        "decode": {
            "ours": lambda: store.decode(ours_record),
            "stock": lambda: stock.decode(stock_record),
            "stock + conversion": lambda: from_json(stock.decode(stock_record)),
            "floor": lambda: floor_decode(floor_key, floor_record),
        },
        "round trip": {
            "ours": lambda: store.decode(store.encode(session)),
            "stock": lambda: stock.decode(stock.encode(json_safe)),
            "stock + conversion": lambda: from_json(stock.decode(stock.encode(to_json(session)))),
            "floor": lambda: floor_decode(floor_key, floor_encode(floor_key, session)),
        },
    }


def check(store: SessionStore, stock: StockStore, floor_key: bytes, session: dict[str, Any]) -> str:
    """Say whether each candidate gives back what it was given (a wrong codec is not fast)."""
    results = {
        "ours": store.decode(store.encode(session)) == session,
        "stock + conversion": payloads.from_json_safe(
            stock.decode(stock.encode(payloads.to_json_safe(session)))
        )
        == session,
        "floor": floor_decode(floor_key, floor_encode(floor_key, session)) == session,
    }
    return ", ".join(f"{name} {'ok' if ok else 'MISMATCH'}" for name, ok in results.items())


# --- Report -----------------------------------------------------------------------------


def _us(ns: float) -> str:
    return f"{ns / 1000:10.2f}"


def report_payload(
    name: str, store: SessionStore, stock: StockStore, floor_key: bytes
) -> dict[str, dict[str, Timing]]:
    """Benchmark one payload, print its table and ratios, and return the timings by op."""
    session = payloads.PAYLOADS[name]()
    sizes = (
        len(store.encode(session)),
        len(stock.encode(payloads.to_json_safe(session))),
        len(floor_encode(floor_key, session)),
    )
    print(
        f"\n== {name}: {len(session)} keys; record bytes ours {sizes[0]:,}, "
        f"stock {sizes[1]:,}, floor {sizes[2]:,}"
    )
    print(f"   round-trip check: {check(store, stock, floor_key, session)}")

    ops = build_candidates(store, stock, floor_key, session)
    # One interleaving over all twelve (op, candidate) pairs: every round runs each once.
    flat = {f"{op}|{cand}": fn for op, cands in ops.items() for cand, fn in cands.items()}
    timed = interleave(flat)
    by_op = {op: {cand: timed[f"{op}|{cand}"] for cand in CANDIDATES} for op in OPS}

    print(f"   {'µs/op (median; best)':<24}" + "".join(f"{op:>22}" for op in OPS))
    for cand in CANDIDATES:
        cells = "".join(f"{_us(by_op[op][cand].median)} ;{_us(by_op[op][cand].best)}" for op in OPS)
        print(f"   {cand:<24}{cells}")
    ratios = (
        ("ours / floor", lambda t: t["ours"].median / t["floor"].median),
        ("(stock+conv) / ours", lambda t: t["stock + conversion"].median / t["ours"].median),
        ("stock / ours", lambda t: t["stock"].median / t["ours"].median),
    )
    for label, ratio in ratios:
        print(f"   {label:<24}" + "".join(f"{ratio(by_op[op]):21.2f}×" for op in OPS))
    return by_op


def report_auth_only(store: SessionStore) -> tuple[float, float, float]:
    """Time reading only ``_auth_user_id`` of a ``big`` record against decoding all of it."""
    record = store.encode(payloads.big_payload())
    timed = interleave(
        {
            "auth-only read": lambda: store.decode_record(record)["_auth_user_id"],
            "full decode": lambda: store.decode(record),
        }
    )
    share = per_round(timed["auth-only read"], timed["full decode"])
    print("\n== auth-only read of a big record (decode_record, then one key)")
    for name, timing in timed.items():
        print(f"   {name:<24}{_us(timing.median)} ;{_us(timing.best)} µs/op")
    print(f"   auth-only / full decode {share[0]:10.1%}")
    return share


def report_requests() -> dict[str, float]:
    """Time a request that changes one cart line in place, in memory, through each middleware.

    Ours runs on the locmem engine, once as Django's ``SessionMiddleware`` finishes a request
    (``modified``, then ``save()``: each pickles what was read) and once as ours does (one
    pass). The view assigns no key, so only the change check can see the change. Stock is
    Django's cache engine on the default LocMemCache (which pickles the dict, unsigned), the
    JSON app assigning the cart back. Storage costs next to nothing here.
    """
    from django.contrib.sessions.backends.cache import SessionStore as StockCacheStore

    from bench.engines import AUTH_KEYS, change_cart_line, finish

    shares: dict[str, float] = {}
    print("\n== a request that reads the auth keys and changes one cart line, in memory")
    for name in ("cart",):
        data = payloads.PAYLOADS[name]()
        stored = {}
        for label, store_class, value in (
            ("ours", SessionStore, data),
            ("stock", StockCacheStore, payloads.to_json_safe(data)),
        ):
            session = store_class()
            session.update(value)
            session.save()
            stored[label] = session.session_key

        def request(store_class: Any, key: str, ours: bool, one_pass: bool) -> None:
            session = store_class(key)
            for auth_key in AUTH_KEYS:
                session[auth_key]
            change_cart_line(session, ours)
            finish(session, one_pass)

        ours_key, stock_key = stored["ours"], stored["stock"]
        timed = interleave(
            {
                "ours, Django's middleware": partial(request, SessionStore, ours_key, True, False),
                "ours, our middleware": partial(request, SessionStore, ours_key, True, True),
                "stock cache (LocMemCache)": partial(
                    request, StockCacheStore, stock_key, False, False
                ),
            }
        )
        print(f"   {name}")
        for label, timing in timed.items():
            print(f"   {label:<28}{_us(timing.median)} ;{_us(timing.best)} µs/op")
        ours_mw = timed["ours, our middleware"].median
        fused = ours_mw / timed["ours, Django's middleware"].median
        vs_stock = ours_mw / timed["stock cache (LocMemCache)"].median
        print(f"   our middleware / Django's   {fused:9.2f}×")
        print(f"   ours (our middleware) / stock {vs_stock:7.2f}×")
        shares[name] = vs_stock
    return shares


def _verdict(met: bool) -> str:
    return "met" if met else "not met"


def main() -> None:
    """Run every comparison and print a summary against the targets."""
    configure()
    print(
        f"bench.codec: Python {platform.python_version()} ({platform.python_implementation()}), "
        f"Django {django.get_version()}, {ROUNDS} interleaved rounds of ~{BATCH_NS // 10**6} ms "
        "per candidate"
    )
    store = ours_store()
    stock = StockStore()
    floor_key = hashlib.sha256(SECRET_KEY.encode()).digest()

    started = time.perf_counter()
    results = {name: report_payload(name, store, stock, floor_key) for name in payloads.PAYLOADS}
    auth_share = report_auth_only(store)
    report_requests()
    unpickling.report()
    if store.session_key != SESSION_KEY:
        print(f"   warning: the store's session key changed to {store.session_key!r}")

    print(
        f"\n== summary (median of per-round ratios [quartiles]; "
        f"benchmark took {time.perf_counter() - started:.1f} s)"
    )
    for name, target in TARGET_ROUND_TRIP_VS_FLOOR.items():
        trip = results[name]["round trip"]
        _summary(f"{name} round trip / floor", per_round(trip["ours"], trip["floor"]), target)
    login = results["login"]["round trip"]
    _summary(
        "login round trip / stock",
        per_round(login["ours"], login["stock"]),
        TARGET_LOGIN_VS_STOCK,
    )
    _summary("big auth-only read / full decode", auth_share, TARGET_AUTH_ONLY_SHARE, percent=True)


def _summary(
    label: str, ratio: tuple[float, float, float], target: float, *, percent: bool = False
) -> None:
    median, low, high = ratio
    shown = (
        f"{median:6.1%} [{low:.1%}–{high:.1%}]"
        if percent
        else f"{median:6.2f}× [{low:.2f}–{high:.2f}]"
    )
    limit = f"{target:.0%}" if percent else f"{target}×"
    print(f"   {label:<34}{shown}  (target ≤ {limit})  {_verdict(median <= target)}")


if __name__ == "__main__":
    main()
