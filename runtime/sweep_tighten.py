"""Random search with coarse-to-fine tightening: `method = random(trials = 30, rounds = 3)`.

Optuna has no such sampler, so this one is ours (DESIGN §5), written as an Optuna sampler so
that the study, its storage, `--resume` and `--parallel` work as for the others. The trials
come in rounds of `ceil(trials / rounds)`; round r draws every value independently and
uniformly (on a log scale for `loguniform`) from ranges narrowed around the best trials of
the rounds before it:

    best_r   = the best max(2, ceil(keep * n)) of the n finished trials of rounds < r
    range_r  = range_(r-1) ∩ [min(best_r) - w/10, max(best_r) + w/10],  w = width of range_(r-1)

(min and max in log space for `loguniform`), and a `choice` keeps the values the best trials
took. Where the best trials all lie outside range_(r-1) the intersection is empty; the
narrowed range is then [min - w/10, max + w/10] within the spec's range.

Everything is computed from the study's finished trials, so a resumed sweep or a second
process derives the same ranges. Each trial's draws come from a generator seeded with
(seed, trial number), independent of the order processes take trials in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

PAD = 0.1  # each side of the best trials' hull is widened by this share of the previous range


@dataclass(frozen=True)
class Space:
    """One round's ranges: (low, high) per numeric axis (log space for loguniform), the kept
    values per choice axis."""

    round: int
    ranges: dict[str, tuple[float, float]]
    kept: dict[str, tuple[Any, ...]]

    def describe(self, axes: list[Any]) -> str:
        parts = []
        for a in axes:
            if a.name in self.kept:
                parts.append(f"{a.name} in {{{', '.join(map(str, self.kept[a.name]))}}}")
            else:
                lo, hi = self.ranges[a.name]
                if a.kind == "loguniform":
                    lo, hi = math.exp(lo), math.exp(hi)
                parts.append(f"{a.name} in [{lo:.3g}, {hi:.3g}]")
        return ", ".join(parts)


def _to_space(axis: Any, v: float) -> float:
    return math.log(v) if axis.kind == "loguniform" else float(v)


def first_space(axes: list[Any]) -> Space:
    ranges = {
        a.name: (_to_space(a, a.low), _to_space(a, a.high)) for a in axes if a.kind != "choice"
    }
    return Space(0, ranges, {a.name: tuple(a.choices) for a in axes if a.kind == "choice"})


def narrow(
    axes: list[Any], prev: Space, best: list[dict[str, Any]], spec: Space, round_: int
) -> Space:
    """The next round's space: each range around the best trials' values (see the module)."""
    ranges, kept = {}, {}
    for a in axes:
        values = [b[a.name] for b in best if a.name in b]
        if a.kind == "choice":
            seen = {str(v) for v in values}
            keep = tuple(c for c in prev.kept[a.name] if str(c) in seen)
            kept[a.name] = keep or tuple(c for c in spec.kept[a.name] if str(c) in seen)
            if not kept[a.name]:
                kept[a.name] = prev.kept[a.name]
            continue
        lo0, hi0 = prev.ranges[a.name]
        if not values:
            ranges[a.name] = (lo0, hi0)
            continue
        xs = [_to_space(a, v) for v in values]
        pad = PAD * (hi0 - lo0)
        lo, hi = max(lo0, min(xs) - pad), min(hi0, max(xs) + pad)
        if lo > hi:  # every best value outside the previous range: around them, in the spec's
            slo, shi = spec.ranges[a.name]
            lo, hi = max(slo, min(xs) - pad), min(shi, max(xs) + pad)
        ranges[a.name] = (lo, hi)
    return Space(round_, ranges, kept)


def spaces(
    axes: list[Any],
    finished: list[tuple[int, dict[str, Any], float]],
    per_round: int,
    rounds: int,
    keep: float,
    direction: str,
    upto: int,
) -> Space:
    """The space of round `upto`, from the finished trials (number, values, objective) in
    trial order: round r narrows around the best of the trials numbered before r·per_round."""
    spec = first_space(axes)
    space = spec
    sign = 1.0 if direction == "minimize" else -1.0
    for r in range(1, min(upto, rounds - 1) + 1):
        before = [t for t in finished if t[0] < r * per_round]
        if not before:
            continue
        k = max(2, math.ceil(keep * len(before)))
        best = sorted(before, key=lambda t: (sign * t[2], t[0]))[:k]
        space = narrow(axes, space, [t[1] for t in best], spec, r)
    return space


def draw(axis: Any, space: Space, rng: np.random.Generator) -> Any:
    """One value of `axis` from the round's space."""
    if axis.kind == "choice":
        kept = space.kept[axis.name]
        return kept[int(rng.integers(len(kept)))]
    lo, hi = space.ranges[axis.name]
    if axis.kind == "int_uniform":
        a, b = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
        if a > b:  # a range narrower than one integer: the nearest
            a = b = round((lo + hi) / 2)
        return int(rng.integers(a, b + 1))
    x = float(rng.uniform(lo, hi))
    if axis.kind == "loguniform":
        return min(max(math.exp(x), axis.low), axis.high)
    return x


def _base() -> Any:
    import optuna

    return optuna.samplers.BaseSampler


class Tightening(_base()):  # type: ignore[misc]
    """Optuna sampler: random search in rounds, each narrowed around the best so far."""

    def __init__(
        self,
        axes: list[Any],
        per_round: int,
        rounds: int,
        keep: float,
        direction: str,
        seed: int,
    ):
        self.axes = {a.name: a for a in axes}
        self.per_round, self.rounds, self.keep = per_round, rounds, keep
        self.direction, self.seed = direction, seed
        self._spaces: dict[int, Space] = {}

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return {}

    def space_for(self, study: Any, number: int) -> Space:
        """The space trial `number` draws from (computed once per trial)."""
        if number not in self._spaces:
            import optuna

            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            finished = sorted(
                (t.number, t.params, float(t.value))
                for t in done
                if t.value is not None and math.isfinite(t.value)
            )
            self._spaces[number] = spaces(
                list(self.axes.values()),
                finished,
                self.per_round,
                self.rounds,
                self.keep,
                self.direction,
                number // self.per_round,
            )
        return self._spaces[number]

    def round_of(self, number: int) -> int | None:
        space = self._spaces.get(number)
        return space.round if space is not None else None

    def sample_independent(
        self, study: Any, trial: Any, param_name: str, param_distribution: Any
    ) -> Any:
        axis = self.axes[param_name]
        space = self.space_for(study, trial.number)
        index = list(self.axes).index(param_name)
        rng = np.random.default_rng([self.seed, trial.number, index])
        return draw(axis, space, rng)
