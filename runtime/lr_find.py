"""`dnn lr-find`: the learning-rate range test (Smith 2017, "Cyclical learning rates for
training neural networks", section 3.3; fastai's `Learner.lr_find` is the anchor).

From a fresh initialization, train for a few hundred steps while the rate grows exponentially
from `start` to `end`; record the loss of each step, smooth it, stop once it diverges, and
suggest a rate: where the smoothed loss falls fastest (steepest descent) and the rate of the
smallest smoothed loss divided by 10. The pure pieces (rates, smoothing, divergence, the two
suggestions) take and return NumPy arrays; `range_test` runs the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# fastai's defaults: rates 1e-7 .. 10, the loss smoothed with beta 0.98, a run stopped once the
# smoothed loss passes 4x its best, and the suggestion read between steps n // 10 and n - 5.
START, END, STEPS = 1e-7, 10.0, 100
BETA = 0.98
DIVERGE = 4.0
SKIP_END = 5


def rates(start: float, end: float, steps: int) -> np.ndarray:
    """The rate of each step: `start * (end / start) ** (i / steps)` (fastai's `SchedExp`)."""
    return start * (end / start) ** (np.arange(steps) / steps)


def smooth(losses: np.ndarray, beta: float = BETA) -> np.ndarray:
    """The debiased exponential moving average of the losses (fastai's `AvgSmoothLoss`):
    `avg_i = beta * avg_{i-1} + (1 - beta) * loss_i`, reported as `avg_i / (1 - beta^(i+1))`."""
    out, avg = np.empty(len(losses)), 0.0
    for i, loss in enumerate(np.asarray(losses, dtype=np.float64)):
        avg = beta * avg + (1 - beta) * loss
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def diverged_at(smoothed: np.ndarray, factor: float = DIVERGE) -> int | None:
    """The first step whose smoothed loss is not finite or exceeds `factor` times the best
    smoothed loss so far (fastai's `stop_div`); None when the loss never diverged."""
    best = math.inf
    for i, v in enumerate(smoothed):
        if not math.isfinite(v) or v > factor * best:
            return i
        best = min(best, v)
    return None


@dataclass(frozen=True)
class Suggestion:
    """The suggested rates and where the suggestion looked (indices into the records)."""

    steepest: float  # the rate where the smoothed loss falls fastest per unit of log rate
    minimum: float  # the rate of the smallest smoothed loss
    window: tuple[int, int]

    @property
    def minimum_10(self) -> float:
        return self.minimum / 10


def suggest(lrs: np.ndarray, smoothed: np.ndarray, planned: int) -> Suggestion | None:
    """fastai's `steep` and `minimum` over the records between `planned // 10` and the fifth
    from the end (the first steps move little, the last ones are diverging); non-finite losses
    cut the window. `planned`: the number of steps asked for. None: too few records."""
    lo, hi = planned // 10, len(smoothed) - SKIP_END
    window = np.asarray(smoothed[lo:hi], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(window))
    if len(bad):
        window = window[: bad[0]]
    hi = lo + len(window)
    if len(window) < 2:
        return None
    r = np.asarray(lrs[lo:hi], dtype=np.float64)
    slopes = np.diff(window) / np.diff(np.log(r))
    return Suggestion(
        steepest=float(r[int(np.argmin(slopes))]),
        minimum=float(r[int(np.argmin(window))]),
        window=(lo, hi),
    )


@dataclass
class RangeTest:
    """The records of one range test: rate and raw loss per step, and why it ended."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    planned: int = STEPS
    stopped: str = ""  # "" ran every step; otherwise the reason it stopped early

    @property
    def smoothed(self) -> np.ndarray:
        return smooth(np.asarray(self.losses))

    def suggestion(self) -> Suggestion | None:
        return suggest(np.asarray(self.lrs), self.smoothed, self.planned)

    def to_dict(self) -> dict[str, Any]:
        s = self.suggestion()
        return {
            "steps": len(self.lrs),
            "planned": self.planned,
            "stopped": self.stopped or None,
            "suggested": None
            if s is None
            else {"steepest": s.steepest, "minimum": s.minimum, "minimum_10": s.minimum_10},
            "records": [
                {"lr": lr, "loss": _json(loss), "smoothed": _json(sm)}
                for lr, loss, sm in zip(self.lrs, self.losses, self.smoothed, strict=True)
            ],
        }


def _json(v: float) -> float | str:
    return float(v) if math.isfinite(v) else str(v)


# ------------------------------------------------------------------ the run (imports JAX)


def range_test(
    program: Any, start: float = START, end: float = END, steps: int = STEPS
) -> RangeTest:
    """Train `program` (one member, its optimizer at a constant rate that the test sets each
    step) from a fresh initialization for up to `steps` steps, the rate rising from `start` to
    `end`; stop when the smoothed loss diverges."""
    import jax

    from . import pipeline
    from .fit import enable_compile_cache
    from .train import device_data, set_plateau_scale

    _scalable(program)
    enable_compile_cache()
    prepared = pipeline.prepare(program)
    pipeline.in_memory(program, prepared, "`dnn lr-find`")
    engine = _range_engine()(program, prepared, 1)
    x, y = device_data(prepared, engine.place)["train"]
    n = int(x.shape[0])
    st = engine.init()
    test = RangeTest(planned=steps)
    epoch, order, i = 0, None, engine.full
    for lr in rates(start, end, steps):
        if i >= engine.full:  # the next epoch's batches (full ones only: one compiled shape)
            epoch, i = epoch + 1, 0
            order = engine.order(epoch, n)[0]
        st = set_plateau_scale(st, float(lr))
        acc = engine.train_acc()
        st, acc = engine.step(st, acc, x, y, order, i)
        i += 1
        loss = float(jax.device_get(acc["loss"] / acc["count"]))
        test.lrs.append(float(lr))
        test.losses.append(loss)
        at = diverged_at(test.smoothed)
        if at is not None:
            why = (
                "is not finite"
                if not math.isfinite(test.smoothed[at])
                else (f"passed {DIVERGE:g}x its best")
            )
            test.stopped = f"the smoothed loss {why} at step {at + 1}"
            break
    return test


def _scalable(program: Any) -> None:
    """Refuse an optimizer whose rate also divides inside the update: scaling its updates is
    not the optimizer at another rate."""
    from dnn.compiler.registry.optimizers import OPTIMIZERS

    from .train import spec_error

    name = program.train.optimizer.name
    entry = OPTIMIZERS.lookup(name)
    if entry is not None and "rate_divides" in entry.traits:
        raise spec_error(
            program,
            "optimizer",
            f"`{name}`'s rate is not a step size alone (it also divides inside the update): "
            "the range test cannot sweep it",
            "find the rate with another optimizer, or search `train.optimizer.lr` in a `sweep`",
        )


def _range_engine() -> Any:
    """The engine class whose optimizer ends in an injected scale (as reduce-on-plateau's
    does) that the test sets each step; the spec's rate is set to 1, so the scale is the rate.
    The scale comes after every transform, so for every optimizer whose rate multiplies the
    update (all but the few whose rate also divides inside, see `rate_divides`) this is the
    optimizer at that rate."""
    import optax

    from .train import Engine

    class RangeEngine(Engine):
        def _build_steps(self) -> None:
            self.tx = optax.chain(self.tx, optax.inject_hyperparams(optax.scale)(step_size=1.0))
            super()._build_steps()

    return RangeEngine


def overrides(sets: list[str]) -> list[str]:
    """The overrides a range test trains under: a constant schedule and a rate of 1 (the test
    scales the updates itself), one ensemble member, and `unfreeze`'s first phase throughout
    (the rate it finds is the one `lr` sets; phase 2 runs at `lr_factor` times it)."""
    return [
        *sets,
        "train.schedule=constant",
        "train.optimizer.lr=1",
        "train.ensemble=1",
        "train.unfreeze=none",
    ]


# ------------------------------------------------------------------ the picture


def plot(test: RangeTest, path: Path, title: str = "") -> Path:
    """Loss against rate (log axis), raw and smoothed, with the two suggestions marked."""
    from .rundir import plotting

    Figure, FigureCanvasAgg = plotting()
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lrs, raw, sm = np.asarray(test.lrs), np.asarray(test.losses), test.smoothed
    ax.plot(lrs, raw, color="0.75", lw=1, label="loss")
    ax.plot(lrs, sm, color="C0", lw=2, label="smoothed")
    s = test.suggestion()
    if s is not None:
        for rate, label, color in (
            (s.steepest, f"steepest {s.steepest:.2e}", "C3"),
            (s.minimum_10, f"minimum / 10 {s.minimum_10:.2e}", "C2"),
        ):
            ax.axvline(rate, color=color, ls="--", lw=1.2, label=label)
    finite = sm[np.isfinite(sm)]
    if len(finite):  # the diverging tail would flatten the part worth reading
        lo, first = float(finite.min()), float(finite[0])
        ax.set_ylim(
            lo - 0.1 * abs(first - lo) - 1e-3, max(first, lo) + 0.5 * abs(first - lo) + 1e-3
        )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
