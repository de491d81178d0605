"""Sections: data, train and sweep, bound to their schema; cross-checks of train."""

from __future__ import annotations

import fnmatch
from functools import partial
from typing import Any

from .. import ast
from ..diagnostics import (
    E_DUPLICATE,
    E_MODEL,
    E_SECTION,
    E_UNFREEZE_WHAT,
    E_UNFREEZE_WHEN,
    E_UNKNOWN_FIELD,
    E_UNKNOWN_NAME,
    E_UNKNOWN_SECTION,
    W_NOTHING_TRAINS,
    Diagnostic,
    Span,
    error,
)
from ..ir import Config, Graph, SweepAxis
from ..registry import REGISTRIES
from ..registry.core import Problem, did_you_mean
from ..registry.sections import SECTIONS
from ..registry.types import RefT, UnknownWord, convert_at
from ..values import Quantity, RecordVal
from .state import (
    _UNDEFINED,
    Base,
    Env,
)

# the sweep section's own fields; every other field of it is a searched value
SWEEP_FIELDS = ("method", "objective", "pruner")


class Sections(Base):
    """Sections: data, train and sweep, bound to their schema; cross-checks of train."""

    def _sections(self) -> list[ast.Section]:
        out: list[ast.Section] = []
        for s in (i for i in self.r.module.items if isinstance(i, ast.Section)):
            if SECTIONS.lookup(s.name) is None:
                self.diags.add(
                    Diagnostic(
                        E_UNKNOWN_SECTION,
                        f"unknown section `{s.name}`",
                        s.span,
                        SECTIONS.suggest(s.name) or "sections are data, train and sweep",
                    )
                )
            elif any(o.name == s.name for o in out):
                self.diags.add(
                    Diagnostic(
                        E_DUPLICATE,
                        f"section `{s.name}` appears twice",
                        s.span,
                        "merge the two into one",
                    )
                )
            else:
                out.append(s)
        return out

    def _section(self, name: str, s: ast.Section | None, env: Env) -> Config | None:
        entry = SECTIONS.get(name, s.span if s else Span("<spec>", 1, 1, 1, 1))
        kws: list[tuple[str, Any, Span]] = []
        for f in s.fields if s else ():
            if len(f.path) > 1 or entry.get_arg(f.path[0]) is None:
                self.diags.add(
                    Diagnostic(
                        E_UNKNOWN_FIELD,
                        f"unknown field `{'.'.join(f.path)}` in `{name}`",
                        f.span,
                        did_you_mean(f.path[0], [a.name for a in entry.args])
                        or f"`{name}` has " + ", ".join(f"`{a.name}`" for a in entry.args),
                    )
                )
                continue
            if any(k == f.path[0] for k, _, _ in kws):
                self.diags.add(
                    Diagnostic(
                        E_DUPLICATE,
                        f"field `{f.path[0]}` is set twice",
                        f.span,
                        "delete one of the two lines",
                    )
                )
                continue
            v = self._try(partial(self.static, f.value, env, f"field `{f.path[0]}`"), _UNDEFINED)
            if v is not _UNDEFINED:
                kws.append((f.path[0], v, f.value.span))
        span = s.span if s else Span(self.r.module.path, 1, 1, 1, 1)
        bound = self._try(lambda: self.bind(entry, [], kws, span, noun="field"))
        if bound is None:
            return None
        a, spans = bound
        if entry.validate is not None:
            try:
                entry.validate(a)
            except Problem as p:
                self.diags.add(
                    Diagnostic(E_SECTION, p.message, spans.get(p.arg or "", span), p.hint)
                )
        # a record's entries get spans of their own, `columns.island`, for messages about one
        keyed = tuple(
            (f"{k}.{key}", at)
            for k, v, _ in kws
            if isinstance(v, RecordVal)
            for key, at in zip(v.keys, v.spans, strict=False)
        )
        return Config(name, a.items, tuple(k for k, _, _ in kws), tuple(spans.items()) + keyed)

    def _sweep(self, s: ast.Section, env: Env) -> tuple[Config | None, tuple[SweepAxis, ...]]:
        own = ast.Section(
            "sweep",
            tuple(f for f in s.fields if f.path[0] in SWEEP_FIELDS and len(f.path) == 1),
            span=s.span,
        )
        config = self._section("sweep", own, env)
        axes, written = [], 0
        for f in s.fields:
            if f.path[0] in SWEEP_FIELDS and len(f.path) == 1:
                continue
            written += 1
            axis = self._try(partial(self._axis, f, env))
            if axis is not None:
                axes.append(axis)
        if config is not None and config.method.name == "grid":
            self._grid(config, axes)
        if not written:
            self.diags.add(
                Diagnostic(
                    E_SECTION,
                    "`sweep` searches nothing",
                    s.span,
                    "add e.g. `train.optimizer.lr = loguniform(1e-4, 1e-2)`",
                )
            )
        return config, tuple(axes)

    def _grid(self, config: Config, axes: list[SweepAxis]) -> None:
        """A grid takes every value: each axis must list its values, and the product of their
        counts must stay within `max_trials`."""
        points = 1
        for axis in axes:
            d = axis.distribution
            if d.name == "choice":
                points *= len(d.arg("values"))
            elif d.name == "int_uniform":
                points *= d.arg("high") - d.arg("low") + 1
            else:
                self.diags.add(
                    Diagnostic(
                        E_SECTION,
                        f"`grid` tries every value, but `{d.name}` is a continuous range",
                        axis.span,
                        "list the values with `choice(...)`, or search the range with "
                        "`method = random(trials = 20)` or `bayes(trials = 20)`",
                    )
                )
                return
        limit = config.method.arg("max_trials")
        if points > limit:
            self.diags.add(
                Diagnostic(
                    E_SECTION,
                    f"the grid has {points:,} points, more than `max_trials = {limit}`",
                    config.span_of("method"),
                    f"search fewer values, or write `method = grid(max_trials = {points})`",
                )
            )

    def _axis(self, f: ast.Field, env: Env) -> SweepAxis:
        path = f.path
        if len(path) == 1 and path[0] not in self.r.params:
            raise error(
                E_UNKNOWN_NAME,
                f"`{path[0]}` is not a param",
                f.span,
                did_you_mean(path[0], list(self.r.params))
                or "search a param or a path such as `train.optimizer.lr`",
            )
        if len(path) > 1:
            self._sweep_target(path, f.span)
        try:
            dist = convert_at(
                RefT("distribution"),
                self.static(f.value, env),
                f.value.span,
                f"the search space of `{'.'.join(path)}`",
            )
        except UnknownWord as u:
            raise self._unknown_word(u.word) from None
        return SweepAxis(path, dist, f.span)

    def _sweep_target(self, path: tuple[str, ...], span: Span) -> None:
        section = SECTIONS.lookup(path[0])
        if section is None or path[0] == "sweep":
            raise error(
                E_UNKNOWN_SECTION,
                f"`{path[0]}` is not a section or param",
                span,
                did_you_mean(path[0], ["data", "train", *self.r.params]),
            )
        field_arg = section.get_arg(path[1])
        if field_arg is None:
            raise error(
                E_UNKNOWN_FIELD,
                f"`{path[0]}` has no field `{path[1]}`",
                span,
                did_you_mean(path[1], [a.name for a in section.args]),
            )
        if len(path) == 3 and isinstance(field_arg.type, RefT):
            reg = REGISTRIES[field_arg.type.kind]
            names = sorted({a.name for e in reg for a in e.args})
            if path[2] not in names:
                raise error(
                    E_UNKNOWN_FIELD,
                    f"no {reg.kind} takes an argument `{path[2]}`",
                    span,
                    did_you_mean(path[2], names),
                )

    def _check_monitors(self, train: Config, outputs: int = 1) -> None:
        """A monitored metric (early stopping, plateau) must be one the run computes; a model
        with several outputs reports each output's metrics under its name, so its monitors
        watch the total loss."""
        watched = []
        if train.early_stopping is not None:
            watched.append(("early_stopping", str(train.early_stopping.get("monitor"))))
        if train.schedule.name == "reduce_on_plateau":
            watched.append(("schedule", str(train.schedule.arg("monitor"))))
        computed = {m.name for m in train.metrics}
        for field_name, monitor in watched:
            word = monitor.removeprefix("val_")
            if word not in ("loss", "penalty") and outputs > 1:
                self.diags.add(
                    Diagnostic(
                        E_SECTION,
                        f"`{field_name}` watches `{monitor}`, but each of the {outputs} outputs "
                        "reports its own metrics",
                        train.span_of(field_name),
                        "watch the total loss: `val_loss`",
                    )
                )
            elif word not in ("loss", "penalty") and word not in computed:
                self.diags.add(
                    Diagnostic(
                        E_SECTION,
                        f"`{field_name}` watches `{monitor}`, but `{word}` is not in `metrics`",
                        train.span_of(field_name),
                        f"add `{word}` to `metrics = [...]`, or watch `val_loss`",
                    )
                )

    def _check_freeze(self, model: Graph, train: Config) -> None:
        """Every `freeze` pattern must name at least one layer with weights."""
        weighted = [n.name for n in model.nodes if n.params]
        for pattern in train.freeze:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in weighted):
                self.diags.add(
                    Diagnostic(
                        E_UNKNOWN_NAME,
                        f'`freeze` pattern "{pattern}" matches no layer with weights',
                        train.span_of("freeze"),
                        did_you_mean(pattern, weighted)
                        or "layers with weights: " + ", ".join(f"`{n}`" for n in weighted[:8]),
                    )
                )

    def _check_init_map(self, model: Graph, train: Config) -> None:
        """Each `init_map` target names a layer with weights (a pattern: at least one), and
        the map is only read with a weight file in `init_from`."""
        if train.init_map and not train.init_from:
            self.diags.add(
                Diagnostic(
                    E_SECTION,
                    "`init_map` maps a weight file's modules, but `init_from` names no file",
                    train.span_of("init_map"),
                    'add `init_from = "weights.safetensors"`, or leave out `init_map`',
                )
            )
        weighted = [n.name for n in model.nodes if n.params]
        for key, target in train.init_map:
            if ("*" in key) != ("*" in target):
                self.diags.add(
                    Diagnostic(
                        E_SECTION,
                        f'`init_map`: "{key}" -> "{target}" mixes a pattern and a name',
                        train.span_of("init_map"),
                        'pair a name with a name (`"fc": "head"`) or a pattern with a pattern '
                        '(`"backbone.*": "encoder/*"`)',
                    )
                )
            elif not any(fnmatch.fnmatchcase(name, target) for name in weighted):
                self.diags.add(
                    Diagnostic(
                        E_UNKNOWN_NAME,
                        f'`init_map` target "{target}" is no layer with weights',
                        train.span_of("init_map"),
                        did_you_mean(target, weighted)
                        or "layers with weights: " + ", ".join(f"`{n}`" for n in weighted[:8]),
                    )
                )

    def _check_unfreeze(self, train: Config) -> None:
        """`unfreeze` needs layers held by `freeze`, and a time inside training (a time in
        steps is checked by `dnn train`, which knows the steps per epoch)."""
        rec = train.unfreeze
        if rec is None:
            return
        span = train.span_of("unfreeze")
        if not train.freeze:
            self.diags.add(
                Diagnostic(
                    E_UNFREEZE_WHAT,
                    "`unfreeze` has nothing to release: `freeze` holds no layer",
                    span,
                    'name the layers to hold during the first phase: `freeze = ["conv*"]`, '
                    "or remove `unfreeze`",
                )
            )
        after: Quantity = rec.get("after")
        at = dict(train.spans).get("unfreeze.after", span)
        if after.value == 0:
            self.diags.add(
                Diagnostic(
                    E_UNFREEZE_WHEN,
                    f"`unfreeze` after `{after}`: the layers of `freeze` are never held",
                    at,
                    "remove `freeze` and `unfreeze` to train every layer from the start, "
                    "or unfreeze later",
                )
            )
        elif after.unit == "epochs" and after.value >= train.epochs:
            self.diags.add(
                Diagnostic(
                    E_UNFREEZE_WHEN,
                    f"`unfreeze` after `{after}` never happens: training runs {train.epochs} "
                    "epochs",
                    at,
                    f"unfreeze before the last epoch (`after: {train.epochs - 1} epochs` at "
                    f"most), or raise `epochs`",
                )
            )

    def _check_memory(self, model: Graph, train: Config, data: Config | None) -> None:
        """Warn when the memory estimate alone passes a fixed bound (`dnn train` checks the
        device's memory before allocating; compiler/memory.py)."""
        from ..memory import estimate, warning

        found = warning(estimate(model, train, data))
        if found is not None:
            self.diags.add(found)

    def _check_trains(self, model: Graph, train: Config) -> None:
        """Warn when training would change no weight (`dnn train` says the same at run time)."""
        weighted = [n.name for n in model.nodes if n.params]
        frozen = [n for n in weighted if any(fnmatch.fnmatchcase(n, p) for p in train.freeze)]
        if frozen == weighted:
            self.diags.add(nothing_trains(model, train))


