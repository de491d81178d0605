"""Group, instance and RMS normalization (issue 15): values, parameter counts and refusals.

The references are float64 NumPy computations of the formulas on the reference page
(`dnn help groupnorm`), written from the papers and PyTorch's definitions, not from Flax:
group norm (Wu & He 2018; `torch.nn.GroupNorm`): per example, the mean and biased variance over
the spatial axes and the channels of a group, eps inside the square root, a per-channel scale
and shift; instance norm (`InstanceNorm2d(affine=True, track_running_stats=False)`): the same
per channel; RMS norm (Zhang & Sennrich 2019; `torch.nn.RMSNorm`): x / sqrt(mean(x²) + eps) · g
over the last axis. Weights are random (not the initial ones and zeros), so the affine part is
tested too. In float64 the two sides agree to rounding (1e-10); in float32 to 1e-5.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from conftest import assert_summary
from dnn.compiler.diagnostics import render
from dnn.compiler.lower_flax import lower_model
from dnn.compiler.lower_scan import plan, unstack

import dnn

F64 = {"rtol": 1e-10, "atol": 1e-10}
F32 = {"rtol": 1e-5, "atol": 1e-5}


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def spec(layer: str, shape: tuple[int, ...]) -> str:
    dims = ", ".join(map(str, shape))
    return f"dnn 1\nmodel m {{\n  input x: f32[{dims}]\n  {layer}\n}}\n"


def build(layer: str, x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, dict, dict]:
    """(output, the layer's parameters, all variables) of a one-layer model on `x`, with
    random weights of `x`'s dtype."""
    program = dnn.loads(spec(layer, x.shape[1:]))
    model = lower_model(program.model)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    rng = np.random.default_rng(100 + seed)
    variables = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(x.dtype), shapes)
    y = np.asarray(model.apply(variables, x))
    (name,) = [n.name for n in program.model.nodes if n.op != "input"]
    params = {
        k: np.asarray(v, np.float64) for k, v in variables.get("params", {}).get(name, {}).items()
    }
    return y, params, variables


def affine(z: np.ndarray, p: dict) -> np.ndarray:
    """gamma · z + beta with the parameters the layer has (1 and 0 for the absent ones)."""
    return z * p.get("scale", 1.0) + p.get("bias", 0.0)


# ------------------------------------------------------------------ NumPy references


def ref_groupnorm(x: np.ndarray, groups: int, eps: float, p: dict) -> np.ndarray:
    """Channel c in group floor(c / (C / groups)); statistics per example over every position
    and the channels of the group; biased variance; eps inside the square root."""
    x = x.astype(np.float64)
    size = x.shape[-1] // groups
    z = np.empty_like(x)
    for g in range(groups):
        part = x[..., g * size : (g + 1) * size]
        axes = tuple(range(1, x.ndim))
        mu = part.mean(axes, keepdims=True)
        var = ((part - mu) ** 2).mean(axes, keepdims=True)
        z[..., g * size : (g + 1) * size] = (part - mu) / np.sqrt(var + eps)
    return affine(z, p)


def ref_instancenorm(x: np.ndarray, eps: float, p: dict) -> np.ndarray:
    """Per example and channel over the spatial axes (all but the first and the last)."""
    x = x.astype(np.float64)
    axes = tuple(range(1, x.ndim - 1))
    mu = x.mean(axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axes, keepdims=True)
    return affine((x - mu) / np.sqrt(var + eps), p)


def ref_rmsnorm(x: np.ndarray, eps: float, p: dict) -> np.ndarray:
    x = x.astype(np.float64)
    return affine(x / np.sqrt((x * x).mean(-1, keepdims=True) + eps), p)


