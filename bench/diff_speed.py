"""How fast `dnn diff` answers on two generated 500-layer specs (issue 6: under 1 s).

Run by hand: `python bench/diff_speed.py [--layers 500] [--repeats 5]`. Prints the median
wall time of whole commands (a fresh process each time, as a user runs it) and a last line of
JSON. The two specs differ in a few widths, one inserted dropout and the learning rate, so
the alignment has real work to do; `check` of one spec is timed alongside for reference.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def deep_spec(layers: int, variant: bool = False) -> str:
    """A chain of about `layers` layers: dense/relu pairs, every tenth step a residual block.

    The variant widens every 25th dense layer, inserts a dropout after the 100th line and
    halves the learning rate.
    """
    lines = [
        "dnn 1",
        "",
        "block res(c) {",
        "  h = dense(c)(in) -> relu",
        "  output add(in, h)",
        "}",
    ]
    lines += ["", "model deep {", "  input x: f32[64]"]
    n = step = 0
    while n < layers:
        step += 1
        if step % 10 == 0:
            lines.append("  res(64)")
            n += 3
            continue
        width = 96 if variant and step % 25 == 0 else 64
        lines.append(f"  dense({width}) -> relu")
        n += 2
        if variant and step == 100:
            lines.append("  dropout(0.1)")
    lines += [
        "  dense(10)",
        "}",
        "",
        "train {",
        f"  optimizer = adam(lr = {5e-4 if variant else 1e-3})",
    ]
    lines += ["}", ""]
    return "\n".join(lines)


def timed(cmd: list[str], repeats: int) -> tuple[float, float]:
    """Median wall and CPU (user + system) time of a command, as a fresh process.

    CPU time is the steadier number on a busy machine. Exit status 0 or 1 (diff's
    `different`) is fine.
    """
    wall, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True)
        wall.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if r.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr.decode()}")
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--layers", type=int, default=500)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        a, b = Path(d) / "a.dnn", Path(d) / "b.dnn"
        a.write_text(deep_spec(args.layers))
        b.write_text(deep_spec(args.layers, variant=True))
        base = [sys.executable, "-m", "dnn"]
        results = {
            "python_startup": timed([sys.executable, "-c", "pass"], args.repeats),
            "check_one": timed([*base, "check", str(a)], args.repeats),
            "diff_same": timed([*base, "diff", str(a), str(a)], args.repeats),
            "diff": timed([*base, "diff", str(a), str(b)], args.repeats),
        }
        out = subprocess.run(
            [*base, "diff", "--format", "json", str(a), str(b)], capture_output=True
        )
    report = json.loads(out.stdout)
    print(f"{len(report['layers'])} layers reported, params {report['params']}")
    for k, (wall, cpu) in results.items():
        print(f"{k:>18}: {wall:.3f} s wall, {cpu:.3f} s CPU (medians of {args.repeats})")
    flat = {
        f"{k}_{w}": round(v[i], 4)
        for k, v in results.items()
        for i, w in enumerate(("wall", "cpu"))
    }
    print(json.dumps({"layers": args.layers, **flat}))
    if results["diff"][0] >= 1.0:
        raise SystemExit("dnn diff took 1 s or more")


if __name__ == "__main__":
    main()
