"""How fast the front end answers: `dnn check`, `fmt`, `summary` on a generated deep spec.

Run by hand: `python bench/check_speed.py [--layers 2000] [--repeats 7]`. Prints the median
wall time of each whole command (a fresh process each time, as a user runs it) and a last
line of JSON. Target (issue 2): `dnn check` on a 2,000-layer spec under 0.5 s wall.

`--repeat-counts 300,3000,100000` also times `dnn check` of `repeat N { basic(16) }` (the
ResNet basic block of examples/blocks/resnet.dnn, 7 layers) for each N, each run cut at
`--timeout` seconds (issue 14, class 10: every spec checks in bounded time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def deep_spec(layers: int) -> str:
    """A chain of `layers` layers: dense/activation pairs, every tenth a residual block."""
    lines = [
        "dnn 1",
        "",
        "param width = 64",
        "",
        "block res(c) {",
        "  h = dense(c)(in) -> relu",
        "  output add(in, h)",
        "}",
        "",
        "model deep {",
        "  input x: f32[64]",
    ]
    n = 0
    while n < layers:
        if n % 10 == 9:
            lines.append("  res(width)")
            n += 3
        else:
            lines.append("  dense(width) -> relu")
            n += 2
    lines += ["  dense(10)", "}", ""]
    return "\n".join(lines)


def repeat_spec(n: int) -> str:
    """`repeat n { basic(16) }` between a stem and a head, as in examples/resnet_small.dnn."""
    blocks = Path(__file__).resolve().parent.parent / "examples" / "blocks" / "resnet.dnn"
    return (
        f'dnn 1\nimport "{blocks}"\nmodel r {{\n  input image: f32[8, 8, 1]\n'
        f"  conv_bn(16)\n  repeat {n} {{ basic(16) }}\n  global_avgpool\n  dense(10)\n}}\n"
    )


def timed_repeats(counts: list[int], timeout: float) -> dict[str, Any]:
    """Wall time and output of `dnn check` per repeat count (None where it ran past timeout)."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        for n in counts:
            path = Path(d) / f"repeat{n}.dnn"
            path.write_text(repeat_spec(n))
            t = time.perf_counter()
            try:
                r = subprocess.run(
                    [sys.executable, "-m", "dnn", "check", str(path)],
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                print(f"repeat {n:>7}: over {timeout:.0f} s (stopped)")
                out[str(n)] = None
                continue
            wall = time.perf_counter() - t
            said = (r.stdout.strip() or r.stderr.strip().splitlines()[0]).split(": ", 1)[-1]
            print(f"repeat {n:>7}: {wall:6.2f} s  {said}")
            out[str(n)] = round(wall, 3)
    return out


def timed(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--layers", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--repeat-counts", default="", help="e.g. 300,3000,100000")
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args()
    if args.repeat_counts:
        counts = [int(n) for n in args.repeat_counts.split(",")]
        print(json.dumps({"repeat_check_s": timed_repeats(counts, args.timeout)}))
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "deep.dnn"
        path.write_text(deep_spec(args.layers))
        base = [sys.executable, "-m", "dnn"]
        results = {
            "python_startup_s": timed([sys.executable, "-c", "pass"], args.repeats),
            "check_s": timed([*base, "check", str(path)], args.repeats),
            "fmt_check_s": timed([*base, "fmt", "--check", str(path)], args.repeats),
            "summary_s": timed([*base, "summary", str(path)], args.repeats),
        }
        out = subprocess.run([*base, "check", str(path)], capture_output=True, text=True)
    print(out.stdout.strip())
    for k, v in results.items():
        print(f"{k:>18}: {v:.3f} s (median of {args.repeats})")
    print(json.dumps({"layers": args.layers, **{k: round(v, 4) for k, v in results.items()}}))


if __name__ == "__main__":
    main()
