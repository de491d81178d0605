"""`train.unfreeze`: two-phase fine-tuning as one Optax transformation (issue 16, point 6).

Phase 1 trains the layers `freeze` leaves free; from optimizer update `at` on (phase 2) the
layers it holds train too, and every update is multiplied by `lr_factor`. The phase is a
function of the update count kept in the optimizer state (and, for the model's batchnorms,
of the step count kept beside it: runtime/train.py), so one jitted step serves both phases,
nothing recompiles at the boundary, and a checkpoint on either side resumes exactly.

The held layers get their own instance of the optimizer, whose state stays as `init` made it
(moments zero, count zero) until `at`: their moments start at zero when they unfreeze and their
bias correction starts at step 1, as for a parameter group added to a PyTorch optimizer then
(fastai's `unfreeze` keeps the others' state the same way). Both instances read the rate of
the global update (the held one's schedule is shifted by `at`), so a schedule runs on across
the boundary. Clipping sees every trainable gradient: before `at` the held layers' gradients
are zeroed first, so a global norm is the free layers' norm, as under `freeze` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .diagnostics import E_UNFREEZE_WHEN, Span, error
from .values import Quantity

Array = Any


class ThawState(NamedTuple):
    """The state of `thaw`: the update count, the clipper's state, and each group's."""

    count: Array  # optimizer updates so far; phase 2 from `at` on
    clip: Any
    free: Any  # the optimizer of the layers trained from the start
    held: Any  # the optimizer of the layers `freeze` holds: as `init` made it until `at`


def unfreeze_update(
    after: Quantity, steps_per_epoch: int | None, total: int | None, span: Span
) -> int:
    """The optimizer update from which the held layers train: `after` in updates (epochs
    count as schedules count them), refused at or past the end of training when it is known."""
    from .lower_optax import steps

    at = steps(after, steps_per_epoch, span, "after")
    if total is not None and at >= total:
        raise error(
            E_UNFREEZE_WHEN,
            f"`unfreeze` after `{after}` never happens: training runs {total} optimizer updates",
            span,
            f"unfreeze before the end of training (`after: {total - 1} steps` at most), "
            "or raise `epochs`",
        )
    return at


def unfreeze_at(program: Any, steps_per_epoch: int | None) -> int | None:
    """The first optimizer update of phase 2 of `program` (None without `unfreeze`), or the
    spec's error at the `after` key."""
    from .diagnostics import DiagnosticError, SpecError

    train = program.train
    if train.unfreeze is None:
        return None
    total = train.epochs * steps_per_epoch if steps_per_epoch else None
    span = dict(train.spans).get("unfreeze.after", train.span_of("unfreeze"))
    try:
        return unfreeze_update(train.unfreeze.get("after"), steps_per_epoch, total, span)
    except DiagnosticError as e:
        raise SpecError([e.diagnostic], program.sources) from None


def shifted(schedule: Any, by: int) -> Any:
    """The schedule read `by` updates later (a constant rate as it is)."""
    if not callable(schedule) or by == 0:
        return schedule
    return lambda count: schedule(count + by)


def thaw(
    build: Callable[[int], optax.GradientTransformation],
    clip: optax.GradientTransformation | None,
    held: Callable[[Any], Any],
    at: int,
    factor: float,
) -> optax.GradientTransformation:
    """The two phases as one transformation.

    `build(shift)`: the optimizer chain (no clipping) whose schedule is read `shift` updates
    later; `held(params)`: True on the leaves of the layers `freeze` holds; `at`: the first
    update of phase 2; `factor`: what every update is multiplied by in phase 2.
    """
    free_tx = optax.masked(build(0), lambda p: jax.tree.map(lambda h: not h, held(p)))
    held_tx = optax.masked(build(at), held)
    clip_tx = clip if clip is not None else optax.identity()

    def init(params: Any) -> ThawState:
        return ThawState(
            jnp.zeros([], jnp.int32),
            clip_tx.init(params),
            free_tx.init(params),
            held_tx.init(params),
        )

    def update(updates: Any, state: ThawState, params: Any = None) -> tuple[Any, ThawState]:
        late = state.count >= at
        mask = held(updates)

        def hold(tree: Any) -> Any:  # the held layers' values zeroed before `at`
            return jax.tree.map(lambda m, u: jnp.where(late, u, 0) if m else u, mask, tree)

        grads, clip_state = clip_tx.update(hold(updates), state.clip, params)
        out, free_state = free_tx.update(grads, state.free, params)
        out, held_state = jax.lax.cond(
            late,
            lambda: held_tx.update(out, state.held, params),
            lambda: (hold(out), state.held),
        )
        scale = jnp.where(late, factor, 1.0)
        out = jax.tree.map(lambda u: u * scale.astype(u.dtype), out)
        return out, ThawState(optax.safe_increment(state.count), clip_state, free_state, held_state)

    return optax.GradientTransformation(init, update)  # type: ignore[arg-type]
