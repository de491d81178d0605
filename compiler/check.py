"""Resolved AST → IR: evaluate compile-time values, expand blocks and repeats, infer shapes.

Entry point: `check(resolved, diags) -> ir.Program`. Errors go to the `Diagnostics` collector
and elaboration carries on with a poisoned value, so one run reports every independent mistake.
The work is split by job in compiler/elaborate/ (expressions, statements, sections) and
compiler/rules.py (cross-checks reading entry facts); `Checker` composes the parts.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from . import ast, rules
from .diagnostics import (
    W_NO_MODEL,
    Diagnostics,
)
from .elaborate.evaluate import Evaluate
from .elaborate.graph import Graphs
from .elaborate.sections import Sections, nothing_to_train, nothing_trains
from .elaborate.state import _UNDEFINED, MAX_LAYERS, POISON, Env, Tensor
from .ir import Config, Program, SweepAxis
from .resolve import Resolved

__all__ = [
    "MAX_LAYERS",
    "POISON",
    "Checker",
    "Env",
    "Tensor",
    "check",
    "nothing_to_train",
    "nothing_trains",
]


class Checker(Graphs, Sections, Evaluate):
    """Evaluates one resolved module into a Program."""

    def program(self) -> Program:
        env = self._params()
        model = self._model(env)
        sections = {s.name: s for s in self._sections()}
        train = self._section("train", sections.get("train"), env)
        data = self._section("data", sections["data"], env) if "data" in sections else None
        sweep: Config | None = None
        axes: tuple[SweepAxis, ...] = ()
        if not any(isinstance(i, ast.ModelDef) for i in self.r.module.items):
            self._no_model()
        if "sweep" in sections:
            sweep, axes = self._sweep(sections["sweep"], env)
        if model is not None and train is not None:
            train = rules.apply(model, data, train, "train" in sections, self.diags)
            self._check_freeze(model, train)
            self._check_init_map(model, train)
            self._check_unfreeze(train)
            if "train" in sections or "data" in sections:
                self._check_trains(model, train)
            self._check_monitors(train, len(model.outputs))
            self._check_memory(model, train, data)
        params = tuple((k, v) for k, v in env.vars.items() if not isinstance(v, Tensor))
        version = next((i.number for i in self.r.module.items if isinstance(i, ast.Version)), 1)
        return Program(
            self.r.module.path,
            version,
            params,
            model,
            train or Config("train", ()),
            data,
            sweep,
            axes,
            dict(self.r.sources),
            self.r.module,
        )

    def _no_model(self) -> None:
        """No model: warn that `dnn train` will refuse the spec, unless it is a block library.

        A block library (blocks and params only, for other specs to import) checks clean. A
        spec of sections only still loads (`dnn.loads(...).build_optimizer()` reads `train`).
        """
        sections = any(isinstance(i, ast.Section) for i in self.r.module.items)
        if sections or not (self.r.blocks or self.r.params):
            d = nothing_to_train(self.r.module)
            self.diags.add(replace(d, code=W_NO_MODEL, severity="warning"))

    def _params(self) -> Env:
        env = self.menv
        for p in self.r.params.values():
            value = self._try(partial(self.static, p.value, env, f"param `{p.name}`"), _UNDEFINED)
            if value is not _UNDEFINED:
                env.vars[p.name] = value
            else:
                self.failed.add(p.name)
        return env


def check(resolved: Resolved, diags: Diagnostics, deadline: float | None = None) -> Program:
    """Evaluate and shape-check a resolved module.

    `deadline`: a `time.monotonic()` value past which elaboration stops with E0608 (the
    editor's bound, so a huge `repeat` cannot stall it); None checks without a bound.
    """
    return Checker(resolved, diags, deadline).program()
