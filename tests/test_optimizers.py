"""Every optimizer against an independent float64 NumPy reference, written from the formulas.

The references below are transcribed from the update formulas in
`compiler/registry/optimizers.py`, which follow the pseudo-code of PyTorch's `torch.optim`
documentation (SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW, Adamax, NAdam, RAdam; for
amsgrad its code in torch/optim/adam.py, which differs from its pseudo-code),
TensorFlow's (FTRL, proximal SGD, proximal Adagrad, Adagrad-DA) and Optax's (Lion, LAMB, LARS).
They do not call Optax. The problem is a small least-squares fit plus a separable quadratic,
with parameters in a dict of two arrays so that tree handling (and per-tensor norms) is
exercised. Steps are counted from t = 1 for the first update.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np
import optax  # noqa: E402
import pytest
from dnn.compiler.diagnostics import SpecError  # noqa: E402
from dnn.compiler.driver import optimizer  # noqa: E402
from dnn.compiler.registry.core import REQUIRED  # noqa: E402
from dnn.compiler.registry.optimizers import OPTIMIZERS  # noqa: E402

STEPS = 20
RTOL, ATOL = 1e-10, 1e-12


pytestmark = pytest.mark.usefixtures("x64")  # float64 throughout (conftest)


# ----------------------------------------------------------------------------- the problem

_rng = np.random.default_rng(0)
A = _rng.normal(size=(8, 3))
B = _rng.normal(size=8)
C = _rng.uniform(0.5, 2.0, size=(2, 2))  # curvature of the separable quadratic in "u"
D = _rng.normal(size=(2, 2))  # its minimizer
THETA0 = {"w": _rng.normal(size=3), "u": _rng.normal(size=(2, 2))}

Tree = dict[str, np.ndarray]


def loss(theta: Tree) -> float:
    """f = 0.5 ||A w - b||^2 / 8 + 0.5 sum(c (u - d)^2)."""
    r = A @ theta["w"] - B
    return float(0.5 * r @ r / 8 + 0.5 * np.sum(C * (theta["u"] - D) ** 2))


def grad(theta: Tree) -> Tree:
    """The gradient of `loss`, in NumPy (used by both the reference and the jax side)."""
    return {"w": A.T @ (A @ theta["w"] - B) / 8, "u": C * (theta["u"] - D)}


def _np(tree: Any) -> Tree:
    return {k: np.asarray(v, dtype=np.float64) for k, v in tree.items()}


# ----------------------------------------------------------------------------- references
#
# A reference is `step(theta, g, s, t, lr, **hyper) -> new theta` for ONE tensor; `s` is that
# tensor's optimizer state (a dict, empty before the first step), `t` counts from 1.


def _norm(x: np.ndarray) -> float:
    return float(np.sqrt(np.sum(x * x)))


def sgd(theta, g, s, t, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    # torch.optim.SGD docs: g += wd*theta; b_1 = g, b_t = mu b + (1 - tau) g;
    # g = g + mu b (nesterov) or g = b; theta -= lr g.
    g = g + weight_decay * theta
    if momentum != 0:
        s["b"] = g if t == 1 else momentum * s["b"] + (1 - dampening) * g
        g = g + momentum * s["b"] if nesterov else s["b"]
    return theta - lr * g


def proximal_sgd(theta, g, s, t, lr, l1=0.0, l2=0.0):
    # tf ProximalGradientDescent (FOBOS): gradient step, then the prox of l1 |x| + l2/2 x^2.
    v = theta - lr * g
    return np.sign(v) * np.maximum(np.abs(v) - lr * l1, 0.0) / (1 + lr * l2)


def adagrad(
    theta, g, s, t, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10
):
    # torch.optim.Adagrad docs: lr_t = lr / (1 + (t-1) eta); s += g^2 (s_0 = init value).
    lr_t = lr / (1 + (t - 1) * lr_decay)
    g = g + weight_decay * theta
    s["s"] = s.get("s", np.full_like(theta, initial_accumulator_value)) + g * g
    return theta - lr_t * g / (np.sqrt(s["s"]) + eps)


def adagrad_da(theta, g, s, t, lr, initial_gradient_squared_accumulator_value=0.1, l1=0.0, l2=0.0):
    # tf AdagradDA: a = sum of gradients, s = init + sum of squares; closed-form theta.
    s["a"] = s.get("a", np.zeros_like(theta)) + g
    s["s"] = s.get("s", np.full_like(theta, initial_gradient_squared_accumulator_value)) + g * g
    a = s["a"]
    return -lr * np.sign(a) * np.maximum(np.abs(a) - l1 * t, 0.0) / (l2 * t * lr + np.sqrt(s["s"]))


def proximal_adagrad(theta, g, s, t, lr, initial_accumulator_value=0.1, l1=0.0, l2=0.0):
    # tf ProximalAdagrad: Adagrad step with lr_t = lr / sqrt(s), then the prox step with lr_t.
    s["s"] = s.get("s", np.full_like(theta, initial_accumulator_value)) + g * g
    lr_t = lr / np.sqrt(s["s"])
    v = theta - lr_t * g
    return np.sign(v) * np.maximum(np.abs(v) - lr_t * l1, 0.0) / (1 + lr_t * l2)


def ftrl(theta, g, s, t, lr, lr_power=-0.5, initial_accumulator_value=0.1, l1=0.0, l2=0.0):
    # tf.keras Ftrl (McMahan et al. 2013): n' = n + g^2; sigma = (n'^-p - n^-p) / lr;
    # z += g - sigma theta; theta = (sign(z) l1 - z) / (n'^-p / lr + 2 l2) if |z| > l1 else 0.
    n = s.get("n", np.full_like(theta, initial_accumulator_value))
    n_new = n + g * g
    sigma = (n_new ** (-lr_power) - n ** (-lr_power)) / lr
    s["z"] = s.get("z", np.zeros_like(theta)) + g - sigma * theta
    s["n"] = n_new
    z = s["z"]
    quadratic = n_new ** (-lr_power) / lr + 2 * l2
    return np.where(np.abs(z) > l1, (np.sign(z) * l1 - z) / quadratic, 0.0)


def rmsprop(
    theta, g, s, t, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False
):
    # torch.optim.RMSprop docs.
    g = g + weight_decay * theta
    s["v"] = alpha * s.get("v", np.zeros_like(theta)) + (1 - alpha) * g * g
    v = s["v"]
    if centered:
        s["gbar"] = alpha * s.get("gbar", np.zeros_like(theta)) + (1 - alpha) * g
        v = v - s["gbar"] ** 2
    if momentum > 0:
        s["b"] = momentum * s.get("b", np.zeros_like(theta)) + g / (np.sqrt(v) + eps)
        return theta - lr * s["b"]
    return theta - lr * g / (np.sqrt(v) + eps)


def adadelta(theta, g, s, t, lr, rho=0.9, eps=1e-6, weight_decay=0.0):
    # torch.optim.Adadelta docs.
    g = g + weight_decay * theta
    s["v"] = rho * s.get("v", np.zeros_like(theta)) + (1 - rho) * g * g
    u = s.get("u", np.zeros_like(theta))
    dx = np.sqrt(u + eps) / np.sqrt(s["v"] + eps) * g
    s["u"] = rho * u + (1 - rho) * dx * dx
    return theta - lr * dx


def adam(theta, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False):
    # torch.optim.Adam docs: coupled L2. amsgrad as the implementation computes it, not as its
    # pseudo-code says: torch/optim/adam.py, _single_tensor_adam, keeps the running max of the
    # RAW second moment, `torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])`,
    # and corrects it after: `denom = (max_exp_avg_sqs[i].sqrt() / bias_correction2_sqrt)
    # .add_(eps)`, `param.addcdiv_(exp_avg, denom, value=-step_size)`, step_size = lr / bc1.
    g = g + weight_decay * theta
    s["m"] = b1 * s.get("m", np.zeros_like(theta)) + (1 - b1) * g
    s["v"] = b2 * s.get("v", np.zeros_like(theta)) + (1 - b2) * g * g
    v = s["v"]
    if amsgrad:
        s["vmax"] = np.maximum(s.get("vmax", np.zeros_like(theta)), s["v"])
        v = s["vmax"]
    denom = np.sqrt(v) / np.sqrt(1 - b2**t) + eps
    return theta - lr / (1 - b1**t) * s["m"] / denom


def adam_documented_amsgrad(theta, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    # torch.optim.Adam's documented pseudo-code (and optax.scale_by_amsgrad): the running max
    # of the bias-corrected vhat. Kept to show that dnn does NOT follow it (PyTorch's code wins).
    s["m"] = b1 * s.get("m", np.zeros_like(theta)) + (1 - b1) * g
    s["v"] = b2 * s.get("v", np.zeros_like(theta)) + (1 - b2) * g * g
    s["vmax"] = np.maximum(s.get("vmax", np.zeros_like(theta)), s["v"] / (1 - b2**t))
    return theta - lr * s["m"] / (1 - b1**t) / (np.sqrt(s["vmax"]) + eps)


def adamw(theta, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, amsgrad=False):
    # torch.optim.AdamW docs: decoupled decay theta -= lr wd theta first, then the Adam step.
    theta = theta - lr * weight_decay * theta
    return adam(theta, g, s, t, lr, b1, b2, eps, 0.0, amsgrad)


def adamax(theta, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    # torch.optim.Adamax docs: u = max(b2 u, |g| + eps); theta -= lr m / ((1 - b1^t) u).
    g = g + weight_decay * theta
    s["m"] = b1 * s.get("m", np.zeros_like(theta)) + (1 - b1) * g
    s["u"] = np.maximum(b2 * s.get("u", np.zeros_like(theta)), np.abs(g) + eps)
    return theta - lr * s["m"] / ((1 - b1**t) * s["u"])


def nadam(theta, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, momentum_decay=4e-3):
    # torch.optim.NAdam docs: mu_t = b1 (1 - 0.5 * 0.96^(t psi)), products of mu_i from i = 1.
    g = g + weight_decay * theta
    mu_t = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    s["prod"] = s.get("prod", 1.0) * mu_t  # prod_{i<=t} mu_i
    s["m"] = b1 * s.get("m", np.zeros_like(theta)) + (1 - b1) * g
    s["v"] = b2 * s.get("v", np.zeros_like(theta)) + (1 - b2) * g * g
    mhat = mu_next * s["m"] / (1 - s["prod"] * mu_next) + (1 - mu_t) * g / (1 - s["prod"])
    vhat = s["v"] / (1 - b2**t)
    return theta - lr * mhat / (np.sqrt(vhat) + eps)


def radam_rho(t: int, b2: float) -> float:
    rho_inf = 2 / (1 - b2) - 1
    return rho_inf - 2 * t * b2**t / (1 - b2**t)


def radam(theta, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    # torch.optim.RAdam docs (2.x): rectified adaptive step when rho_t > 5, else plain momentum.
    g = g + weight_decay * theta
    s["m"] = b1 * s.get("m", np.zeros_like(theta)) + (1 - b1) * g
    s["v"] = b2 * s.get("v", np.zeros_like(theta)) + (1 - b2) * g * g
    mhat = s["m"] / (1 - b1**t)
    rho_inf, rho_t = 2 / (1 - b2) - 1, radam_rho(t, b2)
    if rho_t > 5:
        ell = np.sqrt(1 - b2**t) / (np.sqrt(s["v"]) + eps)
        r = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        return theta - lr * mhat * r * ell
    return theta - lr * mhat


def lion(theta, g, s, t, lr, b1=0.9, b2=0.99, weight_decay=0.0):
    # Chen et al. 2023 / optax.lion: sign of the interpolation, decoupled decay, then m update.
    m = s.get("m", np.zeros_like(theta))
    c = b1 * m + (1 - b1) * g
    s["m"] = b2 * m + (1 - b2) * g
    return theta - lr * (np.sign(c) + weight_decay * theta)


def lamb(theta, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.0):
    # You et al. 2020 / optax.lamb: Adam direction + decoupled decay, per-tensor trust ratio.
    s["m"] = b1 * s.get("m", np.zeros_like(theta)) + (1 - b1) * g
    s["v"] = b2 * s.get("v", np.zeros_like(theta)) + (1 - b2) * g * g
    mhat = s["m"] / (1 - b1**t)
    vhat = s["v"] / (1 - b2**t)
    r = mhat / (np.sqrt(vhat) + eps) + weight_decay * theta
    pn, rn = _norm(theta), _norm(r)
    ratio = pn / rn if pn > 0 and rn > 0 else 1.0
    return theta - lr * ratio * r


def lars(
    theta,
    g,
    s,
    t,
    lr,
    momentum=0.9,
    nesterov=False,
    weight_decay=0.0,
    trust_coefficient=1e-3,
    eps=0.0,
):
    # You et al. 2017 / optax.lars: u = g + wd theta scaled per tensor by
    # tc ||theta|| / (||u|| + eps) (the whole factor is 1 where a norm is 0, as in optax's
    # scale_by_trust_ratio); heavy-ball momentum b_0 = 0; the rate multiplies the result.
    u = g + weight_decay * theta
    pn, un = _norm(theta), _norm(u)
    u = (trust_coefficient * pn / (un + eps) if pn > 0 and un > 0 else 1.0) * u
    s["b"] = momentum * s.get("b", np.zeros_like(theta)) + u
    u = u + momentum * s["b"] if nesterov else s["b"]
    return theta - lr * u


Step = Callable[..., np.ndarray]

# Every registry word: its reference and its default lr (None where lr is required).
REFS: dict[str, tuple[Step, float | None]] = {
    "sgd": (sgd, 1e-3),
    "momentum": (partial(sgd, momentum=0.9), 1e-3),
    "nesterov": (partial(sgd, momentum=0.9, nesterov=True), 1e-3),
    "proximal_sgd": (proximal_sgd, None),
    "adagrad": (adagrad, 0.01),
    "adagrad_da": (adagrad_da, None),
    "proximal_adagrad": (proximal_adagrad, None),
    "ftrl": (ftrl, 1e-3),
    "rmsprop": (rmsprop, 0.01),
    "adadelta": (adadelta, 1.0),
    "adam": (adam, 1e-3),
    "amsgrad": (partial(adam, amsgrad=True), 1e-3),
    "adamw": (adamw, 1e-3),
    "adamax": (adamax, 2e-3),
    "nadam": (nadam, 2e-3),
    "radam": (radam, 1e-3),
    "lion": (lion, 1e-4),
    "lamb": (lamb, 1e-3),
    "lars": (lars, None),
}

NAMES = [e.name for e in OPTIMIZERS]


# ----------------------------------------------------------------------------- runners

Traj = list[Tree]


def run_ref(
    step: Step,
    lr: float,
    hyper: dict[str, Any] | None = None,
    lrs: list[float] | None = None,
    theta0: Tree | None = None,
    steps: int = STEPS,
) -> Traj:
    """The reference trajectory theta_1 .. theta_steps (lrs: the rate at each step)."""
    theta = {k: v.copy() for k, v in (theta0 or THETA0).items()}
    states: dict[str, dict[str, Any]] = {k: {} for k in theta}
    out = []
    for t in range(1, steps + 1):
        g = grad(theta)
        rate = lr if lrs is None else lrs[t - 1]
        theta = {k: step(theta[k], g[k], states[k], t, rate, **(hyper or {})) for k in theta}
        out.append({k: v.copy() for k, v in theta.items()})
    return out


def run_ours(
    spec: str, lrs: list[float] | None = None, theta0: Tree | None = None, steps: int = STEPS
) -> Traj:
    """Our trajectory: `optimizer(spec)` jitted, the rate set in the injected state if `lrs`."""
    tx = optimizer(spec)
    params = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in (theta0 or THETA0).items()}
    state = tx.init(params)
    update = jax.jit(tx.update)
    out = []
    for t in range(steps):
        if lrs is not None:
            state.hyperparams["learning_rate"] = jnp.asarray(lrs[t], dtype=jnp.float64)
        g = {k: jnp.asarray(v) for k, v in grad(_np(params)).items()}
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append(_np(params))
    return out


def assert_same(ours: Traj, ref: Traj, label: str) -> None:
    """Step by step, so that a failure names the first step where the two diverge."""
    assert len(ours) == len(ref)
    for t, (o, r) in enumerate(zip(ours, ref, strict=True), start=1):
        for k in r:
            assert o[k].dtype == np.float64, (label, k, o[k].dtype)
            try:
                np.testing.assert_allclose(o[k], r[k], rtol=RTOL, atol=ATOL)
            except AssertionError as e:
                raise AssertionError(
                    f"{label}: first diverges at step {t}, leaf {k!r}\n"
                    f"expected {r[k].tolist()}\ngot      {o[k].tolist()}\n{e}"
                ) from None


def check(spec: str, step: Step, lr: float, **hyper: Any) -> Traj:
    ref = run_ref(step, lr, hyper)
    assert_same(run_ours(spec), ref, spec)
    return ref


# ----------------------------------------------------------------------------- non-default configs

CASES: list[tuple[str, Step, float, dict[str, Any]]] = [
    # SGD family
    ("sgd(lr = 0.1)", sgd, 0.1, {}),
    (
        "sgd(lr = 0.05, momentum = 0.9, dampening = 0.5)",
        sgd,
        0.05,
        dict(momentum=0.9, dampening=0.5),
    ),
    (
        "sgd(lr = 0.05, momentum = 0.8, nesterov = true)",
        sgd,
        0.05,
        dict(momentum=0.8, nesterov=True),
    ),
    ("sgd(lr = 0.1, weight_decay = 0.3)", sgd, 0.1, dict(weight_decay=0.3)),
    (
        "sgd(lr = 0.05, momentum = 0.7, weight_decay = 0.2, nesterov = true)",
        sgd,
        0.05,
        dict(momentum=0.7, weight_decay=0.2, nesterov=True),
    ),
    ("momentum(lr = 0.05)", sgd, 0.05, dict(momentum=0.9)),
    (
        "momentum(lr = 0.05, momentum = 0.5, dampening = 0.1)",
        sgd,
        0.05,
        dict(momentum=0.5, dampening=0.1),
    ),
    ("nesterov(lr = 0.05)", sgd, 0.05, dict(momentum=0.9, nesterov=True)),
    ("nag(lr = 0.05, momentum = 0.6)", sgd, 0.05, dict(momentum=0.6, nesterov=True)),
    # Adagrad family
    (
        "adagrad(lr = 0.2, lr_decay = 0.1, initial_accumulator_value = 0.5, weight_decay = 0.05)",
        adagrad,
        0.2,
        dict(lr_decay=0.1, initial_accumulator_value=0.5, weight_decay=0.05),
    ),
    ("adagrad(lr = 0.1, eps = 0.01)", adagrad, 0.1, dict(eps=0.01)),
    # RMSprop, Adadelta
    ("rmsprop(lr = 0.01, alpha = 0.9)", rmsprop, 0.01, dict(alpha=0.9)),
    ("rmsprop(lr = 0.01, centered = true)", rmsprop, 0.01, dict(centered=True)),
    (
        "rmsprop(lr = 0.005, momentum = 0.8, weight_decay = 0.1, eps = 1e-4)",
        rmsprop,
        0.005,
        dict(momentum=0.8, weight_decay=0.1, eps=1e-4),
    ),
    (
        "rmsprop(lr = 0.005, momentum = 0.5, centered = true, alpha = 0.95)",
        rmsprop,
        0.005,
        dict(momentum=0.5, centered=True, alpha=0.95),
    ),
    ("adadelta(lr = 0.5, rho = 0.8, eps = 1e-3)", adadelta, 0.5, dict(rho=0.8, eps=1e-3)),
    ("adadelta(weight_decay = 0.1)", adadelta, 1.0, dict(weight_decay=0.1)),
    # Adam family
    (
        "adam(lr = 0.05, b1 = 0.8, b2 = 0.99, eps = 1e-6)",
        adam,
        0.05,
        dict(b1=0.8, b2=0.99, eps=1e-6),
    ),
    ("adam(lr = 0.05, amsgrad = true, b2 = 0.9)", adam, 0.05, dict(amsgrad=True, b2=0.9)),
    ("amsgrad(lr = 0.05, b1 = 0.5, b2 = 0.95)", adam, 0.05, dict(amsgrad=True, b1=0.5, b2=0.95)),
    (
        "adamw(lr = 0.05, weight_decay = 0.1, amsgrad = true)",
        adamw,
        0.05,
        dict(weight_decay=0.1, amsgrad=True),
    ),
    (
        "adamax(lr = 0.05, b1 = 0.8, b2 = 0.95, weight_decay = 0.1)",
        adamax,
        0.05,
        dict(b1=0.8, b2=0.95, weight_decay=0.1),
    ),
    (
        "nadam(lr = 0.05, momentum_decay = 0.04, weight_decay = 0.1, b2 = 0.99)",
        nadam,
        0.05,
        dict(momentum_decay=0.04, weight_decay=0.1, b2=0.99),
    ),
    # b2 = 0.999: rho_t <= 5 for the first steps, > 5 later (see test_radam_covers_both_branches)
    ("radam(lr = 0.05, weight_decay = 0.1)", radam, 0.05, dict(weight_decay=0.1)),
    (
        "radam(lr = 0.05, b1 = 0.8, b2 = 0.95, eps = 1e-4)",
        radam,
        0.05,
        dict(b1=0.8, b2=0.95, eps=1e-4),
    ),
    # sign and trust-ratio methods
    (
        "lion(lr = 0.01, b1 = 0.8, b2 = 0.9, weight_decay = 0.5)",
        lion,
        0.01,
        dict(b1=0.8, b2=0.9, weight_decay=0.5),
    ),
    (
        "lamb(lr = 0.05, weight_decay = 0.1, eps = 1e-4)",
        lamb,
        0.05,
        dict(weight_decay=0.1, eps=1e-4),
    ),
    ("lars(lr = 5.0)", lars, 5.0, {}),
    (
        "lars(lr = 5.0, momentum = 0.8, nesterov = true, weight_decay = 0.1, trust_coefficient = 0.02, eps = 0.1)",
        lars,
        5.0,
        dict(momentum=0.8, nesterov=True, weight_decay=0.1, trust_coefficient=0.02, eps=0.1),
    ),
    # TensorFlow's regularized methods (l1 large enough to zero some coordinates)
    ("ftrl(lr = 0.1, l1 = 0.05, l2 = 0.2)", ftrl, 0.1, dict(l1=0.05, l2=0.2)),
    (
        "ftrl(lr = 0.1, lr_power = -0.7, initial_accumulator_value = 0.5, l1 = 0.01)",
        ftrl,
        0.1,
        dict(lr_power=-0.7, initial_accumulator_value=0.5, l1=0.01),
    ),
    ("ftrl(lr = 0.1, lr_power = 0.0)", ftrl, 0.1, dict(lr_power=0.0)),
    ("proximal_sgd(lr = 0.1, l1 = 0.2, l2 = 0.5)", proximal_sgd, 0.1, dict(l1=0.2, l2=0.5)),
    ("proximal_gradient_descent(lr = 0.1, l1 = 0.05)", proximal_sgd, 0.1, dict(l1=0.05)),
    (
        "proximal_adagrad(lr = 0.3, initial_accumulator_value = 0.2, l1 = 0.05, l2 = 0.3)",
        proximal_adagrad,
        0.3,
        dict(initial_accumulator_value=0.2, l1=0.05, l2=0.3),
    ),
    (
        "adagrad_da(lr = 0.3, initial_gradient_squared_accumulator_value = 0.5, l1 = 0.02, l2 = 0.1)",
        adagrad_da,
        0.3,
        dict(initial_gradient_squared_accumulator_value=0.5, l1=0.02, l2=0.1),
    ),
]


@pytest.mark.parametrize(("spec", "step", "lr", "hyper"), CASES, ids=[c[0] for c in CASES])
def test_matches_reference(spec: str, step: Step, lr: float, hyper: dict[str, Any]) -> None:
    check(spec, step, lr, **hyper)


def test_cases_cover_every_optimizer() -> None:
    assert set(NAMES) <= {spec.split("(")[0] for spec, *_ in CASES}


@pytest.mark.parametrize("name", NAMES)
def test_defaults_match_reference(name: str) -> None:
    # The bare word (lr given only where it is required) checks every documented default.
    step, default_lr = REFS[name]
    spec, lr = (name, default_lr) if default_lr is not None else (f"{name}(lr = 0.1)", 0.1)
    check(spec, step, lr)


def test_registry_and_references_agree_on_names_and_default_lr() -> None:
    assert set(REFS) == set(NAMES)
    for e in OPTIMIZERS:
        lr = next(a for a in e.args if a.name == "lr")
        want = REFS[e.name][1]
        assert lr.default is REQUIRED if want is None else lr.default == want, e.name


# ----------------------------------------------------------------------------- special behaviours


def test_sgd_dampening_skips_first_step() -> None:
    # b_1 = g_1, not (1 - dampening) g_1: after one step with momentum the update is lr * g.
    ours = run_ours("sgd(lr = 0.1, momentum = 0.9, dampening = 0.5)", steps=1)
    g = grad(THETA0)
    for k in THETA0:
        np.testing.assert_allclose(ours[0][k], THETA0[k] - 0.1 * g[k], rtol=RTOL, atol=ATOL)


def test_adam_weight_decay_is_coupled_and_adamw_decoupled() -> None:
    coupled = check("adam(lr = 0.05, weight_decay = 0.1)", adam, 0.05, weight_decay=0.1)
    decoupled = check("adamw(lr = 0.05, weight_decay = 0.1)", adamw, 0.05, weight_decay=0.1)
    plain = run_ref(adam, 0.05)
    for k in THETA0:
        assert np.max(np.abs(coupled[-1][k] - decoupled[-1][k])) > 1e-3
        assert np.max(np.abs(coupled[-1][k] - plain[-1][k])) > 1e-4
        assert np.max(np.abs(decoupled[-1][k] - plain[-1][k])) > 1e-4


def test_radam_covers_both_branches() -> None:
    rhos = [radam_rho(t, 0.999) for t in range(1, STEPS + 1)]
    assert any(r <= 5 for r in rhos) and any(r > 5 for r in rhos)
    ref = check("radam(lr = 0.05)", radam, 0.05)
    # in the early, unrectified steps the update is lr * mhat (no adaptive denominator)
    g = grad(THETA0)
    for k in THETA0:
        np.testing.assert_allclose(ref[0][k], THETA0[k] - 0.05 * g[k], rtol=1e-14)


def test_amsgrad_differs_from_adam() -> None:
    a = run_ref(adam, 0.05, dict(b2=0.9))
    b = check("adam(lr = 0.05, b2 = 0.9, amsgrad = true)", adam, 0.05, amsgrad=True, b2=0.9)
    assert any(np.max(np.abs(a[-1][k] - b[-1][k])) > 1e-6 for k in THETA0)


@pytest.mark.parametrize(
    "spec",
    [
        "adam(lr = 0.05, amsgrad = true)",
        "amsgrad(lr = 0.05)",
        "adamw(lr = 0.05, weight_decay = 0, amsgrad = true)",
    ],
)
def test_amsgrad_is_pytorchs_implementation_not_its_pseudo_code(spec: str) -> None:
    # Issue 14, class 8 (optimizer semantics): PyTorch maximizes the raw v and corrects after;
    # its docs (and Optax) maximize the corrected vhat. The two part by far more than RTOL.
    ours = run_ours(spec)
    assert_same(ours, run_ref(adam, 0.05, dict(amsgrad=True)), spec)
    documented = run_ref(adam_documented_amsgrad, 0.05)
    assert max(np.max(np.abs(ours[-1][k] - documented[-1][k])) for k in THETA0) > 1e-3


def test_trust_ratio_is_one_for_a_zero_tensor() -> None:
    # ||theta|| = 0 at the start for "u": the ratio is 1 there (per tensor, "w" is unaffected).
    theta0 = {"w": THETA0["w"], "u": np.zeros((2, 2))}
    for spec, step, lr, hyper in [
        ("lamb(lr = 0.05, weight_decay = 0.1)", lamb, 0.05, dict(weight_decay=0.1)),
        ("lars(lr = 0.5, weight_decay = 0.1)", lars, 0.5, dict(weight_decay=0.1)),
    ]:
        ref = run_ref(step, lr, hyper, theta0=theta0)
        assert_same(run_ours(spec, theta0=theta0), ref, spec + " from u = 0")


def test_l1_gives_exact_zeros() -> None:
    for spec, step, lr, hyper in [
        ("ftrl(lr = 0.1, l1 = 0.3)", ftrl, 0.1, dict(l1=0.3)),
        ("proximal_sgd(lr = 0.1, l1 = 1.0)", proximal_sgd, 0.1, dict(l1=1.0)),
        ("proximal_adagrad(lr = 0.3, l1 = 0.5)", proximal_adagrad, 0.3, dict(l1=0.5)),
        ("adagrad_da(lr = 0.3, l1 = 0.3)", adagrad_da, 0.3, dict(l1=0.3)),
    ]:
        ref = check(spec, step, lr, **hyper)
        ours = run_ours(spec)
        zeros = [np.sum(r[k] == 0) for r in ref for k in r]
        assert sum(zeros) > 0, spec  # the configuration does reach the sparse branch
        for o, r in zip(ours, ref, strict=True):
            for k in r:
                np.testing.assert_array_equal(o[k] == 0, r[k] == 0, err_msg=spec)


def test_aliases_are_the_same_optimizer() -> None:
    for a, b in [
        ("nag(lr = 0.05)", "nesterov(lr = 0.05)"),
        ("proximal_gradient_descent(lr = 0.1, l2 = 0.1)", "proximal_sgd(lr = 0.1, l2 = 0.1)"),
        ("amsgrad(lr = 0.05)", "adam(lr = 0.05, amsgrad = true)"),
        ("momentum(lr = 0.05)", "sgd(lr = 0.05, momentum = 0.9)"),
    ]:
        assert_same(run_ours(a), run_ours(b), f"{a} vs {b}")


# ----------------------------------------------------------------------------- every optimizer

# A rate at which each optimizer makes clear progress on the problem in 20 steps.
GOOD_LR = {
    "sgd": 0.1,
    "momentum": 0.05,
    "nesterov": 0.05,
    "proximal_sgd": 0.1,
    "adagrad": 0.2,
    "adagrad_da": 0.3,
    "proximal_adagrad": 0.3,
    "ftrl": 0.3,
    "rmsprop": 0.01,
    "adadelta": 1.0,
    "adam": 0.05,
    "amsgrad": 0.05,
    "adamw": 0.05,
    "adamax": 0.05,
    "nadam": 0.05,
    "radam": 0.05,
    "lion": 0.02,
    "lamb": 0.05,
    "lars": 5.0,
}

# FTRL and Adagrad-DA compute theta in closed form with the rate in a denominator, so a zero
# rate does not mean "no step" for them (sigma = .../lr); their rate changes are checked
# against the reference in test_rate_can_change_between_steps with non-zero rates.
CLOSED_FORM = {"ftrl", "adagrad_da"}


@pytest.mark.parametrize("name", NAMES)
def test_lowers_the_loss(name: str) -> None:
    lr = GOOD_LR[name]
    ours = run_ours(f"{name}(lr = {lr})")
    before, after = loss(THETA0), loss(ours[-1])
    assert np.isfinite(after) and after < before, (name, before, after)


@pytest.mark.parametrize("name", NAMES)
def test_rate_can_change_between_steps(name: str) -> None:
    # The injected rate, set in the state before each step, is the rate of that step.
    lr = GOOD_LR[name]
    low = 0.25 if name in CLOSED_FORM else 0.0
    factors = [1.0] * 6 + [low] * 4 + [0.5] * 5 + [1.5] * 5
    lrs = [lr * f for f in factors]
    step, _ = REFS[name]
    assert_same(run_ours(f"{name}(lr = {lr})", lrs=lrs), run_ref(step, lr, lrs=lrs), name)


# Closed-form updates (CLOSED_FORM) divide by the rate, so a zero rate is undefined for them;
# build_optimizer refuses schedules reaching 0 for those (tests/test_schedules.py).
@pytest.mark.parametrize("name", [n for n in NAMES if n not in CLOSED_FORM])
def test_zero_rate_freezes_params(name: str) -> None:
    lr = GOOD_LR[name]
    lrs = [lr] * 5 + [0.0] * 4 + [lr] * 3
    ours = run_ours(f"{name}(lr = {lr})", lrs=lrs, steps=len(lrs))
    for t in range(5, 9):
        for k in THETA0:
            np.testing.assert_array_equal(ours[t][k], ours[4][k], err_msg=f"{name} step {t + 1}")
    # and the params move again once the rate is back
    assert any(not np.array_equal(ours[-1][k], ours[4][k]) for k in THETA0)


def test_the_rate_is_injected() -> None:
    tx = optimizer("adam(lr = 0.01, amsgrad = true)")
    state = tx.init({k: jnp.asarray(v) for k, v in THETA0.items()})
    assert float(state.hyperparams["learning_rate"]) == 0.01


# ----------------------------------------------------------------------------- diagnostics


def _diag(text: str) -> Any:
    with pytest.raises(SpecError) as info:
        optimizer(text)
    assert len(info.value.diagnostics) == 1, info.value
    return info.value.diagnostics[0]


def test_negative_rate_is_an_error() -> None:
    d = _diag("adam(lr = -1)")
    assert d.code == "E0306"
    assert "`lr`" in d.message and "> 0" in d.message and "`-1`" in d.message
    assert (d.span.line, d.span.col) == (1, 6)


def test_beta_of_one_is_an_error() -> None:
    d = _diag("adam(b1 = 1.0)")
    assert d.code == "E0306"
    assert "`b1`" in d.message and "[0, 1)" in d.message
    assert (d.span.line, d.span.col) == (1, 6)


def test_misspelled_optimizer_has_a_did_you_mean() -> None:
    d = _diag("adma(lr = 1e-3)")
    assert d.code == "E0205"
    assert "unknown optimizer `adma`" in d.message
    assert d.hint is not None and d.hint.startswith("did you mean") and "`adam`" in d.hint
    assert (d.span.line, d.span.col) == (1, 1)


def test_unknown_argument_lists_the_known_ones() -> None:
    d = _diag("adam(learning_rate = 1e-3)")
    assert d.code == "E0301"
    assert "unknown argument `learning_rate` for `adam`" in d.message
    assert d.hint is not None and "`lr`" in d.hint and "`amsgrad`" in d.hint


def test_nesterov_without_momentum_is_an_error() -> None:
    d = _diag("sgd(lr = 0.1, nesterov = true)")
    assert d.code == "E0306" and "Nesterov" in d.message
    assert d.hint is not None and "momentum" in d.hint


def test_required_rate_is_an_error() -> None:
    d = _diag("proximal_sgd(l1 = 0.1)")
    assert d.code == "E0303" and "`lr`" in d.message
