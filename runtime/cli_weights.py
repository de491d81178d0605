"""`dnn weights FILE [SPEC]`: a weight file's tensors, and the mapping `init_from` would make
into a spec, before anything trains (runtime/weights.py)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

EXIT_OK, EXIT_FAIL = 0, 1


def cmd_weights(args: argparse.Namespace) -> int:
    from . import weights

    path = Path(args.weights_file)
    args.file = str(path)
    fmt, found = weights.shapes(path)
    all_units = fmt.group({k: s for k, (s, _) in found.items()})
    values = sum(math.prod(s) for s, _ in found.values())
    kind = {"torch": "PyTorch", "keras": "Keras"}[fmt.name]
    print(f"{path}: {kind}, {len(found)} tensors, {values:,} values, {len(all_units)} modules")
    if args.spec is None:
        for u in all_units:
            print(f"  {u.name or '(top)'}")
            for k, s in u.tensors.items():
                print(f"    {k:<22} {weights._shape(s):<20} {found[u.full(k)][1]}")
        return EXIT_OK
    from dnn.compiler.diagnostics import SpecError
    from dnn.compiler.driver import load

    from . import cli

    args.file = args.spec
    program = load(args.spec, args.set)
    if program.model is None:
        print(f"{args.spec}: error: the spec has no model to fill", file=sys.stderr)
        return EXIT_FAIL
    plan, _ = weights.plan_for(program, path)
    filled = len(plan.pairs)
    total = filled + len(plan.unfilled) + len(plan.unsupported) + len(plan.mismatches)
    print(f"{program.model.name}: {filled} of {total} layers with weights filled")
    for line in weights.report(plan):
        print(line)
    try:
        weights._strict(program, plan, path)
    except SpecError as e:
        cli._report(e, "text")
        return EXIT_FAIL
    print("every layer filled and every tensor used: `init_from` loads this file as it is")
    return EXIT_OK


def register(
    command: Callable[..., argparse.ArgumentParser],
    overrides: Callable[[argparse.ArgumentParser], None],
    guard: Callable[..., Callable[[argparse.Namespace], int]],
) -> None:
    c = command(
        "weights",
        guard(cmd_weights),
        "a weight file's tensors (.safetensors), and with a spec the layers they would fill",
    )
    c.add_argument("weights_file", metavar="FILE", help="a .safetensors file")
    c.add_argument("spec", metavar="SPEC", nargs="?", help="the spec whose `init_from` reads it")
    overrides(c)