# ------------------------------------------------------------------ values (float64)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("groups", [1, 4, 8])
@pytest.mark.parametrize(("extra", "eps"), [("", 1e-5), (", eps = 0.5", 0.5)])
def test_groupnorm(groups: int, extra: str, eps: float) -> None:
    x = rand(2, 5, 6, 8) * 2.0 + 0.7
    y, p, _ = build(f"groupnorm({groups}{extra})", x)
    assert set(p) == {"scale", "bias"}
    np.testing.assert_allclose(y, ref_groupnorm(x, groups, eps, p), **F64)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    ("flags", "leaves"),
    [
        ("center = false", {"scale"}),
        ("scale = false", {"bias"}),
        ("center = false, scale = false", set()),
    ],
)
@pytest.mark.parametrize(
    ("word", "ref"),
    [
        ("groupnorm(4, {})", lambda x, p: ref_groupnorm(x, 4, 1e-5, p)),
        ("instancenorm({})", lambda x, p: ref_instancenorm(x, 1e-5, p)),
    ],
)
def test_without_center_or_scale(word: str, ref, flags: str, leaves: set[str]) -> None:
    x = rand(2, 5, 6, 8, seed=1)
    y, p, _ = build(word.format(flags), x)
    assert set(p) == leaves
    np.testing.assert_allclose(y, ref(x, p), **F64)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(("shape", "groups"), [((3, 8), 2), ((2, 7, 6), 3), ((2, 3, 4, 5, 4), 2)])
def test_groupnorm_on_other_ranks(shape: tuple[int, ...], groups: int) -> None:
    """A vector (PyTorch's (N, C) input), a sequence and a volume: positions are whatever axes
    lie between the batch and the channels."""
    x = rand(*shape, seed=2)
    y, p, _ = build(f"groupnorm({groups})", x)
    np.testing.assert_allclose(y, ref_groupnorm(x, groups, 1e-5, p), **F64)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("shape", [(2, 5, 6, 8), (2, 7, 4), (2, 3, 4, 5, 2)])
@pytest.mark.parametrize(("extra", "eps"), [("", 1e-5), ("(eps = 0.1)", 0.1)])
def test_instancenorm(shape: tuple[int, ...], extra: str, eps: float) -> None:
    x = rand(*shape, seed=3) * 3.0 - 1.0
    y, p, _ = build(f"instancenorm{extra}", x)
    assert set(p) == {"scale", "bias"}
    np.testing.assert_allclose(y, ref_instancenorm(x, eps, p), **F64)


@pytest.mark.usefixtures("x64")
def test_instancenorm_is_groupnorm_with_one_channel_a_group() -> None:
    x = rand(2, 5, 6, 8, seed=4)
    y_in, _, v = build("instancenorm", x)
    program = dnn.loads(spec("groupnorm(8)", x.shape[1:]))
    same = {"params": {"groupnorm": v["params"]["instancenorm"]}}
    np.testing.assert_allclose(lower_model(program.model).apply(same, x), y_in, **F64)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    ("word", "eps", "leaves"),
    [
        ("rmsnorm", 1e-6, {"scale"}),
        ("rmsnorm(eps = 1e-3)", 1e-3, {"scale"}),
        ("rmsnorm(eps = 0.5, scale = false)", 0.5, set()),
    ],
)
def test_rmsnorm(word: str, eps: float, leaves: set[str]) -> None:
    x = rand(3, 7, 16, seed=5) + 0.5  # not centred: rmsnorm must not subtract the mean
    y, p, _ = build(word, x)
    assert set(p) == leaves
    np.testing.assert_allclose(y, ref_rmsnorm(x, eps, p), **F64)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("word", ["groupnorm(2)", "instancenorm", "rmsnorm"])
def test_training_and_evaluation_agree_and_keep_no_statistics(word: str) -> None:
    x = rand(4, 3, 3, 4, seed=6)
    program = dnn.loads(spec(word, x.shape[1:]))
    model = lower_model(program.model)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    assert set(shapes) == {"params"}
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: rng.normal(size=s.shape), shapes)
    assert program.model.non_trainable == 0
    train = model.apply(variables, x, train=True)
    np.testing.assert_array_equal(train, model.apply(variables, x))
    np.testing.assert_allclose(train[:1], model.apply(variables, x[:1]), **F64)  # per example


# ------------------------------------------------------------------ values (float32)


