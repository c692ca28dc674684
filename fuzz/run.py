"""Coverage-guided fuzzing (atheris) of the unpickler and the record reader.

From the repository root, with ``pip install atheris`` (Python 3.11+)::

    python -m fuzz.run --seconds 60            # both targets, half the time each (CI)
    python -m fuzz.run --target value --seconds 3600 --jobs 2   # a longer run

A crash is printed (base64) and saved under ``$TMPDIR/django-picklesessions-fuzz/``; copy it
to ``tests/attacks/corpus/`` named ``value-<what>`` or ``record-<what>`` and the test suite
replays it from then on. The exit status is non-zero when a target crashed.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(tempfile.gettempdir()) / "django-picklesessions-fuzz"
TARGETS = ("value", "record")
#: Address-space cap of a fuzzing process: default mode does not bound what the C unpickler
#: allocates (docs/settings.md), so its bombs must meet MemoryError (a refusal) here.
ADDRESS_SPACE = 5 << 29  # 2.5 GiB


def _fuzz(target: str, libfuzzer_args: list[str]) -> None:
    """Run one target in this process until libFuzzer stops (it exits the process)."""
    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    with atheris.instrument_imports(include=["django_picklesessions"]):
        from django_picklesessions import record, unpickler  # noqa: F401
    from fuzz import seeds, targets

    targets.setup()
    check = targets.check_value if target == "value" else targets.check_record
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
    initial = seeds.value_seeds() if target == "value" else seeds.record_seeds()
    for number, seed in enumerate(initial):
        (corpus / f"seed-{number:03d}").write_bytes(seed)

    def one_input(data: bytes) -> None:
        check(data)

    atheris.Setup([sys.argv[0], *libfuzzer_args, str(corpus)], one_input)
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--target", choices=TARGETS, help="one target (default: both)")
    parser.add_argument("--seconds", type=int, default=60, help="total time (split if both)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel fuzzing processes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    if args.child:
        _fuzz(args.target, extra)
        return 0
    ARTIFACTS.mkdir(exist_ok=True)
    chosen = [args.target] if args.target else list(TARGETS)
    seconds = max(1, args.seconds // len(chosen))
    failed = []
    for target in chosen:
        libfuzzer = [
            f"-max_total_time={seconds}",
            "-timeout=10",  # a single input slower than this is a crash (unbounded work)
            "-rss_limit_mb=3072",
            "-max_len=8192",
            f"-artifact_prefix={ARTIFACTS}/{target}-",
            "-print_final_stats=1",
        ]
        if args.jobs > 1:
            libfuzzer += [f"-jobs={args.jobs}", f"-workers={args.jobs}"]
        command = [sys.executable, "-m", "fuzz.run", "--child", "--target", target, *libfuzzer]
        print(f"== fuzzing {target} for {seconds} s", flush=True)
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        if subprocess.run(command, cwd=ROOT, env=env, check=False).returncode != 0:
            failed.append(target)
    if failed:
        print(f"fuzzing found crashes in: {', '.join(failed)} (see {ARTIFACTS})")
        return 1
    print("fuzzing: no crash")
    return 0


if __name__ == "__main__":
    sys.exit(main())
