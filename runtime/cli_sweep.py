"""The search commands: `dnn lr-find` (the learning-rate range test) and `dnn sweep` (the
spec's `sweep` section on Optuna). Errors go through `cli_train._guard`: spec problems at the
spec line, run problems as `file: error: ...` with a hint; exit 1."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAIL = 0, 1


def cmd_lr_find(args: argparse.Namespace) -> int:
    from dnn.compiler.check import nothing_to_train
    from dnn.compiler.diagnostics import SpecError
    from dnn.compiler.driver import load

    from . import lr_find
    from .train import TrainingError

    if not 0 < args.start < args.end:
        print(f"dnn lr-find: error: need 0 < --start < --end (got {args.start:g}, {args.end:g})")
        return 2
    program = load(args.file, lr_find.overrides(args.set))
    if program.model is None:
        raise SpecError([nothing_to_train(program.module)], program.sources)
    test = lr_find.range_test(program, args.start, args.end, args.steps)
    s = test.suggestion()
    out = Path(args.output or f"{Path(args.file).stem}.lr-find.png")
    lr_find.plot(test, out, f"{program.model.name}: learning-rate range test")
    if args.format == "json":
        print(json.dumps(test.to_dict() | {"plot": str(out)}, indent=2))
    else:
        print(_lr_find_text(args, test, s, out))
    if s is None:
        raise TrainingError(
            f"the range test stopped after {len(test.lrs)} steps ({test.stopped}), "
            "too few to suggest a rate",
            "start lower (`--start 1e-9`) or take more steps (`--steps 300`)",
        )
    if args.write:
        rate = s.steepest if args.use == "steepest" else s.minimum_10
        _write_rate(args.file, float(f"{rate:.2g}"))
    return EXIT_OK


def _lr_find_text(args: argparse.Namespace, test: Any, s: Any, out: Path) -> str:
    end = f"stopped at step {len(test.lrs)}: {test.stopped}" if test.stopped else "every step"
    lines = [
        f"{args.file}: {len(test.lrs)} of {test.planned} steps, rate {args.start:g} .. "
        f"{args.end:g} ({end})"
    ]
    if s is not None:
        lines += [
            f"  steepest descent  {s.steepest:.2e}",
            f"  minimum / 10      {s.minimum_10:.2e}   (minimum at {s.minimum:.2e})",
        ]
    lines.append(f"plot: {out}")
    return "\n".join(lines)


def _write_rate(path: str, rate: float) -> None:
    """Put `rate` into the spec's optimizer (`train.optimizer.lr`), formatted by `dnn fmt`."""
    from dnn.compiler.driver import rewrite
    from dnn.compiler.resolve import read_file
    from dnn.compiler.values import fmt_number

    text = read_file(path)
    new = rewrite(text, path, [f"train.optimizer.lr={fmt_number(rate)}"])
    tmp = f"{path}.dnn-lr-find.tmp"
    Path(tmp).write_text(new)
    os.replace(tmp, path)
    print(f"{path}: train.optimizer.lr = {fmt_number(rate)}", file=sys.stderr)


def register(
    command: Callable[..., argparse.ArgumentParser],
    overrides: Callable[..., None],
    guard: Callable[..., Any],
) -> None:
    """Add `lr-find` and `sweep` to the `dnn` parser (see cli._parser)."""
    from . import lr_find

    c = command(
        "lr-find",
        guard(cmd_lr_find),
        "learning-rate range test: train with an exponentially growing rate, suggest one",
    )
    c.add_argument("file", metavar="FILE")
    overrides(c)
    c.add_argument("--steps", type=int, default=lr_find.STEPS, metavar="N", help="most steps")
    c.add_argument("--start", type=float, default=lr_find.START, metavar="LR", help="first rate")
    c.add_argument("--end", type=float, default=lr_find.END, metavar="LR", help="last rate")
    c.add_argument(
        "-o", "--output", metavar="PNG", help="the plot (default: FILE's stem.lr-find.png)"
    )
    c.add_argument(
        "--write",
        action="store_true",
        help="write the suggestion into the spec's optimizer (`train.optimizer.lr`, via dnn fmt)",
    )
    c.add_argument(
        "--use",
        choices=("steepest", "minimum"),
        default="steepest",
        help="which suggestion --write takes: steepest descent (default) or minimum / 10",
    )
    c.add_argument("--format", choices=("text", "json"), default="text")
