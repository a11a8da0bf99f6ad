"""Hostile GGUF headers through plan and twin, counted by outcome (issue 21's closing table).

    python benchmarks/fault_tally.py [--cases 4000] [--seed 0] [--json out.json]

Cases: the committed corpus (tests/data/fuzz/), then random byte mutations (1-6 bytes of the
header) and extreme integers in the metadata values, half each, seeded. Each case goes through
tests/fuzz_headers.pipeline (what `fitbench plan` and `fitbench twin` do with a file) and counts
as ok (a plan), clean error (one line naming the file), traceback (any other exception), hang
(past the pipeline's time bound) or crash (MemoryError). Data loss, half-written files and
secrets are the subject of the tests (tests/test_output_paths.py, test_results_faults*.py,
test_logsetup*.py): they are not header cases.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

import fuzz_headers as fz  # noqa: E402
import test_fuzz_headers as tfz  # noqa: E402


def classify(path: Path) -> tuple[str, str]:
    try:
        outcome = fz.pipeline(path)
    except fz.Hang as exc:
        return "hang", str(exc)
    except MemoryError:
        return "crash", "MemoryError"
    except Exception as exc:  # every other exception is a traceback to count
        return "traceback", f"{type(exc).__name__}: {exc}"[:200]
    if outcome == "ok":
        return "ok", ""
    if path.name not in outcome or "\n" in outcome:
        return "unclear error", outcome[:200]
    return "clean error", outcome[:200]


def cases(n: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    out = [(f"corpus/{p.name}", p.read_bytes()) for p in sorted(fz.CORPUS.glob("*.gguf"))]
    for i in range(n):
        raw = bytearray(tfz.BASE)
        if i % 2:
            for _ in range(rng.randint(1, 6)):
                raw[rng.randrange(tfz.HEADER_END)] = rng.randrange(256)
            out.append((f"mutation/{i}", bytes(raw)))
        else:
            for kv, at in rng.sample(tfz.INT_FIELDS, rng.randint(1, min(3, len(tfz.INT_FIELDS)))):
                width = fz.int_width(kv)
                value = rng.choice(tfz.EXTREMES) % (1 << (8 * width))
                raw[at : at + width] = value.to_bytes(width, "little")
            out.append((f"extreme/{i}", bytes(raw)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    counts: dict[str, Counter[str]] = {}
    examples: dict[str, str] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in cases(args.cases, args.seed):
            kind = name.split("/")[0]
            path = Path(tmp) / f"case-{kind}.gguf"
            path.write_bytes(data)
            outcome, detail = classify(path)
            counts.setdefault(kind, Counter())[outcome] += 1
            if outcome not in ("ok", "clean error"):
                examples.setdefault(outcome, f"{name}: {detail}")
    total: Counter[str] = Counter()
    for c in counts.values():
        total.update(c)
    order = ("ok", "clean error", "unclear error", "traceback", "hang", "crash")
    print(f"{'cases':<10}" + "".join(f"{o:>15}" for o in order))
    for kind, c in [*counts.items(), ("all", total)]:
        print(f"{kind:<10}" + "".join(f"{c.get(o, 0):>15}" for o in order))
    print(f"{sum(total.values())} cases in {time.monotonic() - t0:.0f} s")
    for outcome, example in examples.items():
        print(f"first {outcome}: {example}")
    if args.json:
        args.json.write_text(
            json.dumps({k: dict(v) for k, v in counts.items()} | {"examples": examples}, indent=2),
            encoding="utf-8",
        )
    return 0 if not examples else 1


if __name__ == "__main__":
    sys.exit(main())
