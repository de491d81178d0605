"""Mutation testing of the registry tables (issue 14): the rows mutmut cannot reach.

mutmut 3 mutates function bodies only, so the module-level statements of
compiler/registry/*.py (`LOSSES.add(...)`, `_B1 = arg(...)`, the lambdas inside them) give it
no mutants. This script mutates them itself, one small edit at a time, through Python's `ast`:

- a number: an int n becomes n + 1, a float x becomes 2x (1.0 where x is 0);
- a bool: flipped;
- a string the checker or the lowering reads (a name, an alias, a task, an `info` value, a
  `needs` field): `s` becomes `s_m`;
- a keyword of a module-level call dropped (a fact, a default, a rule), or one element of a
  tuple (an argument, an alias, a trait);
- an argument's type swapped for its neighbour (`PosFloat` for `NonNegFloat`, `Prob` for
  `Rate`, ...);
- inside a lambda (shape, params and validate rules): an arithmetic or comparison operator
  swapped (`+`/`-`, `*`/`//`, `<`/`<=`, `==`/`!=`, `and`/`or`).

Text for people (`doc`, `formula`, `example`, a registry's title and blurb, an argument's doc)
is not mutated: tests/test_reference.py pins it all through the generated reference, so each
such mutant would be killed by one string comparison and say nothing about the tests.

Each mutant is written into a staged copy of the tree (laid out as mutation.sh lays it out;
the working tree is never touched) and a fresh `python -m pytest -x` runs the fixed test list
below on it. A mutant is killed when the tests fail (an import that refuses the table counts:
`Registry.add` and the entry classes check their rows), survives when they pass.

    .venv/bin/python bench/mutate_tables.py --list            # count the mutants per file
    .venv/bin/python bench/mutate_tables.py --sample 150 --seed 14
    .venv/bin/python bench/mutate_tables.py --only 'layers.py:*'  # fnmatch over mutant ids
    .venv/bin/python bench/mutate_tables.py --ids survivors.txt  # these ids (one a line)
    .venv/bin/python bench/mutate_tables.py --ids s.txt --tests tests/test_reference.py
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "compiler" / "registry"

# Fast tests that read the tables (no training: test_contract's `trains` cases are left out).
# The whole list costs about 30 s a surviving mutant on one core; test_optimizers runs only its
# table checks (defaults and names against the references).
TESTS = [
    "tests/test_registry_tables.py",
    "tests/test_registry_mutants.py",
    "tests/test_rules.py",
    "tests/test_counts.py",
    "tests/test_errors.py",
    "tests/test_optimizers.py",
    "tests/test_contract.py",
]
DESELECT = "not trains and (not test_optimizers or defaults or references or cases_cover)"

TEXT_KEYWORDS = {"doc", "formula", "example", "title"}
TYPE_SWAPS = {
    "PosFloat": "NonNegFloat",
    "NonNegFloat": "PosFloat",
    "Prob": "Rate",
    "Rate": "Prob",
    "PosInt": "NonNegInt",
    "NonNegInt": "PosInt",
    "Int": "PosInt",
    "Float": "PosFloat",
    "Bool": "Int",
    "Str": "Bool",
    "Duration": "PosInt",
}
BINOPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult}
BINOPS |= {ast.Div: ast.Mult, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult}
CMPOPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
CMPOPS |= {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In}
CMPOPS |= {ast.Is: ast.IsNot, ast.IsNot: ast.Is}


@dataclass(frozen=True)
class Mutant:
    file: str  # e.g. "layers.py"
    site: int  # the n-th site of this file, in walk order
    op: str  # what the edit does
    line: int

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}:{self.site}:{self.op}"


def _is_text(node: ast.AST, parent: ast.AST | None, field: str | None) -> bool:
    """Whether `node` is text for people: a doc, formula, example or title, at any depth."""
    if isinstance(parent, ast.keyword) and parent.arg in TEXT_KEYWORDS:
        return True
    if isinstance(parent, ast.Call):
        fn = parent.func.id if isinstance(parent.func, ast.Name) else None
        args = parent.args
        # arg(name, type, default, doc): the fourth positional is its doc
        if fn == "arg" and len(args) >= 4 and node is args[3]:
            return True
        # registry(kind, title, doc, ...): title and blurb
        if fn == "registry" and node in args[1:3]:
            return True
    return False


def _sites(tree: ast.Module) -> Iterator[tuple[ast.AST, str, str]]:
    """(node, edit, label) for every mutation site of the module-level statements, in a
    fixed order (the same for the same source)."""

    def walk(node: ast.AST, parent: ast.AST | None, in_lambda: bool) -> Iterator[tuple]:
        if _is_text(node, parent, None):
            return
        yield from _edits(node, parent, in_lambda)
        for child in ast.iter_child_nodes(node):
            yield from walk(child, node, in_lambda or isinstance(node, ast.Lambda))

    for stmt in tree.body:
        if isinstance(stmt, (ast.Assign, ast.Expr, ast.AnnAssign)) and isinstance(
            stmt.value, ast.Call
        ):
            yield from walk(stmt.value, stmt, False)


def _edits(node: ast.AST, parent: ast.AST | None, in_lambda: bool) -> Iterator[tuple]:
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            yield node, "flip", f"{v}->{not v}"
        elif isinstance(v, int):
            yield node, "inc", f"{v}->{v + 1}"
        elif isinstance(v, float):
            yield node, "dbl", f"{v}->{v * 2 if v else 1.0}"
        elif isinstance(v, str):
            yield node, "str", f"{v!r}->{v + '_m'!r}"
    elif isinstance(node, ast.Call):
        for i, kw in enumerate(node.keywords):
            if kw.arg is not None and kw.arg not in TEXT_KEYWORDS:
                yield node, f"dropkw:{i}", f"drop {kw.arg}="
        fn = node.func.id if isinstance(node.func, ast.Name) else None
        if fn == "arg" and len(node.args) >= 2 and isinstance(node.args[1], ast.Name):
            t = node.args[1].id
            if t in TYPE_SWAPS:
                yield node, "type", f"{t}->{TYPE_SWAPS[t]}"
    elif isinstance(node, ast.Tuple) and not isinstance(parent, ast.Lambda):
        for i in range(len(node.elts)):
            yield node, f"dropelt:{i}", f"drop element {i}"
    elif in_lambda and isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
        yield node, "binop", f"{type(node.op).__name__}->{BINOPS[type(node.op)].__name__}"
    elif in_lambda and isinstance(node, ast.Compare) and type(node.ops[0]) in CMPOPS:
        yield node, "cmp", f"{type(node.ops[0]).__name__}->{CMPOPS[type(node.ops[0])].__name__}"
    elif in_lambda and isinstance(node, ast.BoolOp):
        yield node, "boolop", "and<->or"


def _apply(node: ast.AST, edit: str) -> None:
    if edit == "flip":
        node.value = not node.value
    elif edit == "inc":
        node.value = node.value + 1
    elif edit == "dbl":
        node.value = node.value * 2 if node.value else 1.0
    elif edit == "str":
        node.value = node.value + "_m"
    elif edit.startswith("dropkw:"):
        del node.keywords[int(edit.split(":")[1])]
    elif edit == "type":
        node.args[1] = ast.Name(TYPE_SWAPS[node.args[1].id], ast.Load())
    elif edit.startswith("dropelt:"):
        del node.elts[int(edit.split(":")[1])]
    elif edit == "binop":
        node.op = BINOPS[type(node.op)]()
    elif edit == "cmp":
        node.ops[0] = CMPOPS[type(node.ops[0])]()
    elif edit == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()


def mutants(files: list[Path]) -> list[Mutant]:
    out = []
    for path in files:
        tree = ast.parse(path.read_text())
        for i, (node, _, label) in enumerate(_sites(tree)):
            out.append(Mutant(path.name, i, label, getattr(node, "lineno", 0)))
    return out


def mutated_source(path: Path, site: int) -> str:
    tree = ast.parse(path.read_text())
    for i, (node, edit, _) in enumerate(_sites(tree)):
        if i == site:
            _apply(node, edit)
            if edit == "type":  # the module may not import the neighbour: import it
                new = ast.ImportFrom("types", [ast.alias(node.args[1].id)], level=1)
                at = next(i for i, s in enumerate(tree.body) if isinstance(s, ast.ImportFrom))
                tree.body.insert(at + 1, new)
            return ast.unparse(ast.fix_missing_locations(tree))
    raise SystemExit(f"no site {site} in {path}")


def stage() -> Path:
    """A copy of the tree laid out as a plain package (as bench/mutation.sh stages it)."""
    dest = Path(tempfile.mkdtemp(prefix="dnn-tables-"))
    (dest / "dnn").mkdir()
    for f in (ROOT / "dnn").glob("*.py"):
        shutil.copy(f, dest / "dnn")
    for d in ("compiler", "runtime", "grammar"):
        shutil.copytree(ROOT / d, dest / "dnn" / d, ignore=shutil.ignore_patterns("__pycache__"))
    for d in ("tests", "examples", "docs"):
        shutil.copytree(ROOT / d, dest / d, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    return dest


def run_tests(where: Path, timeout: float, tests: list[str]) -> tuple[str, float, str]:
    """('killed' | 'survived' | 'timeout', seconds, the last lines of the output)."""
    tests = [t for t in tests if (where / t).exists()]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    env = {**os.environ, "PYTHONPATH": str(where), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.monotonic()
    try:
        done = subprocess.run(
            [*cmd, "-k", DESELECT],
            cwd=where,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start, ""
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-3:])
    return ("survived" if done.returncode == 0 else "killed"), time.monotonic() - start, tail


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="count the mutants and stop")
    p.add_argument("--sample", type=int, help="run a seeded random sample of this many")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--only", help="fnmatch pattern over mutant ids")
    p.add_argument("--ids", type=Path, help="a file of mutant ids, one a line")
    p.add_argument("--tests", nargs="+", default=TESTS, help="test files instead of TESTS")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--out", type=Path, help="write the results as JSON lines here")
    ns = p.parse_args()

    files = sorted(f for f in REGISTRY.glob("*.py") if f.name != "__init__.py")
    every = mutants(files)
    if ns.list:
        for f in files:
            print(f"{f.name}: {sum(m.file == f.name for m in every)}")
        print(f"total: {len(every)}")
        return
    chosen = [m for m in every if not ns.only or fnmatch.fnmatch(m.id, ns.only)]
    if ns.ids:
        wanted = set(ns.ids.read_text().split("\n")) - {""}
        chosen = [m for m in chosen if m.id in wanted]
    if ns.sample and ns.sample < len(chosen):
        chosen = sorted(
            random.Random(ns.seed).sample(chosen, ns.sample), key=lambda m: (m.file, m.site)
        )
    where = stage()
    out = ns.out.open("w") if ns.out else None
    try:
        # the unmutated tree, printed back through ast.unparse, must pass: the control
        for f in files:
            (where / "dnn/compiler/registry" / f.name).write_text(
                ast.unparse(ast.parse(f.read_text()))
            )
        status, secs, tail = run_tests(where, ns.timeout, ns.tests)
        print(f"control (unparsed, unmutated): {status} in {secs:.0f} s", flush=True)
        if status != "survived":
            raise SystemExit(f"the unmutated tree fails its tests:\n{tail}")
        counts: dict[str, int] = {}
        start = time.monotonic()
        for n, m in enumerate(chosen, 1):
            target = where / "dnn/compiler/registry" / m.file
            original = target.read_text()
            target.write_text(mutated_source(REGISTRY / m.file, m.site))
            try:
                status, secs, tail = run_tests(where, ns.timeout, ns.tests)
            finally:
                target.write_text(original)
            counts[status] = counts.get(status, 0) + 1
            print(f"[{n}/{len(chosen)}] {status:8} {secs:5.1f}s {m.id}", flush=True)
            if out:
                out.write(json.dumps({"id": m.id, "status": status, "s": round(secs, 1)}) + "\n")
                out.flush()
        took = time.monotonic() - start
        print(f"{len(chosen)} of {len(every)} mutants: {counts}; {took:.0f} s")
    finally:
        if out:
            out.close()
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
