"""The training loop: a checked Program and its data → trained weights, metrics, a run folder.

One jitted step per batch (augment → forward → loss + penalties → gradients → Optax update →
weight constraints), with the data resident on the device and batches gathered there by index.
Nothing is read back to the host per step: the loss, the metrics and a non-finite-loss marker
accumulate on the device and are read once per epoch. Per-epoch validation drives early
stopping (the lecture's patience loop) and `reduce_on_plateau`; checkpoints make `--resume`
continue exactly: the batches of epoch e and the randomness of step s are functions of
(seed, e) and (seed, s) only, so a resumed run computes what an uninterrupted one would.

`ensemble = N` trains N members (seeds seed .. seed + N - 1) in one program, vmapped over a
leading member axis; the reported metrics are the ensemble's (mean of the members'
probabilities), each member's are listed too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from dnn.compiler.diagnostics import E_SECTION, Diagnostic, SpecError
from dnn.compiler.ir import Program
from dnn.compiler.lower_flax import lower_model
from dnn.compiler.lower_loss import lower_constraints, lower_loss, lower_penalties
from dnn.compiler.lower_optax import Plateau, plateau_start, plateau_step
from dnn.compiler.lower_scan import plan_for, relayout, stack
from dnn.compiler.lower_unfreeze import unfreeze_at
from dnn.compiler.registry.metrics import monitor_mode
from dnn.compiler.rules import heads

from . import augment, health, metrics
from .data import transforms
from .data.batches import Streamed
from .pipeline import Prepared
from .placement import Placement

Array = Any
EVAL_BATCH = 256
# Programs run once per run or per epoch (initialization, permutations, zeroed accumulators):
# XLA's backend optimizations cost more compile time than they save (init: 0.39 s instead of
# 1.55 s on the digits MLP, bit-identical parameters; docs/performance.md).
ONE_OFF = {"xla_backend_optimization_level": 0}


class TrainingError(Exception):
    """Training could not go on (a non-finite loss, a bad resume); carries a hint."""

    def __init__(self, message: str, hint: str | None = None, file: str | None = None):
        super().__init__(message)
        self.hint = hint
        self.file = file  # the file at fault, when it is not the spec (a sweep's database)


# ------------------------------------------------------------------ compiled pieces


def _combine(outs: Array, task: str) -> Array:
    """Members' outputs (axis 0) of one output as the ensemble's: the mean probability, as
    logits (a sigmoid per unit for binary and multi-label, a softmax for classes), or the mean
    value for regression."""
    if task == "regression":
        return jnp.mean(outs, axis=0)
    if task in ("binary", "multilabel"):
        p = jnp.mean(jax.nn.sigmoid(outs), axis=0)
        return jnp.log(p) - jnp.log1p(-p)
    return jnp.log(jnp.mean(jax.nn.softmax(outs, axis=-1), axis=0))


def _to_bf16(a: Array) -> Array:
    return a.astype(jnp.bfloat16) if a.dtype == jnp.float32 else a


@dataclass
class Engine:
    """The lowered model, loss, optimizer, metrics and augmentation, and their jitted steps."""

    program: Program
    prepared: Prepared
    members: int
    health: int | None = None  # steps between health checks; None: the spec's `train.health`
    model: Any = field(init=False)
    tx: Any = field(init=False)

    def __post_init__(self) -> None:
        p, train = self.program, self.program.train
        assert p.model is not None
        scan = plan_for(p)  # runs of identical block instances lowered as one nn.scan
        self.scan = scan if scan is not None and scan.groups else None
        self._relayouts: dict[bool, Any] = {}
        # a frozen batchnorm runs in inference mode (lower_flax.inference_mode)
        self.model = lower_model(p.model, train.init, self.scan, tuple(train.freeze))
        # weights are drawn by the unrolled model, then stacked: a seed gives the same start
        # whether or not (and wherever) repeats are scanned
        self.init_model = lower_model(p.model, train.init) if self.scan else self.model
        self.blocks = self.prepared.blocks  # several outputs: where each one's targets are
        self.loss = self._several_losses() if self.blocks else lower_loss(train.loss)
        self.penalty = lower_penalties(p.model, train.regularizer, scan)
        self.project = lower_constraints(p.model, scan, tuple(train.freeze))
        # `unfreeze`: phase 2 projects the released layers' constraints too
        self.project_all = lower_constraints(p.model, scan) if train.unfreeze else None
        multi_hot = self.prepared.splits["train"].y.ndim == 2 and self.classes is not None
        self.metrics = (
            metrics.build_outputs(train.metrics, self.blocks, self._units())
            if self.blocks
            else metrics.build(train.metrics, self.classes, self.outputs, multi_hot)
        )
        shape = self.prepared.splits["train"].x.shape[1:]
        data = p.data  # None for a model file alone (`dnn init-check` feeds it noise)
        self.augment = augment.build(tuple(data.augment) if data else (), tuple(shape))
        self.batch = train.batch_size
        n = self.prepared.size("train")
        self.full, self.tail = divmod(n, self.batch)
        if data is not None and data.drop_last and self.full > 0:
            self.tail = 0  # a batch smaller than batch_size is dropped, unless it is the only one
        self.steps_per_epoch = self.full + (1 if self.tail else 0)
        # per-layer statistics every k-th step (runtime/health.py); 0: off, nothing traced
        self.health_every = health.every(p, max(self.steps_per_epoch, 1), self.health)
        self.health_slots = -(-self.steps_per_epoch // max(self.health_every, 1)) + 1
        updates_per_epoch = max(1, self.steps_per_epoch // train.accumulate)
        base = p.build_optimizer(updates_per_epoch)
        self.thaw_at = unfreeze_at(p, updates_per_epoch)
        self.plateau = train.schedule if train.schedule.name == "reduce_on_plateau" else None
        # reduce_on_plateau multiplies the rate by a factor the loop sets once per epoch
        self.tx = (
            optax.chain(base, optax.inject_hyperparams(optax.scale)(step_size=1.0))
            if self.plateau
            else base
        )
        self.binary = self.prepared.task == "binary"
        try:
            self.place = Placement.of(train.devices, str(train.shard))
        except ValueError as e:
            raise spec_error(p, "devices", str(e), "use `devices = all`") from None
        self._build_steps()

    @property
    def outputs(self) -> int:
        return transforms.outputs(self.program)

    def _units(self) -> tuple[int, ...]:
        assert self.program.model is not None
        return tuple(h.units for h in heads(self.program.model, self.program.train))

    def _several_losses(self) -> Callable[[Any, Array], Array]:
        """The weighted sum of each output's loss on its own targets."""
        assert self.program.model is not None
        parts = [
            (lower_loss(h.loss), h.weight, b, h.task)
            for h, b in zip(heads(self.program.model, self.program.train), self.blocks, strict=True)
        ]

        def loss(outs: Any, y: Array) -> Array:
            total = jnp.zeros(())
            for (fn, w, b, task), o in zip(parts, outs, strict=True):
                t = metrics.block_targets(b, y)
                t = t.reshape(o.shape) if task == "regression" else t
                total = total + w * fn(o, t)
            return total

        return loss

    # -------------------------------------------------------------- checkpoint layout

    def to_disk(self, tree: Any) -> Any:
        """A state (or weights) tree as checkpoints hold it: one entry per node name.

        Scanned runs are unstacked, so a checkpoint does not depend on the scan decision,
        which `scan_repeats = auto` makes per backend: a run saved on one machine resumes,
        evaluates and transfers (`init_from`) on another that scans differently.
        """
        return tree if self.scan is None else self._relayout(tree, False)

    def from_disk(self, tree: Any) -> Any:
        """The inverse of `to_disk`: a checkpoint's tree in this engine's layout."""
        return tree if self.scan is None else self._relayout(tree, True)

    def _relayout(self, tree: Any, to_stacked: bool) -> Any:
        scan, axis = self.scan, 1 if self.members > 1 else 0
        assert scan is not None
        if to_stacked not in self._relayouts:
            self._relayouts[to_stacked] = jax.jit(
                lambda t: relayout(t, scan, to_stacked, axis), compiler_options=ONE_OFF
            )
        return self._relayouts[to_stacked](tree)

    @property
    def classes(self) -> int | None:
        return self.outputs if self.prepared.task != "regression" else None

    # -------------------------------------------------------------- per member

    def _keys(self, member: Array) -> Array:
        return jax.random.key(self.program.train.seed + member)

    def _init_one(self, member: Array) -> dict[str, Any]:
        key = self._keys(member)
        x = self.prepared.splits["train"].x[:1]
        variables = self.init_model.init(
            {"params": jax.random.fold_in(key, 1), "dropout": jax.random.fold_in(key, 2)},
            transforms.model_inputs(self.program, jnp.asarray(x)),
        )
        if self.scan is not None:
            variables = {k: stack(dict(v), self.scan) for k, v in variables.items()}
        params = variables.get("params", {})  # a model without weights has none
        state = {k: v for k, v in variables.items() if k != "params"}
        return {
            "params": params,
            "model_state": state,
            "opt": self.tx.init(params),
            "step": jnp.zeros((), jnp.int32),
        }

    def thawed(self, step: Array) -> Array | None:
        """Whether the step `step` is in `unfreeze`'s phase 2 (a traced boolean; None without
        `unfreeze`): its optimizer update is the `thaw_at`-th or later, as the optimizer
        counts (compiler/lower_unfreeze.py)."""
        if self.thaw_at is None:
            return None
        return step // self.program.train.accumulate >= self.thaw_at

    def phase(self, st: Any) -> int | None:
        """The phase (1 or 2) of the last step taken in `st`; None without `unfreeze`."""
        if self.thaw_at is None:
            return None
        last = int(np.asarray(jax.device_get(st["step"])).reshape(-1)[0]) - 1
        return 2 if last >= 0 and self.thawed(last) else 1

    def _forward(
        self,
        params: Any,
        state: Any,
        x: Array,
        train: bool,
        key: Array,
        thawed: Array | None = None,
    ) -> Any:
        out, state = self._forward_raw(params, state, x, train, key, thawed)
        return jax.tree.map(lambda o: o.astype(jnp.float32), out), state

    def _forward_raw(
        self,
        params: Any,
        state: Any,
        x: Array,
        train: bool,
        key: Array,
        thawed: Array | None = None,
    ) -> Any:
        if str(self.program.train.precision) == "bf16":  # the casts' gradients are f32 again
            params, x = jax.tree.map(_to_bf16, params), _to_bf16(x)  # token ids stay ids
        xs = transforms.model_inputs(self.program, x)
        variables = {"params": params, **state}
        if not train:
            return self.model.apply(variables, xs), state
        kwargs: dict[str, Any] = {"train": True, "rngs": {"dropout": key}, "thawed": thawed}
        if state:
            return self.model.apply(variables, xs, mutable=list(state), **kwargs)
        return self.model.apply(variables, xs, **kwargs), state

    def every_value(
        self,
        params: Any,
        state: Any,
        x: Array,
        key: Array,
        model: Any = None,
        thawed: Array | None = None,
    ) -> dict[str, Array]:
        """Every node's output for the batch `x` in training mode (dropout from `key`; the
        batch statistics it would update are dropped): what health checks, init-check and
        the NaN locator read. `model`: another lowering of the graph (the unrolled one);
        `thawed`: `unfreeze`'s phase flag of the step (`Engine.thawed`)."""
        model = model or self.model
        xs = transforms.model_inputs(self.program, x)
        variables = {"params": params, **state}
        kwargs: dict[str, Any] = {"train": True, "every_value": True, "rngs": {"dropout": key}}
        if thawed is not None:
            kwargs["thawed"] = thawed
        if state:
            return model.apply(variables, xs, mutable=list(state), **kwargs)[0]  # type: ignore[no-any-return]
        return model.apply(variables, xs, **kwargs)  # type: ignore[no-any-return]

    def _train_one(
        self, st: dict[str, Any], acc: dict[str, Any], member: Array, x: Array, y: Array
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        key = jax.random.fold_in(jax.random.fold_in(self._keys(member), 3), st["step"])
        k_aug, k_drop = jax.random.split(key)
        x = self.augment(k_aug, x)
        acc_in = acc
        thawed = self.thawed(st["step"])

        def objective(params: Any) -> tuple[Array, Any]:
            out, new_state = self._forward(params, st["model_state"], x, True, k_drop, thawed)
            data_loss = self.loss(out, y)
            pen = self.penalty(params)
            return data_loss + pen, (new_state, out, data_loss, pen)

        (total, (new_state, out, data_loss, pen)), grads = jax.value_and_grad(
            objective, has_aux=True
        )(st["params"])
        updates, opt = self.tx.update(grads, st["opt"], st["params"])
        params = optax.apply_updates(st["params"], updates)
        if self.project_all is None:
            params = self.project(params)
        else:  # `unfreeze`: the released layers' constraints from phase 2 on
            params = jax.lax.cond(thawed, self.project_all, self.project, params)
        ok = jnp.isfinite(total)  # marked only: a run with a bad step stops unsaved at epoch end
        n = y.shape[0]
        mask = jnp.ones((n,), bool)
        acc = {
            "loss": acc["loss"] + data_loss * n,
            "penalty": acc["penalty"] + pen * n,
            "count": acc["count"] + n,
            "metrics": self._update_metrics(acc["metrics"], out, y, mask),
            "bad_step": jnp.where((acc["bad_step"] < 0) & ~ok, st["step"], acc["bad_step"]),
        }
        if self.health_every:  # every k-th step, from the weights before its update
            acc["health"] = jax.lax.cond(
                st["step"] % self.health_every == 0,
                lambda h: health.record(
                    h, st["step"], health.stats(self, st, x, k_drop, grads, updates)
                ),
                lambda h: h,
                acc_in["health"],
            )
        return {
            "params": params,
            "model_state": new_state,
            "opt": opt,
            "step": st["step"] + 1,
        }, acc

    def _train_acc(self) -> dict[str, Any]:
        acc = {
            "loss": jnp.zeros(()),
            "penalty": jnp.zeros(()),
            "count": jnp.zeros((), jnp.int32),
            "metrics": self.metrics.init(),
            "bad_step": jnp.full((), -1, jnp.int32),
        }
        if self.health_every:
            acc["health"] = health.empty(self.program, self.health_slots)
        return acc

    def _example_losses(self, out: Array, y: Array) -> Array:
        one = lambda o, t: self.loss(jax.tree.map(lambda a: a[None], o), t[None])  # noqa: E731
        return jax.vmap(one)(out, y)

    def _update_metrics(self, acc: Any, out: Array, y: Array, mask: Array) -> Any:
        """Metrics in the data's units: outputs and targets through `data.targets`' inverse."""
        return self.metrics.update(acc, self.untarget(out), self.prepared.targets.invert(y), mask)

    def untarget(self, out: Any) -> Any:
        """The model's outputs in the data's units (`data.targets` inverted); with several
        outputs, each regression output through its own columns' statistics."""
        invert = self.prepared.targets.invert
        if not self.blocks:
            return invert(out)
        pairs = zip(out, self.blocks, strict=True)
        return tuple(invert(o, b.start) if b.task == "regression" else o for o, b in pairs)

    def _eval_acc(self) -> dict[str, Any]:
        return {"loss": jnp.zeros(()), "count": jnp.zeros(()), "metrics": self.metrics.init()}

    def _eval_update(self, acc: dict[str, Any], out: Array, y: Array, mask: Array) -> Any:
        w = mask.astype(jnp.float32)
        return {
            "loss": acc["loss"] + jnp.sum(self._example_losses(out, y) * w),
            "count": acc["count"] + jnp.sum(w),
            "metrics": self._update_metrics(acc["metrics"], out, y, mask),
        }

    def combine(self, outs: Array) -> Array:
        """The ensemble's output from the members' (axis 0): mean probability, as logits."""
        if self.blocks:
            return tuple(_combine(o, b.task) for o, b in zip(outs, self.blocks, strict=True))
        return _combine(outs, self.prepared.task)

    # -------------------------------------------------------------- jitted, all members

    def _map(self, f: Callable[..., Any], axes: tuple[Any, ...]) -> Callable[..., Any]:
        return f if self.members == 1 else jax.vmap(f, in_axes=axes)

    def _build_steps(self) -> None:
        m, place = self.members, self.place
        ids = jnp.arange(m) if m > 1 else jnp.zeros((), jnp.int32)
        self.member_ids = ids
        rep = place.replicated()
        init = self._map(self._init_one, (0,))
        shapes = jax.eval_shape(lambda: init(ids))
        self.state_sharding = place.state(shapes)
        self.init = jax.jit(
            lambda: init(ids), out_shardings=self.state_sharding, compiler_options=ONE_OFF
        )
        self.train_acc = jax.jit(
            lambda: self._map(lambda _: self._train_acc(), (0,))(ids),
            out_shardings=rep,
            compiler_options=ONE_OFF,
        )
        train_one = self._map(self._train_one, (0, 0, 0, None, None))
        outs = (self.state_sharding, rep) if place.mesh is not None else None

        def step(st: Any, acc: Any, xs: Array, ys: Array, order: Array, i: Array) -> Any:
            idx = order[i]
            return train_one(st, acc, ids, place.batch(xs[idx]), place.batch(ys[idx]))

        self.step = jax.jit(step, donate_argnums=(0, 1), out_shardings=outs)

        def batch_step(st: Any, acc: Any, x: Array, y: Array) -> Any:
            return train_one(st, acc, ids, place.batch(x), place.batch(y))

        # a streamed split's batch, read on the host (runtime/data/batches.py)
        self.batch_step = jax.jit(batch_step, donate_argnums=(0, 1), out_shardings=outs)

        def scan_batches(st: Any, acc: Any, xs: Array, ys: Array) -> Any:
            def body(carry: Any, batch: Any) -> tuple[Any, None]:
                x, y = batch
                return train_one(*carry, ids, place.batch(x), place.batch(y)), None

            return jax.lax.scan(body, (st, acc), (xs, ys))[0]

        # streamed batches several at a time, stacked: one call for a scanned model's run of
        # steps, as an in-memory epoch is one (`scan_epoch`)
        self.scan_batches = jax.jit(scan_batches, donate_argnums=(0, 1), out_shardings=outs)

        def epoch(st: Any, acc: Any, xs: Array, ys: Array, order: Array, tail: Any) -> Any:
            def body(carry: Any, idx: Array) -> tuple[Any, None]:
                x, y = place.batch(xs[idx]), place.batch(ys[idx])
                return train_one(*carry, ids, x, y), None

            st, acc = jax.lax.scan(body, (st, acc), order)[0]
            if tail is not None:  # the last, smaller batch: in the same program, one compile
                st, acc = train_one(
                    st, acc, ids, place.batch(xs[tail[0]]), place.batch(ys[tail[0]])
                )
            return st, acc

        self.scan_epoch = jax.jit(epoch, donate_argnums=(0, 1), out_shardings=outs)
        self.scanned = scan_epochs(self.program)

        def evaluate(st: Any, acc: Any, ens: Any, x: Array, y: Array, mask: Array) -> Any:
            x = place.batch(x)
            fwd = self._map(
                lambda p, s: self._forward(p, s, x, False, jax.random.key(0))[0], (0, 0)
            )
            out = fwd(st["params"], st["model_state"])
            if m == 1:
                return self._eval_update(acc, out, y, mask), ens
            acc = jax.vmap(self._eval_update, in_axes=(0, 0, None, None))(acc, out, y, mask)
            return acc, self._eval_update(ens, self.combine(out), y, mask)

        self.evaluate = jax.jit(evaluate, donate_argnums=(1, 2), out_shardings=rep)
        self._order = jax.jit(
            self._permute, static_argnums=(1,), out_shardings=rep, compiler_options=ONE_OFF
        )
        self.eval_acc = jax.jit(
            lambda: self._map(lambda _: self._eval_acc(), (0,))(ids),
            out_shardings=rep,
            compiler_options=ONE_OFF,
        )
        self.ens_acc = jax.jit(self._eval_acc, out_shardings=rep, compiler_options=ONE_OFF)
        self.copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree), compiler_options=ONE_OFF)

    def order(self, epoch: int, n: int) -> tuple[Array, Array | None]:
        """The batches of an epoch: indices of full batches (rows) and of the tail batch."""
        full, tail = self._order(epoch, n)
        return full, (tail if self.tail else None)

    def _permute(self, epoch: Array, n: int) -> tuple[Array, Array]:
        data = self.program.data
        assert data is not None
        if not data.shuffle:
            perm = jnp.arange(n)
        else:
            key = jax.random.fold_in(jax.random.key(self.program.train.seed), epoch)
            perm = jax.random.permutation(jax.random.fold_in(key, 7), n)
        full = perm[: self.full * self.batch].reshape(self.full, self.batch)
        return full, perm[self.full * self.batch :][None]


