"""`method = best_ball`: population-based training (Jaderberg et al. 2017), ours on Optuna's
study (DESIGN §5: Optuna has no exploit/explore).

The population trains as one vmapped program (runtime/sweep_vmap.py's GroupEngine), each
member with its own seed (`train.seed + k` unless the seed is searched) and its own numbers,
which live in the training state, so exploring changes them without compiling again. Every
`interval` epochs the members are ranked by the objective on that epoch's record;
exploit: each of the worst ceil(truncate · P) members takes the whole state (weights, running
statistics, optimizer state, step) of a member drawn from the best as many; explore: its
numbers are its source's multiplied by 0.8 or 1.2 (`perturb`), a choice moves to a
neighbouring value, and with probability `resample` a value is drawn anew; all within the
spec's ranges.

Each member and round is one Optuna trial (its values during the round, the objective at its
end) with its lineage: `member`, `parent` (the member whose state it took at the round's
start, or itself) and `lineage` (the chain of members its weights went through). Each member
has one run folder, trials/member_K, whose metrics.jsonl runs across rounds (after an exploit
the weights are its parent's).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import jax
import numpy as np
from dnn.compiler.driver import load
from dnn.compiler.ir import Program

from . import fit, pipeline, rundir, sweep_tighten
from .progress import Display
from .sweep_vmap import (
    GroupEngine,
    Lift,
    Member,
    _finish,
    _members,
    _slice,
    _write_files,
    core,
    eval_splits,
    evaluate_members,
)
from .train import TrainingError, device_data, train_report

LIFTED_PREFIXES = (("train", "optimizer"), ("train", "schedule"))


def key_of(axis: Any) -> tuple[str, str] | None:
    """The (field, arg) a searched path names in the group's numbers; None for the seed."""
    path = tuple(axis.name.split("."))
    if len(path) == 3 and path[:2] in LIFTED_PREFIXES:
        return path[1], path[2]
    return None


def unsearchable(axes: list[Any]) -> Any | None:
    """The first axis PBT cannot explore: not an optimizer or schedule number, nor the seed."""
    for a in axes:
        if a.name != "train.seed" and key_of(a) is None:
            return a
    return None


def rounds_of(program: Program) -> tuple[int, int]:
    """(epochs per round, rounds)."""
    assert program.sweep is not None
    interval = int(program.sweep.method.arg("interval").value)
    return interval, math.ceil(program.train.epochs / interval)


def distribution(optuna: Any, axis: Any) -> Any:
    d = optuna.distributions
    if axis.kind == "choice":
        return d.CategoricalDistribution(list(axis.choices))
    if axis.kind == "int_uniform":
        return d.IntDistribution(int(axis.low), int(axis.high))
    return d.FloatDistribution(axis.low, axis.high, log=axis.kind == "loguniform")


def exploit(host: dict[str, Any], dst: int, src: int) -> None:
    """Member `dst` takes member `src`'s whole state (weights, running statistics, optimizer
    state, step), in place in a host copy of the group state; not its numbers (`hp`)."""
    for leaf in jax.tree.leaves(core(host)):
        leaf[dst] = leaf[src]


def explore(axis: Any, v: Any, perturb: float, resample: float, rng: Any) -> Any:
    """A value near `v` (PBT's perturb), or with probability `resample` a fresh draw."""
    if rng.random() < resample:
        return sweep_tighten.draw(axis, sweep_tighten.first_space([axis]), rng)
    if axis.kind == "choice":
        i = list(axis.choices).index(v) + (1 if rng.random() < 0.5 else -1)
        return axis.choices[min(max(i, 0), len(axis.choices) - 1)]
    factor = 1 + perturb if rng.random() < 0.5 else 1 - perturb
    x = min(max(v * factor, axis.low), axis.high)
    return int(round(x)) if axis.kind == "int_uniform" else float(x)


