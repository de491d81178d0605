"""Optimizers: the update rule of `train { optimizer = ... }`.

Argument names, meanings and defaults follow PyTorch's `torch.optim` where PyTorch has the
optimizer (Adam's `betas` pair is spelled as two arguments, `b1` and `b2`), TensorFlow/Keras
otherwise (FTRL, the proximal methods, Adagrad-DA). Each formula is the update the lowering
must build: g is the gradient of the loss, theta a parameter, t the step counter (from 1); all
operations are element-wise unless written as a norm ||.||.

`info["weight_decay"]` tells the lowering how `weight_decay` acts: `coupled` adds
weight_decay * theta to the gradient before the update rule (an L2 penalty, as in
torch.optim.Adam); `decoupled` shrinks the parameter separately (as in torch.optim.AdamW).
`info["ref"]` names the reference implementation whose defaults and formula are copied.
`slots` counts the parameter-sized arrays the optimizer's state keeps (m and v for Adam: 2;
plain SGD: 0), which the memory estimate reads (compiler/memory.py); tests/test_memory.py
compares it with the state the lowering allocates.
"""

from __future__ import annotations

from ..diagnostics import InternalError
from .core import REQUIRED, Arg, Args, Entry, Problem, Slots, arg, registry, replace
from .types import Bool, FloatT, NonNegFloat, PosFloat, Prob, Rate

OPTIMIZERS = registry(
    "optimizer",
    "optimizers",
    "Update rules for the parameters; the learning rate `lr` may be driven by a schedule.",
    implemented_in="dnn.compiler.lower_optax",
)


def _lr(default: object = REQUIRED) -> Arg:
    return arg("lr", PosFloat, default, doc="learning rate")


def _eps(default: float) -> Arg:
    return arg("eps", PosFloat, default, doc="term added to the denominator for stability")


def _weight_decay(default: float = 0.0, how: str = "coupled") -> Arg:
    what = "L2 penalty added to the gradient" if how == "coupled" else "decoupled weight decay"
    return arg("weight_decay", NonNegFloat, default, doc=what)


_B1 = arg("b1", Rate, 0.9, doc="decay of the first-moment (mean) estimate, PyTorch's betas[0]")
_B2 = arg("b2", Rate, 0.999, doc="decay of the second-moment estimate, PyTorch's betas[1]")
_L1 = arg("l1", NonNegFloat, 0.0, doc="L1 regularization strength")
_L2 = arg("l2", NonNegFloat, 0.0, doc="L2 regularization strength")


def _with_defaults(entry: Entry, **defaults: object) -> tuple[Arg, ...]:
    """The arguments of `entry` with some defaults changed (for derived entries)."""
    missing = set(defaults) - {a.name for a in entry.args}
    if missing:
        raise InternalError(f"optimizer `{entry.name}` has no argument {sorted(missing)}")
    return tuple(replace(a, default=defaults.get(a.name, a.default)) for a in entry.args)


# ----------------------------------------------------------------------------- SGD family


def _check_nesterov(a: Args) -> None:
    if a.nesterov and (a.momentum <= 0 or a.dampening != 0):
        raise Problem(
            "Nesterov momentum needs `momentum` > 0 and `dampening` = 0",
            hint="set `momentum = 0.9` (and leave `dampening` at 0), or `nesterov = false`",
            arg="nesterov",
        )


_SGD_FORMULA = """\
g <- g + weight_decay * theta
if momentum != 0:
    b <- momentum * b + (1 - dampening) * g      (b <- g at t = 1)
    g <- g + momentum * b   if nesterov   else   g <- b
theta <- theta - lr * g"""

SGD = OPTIMIZERS.add(
    "sgd",
    args=(
        _lr(1e-3),
        arg("momentum", Rate, 0.0, doc="momentum factor"),
        arg("dampening", Prob, 0.0, doc="dampening for momentum"),
        arg("nesterov", Bool, False, doc="use Nesterov momentum"),
        _weight_decay(),
    ),
    doc="stochastic gradient descent, optionally with momentum",
    formula=_SGD_FORMULA,
    validate=_check_nesterov,
    info={"weight_decay": "coupled", "ref": "torch.optim.SGD"},
    slots=Slots(0, (("momentum", 1),)),
)

OPTIMIZERS.derive(
    "momentum",
    SGD,
    args=_with_defaults(SGD, momentum=0.9),
    doc="SGD with heavy-ball momentum (Polyak 1964): `sgd` with momentum = 0.9",
)

