"""Optimizer transformations Optax lacks, or has with other semantics, written Optax's way.

Each `scale_by_x` returns a `GradientTransformation` whose state is an `XState` NamedTuple.
The formulas are those of the registry entries (PyTorch's for the names it shares: its
documented pseudo-code, or its code where the two differ, as for amsgrad; TensorFlow's for FTRL
and the proximal family); `count` is the number of updates already made, so PyTorch's `t` is
`count + 1`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Tree = Any


def _zeros(params: Tree) -> Tree:
    return jax.tree.map(jnp.zeros_like, params)


def _full(params: Tree, value: float) -> Tree:
    return jax.tree.map(lambda p: jnp.full_like(p, value), params)


def _inc(count: Any) -> Any:
    return optax.safe_int32_increment(count)


# ---------------------------------------------------------------- SGD momentum (PyTorch)


class SgdMomentumState(NamedTuple):
    count: Any
    trace: Tree


def scale_by_sgd_momentum(momentum: float, dampening: float, nesterov: bool):
    """b <- g at t = 1, else momentum·b + (1 - dampening)·g; out = g + momentum·b | b."""

    def init(params: Tree) -> SgdMomentumState:
        return SgdMomentumState(jnp.zeros([], jnp.int32), _zeros(params))

    def update(g: Tree, state: SgdMomentumState, params: Tree = None):
        first = state.count == 0
        b = jax.tree.map(
            lambda b, g: jnp.where(first, g, momentum * b + (1 - dampening) * g), state.trace, g
        )
        out = jax.tree.map(lambda g, b: g + momentum * b, g, b) if nesterov else b
        return out, SgdMomentumState(_inc(state.count), b)

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------- Adagrad (PyTorch)


class AdagradState(NamedTuple):
    count: Any
    sum: Tree


def scale_by_torch_adagrad(lr_decay: float, initial: float, eps: float):
    """s <- s + g²; out = g / (sqrt(s) + eps) / (1 + (t - 1)·lr_decay)."""

    def init(params: Tree) -> AdagradState:
        return AdagradState(jnp.zeros([], jnp.int32), _full(params, initial))

    def update(g: Tree, state: AdagradState, params: Tree = None):
        s = jax.tree.map(lambda s, g: s + g * g, state.sum, g)
        decay = 1 / (1 + state.count * lr_decay)
        out = jax.tree.map(lambda g, s: decay * g / (jnp.sqrt(s) + eps), g, s)
        return out, AdagradState(_inc(state.count), s)

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------- Adam relatives (PyTorch)


class MomentsState(NamedTuple):
    count: Any
    mu: Tree
    nu: Tree
    extra: Any = ()


def scale_by_torch_adamax(b1: float, b2: float, eps: float):
    """m <- b1·m + (1 - b1)·g; u <- max(b2·u, |g| + eps); out = m / ((1 - b1^t)·u)."""

    def init(params: Tree) -> MomentsState:
        return MomentsState(jnp.zeros([], jnp.int32), _zeros(params), _zeros(params))

    def update(g: Tree, state: MomentsState, params: Tree = None):
        t = _inc(state.count)
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, g)
        u = jax.tree.map(lambda u, g: jnp.maximum(b2 * u, jnp.abs(g) + eps), state.nu, g)
        out = jax.tree.map(lambda m, u: m / ((1 - b1**t) * u), m, u)
        return out, MomentsState(t, m, u)

    return optax.GradientTransformation(init, update)


class AmsgradState(NamedTuple):
    count: Any
    mu: Tree
    nu: Tree
    nu_max: Tree


def scale_by_torch_amsgrad(b1: float, b2: float, eps: float):
    """AMSGrad as torch.optim.Adam(amsgrad=True) computes it: the maximum of the raw v.

    vmax <- max(vmax, v); out = (m / (1 - b1^t)) / (sqrt(vmax) / sqrt(1 - b2^t) + eps).
    PyTorch's `_single_tensor_adam` (torch/optim/adam.py): `torch.maximum(max_exp_avg_sqs[i],
    exp_avg_sq, out=max_exp_avg_sqs[i])`, then `denom = (max_exp_avg_sqs[i].sqrt() /
    bias_correction2_sqrt).add_(eps)`. Its documented pseudo-code and `optax.scale_by_amsgrad`
    take the maximum of the bias-corrected vhat instead, which weighs early steps more (their
    1 / (1 - b2^t) is larger) and so gives other parameters.
    """

    def init(params: Tree) -> AmsgradState:
        zeros = jnp.zeros([], jnp.int32)
        return AmsgradState(zeros, _zeros(params), _zeros(params), _zeros(params))

    def update(g: Tree, state: AmsgradState, params: Tree = None):
        t = _inc(state.count)
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, g)
        vmax = jax.tree.map(jnp.maximum, state.nu_max, v)
        bc1, bc2_sqrt = 1 - b1**t, jnp.sqrt(1 - b2**t)
        out = jax.tree.map(lambda m, w: (m / bc1) / (jnp.sqrt(w) / bc2_sqrt + eps), m, vmax)
        return out, AmsgradState(t, m, v, vmax)

    return optax.GradientTransformation(init, update)


def scale_by_torch_nadam(b1: float, b2: float, eps: float, momentum_decay: float):
    """NAdam with PyTorch's momentum schedule mu_t = b1·(1 - 0.5·0.96^(t·momentum_decay))."""

    def init(params: Tree) -> MomentsState:
        one = jnp.ones([], jnp.result_type(float))
        return MomentsState(jnp.zeros([], jnp.int32), _zeros(params), _zeros(params), one)

    def update(g: Tree, state: MomentsState, params: Tree = None):
        t = _inc(state.count)
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        prod = state.extra * mu_t  # prod_{i <= t} mu_i
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, g)
        bc2 = 1 - b2**t

        def step(m: Any, v: Any, g: Any) -> Any:
            mhat = mu_next * m / (1 - prod * mu_next) + (1 - mu_t) * g / (1 - prod)
            return mhat / (jnp.sqrt(v / bc2) + eps)

        return jax.tree.map(step, m, v, g), MomentsState(t, m, v, prod)

    return optax.GradientTransformation(init, update)


def scale_by_torch_radam(b1: float, b2: float, eps: float):
    """RAdam: rectified adaptive step when rho_t > 5, plain bias-corrected momentum otherwise."""
    rho_inf = 2 / (1 - b2) - 1

    def init(params: Tree) -> MomentsState:
        return MomentsState(jnp.zeros([], jnp.int32), _zeros(params), _zeros(params))

    def update(g: Tree, state: MomentsState, params: Tree = None):
        t = _inc(state.count)
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, g)
        bt = b2**t
        rho_t = rho_inf - 2 * t * bt / (1 - bt)
        safe = jnp.maximum(rho_t, 5.0 + 1e-3)  # keeps the unused branch finite
        r = jnp.sqrt((safe - 4) * (safe - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * safe))

        def step(m: Any, v: Any) -> Any:
            mhat = m / (1 - b1**t)
            adaptive = mhat * r * jnp.sqrt(1 - bt) / (jnp.sqrt(v) + eps)
            return jnp.where(rho_t > 5, adaptive, mhat)

        return jax.tree.map(step, m, v), MomentsState(t, m, v)

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------- lr-inside updates (TensorFlow)
# These need the learning rate inside the update, so they take it (possibly injected) and
# return the final parameter change: no separate learning-rate scaling follows them.


def _prox(v: Any, lr: Any, l1: float, l2: float) -> Any:
    return jnp.sign(v) * jnp.maximum(jnp.abs(v) - lr * l1, 0) / (1 + lr * l2)


class CountState(NamedTuple):
    count: Any


def proximal_sgd(lr: Any, l1: float, l2: float):
    """v = theta - lr·g; theta <- sign(v)·max(|v| - lr·l1, 0) / (1 + lr·l2)."""

    def update(g: Tree, state: CountState, params: Tree = None):
        new = jax.tree.map(lambda p, g: _prox(p - lr * g, lr, l1, l2), params, g)
        return jax.tree.map(jnp.subtract, new, params), CountState(_inc(state.count))

    return optax.GradientTransformation(lambda p: CountState(jnp.zeros([], jnp.int32)), update)


class AccumState(NamedTuple):
    count: Any
    acc: Tree
    extra: Tree = ()


def proximal_adagrad(lr: Any, initial: float, l1: float, l2: float):
    """s <- s + g²; lr_t = lr / sqrt(s); proximal step with lr_t."""

    def init(params: Tree) -> AccumState:
        return AccumState(jnp.zeros([], jnp.int32), _full(params, initial))

    def update(g: Tree, state: AccumState, params: Tree = None):
        s = jax.tree.map(lambda s, g: s + g * g, state.acc, g)

        def one(p: Any, g: Any, s: Any) -> Any:
            lr_t = lr / jnp.sqrt(s)
            return _prox(p - lr_t * g, lr_t, l1, l2) - p

        return jax.tree.map(one, params, g, s), AccumState(_inc(state.count), s)

    return optax.GradientTransformation(init, update)


def adagrad_da(lr: Any, initial: float, l1: float, l2: float):
    """a <- a + g; s <- s + g²; theta = -lr·sign(a)·max(|a| - l1·t, 0) / (l2·t·lr + sqrt(s))."""

    def init(params: Tree) -> AccumState:
        return AccumState(jnp.zeros([], jnp.int32), _full(params, initial), _zeros(params))

    def update(g: Tree, state: AccumState, params: Tree = None):
        t = _inc(state.count)
        s = jax.tree.map(lambda s, g: s + g * g, state.acc, g)
        a = jax.tree.map(jnp.add, state.extra, g)

        def one(p: Any, a: Any, s: Any) -> Any:
            new = (
                -lr
                * jnp.sign(a)
                * jnp.maximum(jnp.abs(a) - l1 * t, 0)
                / (l2 * t * lr + jnp.sqrt(s))
            )
            return new - p

        return jax.tree.map(one, params, a, s), AccumState(t, s, a)

    return optax.GradientTransformation(init, update)


def ftrl(lr: Any, lr_power: float, initial: float, l1: float, l2: float):
    """FTRL-Proximal (McMahan et al. 2013) in TensorFlow's form, with its `lr_power`."""

    def init(params: Tree) -> AccumState:
        return AccumState(jnp.zeros([], jnp.int32), _full(params, initial), _zeros(params))

    def update(g: Tree, state: AccumState, params: Tree = None):
        n_new = jax.tree.map(lambda n, g: n + g * g, state.acc, g)

        def z_of(z: Any, g: Any, n: Any, n2: Any, p: Any) -> Any:
            sigma = (n2 ** (-lr_power) - n ** (-lr_power)) / lr
            return z + g - sigma * p

        z = jax.tree.map(z_of, state.extra, g, state.acc, n_new, params)

        def theta(z: Any, n: Any, p: Any) -> Any:
            new = (jnp.sign(z) * l1 - z) / (n ** (-lr_power) / lr + 2 * l2)
            return jnp.where(jnp.abs(z) > l1, new, 0.0) - p

        out = jax.tree.map(theta, z, n_new, params)
        return out, AccumState(_inc(state.count), n_new, z)

    return optax.GradientTransformation(init, update)
