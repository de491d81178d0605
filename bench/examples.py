"""Train every example from scratch and check it reaches the score stated in examples/README.md.

    python bench/examples.py [NAME ...]

Prints one line per example (its test score, epochs, wall time) and exits 1 if any falls short
of its stated score: test accuracy, or the metric the row names (`r2 ≥ 0.35`; an error the row
bounds from above, `mse ≤ 0.70`). Not part of the test suite: it takes a few minutes on two
cores.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

from dnn.runtime.fit import train

import dnn

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(
    r"^\| `(?P<file>[\w.]+\.dnn)` \|[^|]*\| (?:(?P<metric>\w+) )?(?P<op>[≥≤]) (?P<bound>[\d.]+) \|",
    re.M,
)


def stated() -> dict[str, tuple[str, str, float]]:
    """Each example's stated (metric, ≥ or ≤, bound on its test score); the metric is accuracy
    unless named."""
    text = (ROOT / "examples" / "README.md").read_text()
    # a row names a file of examples/ itself: the zoo (examples/zoo/) states no score, and is
    # checked and lowered by tests/test_zoo.py, never trained
    return {
        m["file"]: (m["metric"] or "accuracy", m["op"], float(m["bound"]))
        for m in ROW.finditer(text)
        if (ROOT / "examples" / m["file"]).parent == ROOT / "examples"
    }


def source_run(file: str, tmp: Path) -> list[str]:
    """The override pointing a fine-tuning example's `init_from = "runs/NAME"` at a run of
    examples/NAME.dnn (trained here first, unless its own row already did), as its comment
    tells a user to do."""
    init = dnn.load(str(ROOT / "examples" / file)).train.init_from
    if not init:
        return []
    name = Path(str(init)).name + ".dnn"
    if not (tmp / name).exists():
        train(dnn.load(str(ROOT / "examples" / name)), tmp / name, mode="quiet")
    return [f'train.init_from="{tmp / name}"']


def shards_written(file: str) -> None:
    """A spec reading `shards(...)` under examples/data/ gets them written from the digits, as
    its comment tells a user to do, where they are missing."""
    from dnn.runtime.cli import main as dnn_main

    data = dnn.load(str(ROOT / "examples" / file)).data
    if data is None or data.source.name != "shards":
        return
    pattern = ROOT / "examples" / str(data.source.arg("pattern"))
    if not list(pattern.parent.glob(pattern.name)):
        cnn = str(ROOT / "examples" / "digits_cnn.dnn")
        assert dnn_main(["data", cnn, "--write-shards", str(pattern.parent)]) == 0


def main(names: list[str]) -> int:
    wanted = stated()
    if names:
        wanted = {f: s for f, s in wanted.items() if f.removesuffix(".dnn") in names}
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for file, (metric, op, bound) in wanted.items():
            t0 = time.perf_counter()
            shards_written(file)
            program = dnn.load(str(ROOT / "examples" / file), source_run(file, Path(tmp)))
            result = train(program, Path(tmp) / file, mode="quiet")
            score = result["test"][metric]
            ok = score >= bound if op == "≥" else score <= bound
            failed += [] if ok else [file]
            print(
                f"{file:25s} test {metric} {score:.4f} (stated {op} {bound})  "
                f"{result['epochs_run']} epochs  {time.perf_counter() - t0:.0f} s  "
                f"{'ok' if ok else 'SHORT'}",
                flush=True,
            )
    if failed:
        print(f"short of the stated score: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
