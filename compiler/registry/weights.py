"""Initializers, regularizers and weight constraints: the words layer arguments refer to."""

from __future__ import annotations

from .core import arg, registry
from .types import EnumT, Float, NonNegFloat, PosFloat

INITIALIZERS = registry(
    "initializer",
    "initializers",
    "How a weight tensor is drawn before training. fan_in / fan_out count the inputs / outputs "
    "of one unit: for a dense kernel [n, m] they are n and m; for a conv kernel "
    "[*window, c_in, c_out] they are prod(window)·c_in and prod(window)·c_out.",
    implemented_in="dnn.compiler.lower_flax",
)
FAN_MODE = EnumT(("fan_in", "fan_out", "fan_avg"))
NONLINEARITY = EnumT(("relu", "leaky_relu", "linear", "tanh", "sigmoid", "selu"))

INITIALIZERS.add("zeros", doc="all zeros", formula="W = 0")
INITIALIZERS.add("ones", doc="all ones", formula="W = 1")
INITIALIZERS.add(
    "constant",
    example="constant(0.1)",
    args=(arg("value", Float),),
    doc="one value everywhere",
    formula="W = value",
)
INITIALIZERS.add(
    "uniform",
    args=(arg("low", Float, -0.05), arg("high", Float, 0.05)),
    doc="uniform distribution (Keras RandomUniform defaults)",
    formula="W ~ U(low, high)",
)
INITIALIZERS.add(
    "normal",
    args=(arg("mean", Float, 0.0), arg("std", NonNegFloat, 0.05)),
    doc="normal distribution (Keras RandomNormal defaults)",
    formula="W ~ N(mean, std^2)",
)
INITIALIZERS.add(
    "truncated_normal",
    args=(arg("mean", Float, 0.0), arg("std", NonNegFloat, 0.05)),
    doc="normal distribution redrawn outside two standard deviations",
    formula="W ~ N(mean, std^2) restricted to [mean - 2 std, mean + 2 std]",
)
GLOROT_UNIFORM = INITIALIZERS.add(
    "glorot_uniform",
    args=(arg("gain", PosFloat, 1.0),),
    aliases=("xavier_uniform",),
    doc="Glorot & Bengio (2010): keeps activation and gradient variance across layers",
    formula="W ~ U(-a, a), a = gain · sqrt(6 / (fan_in + fan_out))",
    info={"fan": True},
)
INITIALIZERS.add(
    "glorot_normal",
    args=(arg("gain", PosFloat, 1.0),),
    aliases=("xavier_normal",),
    doc="Glorot & Bengio (2010), normal form",
    formula="W ~ N(0, s^2), s = gain · sqrt(2 / (fan_in + fan_out))",
    info={"fan": True},
)
_HE_ARGS = (
    arg("a", NonNegFloat, 0.0, "negative slope, used when nonlinearity = leaky_relu"),
    arg("mode", EnumT(("fan_in", "fan_out")), "fan_in"),
    arg("nonlinearity", NONLINEARITY, "relu"),
)
INITIALIZERS.add(
    "he_uniform",
    args=_HE_ARGS,
    aliases=("kaiming_uniform",),
    doc="He et al. (2015), for ReLU networks (PyTorch kaiming_uniform_ semantics)",
    formula="W ~ U(-b, b), b = gain · sqrt(3 / fan_mode), gain = sqrt(2 / (1 + a^2)) for relu/leaky_relu",
    info={"fan": True},
)
INITIALIZERS.add(
    "he_normal",
    args=_HE_ARGS,
    aliases=("kaiming_normal",),
    doc="He et al. (2015), normal form (PyTorch kaiming_normal_ semantics)",
    formula="W ~ N(0, s^2), s = gain / sqrt(fan_mode), gain = sqrt(2 / (1 + a^2)) for relu/leaky_relu",
    info={"fan": True},
)
INITIALIZERS.add(
    "lecun_uniform",
    doc="LeCun (1998), for SELU networks",
    formula="W ~ U(-a, a), a = sqrt(3 / fan_in)",
    info={"fan": True},
)
INITIALIZERS.add(
    "lecun_normal",
    doc="LeCun (1998), truncated normal form (as Keras)",
    formula="W ~ TruncN(0, s^2), s = sqrt(1 / fan_in) / 0.87962566",
    info={"fan": True},
)
INITIALIZERS.add(
    "orthogonal",
    args=(arg("gain", PosFloat, 1.0),),
    doc="Saxe et al. (2014): a (semi-)orthogonal matrix from the QR of a Gaussian draw",
    formula="W = gain · Q, where A = QR, A ~ N(0, 1), A reshaped to [prod(shape[:-1]), shape[-1]]",
    info={"fan": True},
)
INITIALIZERS.add(
    "variance_scaling",
    args=(
        arg("scale", PosFloat, 1.0),
        arg("mode", FAN_MODE, "fan_in"),
        arg("distribution", EnumT(("normal", "truncated_normal", "uniform")), "truncated_normal"),
    ),
    doc="the general family sqrt(k / n) that Glorot, He and LeCun are cases of",
    formula="Var(W) = scale / n, n = fan_in | fan_out | (fan_in + fan_out) / 2",
    info={"fan": True},
)

REGULARIZERS = registry(
    "regularizer",
    "regularizers",
    "Penalties added to the loss. They apply to kernels (not biases or normalization scales) "
    "unless `on = all`.",
    implemented_in="dnn.compiler.lower_loss",
)
_ON = arg("on", EnumT(("kernel", "all")), "kernel", "which weights the penalty sums over")
REGULARIZERS.add(
    "l1",
    args=(arg("l1", NonNegFloat, 0.01), _ON),
    doc="lasso penalty: drives weights to exactly zero",
    formula="penalty = l1 · sum |w|",
)
REGULARIZERS.add(
    "l2",
    args=(arg("l2", NonNegFloat, 0.01), _ON),
    doc="ridge penalty (coupled weight decay)",
    formula="penalty = l2 · sum w^2",
)
REGULARIZERS.add(
    "l1_l2",
    args=(arg("l1", NonNegFloat, 0.01), arg("l2", NonNegFloat, 0.01), _ON),
    doc="elastic net: both penalties",
    formula="penalty = l1 · sum |w| + l2 · sum w^2",
)

CONSTRAINTS = registry(
    "constraint",
    "constraints",
    "Projections applied to a weight after each optimizer step.",
    implemented_in="dnn.compiler.lower_loss",
)
CONSTRAINTS.add(
    "max_norm",
    args=(arg("value", PosFloat, 2.0), arg("axis", EnumT(("inputs", "all")), "inputs")),
    doc="rescale each unit's incoming weight vector to norm at most `value` (Srivastava 2014)",
    formula="w <- w · min(1, value / ||w||)",
)
CONSTRAINTS.add("non_neg", doc="clip weights at zero", formula="w <- max(w, 0)")
CONSTRAINTS.add(
    "unit_norm", doc="rescale each unit's incoming weights to norm 1", formula="w <- w / ||w||"
)