# Layers whose gradients XLA's CPU backend runs far slower inside a loop body (measured in
# docs/performance.md): an epoch of them is not scanned on a CPU.
LOOP_SLOW_ON_CPU = ("conv", "pool", "lstm", "gru", "simple_rnn")


def scan_epochs(program: Program) -> bool:
    """Whether an epoch runs as one scanned XLA program (`train.loop`)."""
    choice = str(program.train.loop)
    if choice != "auto":
        return choice == "scan"
    if jax.default_backend() != "cpu":
        return True
    assert program.model is not None
    return not any(any(w in n.op for w in LOOP_SLOW_ON_CPU) for n in program.model.nodes)


# ------------------------------------------------------------------ split evaluation


@dataclass(frozen=True)
class Batched:
    """A split cut into EVAL_BATCH-row batches (the last padded, `mask` marks real rows), so
    one compiled evaluation serves every split."""

    x: Array  # (batches, EVAL_BATCH, *shape)
    y: Array
    mask: Array
    n: int


def batched(x: Array, y: Array) -> Batched:
    n = int(x.shape[0])
    nb = -(-n // EVAL_BATCH)
    pad = nb * EVAL_BATCH - n

    def cut(a: Array) -> Array:
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape((nb, EVAL_BATCH, *a.shape[1:]))

    mask = (np.arange(nb * EVAL_BATCH) < n).reshape(nb, EVAL_BATCH)
    return Batched(cut(x), cut(y), jnp.asarray(mask), n)


def evaluate_split(engine: Engine, st: Any, split: Batched | Streamed) -> dict[str, Any]:
    """Loss and metrics of the current weights on a whole split (eval mode, no augmentation)."""
    if split.n == 0:
        return {}
    acc, ens = engine.eval_acc(), engine.ens_acc()
    if isinstance(split, Batched):
        for i in range(split.x.shape[0]):
            acc, ens = engine.evaluate(st, acc, ens, split.x[i], split.y[i], split.mask[i])
    else:  # streamed from its source (runtime/data/batches.py)
        put = engine.place.from_host  # read whole by every process of a multi-host run
        for x, y, mask in split.in_order(EVAL_BATCH):
            acc, ens = engine.evaluate(st, acc, ens, put(x), put(y), put(mask))
    if engine.members == 1:
        return _finish(engine, acc)
    members = [
        _finish(engine, jax.tree.map(lambda a, i=i: a[i], acc)) for i in range(engine.members)
    ]
    return {**_finish(engine, ens), "members": members}


def _finish(engine: Engine, acc: Any) -> dict[str, Any]:
    acc = jax.device_get(acc)
    out = {"loss": float(acc["loss"]) / max(float(acc["count"]), 1.0)}
    out.update({k: float(v) for k, v in engine.metrics.finish(acc["metrics"]).items()})
    return out


def train_report(engine: Engine, acc: Any) -> dict[str, Any]:
    """The epoch's training loss and metrics (on the augmented batches, in train mode)."""
    acc = jax.device_get(acc)

    def one(a: Any) -> dict[str, float]:
        count = max(int(a["count"]), 1)
        out = {"loss": float(a["loss"]) / count}
        if engine.program.model is not None and _has_penalty(engine.program):
            out["penalty"] = float(a["penalty"]) / count
        out.update({k: float(v) for k, v in engine.metrics.finish(a["metrics"]).items()})
        return out

    if engine.members == 1:
        return one(acc)
    members = [one(jax.tree.map(lambda a, i=i: a[i], acc)) for i in range(engine.members)]
    mean = {k: float(np.mean([m[k] for m in members])) for k in members[0]}
    return {**mean, "members": members}


def _has_penalty(program: Program) -> bool:
    assert program.model is not None
    return program.train.regularizer is not None or any(
        dict(n.args).get("regularizer") is not None for n in program.model.nodes
    )


def bad_step(acc: Any) -> int:
    steps = np.asarray(jax.device_get(acc["bad_step"])).reshape(-1)
    bad = steps[steps >= 0]
    return int(bad.min()) if bad.size else -1


# ------------------------------------------------------------------ the loop's bookkeeping


@dataclass
class Stopper:
    """Early stopping: the lecture's patience loop on a monitored quantity."""

    monitor: str
    mode: str
    patience: int
    min_delta: float
    best: float
    best_epoch: int = 0
    bad_epochs: int = 0

    @staticmethod
    def of(program: Program) -> Stopper | None:
        rec = program.train.early_stopping
        if rec is None:
            return None
        monitor = str(rec.get("monitor"))
        mode = str(rec.get("mode"))
        mode = monitor_mode(monitor) if mode == "auto" else mode
        return Stopper(
            monitor,
            mode,
            int(rec.get("patience")),
            float(rec.get("min_delta")),
            math.inf if mode == "min" else -math.inf,
        )

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch: int, value: float) -> bool:
        """Record an epoch; True when the run should stop."""
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def to_json(self) -> dict[str, Any]:
        return {
            "best": json_float(self.best),
            "best_epoch": self.best_epoch,
            "bad": self.bad_epochs,
        }

    def load(self, d: dict[str, Any]) -> None:
        self.best = float(d["best"])
        self.best_epoch, self.bad_epochs = int(d["best_epoch"]), int(d["bad"])


