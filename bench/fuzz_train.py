"""Train-time fuzzer: mutants of the examples that `dnn check` accepts must train (issue 14).

    python bench/fuzz_train.py [--mutants N] [--seed S] [--limit-s SECONDS] [--out FILE]

Mutates the examples' words and numbers (a layer, activation, loss, optimizer, schedule,
metric, normalizer, augmentation or initializer replaced by another word of its kind; a number
scaled, zeroed or negated; a model line deleted or duplicated), keeps the mutants that pass
`dnn check`, and exercises each one (runtime/contract.py: two short epochs on at most 64
examples per split, evaluate, predict). Outcomes:

- `ok`: trained, evaluated and predicted, every contract check held;
- `diagnostic`: refused after check with a spec diagnostic (what only the data can tell);
- `non_finite`: the loss diverged (a mutated rate of 1e4, say): legitimate, reported;
- `broken`: a contract check failed (a loss constant in the weights, a count mismatch, ...);
- `traceback`: anything else raised — a bug; the first line of each distinct one is printed.

The target is 0 `broken` and 0 `traceback` of at least 2,000 checked mutants; the counts and
the command go in docs/soundness.md. Each finding becomes a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

# Compile fast: the fuzzer looks for tracebacks and constant losses, not for the speed of the
# compiled step, and XLA's CPU compile dominates each mutant (about a third less time with
# these; set XLA_FLAGS yourself to override).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

from dnn.runtime.contract import exercise  # noqa: E402
from mutants import mutate  # noqa: E402  (bench/ is on the path of a script)

import dnn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.dnn") if p.name != "resnet18.dnn")


class Slow(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Slow()


def classify(path: Path, limit_s: int) -> tuple[str, str]:
    """Check, then exercise, one mutant file: (outcome, detail)."""
    try:
        program = dnn.load(str(path))
    except dnn.SpecError:
        return "refused", ""
    signal.alarm(limit_s)
    try:
        done = exercise(program, epochs=2, limit=64)
    except dnn.SpecError as e:
        return "diagnostic", str(e).splitlines()[0]
    except Slow:
        return "slow", f"over {limit_s} s"
    except Exception as e:  # the fuzzer's purpose: any other exception is a finding
        frame = traceback.extract_tb(e.__traceback__)[-1]
        return "traceback", f"{type(e).__name__}: {str(e)[:160]} ({frame.filename}:{frame.lineno})"
    finally:
        signal.alarm(0)
    problems = done.problems()
    if any(p.startswith("non-finite") for p in problems):
        return "non_finite", problems[0]
    return ("broken", "; ".join(problems)) if problems else ("ok", "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=int, default=2000, help="checked mutants to exercise")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-s", type=int, default=120, help="time limit per mutant")
    ap.add_argument("--out", type=Path, default=None, help="write findings as JSON lines")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dnn-fuzz"))
    ap.add_argument(
        "--examples", nargs="+", default=None, help="mutate only these examples (file stems)"
    )
    args = ap.parse_args(argv)
    signal.signal(signal.SIGALRM, _alarm)
    rng = random.Random(args.seed)
    examples = [p for p in EXAMPLES if args.examples is None or p.stem in args.examples]
    sources = {p: p.read_text() for p in examples}
    args.work.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    seen: dict[str, int] = {}
    t0, made = time.perf_counter(), 0
    out = args.out.open("w") if args.out else None
    while counts["checked"] < args.mutants:
        example = rng.choice(examples)
        text = sources[example]
        for _ in range(rng.choice((1, 1, 2, 3))):
            text = mutate(text, rng)
        made += 1
        path = args.work / f"mutant_{made}.dnn"  # next to copies of what examples import
        _copy_imports(example, args.work)
        path.write_text(text)
        outcome, detail = classify(path, args.limit_s)
        counts[outcome] += 1
        if outcome == "refused":
            path.unlink()
            continue
        counts["checked"] += 1
        if outcome in ("traceback", "broken", "slow"):
            key = detail.split(" (")[0][:120]
            seen[key] = seen.get(key, 0) + 1
            if seen[key] == 1:
                print(f"{outcome}: {path}: {detail}", flush=True)
        else:
            path.unlink()
        if out is not None:
            out.write(
                json.dumps(
                    {"mutant": made, "example": example.name, "outcome": outcome, "detail": detail}
                )
                + "\n"
            )
            out.flush()
        if counts["checked"] % 50 == 0:
            print(
                f"{counts['checked']} checked ({made} made) in {time.perf_counter() - t0:.0f} s:",
                _summary(counts),
                flush=True,
            )
    print(
        f"done: {made} mutants made, {counts['checked']} passed check, "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(json.dumps({k: counts[k] for k in sorted(counts)}))
    return 1 if counts["traceback"] or counts["broken"] else 0


def _summary(counts: Counter[str]) -> str:
    keys = ("ok", "diagnostic", "non_finite", "broken", "traceback", "slow")
    return ", ".join(f"{k} {counts[k]}" for k in keys)


def _copy_imports(example: Path, work: Path) -> None:
    blocks = example.parent / "blocks"
    if blocks.is_dir() and not (work / "blocks").exists():
        (work / "blocks").mkdir()
        for f in blocks.glob("*.dnn"):
            (work / "blocks" / f.name).write_text(f.read_text())


if __name__ == "__main__":
    sys.exit(main())
