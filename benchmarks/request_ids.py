"""Cost of a request id per request: the served-row key the app issues, against the alternatives.

``pooled`` is ``serving.recent.RequestIds`` (128 random bits sliced from a pooled
``os.urandom``), the id the app issues: unguessable. The others, side by side in the same run:
``uuid4`` (the app's id before), ``prefix+counter`` (a random per-process prefix and a counter:
cheap but guessable from any one id), ``token_hex`` (``secrets.token_hex(16)``: a getrandom call
per id) and ``blake2b(counter)`` (a keyed hash of a counter). Medians of ``--repeat`` timings of
``--number`` calls; quote the ratios, host speed drifts.

    uv run python benchmarks/request_ids.py [--number 200000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import secrets
import statistics
import timeit
import uuid
from collections.abc import Callable

from winequality.serving.recent import RequestIds


def prefix_counter() -> Callable[[], str]:
    prefix, count = uuid.uuid4().hex[:16], itertools.count(1)
    return lambda: f"{prefix}{next(count):016x}"


def keyed_hash() -> Callable[[], str]:
    key, count = os.urandom(32), itertools.count(1)
    return lambda: hashlib.blake2b(
        next(count).to_bytes(8, "little"), key=key, digest_size=16
    ).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    candidates: dict[str, Callable[[], str]] = {
        "pooled (issued)": RequestIds().next,
        "uuid4": lambda: uuid.uuid4().hex,
        "prefix+counter": prefix_counter(),
        "token_hex": lambda: secrets.token_hex(16),
        "blake2b(counter)": keyed_hash(),
    }
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.repeat):  # interleaved: a slow moment of the host hits all alike
        for name, make in candidates.items():
            times[name].append(timeit.timeit(make, number=args.number) / args.number)
    base = statistics.median(times["pooled (issued)"])
    print(f"{'id':<18} {'ns/id':>8} {'x pooled':>9}")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"{name:<18} {median * 1e9:8.0f} {median / base:9.2f}")


if __name__ == "__main__":
    main()
