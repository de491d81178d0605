"""`dnn compile FILE --emit python -o train_model.py`: a checked spec as a standalone script.

The script is plain Flax + Optax + NumPy (and scikit-learn for a built-in data set): the model
as a Linen class with one line per layer, the optimizer chain with its Optax calls spelled out,
the data loading, split and normalization of `runtime/pipeline.py`, and the training loop of
`runtime/train.py`. It does not import dnn. It is written from the same IR the lowering walks
(`compiler/lower_flax.py`, `lower_optax.py`, `lower_loss.py`) and repeats their choices, so
that, run as is, it starts from the same initial parameters and takes the same steps as
`dnn train` on the same seed:

- parameters live under the IR node names (`params["conv_bn/conv2d"]["kernel"]`) and the
  initialization keys are those of `Engine._init_one`: fold_in(key(seed), 1) for the weights,
  fold_in(key(seed), 2) for dropout; Flax derives each layer's key from its name;
- the batches of epoch e are `permutation(fold_in(fold_in(key(seed), e), 7), n)`, the step
  key fold_in(fold_in(key(seed), 3), step), split into the augmentation's and dropout's keys;
- the data are split by `np.random.default_rng(data.seed)` with the same largest-remainder
  sizes, and normalized with float64 statistics of the train split.

What it does not cover is refused before anything is written, at the spec line, with E0615
(`SUPPORTED` lists the words it writes out; docs/emit.md).
"""

from __future__ import annotations

import importlib.util
import keyword
import math
import re
import shutil
import string
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnn.compiler.diagnostics import E_EMIT, NO_SPAN, Diagnostic, Span, SpecError
from dnn.compiler.ir import Graph, Node, Program
from dnn.compiler.registry.data import BUILTIN_DATA
from dnn.compiler.values import Quantity, Ref, Symbol

# ------------------------------------------------------------------ what it writes out

ACTIVATIONS: dict[str, str] = {  # `$x` is the input; `$a_name` an argument
    "identity": "$x",
    "sigmoid": "nn.sigmoid($x)",
    "tanh": "jnp.tanh($x)",
    "relu": "nn.relu($x)",
    "relu6": "nn.relu6($x)",
    "leaky_relu": "nn.leaky_relu($x, negative_slope=$a_negative_slope)",
    "elu": "nn.elu($x, alpha=$a_alpha)",
    "selu": "nn.selu($x)",
    "gelu": "nn.gelu($x, approximate=$a_approximate)",
    "silu": "nn.silu($x)",
    "softplus": "nn.softplus($x)",
    "softsign": "nn.soft_sign($x)",
    "hard_sigmoid": "nn.relu6($x + 3) / 6",
    "hard_tanh": "jnp.clip($x, -1, 1)",
    "mish": "$x * jnp.tanh(nn.softplus($x))",
    "softmax": "nn.softmax($x, axis=$axis)",
    "log_softmax": "nn.log_softmax($x, axis=$axis)",
}
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adadelta", "lion")
SCHEDULES = (
    "constant",
    "step",
    "multistep",
    "exponential",
    "cosine",
    "warmup_cosine",
    "polynomial",
)
CLIPPERS = ("global_norm", "value")
LOSSES = ("cross_entropy", "binary_cross_entropy", "mse", "mae", "huber")
NORMALIZERS = ("none", "standardize", "minmax", "scale", "mean_subtraction")
AUGMENTATIONS = ("random_crop", "random_flip", "noise")
MONITORS = ("loss", "val_loss", "val_accuracy")  # what the script computes per epoch
# built-in data sets read from scikit-learn (the generated ones are dnn's own code)
SKLEARN_SETS = tuple(
    name
    for name, meta in BUILTIN_DATA.items()
    if str(meta.get("source", "")).startswith("sklearn.datasets.load_") and "targets" not in meta
)
# `train` fields that change what is trained, with the value the script assumes
PLAIN_TRAIN = {
    "accumulate": 1,
    "lr_scale": (),
    "freeze": (),
    "pretrain": None,
    "init_from": None,
    "ensemble": 1,
    "loss_weights": (),
}


def supported_words() -> dict[str, tuple[str, ...]]:
    """The registry words the emitter writes out, by kind (docs/emit.md lists them)."""
    return dict(SUPPORTED)


# ------------------------------------------------------------------ refusals


class _Refused(Exception):
    def __init__(self, message: str, span: Span, hint: str):
        super().__init__(message)
        self.diagnostic = Diagnostic(E_EMIT, message, span, hint)


HINT = "see docs/emit.md for the words `--emit python` writes out; `dnn train` runs this spec"


def _refuse(what: str, span: Span, hint: str = HINT) -> _Refused:
    return _Refused(f"`--emit python` cannot write out {what} yet", span, hint)


def _check_ref(ref: Ref, kind: str, span: Span, where: str) -> None:
    if ref.name not in SUPPORTED[kind]:
        raise _refuse(f"the {kind} `{ref.name}`" + (f" ({where})" if where else ""), span)


# ------------------------------------------------------------------ code helpers