OPTIMIZERS.derive(
    "nesterov",
    SGD,
    args=_with_defaults(SGD, momentum=0.9, nesterov=True),
    aliases=("nag",),
    doc="SGD with Nesterov momentum (Sutskever et al. 2013): `sgd` with momentum = 0.9, nesterov",
)

OPTIMIZERS.add(
    "proximal_sgd",
    example="proximal_sgd(lr = 0.05)",
    args=(_lr(), _L1, _L2),
    aliases=("proximal_gradient_descent",),
    doc="gradient descent followed by the proximal step of the L1/L2 penalties (FOBOS)",
    formula="""\
v = theta - lr * g
theta <- sign(v) * max(|v| - lr * l1, 0) / (1 + lr * l2)""",
    info={"ref": "tf.compat.v1.train.ProximalGradientDescentOptimizer"},
    slots=Slots(0),
)

# ----------------------------------------------------------------------------- Adagrad family

OPTIMIZERS.add(
    "adagrad",
    args=(
        _lr(0.01),
        arg("lr_decay", NonNegFloat, 0.0, doc="learning-rate decay per step"),
        _weight_decay(),
        arg("initial_accumulator_value", NonNegFloat, 0.0, doc="initial sum of squares"),
        _eps(1e-10),
    ),
    doc="Adagrad (Duchi et al. 2011): per-coordinate steps scaled by the root of the summed squares",
    formula="""\
lr_t = lr / (1 + (t - 1) * lr_decay)
g <- g + weight_decay * theta
s <- s + g^2                      (s_0 = initial_accumulator_value)
theta <- theta - lr_t * g / (sqrt(s) + eps)""",
    info={"weight_decay": "coupled", "ref": "torch.optim.Adagrad"},
    slots=Slots(1),
)

OPTIMIZERS.add(
    "adagrad_da",
    example="adagrad_da(lr = 0.05)",
    args=(
        _lr(),
        arg(
            "initial_gradient_squared_accumulator_value",
            PosFloat,
            0.1,
            doc="initial sum of squared gradients",
        ),
        _L1,
        _L2,
    ),
    doc="Adagrad dual averaging (Duchi et al. 2011): sparse solutions from accumulated gradients",
    formula="""\
a <- a + g                        (a_0 = 0)
s <- s + g^2                      (s_0 = initial_gradient_squared_accumulator_value)
theta <- -lr * sign(a) * max(|a| - l1 * t, 0) / (l2 * t * lr + sqrt(s))""",
    info={"ref": "tf.compat.v1.train.AdagradDAOptimizer"},
    traits=frozenset({"rate_divides"}),
    slots=Slots(2),
)

OPTIMIZERS.add(
    "proximal_adagrad",
    example="proximal_adagrad(lr = 0.05)",
    args=(
        _lr(),
        arg("initial_accumulator_value", PosFloat, 0.1, doc="initial sum of squares"),
        _L1,
        _L2,
    ),
    doc="Adagrad step followed by the proximal step of the L1/L2 penalties",
    formula="""\
s <- s + g^2                      (s_0 = initial_accumulator_value)
lr_t = lr / sqrt(s)
v = theta - lr_t * g
theta <- sign(v) * max(|v| - lr_t * l1, 0) / (1 + lr_t * l2)""",
    info={"ref": "tf.compat.v1.train.ProximalAdagradOptimizer"},
    slots=Slots(1),
)

OPTIMIZERS.add(
    "ftrl",
    args=(
        _lr(1e-3),
        arg("lr_power", FloatT(max=0.0), -0.5, doc="power of the accumulator in the step size"),
        arg("initial_accumulator_value", NonNegFloat, 0.1, doc="initial sum of squares"),
        _L1,
        _L2,
    ),
    doc="follow the regularized leader, proximal (McMahan et al. 2013), as in TensorFlow",
    formula="""\
n' = n + g^2                      (n_0 = initial_accumulator_value)
sigma = (n'^(-lr_power) - n^(-lr_power)) / lr
z <- z + g - sigma * theta;  n <- n'
theta <- (sign(z) * l1 - z) / (n^(-lr_power) / lr + 2 * l2)   if |z| > l1   else 0""",
    info={"ref": "tf.keras.optimizers.Ftrl"},
    traits=frozenset({"rate_divides"}),
    slots=Slots(2),
)

# ----------------------------------------------------------------------------- RMSprop, Adadelta