@pytest.mark.parametrize(
    ("word", "shape", "ref"),
    [
        ("groupnorm(4)", (2, 5, 6, 8), lambda x, p: ref_groupnorm(x, 4, 1e-5, p)),
        ("instancenorm", (2, 5, 6, 8), lambda x, p: ref_instancenorm(x, 1e-5, p)),
        ("rmsnorm", (3, 7, 16), lambda x, p: ref_rmsnorm(x, 1e-6, p)),
    ],
)
def test_float32(word: str, shape: tuple[int, ...], ref) -> None:
    x = rand(*shape, seed=7).astype(np.float32)
    y, p, _ = build(word, x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref(x, p), **F32)


@pytest.mark.parametrize(
    ("word", "ref"),
    [
        ("groupnorm(4)", lambda x, p: ref_groupnorm(x, 4, 1e-5, p)),
        ("instancenorm", lambda x, p: ref_instancenorm(x, 1e-5, p)),
    ],
)
def test_float32_variance_survives_a_large_offset(word: str, ref) -> None:
    """The variance is taken as mean((x - mu)²), as PyTorch does: Flax's default
    E[x²] - mu² loses it to cancellation (an error near 4e-3 here, 4e-2 at an offset of 300)."""
    x = (rand(2, 5, 6, 8, seed=8) + 100.0).astype(np.float32)
    y, p, _ = build(word, x)
    np.testing.assert_allclose(y, ref(x, p), rtol=0, atol=2e-4)


# ------------------------------------------------------------------ parameter counts


@pytest.mark.parametrize(
    ("word", "shape", "count"),
    [
        ("groupnorm(4)", (5, 6, 8), 16),
        ("groupnorm(4, center = false)", (5, 6, 8), 8),
        ("groupnorm(1, scale = false)", (5, 6, 8), 8),
        ("groupnorm(8, center = false, scale = false)", (5, 6, 8), 0),
        ("groupnorm(2)", (8,), 16),
        ("instancenorm", (5, 6, 8), 16),
        ("instancenorm(center = false)", (7, 3), 3),
        ("instancenorm(center = false, scale = false)", (5, 6, 8), 0),
        ("rmsnorm", (7, 16), 16),
        ("rmsnorm(scale = false)", (7, 16), 0),
    ],
)
def test_parameter_counts_are_the_built_modules(
    word: str, shape: tuple[int, ...], count: int
) -> None:
    src = spec(word, shape)
    assert_summary(src, count, shapes=[shape], per_layer=[count])
    model = lower_model(dnn.loads(src).model)
    variables = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, *shape), np.float32))
    assert sum(math.prod(v.shape) for v in jax.tree.leaves(variables)) == count


# ------------------------------------------------------------------ refusals and names


def rendered(src: str) -> str:
    with pytest.raises(dnn.SpecError) as info:
        dnn.loads(src, "spec.dnn")
    (d,) = info.value.diagnostics
    return render(d, info.value.sources)


def test_groups_not_dividing_the_channels_is_refused_at_the_argument() -> None:
    assert rendered(spec("conv2d(12, 3) -> groupnorm(groups = 8)", (8, 8, 3))).splitlines() == [
        "spec.dnn:4:30: error[E0401]: `groups = 8` does not divide the 12 channels of the input",
        "4 |   conv2d(12, 3) -> groupnorm(groups = 8)",
        "  |                              ^^^^^^^^^^",
        "  hint: choose `groups` among the divisors of 12: 1, 2, 3, 4, 6 or 12",
    ]


def test_groups_written_positionally_and_more_groups_than_channels() -> None:
    lines = rendered(spec("groupnorm(16)", (4, 4, 6))).splitlines()
    assert lines[0] == (
        "spec.dnn:4:13: error[E0401]: `groups = 16` does not divide the 6 channels of the input"
    )
    assert lines[2] == "  |             ^^"
    assert lines[3] == "  hint: choose `groups` among the divisors of 6: 1, 2, 3 or 6"
    prime = rendered(spec("groupnorm(2)", (4, 7))).splitlines()[-1]
    assert prime == "  hint: choose `groups` among the divisors of 7: 1 or 7"


