"""Redaction: recall by entity kind and false positives on the labelled set, and the cost per
utterance.

    .venv/bin/python bench/redaction_bench.py [--rounds 20]

The set is tests/data/redaction_set.tsv (utterances with entities in written, spoken and
misrecognized forms, and hard negatives). Recall counts each expected entity once (the kind
must match); a negative is a false positive when anything in it is masked. Cost is the time of
one `Redactor.redact` call, each utterance timed `--rounds` times, p50/p95 over every call;
then the hostile inputs of the tests (100 kB of digits and separators, of random unicode),
timed once each.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.redaction import EntityKind, Redactor  # noqa: E402

SET = ROOT / "tests" / "data" / "redaction_set.tsv"


def _rows() -> list[tuple[tuple[str, ...], str]]:
    rows = []
    for line in SET.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            cols = line.split("\t")
            rows.append((() if cols[0] == "-" else tuple(cols[0].split(",")), cols[1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    redactor = Redactor()
    rows = _rows()

    expected: Counter[str] = Counter()
    found: Counter[str] = Counter()
    negatives = flagged = 0
    for kinds, text in rows:
        got = redactor.redact(text).counts()
        if not kinds:
            negatives += 1
            flagged += bool(got)
            continue
        for kind, count in Counter(kinds).items():
            expected[kind] += count
            found[kind] += min(count, got.get(EntityKind(kind), 0))

    costs: list[float] = []
    texts = [text for _, text in rows]
    for _ in range(3):  # warm up
        for text in texts:
            redactor.redact(text)
    for _ in range(args.rounds):
        for text in texts:
            began = time.perf_counter_ns()
            redactor.redact(text)
            costs.append((time.perf_counter_ns() - began) / 1000)
    costs.sort()

    print(f"labelled set: {len(rows) - negatives} utterances with entities, {negatives} hard negatives")
    print(f"{'entity':<15}{'found':>7}{'of':>5}{'recall':>9}")
    for kind in [k.value for k in EntityKind]:
        if expected[kind]:
            print(f"{kind:<15}{found[kind]:>7}{expected[kind]:>5}{found[kind] / expected[kind]:>9.1%}")
    total_found, total = sum(found.values()), sum(expected.values())
    print(f"{'all':<15}{total_found:>7}{total:>5}{total_found / total:>9.1%}")
    print(f"false positives: {flagged} of {negatives} negatives ({flagged / negatives:.1%})")
    p50 = statistics.median(costs)
    p95 = costs[int(0.95 * (len(costs) - 1))]
    print(f"cost per utterance: p50 {p50:.1f} µs, p95 {p95:.1f} µs, max {costs[-1]:.1f} µs ({len(costs)} calls)")

    rng = random.Random(7)
    hostile = {
        "100 kB digits and separators": "".join(rng.choice("0123456789 ,.-/()+") for _ in range(100_000)),
        "100 kB spoken digits and fillers": " ".join(
            rng.choice(["four", "oh", "double", "uh", "1", "-"]) for _ in range(20_000)
        ),
        "100 kB random unicode": "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(100_000)),
    }
    for name, text in hostile.items():
        started = time.perf_counter()
        redactor.redact(text)
        print(f"{name}: {(time.perf_counter() - started) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