OPTIMIZERS.add(
    "rmsprop",
    args=(
        _lr(0.01),
        arg("alpha", Rate, 0.99, doc="smoothing constant of the squared-gradient average"),
        _eps(1e-8),
        _weight_decay(),
        arg("momentum", Rate, 0.0, doc="momentum factor"),
        arg("centered", Bool, False, doc="normalize by an estimate of the gradient's variance"),
    ),
    doc="RMSprop (Hinton 2012): steps scaled by a running root mean square of the gradient",
    formula="""\
g <- g + weight_decay * theta
v <- alpha * v + (1 - alpha) * g^2
if centered:  gbar <- alpha * gbar + (1 - alpha) * g;  v~ = v - gbar^2   else  v~ = v
if momentum > 0:  b <- momentum * b + g / (sqrt(v~) + eps);  theta <- theta - lr * b
else:             theta <- theta - lr * g / (sqrt(v~) + eps)""",
    info={"weight_decay": "coupled", "ref": "torch.optim.RMSprop"},
    slots=Slots(1, (("centered", 1), ("momentum", 1))),
)

OPTIMIZERS.add(
    "adadelta",
    args=(
        _lr(1.0),
        arg("rho", Prob, 0.9, doc="decay of the running averages"),
        _eps(1e-6),
        _weight_decay(),
    ),
    doc="Adadelta (Zeiler 2012): steps in units of a running RMS of past updates",
    formula="""\
g <- g + weight_decay * theta
v <- rho * v + (1 - rho) * g^2
dx = sqrt(u + eps) / sqrt(v + eps) * g
u <- rho * u + (1 - rho) * dx^2
theta <- theta - lr * dx""",
    info={"weight_decay": "coupled", "ref": "torch.optim.Adadelta"},
    slots=Slots(2),
)

# ----------------------------------------------------------------------------- Adam family

# The Adam step as torch/optim/adam.py computes it (`_single_tensor_adam`). With amsgrad the
# code keeps the maximum of the raw v and corrects it after, `denom = (max_exp_avg_sqs[i].sqrt()
# / bias_correction2_sqrt).add_(eps)`, while PyTorch's documented pseudo-code and Optax's
# `amsgrad` keep the maximum of the corrected vhat; the two part by ~4e-2 in 20 steps.
_ADAM_STEP = """\
m <- b1 * m + (1 - b1) * g;  v <- b2 * v + (1 - b2) * g^2
if amsgrad:  vmax <- max(vmax, v);  s = vmax   else  s = v      (vmax_0 = 0)
theta <- theta - lr / (1 - b1^t) * m / (sqrt(s) / sqrt(1 - b2^t) + eps)
amsgrad maximizes the raw v and bias-corrects after, as torch.optim.Adam's code does; PyTorch's
documented pseudo-code and Optax's `amsgrad` maximize vhat = v / (1 - b2^t) (other steps)"""

_ADAM_FORMULA = "g <- g + weight_decay * theta\n" + _ADAM_STEP

ADAM = OPTIMIZERS.add(
    "adam",
    args=(
        _lr(1e-3),
        _B1,
        _B2,
        _eps(1e-8),
        _weight_decay(),
        arg(
            "amsgrad",
            Bool,
            False,
            doc="use the running maximum of the second moment (Reddi et al. 2018), of the raw v "
            "as in torch.optim.Adam's code",
        ),
    ),
    doc="Adam (Kingma & Ba 2015): bias-corrected first and second moment estimates",
    formula=_ADAM_FORMULA,
    info={"weight_decay": "coupled", "ref": "torch.optim.Adam"},
    slots=Slots(2, (("amsgrad", 1),)),
)

OPTIMIZERS.derive(
    "amsgrad",
    ADAM,
    args=_with_defaults(ADAM, amsgrad=True),
    doc="AMSGrad (Reddi et al. 2018): `adam` with amsgrad, a second moment that never shrinks",
)

OPTIMIZERS.derive(
    "adamw",
    ADAM,
    args=tuple(
        _weight_decay(0.01, "decoupled") if a.name == "weight_decay" else a for a in ADAM.args
    ),
    doc="AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay",
    formula="theta <- theta - lr * weight_decay * theta\n" + _ADAM_STEP,
    info={"weight_decay": "decoupled", "ref": "torch.optim.AdamW"},
)

OPTIMIZERS.add(
    "adamax",
    args=(_lr(2e-3), _B1, _B2, _eps(1e-8), _weight_decay()),
    doc="Adamax (Kingma & Ba 2015): Adam with the infinity norm in place of the second moment",
    formula="""\
g <- g + weight_decay * theta
m <- b1 * m + (1 - b1) * g
u <- max(b2 * u, |g| + eps)
theta <- theta - lr * m / ((1 - b1^t) * u)""",
    info={"weight_decay": "coupled", "ref": "torch.optim.Adamax"},
    slots=Slots(2),
)