def run_pbt(sw: Any, study: Any, optuna: Any) -> None:
    """Train the population, exploiting and exploring every interval; record each member and
    round as a finished trial."""
    program = sw.program
    method = program.sweep.method
    size = int(method.arg("population"))
    interval, rounds = rounds_of(program)
    rng = np.random.default_rng(program.train.seed)
    space = sweep_tighten.first_space(sw.axes)
    values = [{a.name: sweep_tighten.draw(a, space, rng) for a in sw.axes} for _ in range(size)]
    searched_seed = any(a.name == "train.seed" for a in sw.axes)
    programs = []
    for k, v in enumerate(values):
        sets = [*sw.sets, *(sw_setting(n, x) for n, x in v.items())]
        if not searched_seed:
            sets.append(f"train.seed={program.train.seed + k}")
        programs.append(load(sw.path, sets))
    base = programs[0]
    lifted = Lift(
        {
            key_of(a): np.asarray([v[a.name] for v in values], np.float32)  # type: ignore[misc]
            for a in sw.axes
            if key_of(a) is not None
        },
        np.asarray([p.train.seed for p in programs], np.int32),
    )
    fit.enable_compile_cache()
    prepared = pipeline.prepare(base)
    pipeline.in_memory(base, prepared, "population-based training")
    fit._check_monitors(base, prepared)
    if prepared.size("val") == 0 and sw.metric.startswith("val_"):
        raise TrainingError(f"the objective `{sw.metric}` needs a validation split")
    t0 = time.perf_counter()
    engine = GroupEngine(base, prepared, lifted)
    data = device_data(prepared, engine.place)
    x_train, y_train = data["train"]
    splits = eval_splits(prepared)
    folders = [sw.folder / "trials" / f"member_{k}" for k in range(size)]
    members = []
    for p, folder in zip(programs, folders, strict=True):
        fit._claim(folder, p, False, sys.argv)
        pipeline.save(prepared, p, folder)
        members.append(Member(p, folder, None, None, [], math.inf))
    st = engine.init()
    display = Display(base.train.epochs, engine.steps_per_epoch, "quiet")
    lineage = [[k] for k in range(size)]
    parents = list(range(size))
    dists = {a.name: distribution(optuna, a) for a in sw.axes}
    failed: set[int] = set()
    epoch = 0
    for r in range(rounds):
        scores = [math.nan] * size
        for _ in range(interval):
            if epoch == base.train.epochs:
                break
            epoch += 1
            t_epoch = time.perf_counter()
            st, acc = fit._one_epoch(engine, st, epoch, x_train, y_train, display)
            bad = np.asarray(jax.device_get(acc["bad_step"])).reshape(-1)
            report = _members(train_report(engine, acc), size)
            val = evaluate_members(engine, st, splits["val"]) if "val" in splits else None
            for k, m in enumerate(members):
                record: dict[str, Any] = {"epoch": epoch, **report[k], "round": r}
                if val is not None:
                    record.update({f"val_{key}": v for key, v in val[k].items()})
                record["time"] = time.perf_counter() - t_epoch
                m.history.append(record)
                if bad[k] >= 0:
                    failed.add(k)
                value = epoch_value(record, sw.metric)
                scores[k] = math.nan if value is None or k in failed else value
        for k in range(size):
            chain = lineage[k]
            _record(
                study, optuna, sw, dists, values[k], scores[k], (k, r, epoch), parents[k], chain
            )
        _say(sw, r, rounds, values, scores, parents, t0)
        if r == rounds - 1:
            break
        # exploit and explore
        order = _rank(scores, sw.direction)
        n = max(1, math.ceil(float(method.arg("truncate")) * size))
        worst, best = order[-n:], order[:n]
        parents = list(range(size))
        host = jax.tree.map(np.array, jax.device_get(st))  # writable copies
        for b in worst:
            src = int(rng.choice(best))
            if src == b:
                continue
            parents[b] = src
            lineage[b] = [*lineage[src], b]
            failed.discard(b)
            exploit(host, b, src)
            values[b] = {  # a member keeps its own seed: its batches and dropout masks
                a.name: values[b][a.name]
                if a.name == "train.seed"
                else explore(
                    a,
                    values[src][a.name],
                    float(method.arg("perturb")),
                    float(method.arg("resample")),
                    rng,
                )
                for a in sw.axes
            }
            for a in sw.axes:
                key = key_of(a)
                if key is not None:
                    host["hp"][key][b] = values[b][a.name]
        st = jax.device_put(host)
    wall = time.perf_counter() - t0
    for k, m in enumerate(members):
        m.done, m.final = True, _slice(engine, st, k)
        if k in failed:
            m.error = "the loss is not finite (nan or inf); training stopped"
        _write_files(m)
    results = _finish(engine, st, members, splits, wall, base)
    for k, result in enumerate(results):
        if isinstance(result, dict):
            result["lineage"] = _line(lineage[k])
            rundir.write_json(members[k].folder / "result.json", result)


def _say(
    sw: Any,
    r: int,
    rounds: int,
    values: list[dict[str, Any]],
    scores: list[float],
    parents: list[int],
    t0: float,
) -> None:
    """One line per round: its best member, its values and score."""
    if sw.quiet:
        return
    top = _rank(scores, sw.direction)[0]
    shown = "  ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values[top].items()
    )
    came = f" (from member_{parents[top]})" if parents[top] != top else ""
    print(
        f"round {r + 1}/{rounds}: best member_{top}{came}  {shown}  {sw.metric} "
        f"{scores[top]:.4f}  ({time.perf_counter() - t0:.1f} s)",
        file=sys.stderr,
        flush=True,
    )


def sw_setting(name: str, value: Any) -> str:
    from .sweep import setting

    return setting(name, value)


def epoch_value(record: dict[str, Any], metric: str) -> float | None:
    from .sweep import epoch_value as read

    return read(record, metric)


def _rank(scores: list[float], direction: str) -> list[int]:
    """Members best first; a failed one (nan) last."""
    sign = 1.0 if direction == "minimize" else -1.0
    return sorted(
        range(len(scores)),
        key=lambda k: (math.isnan(scores[k]), sign * scores[k] if not math.isnan(scores[k]) else 0),
    )


def _line(chain: list[int]) -> str:
    return " <- ".join(f"member_{k}" for k in reversed(chain))


def _record(
    study: Any,
    optuna: Any,
    sw: Any,
    dists: dict[str, Any],
    values: dict[str, Any],
    score: float,
    where: tuple[int, int, int],
    parent: int,
    chain: list[int],
) -> None:
    """One member and round as a finished (or failed) Optuna trial."""
    member, round_, epochs = where
    state = optuna.trial.TrialState
    ok = not math.isnan(score) and math.isfinite(score)
    attrs = {
        "run": str(sw.folder / "trials" / f"member_{member}"),
        "round": round_,
        "member": member,
        "parent": parent,
        "lineage": _line(chain),
        "epochs": epochs,
    }
    if not ok:
        attrs["error"] = "the loss is not finite (nan or inf)"
    study.add_trial(
        optuna.trial.create_trial(
            params=values,
            distributions=dists,
            value=score if ok else None,
            state=state.COMPLETE if ok else state.FAIL,
            user_attrs={k: v for k, v in attrs.items() if v is not None},
        )
    )