def _lit(v: Any) -> str:
    """A Python literal for a resolved value."""
    if isinstance(v, Symbol):
        return repr(v.name)
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, tuple | list):
        inner = ", ".join(_lit(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    return repr(v)


def _ident(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name)
    if not base or base[0].isdigit() or keyword.iskeyword(base):
        base = f"v_{base}"
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out


def _camel(name: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", name)
    out = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return out if out and not out[0].isdigit() else f"Model{out}"


def _source_line(program: Program, span: Span) -> str | None:
    text = program.sources.get(span.path)
    if text is None or span.line < 1:
        return None
    lines = text.splitlines()
    return lines[span.line - 1].strip() if span.line <= len(lines) else None


def _axis(axis: int) -> int:
    """An IR axis (counted without the batch axis) as an array axis (lower_flax._axis)."""
    return axis if axis < 0 else axis + 1


def _duration(q: Quantity) -> str:
    """A duration in optimizer steps, as `lower_optax.steps` computes it."""
    if q.unit == "steps":
        return str(int(q.value))
    if float(q.value).is_integer():
        return f"{int(q.value)} * steps_per_epoch"
    return f"round({q.value!r} * steps_per_epoch)"


# ------------------------------------------------------------------ initializers


def _he_gain2(a: dict[str, Any]) -> float:
    gains = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "selu": 0.75}  # lower_flax._GAINS
    nl = str(a["nonlinearity"])
    return 2.0 / (1 + a["a"] ** 2) if nl in ("relu", "leaky_relu") else gains[nl] ** 2


def _vs(scale: float, mode: Any, distribution: str) -> str:
    return f"nn.initializers.variance_scaling({scale!r}, {str(mode)!r}, {distribution!r})"


def _shifted(base: str, mean: float) -> str:
    if mean == 0:
        return base
    return f"shifted({base}, {mean!r})"


# Each initializer word the emitter writes out: its `jax.nn.initializers` expression, as
# lower_flax builds it, from the word's arguments.
INIT_CODE: dict[str, Callable[[dict[str, Any]], str]] = {
    "zeros": lambda a: "nn.initializers.zeros",
    "ones": lambda a: "nn.initializers.ones",
    "constant": lambda a: f"nn.initializers.constant({a.get('value', 0.0)!r})",
    "uniform": lambda a: f"uniform({a['low']!r}, {a['high']!r})",
    "normal": lambda a: _shifted(f"nn.initializers.normal({a['std']!r})", a["mean"]),
    "truncated_normal": lambda a: _shifted(
        f"nn.initializers.truncated_normal({a['std']!r})", a["mean"]
    ),
    "glorot_uniform": lambda a: _vs(a["gain"] ** 2, "fan_avg", "uniform"),
    "glorot_normal": lambda a: _vs(a["gain"] ** 2, "fan_avg", "normal"),
    "he_uniform": lambda a: _vs(_he_gain2(a), a["mode"], "uniform"),
    "he_normal": lambda a: _vs(_he_gain2(a), a["mode"], "normal"),
    "lecun_uniform": lambda a: _vs(1.0, "fan_in", "uniform"),
    "lecun_normal": lambda a: _vs(1.0, "fan_in", "truncated_normal"),
    "orthogonal": lambda a: f"nn.initializers.orthogonal(scale={a['gain']!r})",
    "variance_scaling": lambda a: _vs(a["scale"], a["mode"], str(a["distribution"])),
}


def _init_code(ref: Ref) -> str:
    return INIT_CODE[ref.name](dict(ref.args))


UNIFORM = '''
def uniform(low, high):
    """Uniform initial values on [low, high)."""
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, low, high)
'''
SHIFTED = '''
def shifted(base, mean):
    """An initializer's values plus `mean`."""
    return lambda key, shape, dtype=jnp.float32: mean + base(key, shape, dtype)
'''


@dataclass
class _Inits:
    """Initializers named once at module level (`he_normal = ...`), by their IR reference."""

    names: dict[Ref, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)

    def name(self, ref: Ref) -> str:
        if ref not in self.names:
            code = _init_code(ref)
            ident = _ident(ref.name, self.taken)
            words = ", ".join(f"{k} = {v}" for k, v in ref.args)
            self.lines.append(f"# {ref.name}({words})" if words else f"# {ref.name}")
            self.lines.append(f"{ident} = {code}")
            self.names[ref] = ident
        return self.names[ref]

    def helpers(self) -> str:
        code = "\n".join(self.lines)
        out = ""
        if "uniform(" in code.replace("_uniform(", ""):
            out += UNIFORM
        if "shifted(" in code:
            out += SHIFTED
        return out


# ------------------------------------------------------------------ the model class


@dataclass
class _ModelCode:
    program: Program
    graph: Graph
    default_init: Ref | None
    inits: _Inits = field(default_factory=_Inits)

    def kernel_init(self, n: Node) -> Ref:
        if self.default_init is not None and "init" not in n.written:
            return self.default_init
        ref: Ref = n.arg("init")
        return ref

    def weights(self, n: Node) -> list[str]:
        kernel = self.kernel_init(n)
        bias: Ref = n.arg("bias_init")
        out = [f"kernel_init={self.inits.name(kernel)}"]
        if not n.arg("use_bias"):
            out.append("use_bias=False")
        elif bias.name != "zeros":  # Flax's default bias initializer is zeros
            out.append(f"bias_init={self.inits.name(bias)}")
        return out

    def check(self) -> None:
        g = self.graph
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise _refuse("a model with several inputs or outputs", g.span)
        if self.default_init is not None:
            _check_ref(self.default_init, "initializer", self.program.train.span_of("init"), "")
        for n in g.nodes:
            if n.op == "input":
                continue
            if n.op not in SUPPORTED[n.kind]:
                named = f" (`{n.name}`)" if n.name != n.op else ""
                raise _refuse(f"the {n.kind} `{n.op}`{named}", n.span)
            args = dict(n.args)
            for name in ("init", "bias_init"):
                if isinstance(args.get(name), Ref):
                    _check_ref(args[name], "initializer", n.span, f"`{n.name}`'s `{name}`")
            if args.get("constraint") is not None:
                raise _refuse(f"a weight constraint (`{n.name}`)", n.span)
            if args.get("tie") is not None:
                raise _refuse(f"weight tying (`{n.name}`)", n.span)
            if args.get("ceil_mode"):
                raise _refuse(f"`ceil_mode` pooling (`{n.name}`)", n.span)
            if isinstance(args.get("regularizer"), Ref):
                _check_ref(args["regularizer"], "regularizer", n.span, f"`{n.name}`")

    def expression(self, n: Node, xs: list[str]) -> str:
        """The Python expression of one node, its inputs being the variables `xs`."""
        if n.kind == "activation":
            a = dict(n.args)
            code = ACTIVATIONS[n.op].replace("$x", xs[0])
            if "$axis" in code:
                code = code.replace("$axis", str(_axis(a["axis"])))
            for k, v in a.items():
                code = code.replace(f"$a_{k}", _lit(v))
            return code
        return LAYER_CODE[n.op](self, n, xs, dict(n.args))

    def code(self) -> str:
        g = self.graph
        consumers: dict[str, list[int]] = {n.name: [] for n in g.nodes}
        for i, n in enumerate(g.nodes):
            for src in n.inputs:
                consumers[src].append(i)
        taken = {"self", "train", "x", "nn", "jnp", "jax", "np", "optax"}
        var: dict[str, str] = {}
        body: list[str] = []
        last_line: tuple[str, int] | None = None
        arg = ""
        for i, n in enumerate(g.nodes):
            if n.op == "input":
                arg = var[n.name] = _ident(n.name, taken)
                continue
            # a value read once, by the next node, flows through `x`; others are named
            used = consumers[n.name]
            out = "x" if used == [i + 1] else _ident(n.name, taken)
            if n.name in g.outputs:
                out = "x" if not used else out
            where = (n.span.path, n.span.line)
            if where != last_line and n.span is not NO_SPAN:
                text = _source_line(self.program, n.span)
                if text:
                    stem = Path(n.span.path).name
                    body.append(f"# {stem}:{n.span.line}: {text}")
                last_line = where
            var[n.name] = out
            body.append(f"{out} = {self.expression(n, [var[s] for s in n.inputs])}")
        body.append(f"return {var[g.outputs[0]]}")
        cls = _camel(g.name)
        lines = "\n".join(f"        {line}" for line in body)
        return (
            f"class {cls}(nn.Module):\n"
            f'    """`model {g.name}` of {Path(self.program.path).name}: '
            f"{g.trainable:,} trainable parameters"
            + (f", {g.non_trainable:,} of state" if g.non_trainable else "")
            + '."""\n\n'
            "    @nn.compact\n"
            f"    def __call__(self, {arg}, train: bool = False):\n"
            f"{lines}\n"
        )


def _pads(pad: Any) -> str:
    return "[" + ", ".join(f"({q}, {q})" for q in pad) + "]"


# ---- one writer per layer word: (model, node, input variables, arguments) -> expression


def _padding(pad: Any) -> str:
    return repr(pad.name.upper()) if isinstance(pad, Symbol) else _pads(pad)


def _dense(m: _ModelCode, n: Node, xs: list[str], a: dict[str, Any]) -> str:
    args = [str(a["units"]), *m.weights(n), f"name={n.name!r}"]
    return f"nn.Dense({', '.join(args)})({xs[0]})"


def _conv(m: _ModelCode, n: Node, xs: list[str], a: dict[str, Any]) -> str:
    args = [str(a["filters"]), f"kernel_size={_lit(a['kernel'])}"]
    if any(s != 1 for s in a["stride"]):
        args.append(f"strides={_lit(a['stride'])}")
    args.append(f"padding={_padding(a['padding'])}")
    if any(d != 1 for d in a["dilation"]):
        args.append(f"kernel_dilation={_lit(a['dilation'])}")
    if a["groups"] != 1:
        args.append(f"feature_group_count={a['groups']}")
    args += [*m.weights(n), f"name={n.name!r}"]
    return f"nn.Conv({', '.join(args)})({xs[0]})"


def _pool(fn: str) -> Callable[[_ModelCode, Node, list[str], dict[str, Any]], str]:
    def write(m: _ModelCode, n: Node, xs: list[str], a: dict[str, Any]) -> str:
        window, stride = _lit(a["size"]), _lit(a["stride"])
        return f"{fn}({xs[0]}, {window}, strides={stride}, padding={_padding(a['padding'])})"

    return write


def _global_pool(fn: str) -> Callable[[_ModelCode, Node, list[str], dict[str, Any]], str]:
    def write(m: _ModelCode, n: Node, xs: list[str], a: dict[str, Any]) -> str:
        rank = len(m.graph.node(n.inputs[0]).shape) + 1  # with the batch axis
        return f"{fn}({xs[0]}, axis={_lit(tuple(range(1, rank - 1)))})"

    return write


def _flatten(m: _ModelCode, n: Node, xs: list[str], a: dict[str, Any]) -> str:
    return f"{xs[0]}.reshape({xs[0]}.shape[0], -1)"


def _reshape(m: _ModelCode, n: Node, xs: list[str], a: dict[str, Any]) -> str:
    return f"{xs[0]}.reshape({xs[0]}.shape[0], {', '.join(map(str, n.shape))})"


def _dropout(m: _ModelCode, n: Node, xs: list[str], a: dict[str, Any]) -> str:
    return f"nn.Dropout({a['rate']!r}, deterministic=not train, name={n.name!r})({xs[0]})"


def _norm_flags(a: dict[str, Any]) -> list[str]:
    return [
        flag
        for flag, on in (("use_bias=False", a["center"]), ("use_scale=False", a["scale"]))
        if not on
    ]


def _batchnorm(m: _ModelCode, n: Node, xs: list[str], a: dict[str, Any]) -> str:
    args = ["use_running_average=not train", f"momentum={a['momentum']!r}", f"epsilon={a['eps']!r}"]
    if _axis(a["axis"]) != -1:
        args.append(f"axis={_axis(a['axis'])}")
    args += [*_norm_flags(a), f"name={n.name!r}"]
    return f"nn.BatchNorm({', '.join(args)})({xs[0]})"


def _layernorm(m: _ModelCode, n: Node, xs: list[str], a: dict[str, Any]) -> str:
    args = [f"epsilon={a['eps']!r}", *_norm_flags(a), f"name={n.name!r}"]
    return f"nn.LayerNorm({', '.join(args)})({xs[0]})"


def _maximum(m: _ModelCode, n: Node, xs: list[str], a: dict[str, Any]) -> str:
    out = xs[0]
    for other in xs[1:]:
        out = f"jnp.maximum({out}, {other})"
    return out


# Each layer word the emitter writes out, with its writer (what lower_flax builds for it).
LAYER_CODE: dict[str, Callable[[_ModelCode, Node, list[str], dict[str, Any]], str]] = {
    "dense": _dense,
    **{f"conv{d}d": _conv for d in (1, 2, 3)},
    **{f"maxpool{d}d": _pool("nn.max_pool") for d in (1, 2, 3)},
    **{f"avgpool{d}d": _pool("nn.avg_pool") for d in (1, 2, 3)},
    "global_avgpool": _global_pool("jnp.mean"),
    "global_maxpool": _global_pool("jnp.max"),
    "flatten": _flatten,
    "reshape": _reshape,
    "dropout": _dropout,
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "add": lambda m, n, xs, a: " + ".join(xs),
    "subtract": lambda m, n, xs, a: f"{xs[0]} - {xs[1]}",
    "multiply": lambda m, n, xs, a: " * ".join(xs),
    "average": lambda m, n, xs, a: f"({' + '.join(xs)}) / {len(xs)}",
    "maximum": _maximum,
    "concat": lambda m, n, xs, a: f"jnp.concatenate([{', '.join(xs)}], axis={_axis(a['axis'])})",
}


# ------------------------------------------------------------------ the pieces of the script


def _task(program: Program) -> str:
    from dnn.compiler.rules import heads

    assert program.model is not None
    found = heads(program.model, program.train)
    return (found[0].task or "") if found else ""


def _outputs(program: Program) -> int:
    assert program.model is not None
    return math.prod(program.model.node(program.model.outputs[0]).shape)


def _data_code(program: Program) -> str:
    from .data.split import fractions as shares_of

    data = program.data
    assert data is not None and program.model is not None
    name = str(data.source.arg("name"))
    meta = BUILTIN_DATA[name]
    loader = str(meta["source"]).rpartition(".")[2]
    fractions = shares_of(dict(data.split.items), {})
    regression = _task(program) == "regression"
    shape = program.model.node(program.model.inputs[0]).shape
    y_line = (
        f"y = y.astype(np.float32).reshape(len(y), {_outputs(program)})"
        if regression
        else "y = y.astype(np.int32)"
    )
    normalize = _normalizer_code(
        data.normalize, 0, "stats", "normalize", "len(values), *INPUT_SHAPE"
    )
    targets, y_out = "", "ys"
    if data.targets.name != "none":  # regression targets learned in scaled units
        targets = _normalizer_code(data.targets, 1, "target_stats", "scale", "values.shape")
        y_out = "scale(ys)"
    return _fill(
        DATA,
        loader=loader,
        name=name,
        raw_shape=", ".join(map(str, meta["shape"])),
        shape=_lit(tuple(shape)),
        fractions=_lit(tuple(fractions)),
        normalizer=str(data.normalize),
        y_line=y_line,
        normalize=normalize,
        targets=targets,
        y_out=y_out,
    )


# Each normalizer: the statistics from the flattened float64 train split `flat`, and the
# transform of flattened float64 examples `a` (runtime/preprocess.py).
_NORMALIZE = {  # lines before, the statistics, the transform of `a`
    "standardize": (
        ["constant = flat.max(axis=0) == flat.min(axis=0)"],
        '{"mean": flat.mean(axis=0), "std": np.where(constant, 1.0, flat.std(axis=0))}',
        '(a - stats["mean"]) / stats["std"]',
    ),
    "minmax": (
        ["low, high = flat.min(axis=0), flat.max(axis=0)"],
        '{"min": low, "range": np.where(high > low, high - low, 1.0)}',
        '(a - stats["min"]) / stats["range"]',
    ),
    "scale": (
        ["low, high = flat.min(axis=0), flat.max(axis=0)"],
        '{"min": low, "range": np.where(high > low, high - low, 1.0)}',
        '2 * ((a - stats["min"]) / stats["range"]) - 1',
    ),
    "mean_subtraction": ([], '{"mean": flat.mean(axis=0)}', 'a - stats["mean"]'),
}

DATA = '''
def split_sizes(n, fractions):
    """Largest-remainder rounding of fractions * n: the sizes add up to n, a zero share
    stays empty."""
    f = np.asarray(fractions, np.float64)
    exact = f / f.sum() * n
    sizes = np.floor(exact).astype(np.int64)
    remainder = np.where(f > 0, exact - sizes, -1.0)
    sizes[np.argsort(-remainder, kind="stable")[: n - int(sizes.sum())]] += 1
    return [int(s) for s in sizes]


def load_data():
    """scikit-learn's `$name` data set (`$loader`), split by SPLIT with DATA_SEED, then
    `normalize = $normalizer` (statistics from the train split only).

    Returns {"train" | "val" | "test": (x, y)}, x of shape (n, *INPUT_SHAPE), float32.
    """
    x, y = $loader(return_X_y=True)
    x = np.asarray(x, np.float32).reshape(len(x), $raw_shape)
    $y_line
    order = np.random.default_rng(DATA_SEED).permutation(len(x))
    parts = np.split(order, np.cumsum(split_sizes(len(x), SPLIT))[:-1])
    splits = {k: (x[i], y[i]) for k, i in zip(("train", "val", "test"), parts)}
$normalize
$targets
    return {k: (normalize(xs), $y_out) for k, (xs, ys) in splits.items()}
'''


def _normalizer_code(ref: Ref, split: int, stats: str, fn: str, shape: str) -> str:
    """The statistics of normalizer `ref` from the train split's x (`split` 0) or y (1), and
    the function `fn` applying them (runtime/preprocess.py: float64, then float32)."""
    what = "normalize" if split == 0 else "targets"
    if ref.name == "none":
        return f"    def {fn}(values):  # {what} = none\n        return values.reshape({shape})\n"
    pre, fitted, apply = _NORMALIZE[ref.name]
    lines = [
        f"# {what} = {ref}: fitted on the train split only, applied to every split",
        f'flat = splits["train"][{split}].reshape(len(splits["train"][{split}]), -1)',
        "flat = flat.astype(np.float64)",
        *pre,
        f"{stats} = {fitted.replace('stats', stats)}",
        "",
        f"def {fn}(values):",
        "    a = values.reshape(len(values), -1).astype(np.float64)",
        f"    a = {apply.replace('stats', stats)}",
        f"    return a.reshape({shape}).astype(np.float32)",
    ]
    return "".join(f"    {line}\n" if line else "\n" for line in lines)


def _fill(template: str, **values: str) -> str:
    return string.Template(template).substitute(values)


# ---- loss and penalties


def _loss_code(program: Program) -> str:
    ref = program.train.loss
    a: dict[str, Any] = dict(ref.args)
    name = ref.name
    doc = f'    """`loss = {ref}`, the mean over the batch (lower_loss.py)."""\n'
    head = f"def loss_fn(logits, targets):\n{doc}"
    if name == "cross_entropy":
        smooth = a["label_smoothing"]
        lines = [
            "classes = logits.shape[-1]",
            "target = (",
            "    jax.nn.one_hot(targets, classes, dtype=logits.dtype)",
            "    if targets.ndim == logits.ndim - 1",
            "    else targets.astype(logits.dtype)",
            ")",
        ]
        if smooth:
            lines.append(f"target = target * (1 - {smooth!r}) + {smooth!r} / classes")
        lines.append("return jnp.mean(optax.softmax_cross_entropy(logits, target))")
    elif name == "binary_cross_entropy":
        smooth = a["label_smoothing"]
        lines = [
            "if logits.shape[-1] > 1 and targets.ndim == logits.ndim - 1:",
            "    target = jax.nn.one_hot(targets, logits.shape[-1], dtype=logits.dtype)",
            "else:",
            "    target = targets.reshape(logits.shape).astype(logits.dtype)",
        ]
        if smooth:
            lines.append(f"target = target * (1 - {smooth!r}) + {smooth!r} / 2")
        lines.append("return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, target))")
    elif name == "mse":
        lines = ["return jnp.mean((targets.reshape(logits.shape) - logits) ** 2)"]
    elif name == "mae":
        lines = ["return jnp.mean(jnp.abs(targets.reshape(logits.shape) - logits))"]
    else:  # huber
        d = a["delta"]
        lines = [
            "r = jnp.abs(targets.reshape(logits.shape) - logits)",
            f"return jnp.mean(jnp.where(r <= {d!r}, r * r / 2, {d!r} * (r - {d!r} / 2)))",
        ]
    return head + "".join(f"    {line}\n" for line in lines)


def _penalty_code(program: Program) -> str | None:
    assert program.model is not None
    default = program.train.regularizer
    terms: list[str] = []
    for n in program.model.nodes:
        args = dict(n.args)
        rule = args.get("regularizer") or default
        if "regularizer" not in args or rule is None:
            continue
        r: dict[str, Any] = dict(rule.args)
        l1 = r.get("l1", 0.0) if rule.name in ("l1", "l1_l2") else 0.0
        l2 = r.get("l2", 0.0) if rule.name in ("l2", "l1_l2") else 0.0
        leaves = (
            f"params[{n.name!r}].values()"
            if str(r["on"]) == "all"
            else f"[params[{n.name!r}]['kernel']]"
            if n.op != "batchnorm" and n.op != "layernorm"
            else "[]"
        )
        parts = []
        if l1:
            parts.append(f"{l1!r} * jnp.sum(jnp.abs(w))")
        if l2:
            parts.append(f"{l2!r} * jnp.sum(w * w)")
        if parts:
            terms.append(f"for w in {leaves}:  # {n.name}: {rule}")
            terms.append(f"    total = total + {' + '.join(parts)}")
    if not terms:
        return None
    body = "".join(f"    {t}\n" for t in terms)
    return (
        "def penalty(params):\n"
        '    """The weight penalties the layers declare (`regularizer = ...`), added to the loss."""\n'
        "    total = jnp.zeros(())\n"
        f"{body}"
        "    return total\n"
    )


# ---- optimizer


SGD_MOMENTUM = '''
class SgdMomentumState(NamedTuple):
    count: jax.Array
    trace: Any


def scale_by_sgd_momentum(momentum, dampening, nesterov):
    """torch.optim.SGD's momentum: b = g at the first step, else momentum * b + (1 -
    dampening) * g; the direction is g + momentum * b with Nesterov, else b."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return SgdMomentumState(jnp.zeros([], jnp.int32), zeros)

    def update(grads, state, params=None):
        first = state.count == 0
        b = jax.tree.map(
            lambda b, g: jnp.where(first, g, momentum * b + (1 - dampening) * g),
            state.trace,
            grads,
        )
        out = jax.tree.map(lambda g, b: g + momentum * b, grads, b) if nesterov else b
        count = optax.safe_int32_increment(state.count)
        return out, SgdMomentumState(count, b)

    return optax.GradientTransformation(init, update)
'''

DECAY_MASK = '''
def decay_mask(params):
    """True where weight decay applies: not on biases and normalization scales."""

    def decays(path, _):
        role = str(getattr(path[-1], "key", path[-1]))
        return role not in ("bias", "scale") and not role.endswith("_bias")

    return jax.tree_util.tree_map_with_path(decays, params)
'''


@dataclass
class _Optimizer:
    code: str
    helpers: list[str]


def _optimizer_code(program: Program) -> _Optimizer:
    train = program.train
    opt = train.optimizer
    a: dict[str, Any] = dict(opt.args)
    helpers: list[str] = []
    wd = a.get("weight_decay", 0.0)
    mask = "None" if train.decay_all else "decay_mask"
    if wd and not train.decay_all:
        helpers.append(DECAY_MASK)
    decay = [f"optax.add_decayed_weights({wd!r}, mask={mask})"] if wd else []
    name = opt.name
    parts: list[str]
    if name in ("sgd", "momentum", "nesterov"):
        momentum = []
        if a["momentum"]:
            helpers.append(SGD_MOMENTUM)
            momentum = [
                f"scale_by_sgd_momentum({a['momentum']!r}, {a['dampening']!r}, {a['nesterov']!r})"
            ]
        parts = [*decay, *momentum]
    elif name in ("adam", "adamw"):
        if a.get("amsgrad"):
            raise _refuse("`amsgrad = true`", train.span_of("optimizer"))
        adam = f"optax.scale_by_adam(b1={a['b1']!r}, b2={a['b2']!r}, eps={a['eps']!r})"
        parts = [*decay, adam] if name == "adam" else [adam, *decay]
    elif name == "rmsprop":
        scale = "optax.scale_by_stddev" if a["centered"] else "optax.scale_by_rms"
        parts = [*decay, f"{scale}(decay={a['alpha']!r}, eps={a['eps']!r}, eps_in_sqrt=False)"]
        if a["momentum"]:
            parts.append(f"optax.trace(decay={a['momentum']!r})")
    elif name == "adadelta":
        parts = [*decay, f"optax.scale_by_adadelta({a['rho']!r}, {a['eps']!r})"]
    else:  # lion
        parts = [f"optax.scale_by_lion(b1={a['b1']!r}, b2={a['b2']!r})", *decay]
    clip = train.clip
    if clip is not None:
        c = float(clip.arg("c"))
        first = (
            f"optax.clip_by_global_norm({c!r})"
            if clip.name == "global_norm"
            else (f"optax.clip({c!r})")
        )
        parts = [first, *parts]
    parts.append("optax.scale_by_learning_rate(learning_rate)")
    schedule, rate = _schedule_code(program)
    chain = "".join(f"            {p},\n" for p in parts)
    code = (
        "def make_optimizer(steps_per_epoch):\n"
        '    """The spec\'s optimizer as one Optax chain:\n\n'
        f"        optimizer = {opt}\n"
        + (f"        clip = {clip}\n" if clip is not None else "")
        + (f"        schedule = {train.schedule}\n" if train.schedule.name != "constant" else "")
        + "\n    The chain is wrapped in `inject_hyperparams`, so its state holds the current\n"
        '    `learning_rate` (what dnn reports as `lr`)."""\n'
        f"{schedule}"
        "\n"
        "    def chain(learning_rate):\n"
        "        return optax.chain(\n"
        f"{chain}"
        "        )\n\n"
        f"    return optax.inject_hyperparams(chain)(learning_rate={rate})\n"
    )
    return _Optimizer(code, helpers)


def _schedule_code(program: Program) -> tuple[str, str]:
    """The schedule as a nested function `learning_rate(t)` of the optimizer step, and what
    `inject_hyperparams` takes: that function, or the constant rate."""
    train = program.train
    ref, lr = train.schedule, float(train.optimizer.arg("lr"))
    a: dict[str, Any] = dict(ref.args)
    name = ref.name
    pre: list[str] = []  # lines before the schedule's return
    warm = a.get("warmup")
    warmup = _duration(warm) if isinstance(warm, Quantity) and warm.value else None
    if name == "constant" and warmup is None:
        return "", repr(lr)
    if name == "constant":
        body = f"jnp.full(jnp.shape(t), {lr!r})"
    elif name == "step":
        body = f"{lr!r} * {a['gamma']!r} ** jnp.floor_divide(t, {_duration(a['step_size'])})"
    elif name == "multistep":
        marks = ", ".join(_duration(q) for q in a["milestones"])
        body = (
            f"{lr!r} * {a['gamma']!r} ** jnp.sum("
            f"jnp.asarray(t)[..., None] >= jnp.asarray([{marks}]), axis=-1)"
        )
    elif name == "exponential":
        ds = _duration(a["decay_steps"])
        p = f"jnp.floor_divide(t, {ds})" if a["staircase"] else f"jnp.asarray(t) / ({ds})"
        body = f"{lr!r} * {a['decay_rate']!r} ** {p}"
    elif name in ("cosine", "warmup_cosine"):
        if a["decay_steps"] is not None:
            ds = _duration(a["decay_steps"])
        else:  # warmup_cosine: decays over the rest of training
            ds = f"max({train.epochs} * steps_per_epoch - {_duration(warm)}, 1)"
        alpha = a["alpha"]
        pre.append(f"decay_steps = {ds}")
        cos = "(1 + jnp.cos(math.pi * jnp.minimum(t, decay_steps) / decay_steps))"
        # alpha = 0: lr · (0 + 1 · c / 2) is lr · c / 2 exactly
        body = (
            f"{lr!r} * {cos} / 2"
            if alpha == 0
            else f"{lr!r} * ({alpha!r} + (1 - {alpha!r}) * {cos} / 2)"
        )
    else:  # polynomial
        ds, end, power = _duration(a["decay_steps"]), a["end_lr"], a["power"]
        body = f"({lr!r} - {end!r}) * (1 - jnp.minimum(t, {ds}) / ({ds})) ** {power!r} + {end!r}"
    lines = [
        f"    def schedule(t):  # {ref}",
        *(f"        {line}" for line in pre),
        f"        return {body}",
        "",
    ]
    if warmup is None:
        lines[0] = f"    def learning_rate(t):  # {ref}"
        return "\n".join(lines) + "\n", "learning_rate"
    lines += [
        "    def learning_rate(t):",
        f'        """Linear warm-up from 0 over {warmup} steps, then the schedule from 0."""',
        "        t = jnp.asarray(t)",
        f"        warmup = {warmup}",
        "        after = schedule(jnp.maximum(t - warmup, 0))",
        f"        return jnp.where(t < warmup, {lr!r} * t / warmup, after)",
        "",
    ]
    return "\n".join(lines) + "\n", "learning_rate"


# ---- augmentation


def _augment_code(program: Program) -> str | None:
    data = program.data
    assert data is not None
    if not data.augment:
        return None
    lines: list[str] = []
    for i, ref in enumerate(data.augment):
        key = f"jax.random.fold_in(key, {i})"
        lines.append(f"# {ref}")
        if ref.name == "random_crop":
            p = int(ref.arg("padding"))
            lines += [
                f"offset = jax.random.randint({key}, (x.shape[0], 2), 0, {2 * p + 1})",
                f"padded = jnp.pad(x, ((0, 0), ({p}, {p}), ({p}, {p}), (0, 0)))",
                "h, w, c = x.shape[1:]",
                "x = jax.vmap(",
                "    lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c))",
                ")(padded, offset)",
            ]
        elif ref.name == "random_flip":
            axis = {"horizontal": 2, "vertical": 1}[str(ref.arg("direction"))]
            lines += [
                f"flip = jax.random.bernoulli({key}, 0.5, (x.shape[0],))",
                "flip = flip.reshape(x.shape[0], *(1,) * (x.ndim - 1))",
                f"x = jnp.where(flip, jnp.flip(x, {axis}), x)",
            ]
        else:  # noise
            std = ref.arg("std")
            lines += [
                f"noise = {std!r} * jax.random.normal({key}, x.shape, jnp.float32)",
                "x = (x + noise).astype(x.dtype)",
            ]
    body = "".join(f"    {line}\n" for line in lines)
    return (
        "def augment(key, x):\n"
        '    """The random transforms of a training batch (`augment`); transform i draws from\n'
        '    fold_in(key, i)."""\n'
        f"{body}"
        "    return x\n"
    )


# ---- the training loop


TRAIN = '''
model = $cls()


def init_state(x_example, tx):
    """The initial weights (and batch statistics) and optimizer state, drawn from SEED."""

    @jax.jit  # one compiled program rather than an operation at a time
    def init():
        key = jax.random.key(SEED)
        rngs = {"params": jax.random.fold_in(key, 1), "dropout": jax.random.fold_in(key, 2)}
        variables = model.init(rngs, x_example)
        params = variables["params"]
        model_state = {k: v for k, v in variables.items() if k != "params"}
        return {
            "params": params,
            "model_state": model_state,
            "opt": tx.init(params),
            "step": jnp.zeros((), jnp.int32),
        }

    return init()


def make_train_step(tx):
    @jax.jit
    def train_step(state, x_all, y_all, idx):
        """One update on the batch x_all[idx]; returns the new state and the batch's loss."""
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(SEED), 3), state["step"])
        $split_keys
        x, y = $batch_x, y_all[idx]

        def objective(params):
            variables = {"params": params, **state["model_state"]}
$forward
            loss = loss_fn(logits, y)
            return $objective, (loss, model_state)

        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (_, (loss, model_state)), grads = grad_fn(state["params"])
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = {"params": params, "model_state": model_state, "opt": opt}
        return {**new, "step": state["step"] + 1}, loss

    return train_step


@jax.jit
def predict(params, model_state, x):
    """The model's outputs in evaluation mode (no dropout$running)."""
    return model.apply({"params": params, **model_state}, x)


def evaluate(state, x, y, batch=256):
    """The mean loss$and_accuracy of the current weights on a whole split."""
    $totals
    for start in range(0, len(x), batch):
        xb, yb = jnp.asarray(x[start : start + batch]), jnp.asarray(y[start : start + batch])
        out = predict(state["params"], state["model_state"], xb)
        total += float(loss_fn(out, yb)) * len(yb)
$count_correct
    return {"loss": total / len(x)$accuracy_entry}


@partial(jax.jit, static_argnums=1)
def permutation(epoch, n):
$permutation


def batch_order(epoch, n):
    """The batches of an epoch: row indices of the train split, drawn from (SEED, epoch)."""
    perm = permutation(epoch, n)
    full = n // BATCH_SIZE
    batches = [perm[i * BATCH_SIZE : (i + 1) * BATCH_SIZE] for i in range(full)]
    if n % BATCH_SIZE and (full == 0 or not DROP_LAST):
        batches.append(perm[full * BATCH_SIZE :])
    return batches


def save_variables(path, state):
    """The initial variables as an .npz, one array per "collection/layer/leaf" path."""
    variables = {"params": state["params"], **state["model_state"]}
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    arrays = {"/".join(str(k.key) for k in path): np.asarray(v) for path, v in flat}
    np.savez(path, **arrays)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument(
        "--steps", type=int, help="stop after this many steps, printing each step's loss"
    )
    parser.add_argument("--save-init", metavar="FILE", help="write the initial variables (.npz)")
    args = parser.parse_args(argv)

    data = load_data()
    x_train, y_train = (jnp.asarray(a) for a in data["train"])
    n = len(x_train)
    steps_per_epoch = len(batch_order(1, n))
    tx = make_optimizer(steps_per_epoch)
    state = init_state(x_train[:1], tx)
    if args.save_init:
        save_variables(args.save_init, state)
    train_step = make_train_step(tx)
$stopper_init
    step = 0
    for epoch in range(1, args.epochs + 1):
        total = jnp.zeros(())
        for idx in batch_order(epoch, n):
            state, loss = train_step(state, x_train, y_train, idx)
            total = total + loss * len(idx)
            step += 1
            if args.steps is not None:
                print(f"step {step} loss {float(loss)!r}", flush=True)
                if step >= args.steps:
                    return
        record = {"loss": float(total) / n}
        if len(data["val"][1]):
            val = evaluate(state, *data["val"])
            record.update({f"val_{k}": v for k, v in val.items()})
        print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items()))
$stopper_step
$restore
    if len(data["test"][1]):
        test = evaluate(state, *data["test"])
        print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in test.items()))


if __name__ == "__main__":
    main()
'''

STOPPER_INIT = """    # early_stopping = $spec
    best, best_epoch, bad_epochs = $start, 0, 0$keep_init"""

STOPPER_STEP = """        value = record["$monitor"]
        if $improved:
            best, best_epoch, bad_epochs = value, epoch, 0$keep
        else:
            bad_epochs += 1
        if bad_epochs >= $patience:
            print(f"early stopping: $monitor has not improved for $patience epochs "
                  f"(best {best:.4f} at epoch {best_epoch})")
            break"""

RESTORE = """    if best_weights is not None:
        state = {**state, **best_weights}"""


def _stopper(program: Program) -> tuple[str, str, str]:
    rec = program.train.early_stopping
    if rec is None:
        return "", "", ""
    monitor = str(rec.get("monitor"))
    mode = str(rec.get("mode"))
    if mode == "auto":
        mode = "min" if monitor.removeprefix("val_") == "loss" else "max"
    delta = float(rec.get("min_delta"))
    improved = f"value < best - {delta!r}" if mode == "min" else f"value > best + {delta!r}"
    start = "math.inf" if mode == "min" else "-math.inf"
    spec = ", ".join(f"{k}: {v}" for k, v in rec.items)
    restoring = bool(rec.get("restore_best"))
    keep_init = (
        "\n    best_weights = None  # restore_best: the best epoch's weights" if restoring else ""
    )
    keep = (
        '\n            best_weights = {k: state[k] for k in ("params", "model_state")}'
        if restoring
        else ""
    )
    init = _fill(STOPPER_INIT, spec="{ " + spec + " }", start=start, keep_init=keep_init)
    step = _fill(
        STOPPER_STEP,
        monitor=monitor,
        improved=improved,
        patience=str(rec.get("patience")),
        keep=keep,
    )
    restore = RESTORE if restoring else ""
    return init, step, restore


def _train_code(program: Program, cls: str, has_state: bool, has_penalty: bool) -> str:
    classify = _task(program) in ("multiclass",)
    augment = bool(program.data and program.data.augment)
    if has_state:
        forward = (
            "            logits, model_state = model.apply(\n"
            "                variables,\n"
            "                x,\n"
            "                train=True,\n"
            '                rngs={"dropout": dropout_key},\n'
            '                mutable=list(state["model_state"]),\n'
            "            )"
        )
    else:
        forward = (
            "            logits = model.apply(\n"
            '                variables, x, train=True, rngs={"dropout": dropout_key}\n'
            "            )\n"
            '            model_state = state["model_state"]'
        )
    data = program.data
    assert data is not None
    if data.shuffle:
        permutation = (
            '    """The order of the train split\'s n rows in an epoch, drawn from (SEED, epoch)."""\n'
            "    key = jax.random.fold_in(jax.random.key(SEED), epoch)\n"
            "    return jax.random.permutation(jax.random.fold_in(key, 7), n)"
        )
    else:
        permutation = (
            '    """The train split\'s rows in order (`shuffle = false`)."""\n'
            "    return jnp.arange(n)"
        )
    init, step, restore = _stopper(program)
    return _fill(
        TRAIN,
        cls=cls,
        batch_x="augment(augment_key, x_all[idx])" if augment else "x_all[idx]",
        split_keys="augment_key, dropout_key = jax.random.split(key)"
        if augment
        else "_, dropout_key = jax.random.split(key)  # the first is augmentation's (none)",
        forward=forward,
        objective="loss + penalty(params)" if has_penalty else "loss",
        running=", running batch statistics" if has_state else "",
        totals="total, correct = 0.0, 0" if classify else "total = 0.0",
        and_accuracy=" and accuracy" if classify else "",
        count_correct=(
            "        correct += int(jnp.sum(jnp.argmax(out, axis=-1) == yb))" if classify else ""
        ),
        accuracy_entry=', "accuracy": correct / len(x)' if classify else "",
        permutation=permutation,
        stopper_init=init,
        stopper_step=step,
        restore=restore,
    )


# ------------------------------------------------------------------ checks


def _check(program: Program) -> None:
    """Refuse, at the spec line, what the script would not reproduce."""
    train, data = program.train, program.data
    assert program.model is not None
    if data is None:
        raise _refuse("a spec without a `data` section", program.model.span)
    src = data.source
    if src.name != "builtin" or str(src.arg("name")) not in SKLEARN_SETS:
        raise _refuse(
            f"the data source `{src}`",
            data.span_of("source"),
            "the emitter reads scikit-learn's built-in sets ("
            + ", ".join(f'builtin("{s}")' for s in SKLEARN_SETS)
            + "); see docs/emit.md",
        )
    for name in ("val", "test"):
        if getattr(data, name) is not None:
            raise _refuse(f"a separate `{name}` source", data.span_of(name))
    if data.reconstruct:
        raise _refuse("`reconstruct = true`", data.span_of("reconstruct"))
    _check_ref(data.targets, "normalizer", data.span_of("targets"), "")
    _check_ref(data.normalize, "normalizer", data.span_of("normalize"), "")
    for ref in data.augment:
        _check_ref(ref, "augmentation", data.span_of("augment"), "")
    _check_ref(train.loss, "loss", train.span_of("loss"), "")
    _check_ref(train.optimizer, "optimizer", train.span_of("optimizer"), "")
    _check_ref(train.schedule, "schedule", train.span_of("schedule"), "")
    if train.clip is not None:
        _check_ref(train.clip, "clipper", train.span_of("clip"), "")
    if train.regularizer is not None:
        _check_ref(train.regularizer, "regularizer", train.span_of("regularizer"), "")
    for name, plain in PLAIN_TRAIN.items():
        if getattr(train, name) != plain:
            raise _refuse(f"`{name}`", train.span_of(name))
    if str(train.precision) != "f32":
        raise _refuse(f"`precision = {train.precision}`", train.span_of("precision"))
    if train.early_stopping is not None:
        monitor = str(train.early_stopping.get("monitor"))
        if monitor not in MONITORS or ("accuracy" in monitor and _task(program) != "multiclass"):
            raise _refuse(
                f"early stopping on `{monitor}`",
                train.span_of("early_stopping"),
                "monitor `val_loss`, `loss`, or `val_accuracy` of a classifier",
            )
    task = _task(program)
    if task not in ("multiclass", "binary", "regression"):
        raise _refuse(f"a {task or 'multi-output'} task", train.span_of("loss"))


# ------------------------------------------------------------------ the script


HEADER = '''"""$title

Emitted by `dnn compile $spec --emit python`: the model, the optimizer, the data
and the training loop of the checked spec, written out as plain Flax + Optax. It does
not import dnn: read it, edit it, run it (`python $script`). As emitted, it starts
from the initial parameters of `dnn train $spec` and takes the same steps (seed,
batch order, dropout and augmentation draws), up to floating-point rounding.
"""

from __future__ import annotations

$imports
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import $loader

SEED = $seed  # train.seed: initialization, batch order, dropout, augmentation
DATA_SEED = $data_seed  # data.seed: the train/val/test split
SPLIT = $fractions  # train, val, test shares
INPUT_SHAPE = $shape  # one example, as the model reads it
BATCH_SIZE = $batch
EPOCHS = $epochs
DROP_LAST = $drop_last  # drop a last batch smaller than BATCH_SIZE
'''


def emit(program: Program, script_name: str = "train_model.py", format_code: bool = True) -> str:
    """The standalone training script of a checked spec; `SpecError` (E0615) at the spec
    line of the first word it cannot write out. With `format_code`, formatted by ruff when
    ruff is installed."""
    if program.model is None:
        raise AssertionError("the command refuses a spec without a model first")
    try:
        model = _ModelCode(program, program.model, program.train.init)
        model.check()  # the layers first: an unsupported one is named at its line
        _check(program)
        model_code = model.code()
        optimizer = _optimizer_code(program)
    except _Refused as e:
        raise SpecError([e.diagnostic], program.sources) from None
    assert program.data is not None
    text = _script(program, script_name, model, model_code, optimizer)
    return ruff_format(text) if format_code else text


def _script(
    program: Program, script_name: str, model: _ModelCode, model_code: str, opt: _Optimizer
) -> str:
    data, train = program.data, program.train
    assert data is not None and program.model is not None
    g = program.model
    from .data.split import fractions

    loader = str(BUILTIN_DATA[str(data.source.arg("name"))]["source"]).rpartition(".")[2]
    header = _fill(
        HEADER,
        imports="$imports",
        title=f"Train `{g.name}` ({Path(program.path).name}) with Flax and Optax.",
        spec=Path(program.path).name,
        script=script_name,
        loader=loader,
        seed=str(train.seed),
        data_seed=str(data.seed),
        fractions=_lit(tuple(fractions(dict(data.split.items), {}))),
        shape=_lit(tuple(g.node(g.inputs[0]).shape)),
        batch=str(train.batch_size),
        epochs=str(train.epochs),
        drop_last=str(bool(data.drop_last)),
    )
    penalty = _penalty_code(program)
    augment = _augment_code(program)
    has_state = g.non_trainable > 0
    sections = [
        header,
        _section("data"),
        _data_code(program),
        _section("model"),
        model.inits.helpers(),
        "\n".join(model.inits.lines) + "\n\n",
        model_code,
        _section("loss and optimizer"),
        _loss_code(program),
        "\n" + penalty if penalty else "",
        *opt.helpers,
        "\n" + opt.code,
    ]
    if augment:
        sections += [_section("augmentation"), augment]
    sections += [
        _section("training"),
        _train_code(program, _camel(g.name), has_state, bool(penalty)),
    ]
    body = "\n".join(s.rstrip("\n") + "\n" for s in sections if s)
    imports = ["import argparse"]  # sorted as isort (ruff's I001) wants them
    if "math." in body:
        imports.append("import math")
    if "partial(" in body:
        imports.append("from functools import partial")
    if "NamedTuple" in body:
        imports.append("from typing import Any, NamedTuple")
    return body.replace("$imports\n", "".join(f"{i}\n" for i in imports) + "\n")


def _section(title: str) -> str:
    return f"\n# {'-' * 66} {title}\n"


# ------------------------------------------------------------------ formatting


def _ruff() -> list[str] | None:
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    found = shutil.which("ruff")
    return [found] if found else None


def ruff_format(text: str) -> str:
    """`text` formatted by `ruff format` with its default settings (not this project's), when
    ruff is installed; else as it is (the templates are written ruff-clean)."""
    ruff = _ruff()
    if ruff is None:
        return text
    done = subprocess.run(
        [*ruff, "format", "--isolated", "--stdin-filename", "train_model.py", "-"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:  # a template bug: keep the text, the tests catch it
        return text
    return done.stdout


def write(program: Program, out: Path) -> str:
    """Emit the script into `out`; returns the text written."""
    text = emit(program, out.name)
    out.write_text(text)
    return text


# The words the emitter writes out, by kind; anything else is refused with E0615.
SUPPORTED = {
    "layer": tuple(LAYER_CODE),
    "activation": tuple(ACTIVATIONS),
    "initializer": tuple(INIT_CODE),
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "clipper": CLIPPERS,
    "loss": LOSSES,
    "normalizer": NORMALIZERS,
    "augmentation": AUGMENTATIONS,
    "regularizer": ("l1", "l2", "l1_l2"),
}