OPTIMIZERS.add(
    "nadam",
    args=(
        _lr(2e-3),
        _B1,
        _B2,
        _eps(1e-8),
        _weight_decay(),
        arg("momentum_decay", NonNegFloat, 4e-3, doc="psi, the momentum schedule's decay"),
    ),
    doc="NAdam (Dozat 2016): Adam with Nesterov momentum and a momentum schedule",
    formula="""\
g <- g + weight_decay * theta
mu_t = b1 * (1 - 0.5 * 0.96^(t * momentum_decay));  mu_{t+1} likewise
m <- b1 * m + (1 - b1) * g;  v <- b2 * v + (1 - b2) * g^2
mhat = mu_{t+1} * m / (1 - prod_{i<=t+1} mu_i) + (1 - mu_t) * g / (1 - prod_{i<=t} mu_i)
vhat = v / (1 - b2^t)
theta <- theta - lr * mhat / (sqrt(vhat) + eps)""",
    info={"weight_decay": "coupled", "ref": "torch.optim.NAdam"},
    slots=Slots(2),
)

OPTIMIZERS.add(
    "radam",
    args=(_lr(1e-3), _B1, _B2, _eps(1e-8), _weight_decay()),
    doc="RAdam (Liu et al. 2020): Adam with the variance of the adaptive step rectified",
    formula="""\
g <- g + weight_decay * theta
m <- b1 * m + (1 - b1) * g;  v <- b2 * v + (1 - b2) * g^2
mhat = m / (1 - b1^t)
rho_inf = 2 / (1 - b2) - 1;  rho_t = rho_inf - 2 * t * b2^t / (1 - b2^t)
if rho_t > 5:
    l = sqrt(1 - b2^t) / (sqrt(v) + eps)
    r = sqrt((rho_t - 4) (rho_t - 2) rho_inf / ((rho_inf - 4) (rho_inf - 2) rho_t))
    theta <- theta - lr * mhat * r * l
else:
    theta <- theta - lr * mhat""",
    info={"weight_decay": "coupled", "ref": "torch.optim.RAdam"},
    slots=Slots(2),
)

OPTIMIZERS.add(
    "lion",
    args=(
        _lr(1e-4),
        _B1,
        arg("b2", Rate, 0.99, doc="decay of the momentum that is kept"),
        _weight_decay(0.0, "decoupled"),
    ),
    doc="Lion (Chen et al. 2023): the sign of an interpolated momentum",
    formula="""\
c = b1 * m + (1 - b1) * g
theta <- theta - lr * (sign(c) + weight_decay * theta)
m <- b2 * m + (1 - b2) * g""",
    info={"weight_decay": "decoupled", "ref": "optax.lion"},
    slots=Slots(1),
)

OPTIMIZERS.add(
    "lamb",
    args=(_lr(1e-3), _B1, _B2, _eps(1e-6), _weight_decay(0.0, "decoupled")),
    doc="LAMB (You et al. 2020): Adam steps rescaled per layer by a trust ratio",
    formula="""\
m <- b1 * m + (1 - b1) * g;  v <- b2 * v + (1 - b2) * g^2
mhat = m / (1 - b1^t);  vhat = v / (1 - b2^t)
r = mhat / (sqrt(vhat) + eps) + weight_decay * theta
theta <- theta - lr * (||theta|| / ||r||) * r      (ratio 1 where a norm is 0; norms per tensor)""",
    info={"weight_decay": "decoupled", "ref": "optax.lamb"},
    slots=Slots(2),
)

OPTIMIZERS.add(
    "lars",
    example="lars(lr = 0.05)",
    args=(
        _lr(),
        arg("momentum", Rate, 0.9, doc="momentum factor"),
        arg("nesterov", Bool, False, doc="use Nesterov momentum"),
        _weight_decay(),
        arg("trust_coefficient", PosFloat, 1e-3, doc="eta, scale of the layer-wise trust ratio"),
        arg("eps", NonNegFloat, 0.0, doc="term added to the update norm"),
    ),
    doc="LARS (You et al. 2017): momentum SGD with a layer-wise trust ratio",
    formula="""\
u = g + weight_decay * theta
u <- trust_coefficient * ||theta|| / (||u|| + eps) * u     (ratio 1 where a norm is 0)
b <- momentum * b + u;  u <- u + momentum * b   if nesterov   else   u <- b
theta <- theta - lr * u""",
    info={"weight_decay": "coupled", "ref": "optax.lars"},
    slots=Slots(1),
)