def nothing_to_train(module: ast.Module) -> Diagnostic:
    """Why a spec without a model cannot train: `dnn train`'s error, `dnn check`'s warning."""
    sections = [i for i in module.items if isinstance(i, ast.Section)]
    span = sections[0].span if sections else Span(module.path, 1, 1, 1, 1)
    what = f"a `{sections[0].name}` section but no model" if sections else "no model"
    return Diagnostic(
        E_MODEL,
        f"nothing to train: the spec has {what}",
        span,
        "define one in this file: `model NAME { input x: f32[N] ... }` "
        "(imported files bring blocks and params only)",
    )


def nothing_trains(model: Graph, train: Config) -> Diagnostic:
    """Why a run changes no weight: at `freeze` when it covers every layer with weights, else
    at the model, which has none. `dnn check`'s warning and `dnn train`'s."""
    if any(n.params for n in model.nodes):
        rec = getattr(train, "unfreeze", None)
        until = f" before `unfreeze` (after `{rec.get('after')}`)" if rec else ""
        return Diagnostic(
            W_NOTHING_TRAINS,
            f"`freeze` covers every layer with weights: training changes no weight{until}",
            train.span_of("freeze"),
            "leave out of `freeze` the layers to train (`dnn summary` lists the layers)",
            severity="warning",
        )
    return Diagnostic(
        W_NOTHING_TRAINS,
        f"model `{model.name}` has no weights: training changes nothing",
        model.span,
        "add a layer with weights, such as `dense(N)`",
        severity="warning",
    )