def test_instancenorm_on_a_vector_is_refused() -> None:
    assert rendered(spec("dense(8) -> instancenorm", (6,))).splitlines() == [
        "spec.dnn:4:15: error[E0402]: `instancenorm` normalizes each channel over the spatial "
        "axes, and an input of shape (8,) has none",
        "4 |   dense(8) -> instancenorm",
        "  |               ^^^^^^^^^^^^",
        "  hint: apply it after a convolution, or use `layernorm` to normalize a vector's features",
    ]


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("GroupNorm(2)", "groupnorm"),
        ("InstanceNorm", "instancenorm"),
        ("InstanceNorm2d", "instancenorm"),
        ("RMSNorm", "rmsnorm"),
        ("RMSnorm", "rmsnorm"),
    ],
)
def test_other_libraries_names_get_a_did_you_mean(written: str, meant: str) -> None:
    assert rendered(spec(written, (4, 4, 6))).splitlines()[-1] == f"  hint: did you mean `{meant}`?"


@pytest.mark.parametrize(
    ("alias", "op"),
    [("group_norm(3)", "groupnorm"), ("instance_norm", "instancenorm"), ("rms_norm", "rmsnorm")],
)
def test_aliases(alias: str, op: str) -> None:
    (node,) = [n for n in dnn.loads(spec(alias, (4, 4, 6))).model.nodes if n.op != "input"]
    assert node.op == op


def test_a_scanned_repeat_equals_the_unrolled_one() -> None:
    """In a repeat lowered as one `nn.scan` (train.scan_repeats) the layers' scales and shifts
    stack like any weight; with no running statistics there is nothing else to carry."""
    src = """block blk(c) {
  h = conv2d(c, kernel = 3, padding = same)(in) -> groupnorm(2) -> relu
  h = instancenorm(h) -> rmsnorm
  output add(in, h)
}
model m {
  input x: f32[5, 5, 4]
  repeat 3 { blk(4) }
}
"""
    program = dnn.loads(src)
    scan = plan(program.model, True)
    assert [g.key for g in scan.groups] == ["blk..blk_2"]
    flat, scanned = lower_model(program.model), lower_model(program.model, scan=scan)
    x = rand(2, 5, 5, 4, seed=9).astype(np.float32)
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(scanned.init, jax.random.key(0), x)
    stacked = jax.tree.map(lambda s: rng.normal(0, 0.4, s.shape).astype(np.float32), shapes)
    assert set(stacked) == {"params"}
    unrolled = {"params": unstack(stacked["params"], scan)}
    np.testing.assert_allclose(
        scanned.apply(stacked, x, train=True), flat.apply(unrolled, x, train=True), **F32
    )


def test_a_group_or_an_instance_of_one_value_is_refused() -> None:
    """It normalizes to 0 whatever the input (PyTorch's instance norm refuses it in training,
    "expected more than 1 spatial element")."""
    lines = rendered(spec("groupnorm(6)", (6,))).splitlines()
    assert lines[0] == (
        "spec.dnn:4:13: error[E0401]: `groups = 6` leaves one value in each group of an input "
        "of shape (6,): each normalizes to 0, and the output is beta whatever the input"
    )
    assert lines[-1] == "  hint: use fewer groups: 1, 2 or 3"
    assert rendered(spec("groupnorm(1)", (1,))).splitlines()[-1] == (
        "  hint: a single value has nothing to normalize: remove the layer"
    )
    assert rendered(spec("global_avgpool -> reshape([1, 1, 4]) -> instancenorm", (3, 3, 4))) == (
        "spec.dnn:4:43: error[E0401]: `instancenorm` on shape (1, 1, 4) normalizes each channel "
        "over one position: each normalizes to 0, and the output is beta whatever the input\n"
        "4 |   global_avgpool -> reshape([1, 1, 4]) -> instancenorm\n"
        "  |                                           ^^^^^^^^^^^^\n"
        "  hint: apply it before the spatial axes shrink to one position, or use `layernorm`"
    )
    dnn.loads(spec("groupnorm(6)", (2, 6)))  # two positions a group: accepted