def json_float(v: float) -> float | str:
    """A float for JSON: infinities (an unset best) as the strings float() reads back."""
    return v if math.isfinite(v) else str(v)


def record_key(engine: Engine, monitor: str) -> str:
    """The key of an epoch record a monitor reads: `val_top_k` may be reported as `val_top_k_3`."""
    prefix = "val_" if monitor.startswith("val_") else ""
    word = monitor.removeprefix("val_")
    if word == "loss":
        return monitor
    return prefix + (engine.metrics.lookup(word) or word)


def plateau_state(d: dict[str, Any] | None, start: Plateau) -> Plateau:
    if not d:
        return start
    return Plateau(
        float(d["best"]), int(d["bad_epochs"]), int(d["cooldown_left"]), float(d["scale"])
    )


def plateau_json(p: Plateau) -> dict[str, Any]:
    return {
        "best": json_float(p.best),
        "bad_epochs": p.bad_epochs,
        "cooldown_left": p.cooldown_left,
        "scale": p.scale,
    }


def set_plateau_scale(st: Any, scale: float) -> Any:
    """Write the plateau factor into the injected `scale` of the optimizer state."""
    opt = st["opt"]
    hyper = opt[1].hyperparams
    hyper["step_size"] = jnp.full_like(hyper["step_size"], scale)
    return st


def plateau_monitor(program: Program) -> str:
    sched = program.train.schedule
    return str(sched.arg("monitor")) if "monitor" in dict(sched.args) else "val_loss"


def plateau_begin(program: Program) -> Plateau:
    return plateau_start(program.train.schedule)


def plateau_next(program: Program, state: Plateau, value: float) -> Plateau:
    return plateau_step(program.train.schedule, state, value, program.train.optimizer.arg("lr"))


def spec_error(program: Program, field_name: str, message: str, hint: str) -> SpecError:
    return SpecError(
        [Diagnostic(E_SECTION, message, program.train.span_of(field_name), hint)],
        program.sources,
    )


def device_data(prepared: Prepared, place: Placement) -> dict[str, tuple[Array, Array]]:
    """Every split placed on the device(s) once (`batched` cuts them for evaluation); none
    where the splits are streamed."""
    if prepared.streamed:
        return {}
    return {
        name: (place.put(t.x), place.put(t.y)) for name, t in prepared.splits.items() if len(t.y)
    }


def run_dir_default(program: Program) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(program.path).stem}-{stamp}"
