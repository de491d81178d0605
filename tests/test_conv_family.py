"""The convolution family (issue 15): transposed, depthwise and separable convolutions,
upsampling, adaptive pooling, zero padding, cropping and pooling's ceil_mode.

Each word's Flax lowering is compared with a float64 NumPy reference written from its formula
(direct loops at tiny sizes: the scatter form of a transposed convolution, PyTorch's
half-pixel bilinear formula, PyTorch's adaptive bins and ceil_mode windows); the static shapes
and parameter counts of `dnn check` are compared with the built module; the refusals are
matched whole: position, code, message and hint.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from conftest import assert_error, assert_fmt_identity
from test_layers_numeric import TOL, rand, ref_conv, run, same_pad
from test_lower_flax import built, counts

import dnn

# ------------------------------------------------------------------ NumPy references


def ref_conv_transpose(x, w, b, stride, left, dil, out):
    """y[i·s + k·d - left, o] += x[i, c] W[k, c, o] for the output positions in [0, out)."""
    nd = x.ndim - 2
    y = np.zeros((x.shape[0], *out, w.shape[-1]))
    for i in np.ndindex(*x.shape[1:-1]):
        for k in np.ndindex(*w.shape[:nd]):
            o = tuple(i[a] * stride[a] + k[a] * dil[a] - left[a] for a in range(nd))
            if all(0 <= o[a] < out[a] for a in range(nd)):
                y[(slice(None), *o)] += x[(slice(None), *i)] @ w[k]
    return y + b


def transpose_len(n, k, s, p, op, d):
    """PyTorch's ConvTranspose output length."""
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


def linear_matrix(n, scale):
    """PyTorch's align_corners=False linear interpolation from n to n·scale as a matrix:
    u = max((p + 0.5) / scale - 0.5, 0), i = floor(u), weights 1 - (u - i) and u - i on i and
    min(i + 1, n - 1)."""
    m = np.zeros((n * scale, n))
    for p in range(n * scale):
        u = max((p + 0.5) / scale - 0.5, 0.0)
        i = int(math.floor(u))
        lam = u - i
        m[p, min(i, n - 1)] += 1 - lam
        m[p, min(i + 1, n - 1)] += lam
    return m


def ref_bilinear(x, scales):
    for axis, s in enumerate(scales):
        m = linear_matrix(x.shape[axis + 1], s)
        x = np.moveaxis(np.tensordot(m, np.moveaxis(x, axis + 1, 0), axes=1), 0, axis + 1)
    return x


def bins(n, out):
    return [(math.floor(i * n / out), math.ceil((i + 1) * n / out)) for i in range(out)]


def ref_adaptive(x, out, reduce):
    nd = x.ndim - 2
    edges = [bins(x.shape[1 + a], out[a]) for a in range(nd)]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for o in np.ndindex(*out):
        window = tuple(slice(*edges[a][o[a]]) for a in range(nd))
        part = x[(slice(None), *window)]
        y[(slice(None), *o)] = reduce(part, axis=tuple(range(1, nd + 1)))
    return y


def ref_ceil_pool(x, size, stride, pad, kind):
    """PyTorch's pooling with ceil_mode=True and count_include_pad=True, window by window."""
    nd = x.ndim - 2
    out = []
    for a in range(nd):
        n, k, s, p = x.shape[1 + a], size[a], stride[a], pad[a]
        m = -(-(n + 2 * p - k) // s) + 1
        out.append(m - 1 if (m - 1) * s >= n + p else m)
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for o in np.ndindex(*out):
        lo = [o[a] * stride[a] - pad[a] for a in range(nd)]
        hi = [min(lo[a] + size[a], x.shape[1 + a] + pad[a]) for a in range(nd)]
        cells = math.prod(hi[a] - lo[a] for a in range(nd))
        window = tuple(slice(max(lo[a], 0), min(hi[a], x.shape[1 + a])) for a in range(nd))
        part = x[(slice(None), *window)]
        axes = tuple(range(1, nd + 1))
        y[(slice(None), *o)] = part.max(axes) if kind == "max" else part.sum(axes) / cells
    return y


# ------------------------------------------------------------------ transposed convolutions

pytestmark = pytest.mark.usefixtures("x64")

# (layer, input shape, stride, padding, output_padding, dilation)
TRANSPOSED = [
    (
        "conv_transpose2d(3, 3, stride = 2, padding = 1, output_padding = 1)",
        (4, 4, 2),
        (2, 2),
        (1, 1),
        (1, 1),
        (1, 1),
    ),
    ("conv_transpose2d(3, 3, dilation = 2)", (5, 4, 2), (1, 1), (0, 0), (0, 0), (2, 2)),
    (
        "conv_transpose2d(3, [3, 2], stride = [2, 1], padding = [1, 0], dilation = [1, 2])",
        (3, 4, 2),
        (2, 1),
        (1, 0),
        (0, 0),
        (1, 2),
    ),
    (
        "conv_transpose2d(2, 2, stride = 2, padding = valid)",
        (3, 3, 1),
        (2, 2),
        (0, 0),
        (0, 0),
        (1, 1),
    ),
    (
        "conv_transpose1d(2, 4, stride = 3, padding = 2, output_padding = 2)",
        (5, 2),
        (3,),
        (2,),
        (2,),
        (1,),
    ),
    (
        "conv_transpose1d(2, 3, padding = 1, output_padding = 1, dilation = 2)",
        (4, 3),
        (1,),
        (1,),
        (1,),
        (2,),
    ),
    ("conv_transpose1d(2, 5, stride = 2, padding = 5)", (6, 1), (2,), (5,), (0,), (1,)),
]


@pytest.mark.parametrize(("layer", "shape", "s", "p", "op", "d"), TRANSPOSED)
def test_conv_transpose_is_the_scatter_formula(layer, shape, s, p, op, d):
    x = rand(2, *shape)
    y, m = run(layer, x)
    w = m.p(layer.split("(")[0])
    k = w["kernel"].shape[:-2]
    out = tuple(transpose_len(shape[a], k[a], s[a], p[a], op[a], d[a]) for a in range(len(s)))
    want = ref_conv_transpose(x, w["kernel"], w["bias"], s, p, d, out)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, **TOL)


@pytest.mark.parametrize(
    ("layer", "shape", "s", "k"),
    [
        ("conv_transpose2d(3, 3, stride = 2, padding = same)", (4, 5, 2), 2, 3),
        ("conv_transpose2d(3, 4, stride = 2, padding = same)", (3, 3, 2), 2, 4),
        ("conv_transpose2d(3, 5, stride = 2, padding = same)", (3, 4, 2), 2, 5),
        ("conv_transpose2d(3, 3, padding = same)", (4, 4, 2), 1, 3),
        ("conv_transpose1d(2, 2, stride = 3, padding = same)", (4, 2), 3, 2),
    ],
)
def test_conv_transpose_same_is_the_adjoint_of_a_same_conv(layer, shape, s, k):
    """`same`: out = n·s, the scatter cut by floor(max(k - s, 0) / 2) on the left, which is
    the adjoint (the gradient) of `conv(padding = same, stride = s)` with the same kernel."""
    nd = len(shape) - 1
    x = rand(2, *shape)
    y, m = run(layer, x)
    w = m.p(layer.split("(")[0])
    out = tuple(n * s for n in shape[:-1])
    left = (max(k - s, 0) // 2,) * nd
    want = ref_conv_transpose(x, w["kernel"], w["bias"], (s,) * nd, left, (1,) * nd, out)
    np.testing.assert_allclose(y, want, **TOL)
    u = rand(2, *out, w["kernel"].shape[-1], seed=5)
    pads = [same_pad(n, k, s, 1) for n in out]
    conv_u = ref_conv(u, np.swapaxes(w["kernel"], -1, -2), 0.0, (s,) * nd, pads, (1,) * nd, 1)
    assert conv_u.shape == x.shape
    assert np.isclose(np.sum(conv_u * x), np.sum(u * (y - w["bias"])), rtol=1e-10)


# ------------------------------------------------------------------ depthwise and separable


def depthwise_ref(x, kernel, stride, pads, dil, m):
    """y[p, c·m + j] = sum_k x[p·s + k·d - pad, c] W[k, c, j], channel by channel."""
    outs = []
    for c in range(x.shape[-1]):
        for j in range(m):
            w = kernel[..., :, c * m + j : c * m + j + 1]  # (k, k, 1, 1)
            outs.append(ref_conv(x[..., c : c + 1], w, 0.0, stride, pads, dil, 1))
    return np.concatenate(outs, -1)


@pytest.mark.parametrize(
    ("layer", "shape", "stride", "pads", "dil", "m"),
    [
        ("depthwise_conv2d(3)", (5, 5, 3), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
        (
            "depthwise_conv2d(3, depth_multiplier = 2, stride = 2, padding = 1)",
            (6, 5, 2),
            (2, 2),
            ((1, 1), (1, 1)),
            (1, 1),
            2,
        ),
        (
            "depthwise_conv2d([3, 2], dilation = [1, 2], padding = same)",
            (5, 6, 2),
            (1, 1),
            "same",
            (1, 2),
            1,
        ),
    ],
)
def test_depthwise_conv2d(layer, shape, stride, pads, dil, m):
    x = rand(2, *shape)
    y, b = run(layer, x)
    p = b.p("depthwise_conv2d")
    k = p["kernel"].shape[:2]
    if pads == "same":
        pads = [same_pad(shape[a], k[a], stride[a], dil[a]) for a in range(2)]
    want = depthwise_ref(x, p["kernel"], stride, pads, dil, m) + p["bias"]
    np.testing.assert_allclose(y, want, **TOL)


def test_separable_conv2d_is_depthwise_then_pointwise_with_one_bias():
    x = rand(2, 6, 6, 3)
    y, b = run("separable_conv2d(4, 3, depth_multiplier = 2, stride = 2, padding = 1)", x)
    p = b.p("separable_conv2d")
    assert set(p) == {"depthwise_kernel", "pointwise_kernel", "bias"}
    h = depthwise_ref(x, p["depthwise_kernel"], (2, 2), ((1, 1), (1, 1)), (1, 1), 2)
    np.testing.assert_allclose(y, h @ p["pointwise_kernel"] + p["bias"], **TOL)


def test_separable_and_depthwise_counts_are_keras():
    """Keras: SeparableConv2D(16, 3) on 8 channels, depth_multiplier 2: 3·3·8·2 + 8·2·16 + 16;
    DepthwiseConv2D(3, depth_multiplier = 2) on 8 channels: 3·3·8·2 + 8·2."""
    src = """model m {
  input x: f32[10, 10, 8]
  a = separable_conv2d(16, 3, depth_multiplier = 2)(x)
  b = separable_conv2d(16, 3, use_bias = false)(x)
  c = depthwise_conv2d(3, depth_multiplier = 2)(x)
  d = depthwise_conv2d(3, use_bias = false)(x)
  output concat(flatten(a), flatten(b), flatten(c), flatten(d))
}
"""
    program = dnn.loads(src)
    got = {n.name: n.params for n in program.model.nodes if n.params}
    assert got == {"a": 144 + 256 + 16, "b": 72 + 128, "c": 144 + 16, "d": 72}
    variables, _ = built(program)
    assert counts(variables) == got


def test_a_regularizer_on_separable_conv2d_penalizes_both_kernels():
    from dnn.compiler.lower_loss import lower_penalties

    x = rand(2, 5, 5, 2)
    _, b = run("separable_conv2d(3, 2, regularizer = l2(0.5))", x)
    p = b.p("separable_conv2d")
    got = lower_penalties(b.program.model)(b.variables["params"])
    want = 0.5 * (np.sum(p["depthwise_kernel"] ** 2) + np.sum(p["pointwise_kernel"] ** 2))
    np.testing.assert_allclose(got, want, **TOL)


def test_separable_conv2d_takes_no_constraint():
    assert_error(
        spec("separable_conv2d(3, 2, constraint = max_norm(2))"),
        "3:26",
        "E0301",
        "unknown argument `constraint` for `separable_conv2d`",
        "`separable_conv2d` takes `filters`, `kernel`, `depth_multiplier`, `stride`, `padding`, "
        "`dilation`, `use_bias`, `init`, `bias_init`, `regularizer`",
    )


# ------------------------------------------------------------------ upsampling


@pytest.mark.parametrize(
    ("layer", "shape", "scales"),
    [
        ("upsample(2)", (3, 4, 2), (2, 2)),
        ("upsample([3, 1])", (2, 3, 1), (3, 1)),
        ("upsample(3)", (4, 2), (3,)),
    ],
)
def test_upsample_nearest_repeats(layer, shape, scales):
    x = rand(2, *shape)
    y, _ = run(layer, x)
    want = x
    for a, s in enumerate(scales):
        want = np.repeat(want, s, axis=a + 1)
    np.testing.assert_allclose(y, want, **TOL)


@pytest.mark.parametrize(
    ("layer", "shape", "scales"),
    [
        ("upsample(2, mode = bilinear)", (3, 4, 2), (2, 2)),
        ("upsample([3, 2], mode = bilinear)", (4, 3, 1), (3, 2)),
        ("upsample(4, mode = bilinear)", (5, 2), (4,)),
        ("upsample(2, mode = bilinear)", (1, 2, 1), (2, 2)),
        ("upsample([2, 1, 3], mode = bilinear)", (2, 3, 2, 1), (2, 1, 3)),
    ],
)
def test_upsample_bilinear_is_pytorch_align_corners_false(layer, shape, scales):
    x = rand(2, *shape)
    y, _ = run(layer, x)
    np.testing.assert_allclose(y, ref_bilinear(x, scales), **TOL)


def test_the_bilinear_reference_is_pytorch_on_a_known_case():
    """torch.nn.Upsample(scale_factor=2, mode="linear", align_corners=False) of [0, 1, 2]
    gives [0, 0.25, 0.75, 1.25, 1.75, 2] (the half-pixel formula, edges clamped)."""
    got = linear_matrix(3, 2) @ np.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(got, [0, 0.25, 0.75, 1.25, 1.75, 2], **TOL)


# ------------------------------------------------------------------ adaptive pooling


def test_adaptive_bins_are_pytorch():
    assert bins(7, 3) == [(0, 3), (2, 5), (4, 7)]
    assert bins(5, 3) == [(0, 2), (1, 4), (3, 5)]
    assert bins(3, 5) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize(
    ("size", "shape", "out"),
    [
        ("3", (7, 5, 2), (3, 3)),
        ("[2, 4]", (5, 8, 1), (2, 4)),
        ("[5, 1]", (3, 4, 2), (5, 1)),
        ("3", (7, 2), (3,)),
        ("2", (3, 5, 4, 1), (2, 2, 2)),
    ],
)
def test_adaptive_pool(kind, size, shape, out):
    x = rand(2, *shape)
    y, _ = run(f"adaptive_{kind}pool({size})", x)
    want = ref_adaptive(x, out, np.mean if kind == "avg" else np.max)
    np.testing.assert_allclose(y, want, **TOL)


# ------------------------------------------------------------------ zero padding and cropping


@pytest.mark.parametrize(
    ("layer", "shape", "pads"),
    [
        ("zero_pad(1)", (3, 4, 2), ((1, 1), (1, 1))),
        ("zero_pad([2, 0])", (3, 4, 2), ((2, 2), (0, 0))),
        ("zero_pad([[1, 2], [0, 3]])", (3, 4, 2), ((1, 2), (0, 3))),
        ("zero_pad([[0, 2]])", (3, 2), ((0, 2),)),
    ],
)
def test_zero_pad(layer, shape, pads):
    x = rand(2, *shape)
    y, _ = run(layer, x)
    np.testing.assert_allclose(y, np.pad(x, ((0, 0), *pads, (0, 0))), **TOL)


@pytest.mark.parametrize(
    ("layer", "shape", "window"),
    [
        ("cropping(1)", (4, 5, 2), (slice(1, 3), slice(1, 4))),
        ("cropping([1, 0])", (4, 5, 2), (slice(1, 3), slice(0, 5))),
        ("cropping([[0, 2], [3, 1]])", (4, 5, 2), (slice(0, 2), slice(3, 4))),
        ("cropping([[2, 0]])", (5, 2), (slice(2, 5),)),
    ],
)
def test_cropping(layer, shape, window):
    x = rand(2, *shape)
    y, _ = run(layer, x)
    np.testing.assert_allclose(y, x[(slice(None), *window)], **TOL)


# ------------------------------------------------------------------ ceil_mode


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    ("args", "shape", "size", "stride", "pad"),
    [
        ("2", (5, 5, 2), (2, 2), (2, 2), (0, 0)),
        ("3, stride = 2", (6, 7, 1), (3, 3), (2, 2), (0, 0)),
        ("3, stride = 2, padding = 1", (6, 6, 2), (3, 3), (2, 2), (1, 1)),
        ("[3, 2], stride = [2, 3], padding = [1, 0]", (4, 7, 1), (3, 2), (2, 3), (1, 0)),
    ],
)
def test_ceil_mode_pooling_is_pytorch(kind, args, shape, size, stride, pad):
    x = rand(2, *shape)
    y, _ = run(f"{kind}pool2d({args}, ceil_mode = true)", x)
    np.testing.assert_allclose(y, ref_ceil_pool(x, size, stride, pad, kind), **TOL)


def test_ceil_mode_drops_a_window_that_would_start_in_the_right_padding():
    """n = 3, size 2, stride 2, padding 1: ceil(3 / 2) + 1 = 3 windows, but the third would
    start at 4 >= n + padding, so PyTorch keeps 2."""
    x = rand(2, 3, 2)
    y, _ = run("avgpool1d(2, padding = 1, ceil_mode = true)", x)
    assert y.shape == (2, 2, 2)
    np.testing.assert_allclose(y, ref_ceil_pool(x, (2,), (2,), (1,), "avg"), **TOL)


def test_ceil_mode_off_keeps_the_floor():
    program = dnn.loads("model m {\n  input x: f32[5, 5, 1]\n  maxpool2d(2)\n}\n")
    assert program.model.node(program.model.outputs[0]).shape == (2, 2, 1)


# ------------------------------------------------------------------ static shapes and counts

EVERY = """
model every {
  input img: f32[7, 6, 3]
  input seq: f32[9, 2]
  input vol: f32[4, 5, 3, 2]
  a = conv_transpose2d(4, 3, stride = 2, padding = 1, output_padding = 1, use_bias = false)(img)
  b = conv_transpose2d(2, [2, 3], stride = [1, 2], padding = same)(img)
  c = conv_transpose1d(3, 4, stride = 3, padding = 1, dilation = 2)(seq)
  d = conv_transpose3d(2, 2, stride = 2)(vol)
  e = depthwise_conv2d(3, depth_multiplier = 3, padding = same)(img)
  f = separable_conv2d(5, 2, stride = 2, dilation = 1)(img)
  g = upsample([2, 3], mode = bilinear)(img) -> upsample(2)
  h = upsample(2)(seq) -> upsample(3, mode = bilinear)
  i = adaptive_avgpool([3, 4])(img)
  j = adaptive_maxpool(2)(vol)
  k = adaptive_avgpool(4)(seq)
  l = zero_pad([[1, 0], 2])(img) -> cropping([[0, 2], [1, 1]])
  m = zero_pad(1)(vol) -> cropping(1)
  n = maxpool2d(3, stride = 2, padding = 1, ceil_mode = true)(img)
  o = avgpool1d(2, ceil_mode = true)(seq)
  p = avgpool3d(2, ceil_mode = true)(vol)
  output concat(flatten(a), flatten(b), flatten(c), flatten(d), flatten(e), flatten(f),
    flatten(g), flatten(h), flatten(i), flatten(j), flatten(k), flatten(l), flatten(m),
    flatten(n), flatten(o), flatten(p))
}
"""


def test_static_shapes_and_counts_equal_the_built_module():
    program = dnn.loads(EVERY)
    variables, out = built(program)  # asserts every node's shape against jax.eval_shape
    static = {n.name: n.params for n in program.model.nodes if n.params}
    assert counts(variables) == static
    assert out.shape == (2, *program.model.node(program.model.outputs[0]).shape)
    shapes = {n.name: n.shape for n in program.model.nodes}
    assert shapes["a"] == (14, 12, 4)  # (7 - 1)·2 - 2 + 2 + 1 + 1, (6 - 1)·2 - 2 + 2 + 1 + 1
    assert shapes["c"] == (29, 3)  # (9 - 1)·3 - 2·1 + 2·(4 - 1) + 1
    assert shapes["n"] == (4, 4, 3)  # ceil((7 + 2 - 3) / 2) + 1, ceil((6 + 2 - 3) / 2) + 1
    assert static["a"] == 9 * 3 * 4


def test_eval_shape_of_a_single_word():
    program = dnn.loads("model m {\n  input x: f32[3, 3, 1]\n  conv_transpose2d(1, 2)\n}\n")
    from dnn.compiler.lower_flax import lower_model

    model = lower_model(program.model)
    x = np.zeros((1, 3, 3, 1))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.eval_shape(model.apply, variables, x).shape == (1, 4, 4, 1)


def test_the_new_forms_format_to_themselves():
    assert_fmt_identity(
        "dnn 1\n\nmodel m {\n  input x: f32[6, 6, 2]\n"
        "  zero_pad([[1, 2], 0])\n  cropping([1, [0, 2]])\n"
        "  conv_transpose2d(2, 3, stride = 2, padding = 1, output_padding = 1)\n"
        "  upsample([2, 1], mode = bilinear)\n  adaptive_maxpool([3, 2])\n"
        "  maxpool2d(2, ceil_mode = true)\n}\n"
    )


# ------------------------------------------------------------------ refusals


def spec(line: str, shape: str = "f32[5, 5, 2]") -> str:
    return f"model m {{\n  input x: {shape}\n  {line}\n}}\n"


def test_output_padding_must_be_below_stride_or_dilation():
    assert_error(
        spec("conv_transpose2d(2, 3, stride = 2, output_padding = 2)"),
        "3:38",
        "E0306",
        "`output_padding = 2` on spatial axis 0 must be smaller than the stride (2) or the "
        "dilation (1)",
        "output_padding only picks among the output lengths a stride allows: use at most 1",
    )


def test_output_padding_does_not_apply_with_same():
    assert_error(
        spec("conv_transpose2d(2, 3, stride = 2, padding = same, output_padding = 1)"),
        "3:54",
        "E0306",
        "`output_padding` does not apply with `padding = same`, whose output is input · stride",
        "remove `output_padding`, or give the padding as a number",
    )


def test_a_transposed_output_that_is_not_positive_is_refused_at_the_padding():
    assert_error(
        spec("conv_transpose1d(2, 2, padding = 3)", "f32[2, 1]"),
        "3:26",
        "E0401",
        "`conv_transpose1d` output length -3 on spatial axis 0 is not positive: "
        "(n - 1)·stride - 2·padding + dilation·(kernel - 1) + output_padding + 1 with n = 2",
        "use a smaller `padding`",
    )


def test_a_crop_that_leaves_nothing_is_refused():
    assert_error(
        spec("cropping([[1, 1], [3, 2]])"),
        "3:12",
        "E0401",
        "`cropping` removes 5 of the 5 values on spatial axis 1, leaving nothing",
        "crop fewer than 5 in all on that axis",
    )


def test_a_list_of_the_wrong_length_is_refused_at_the_argument():
    assert_error(
        spec("upsample([2, 2, 2])"),
        "3:12",
        "E0401",
        "`scale` has 3 values, but the input of `upsample` has 2 spatial axes",
        "give one int for all axes, or 2",
    )
    assert_error(
        spec("zero_pad([1, 2, 3])", "f32[5, 2]"),
        "3:12",
        "E0401",
        "`padding` has 3 entries, but the input of `zero_pad` has 1 spatial axis",
        "give one int for all sides, 1 ints, or 1 `[before, after]` pairs",
    )
    assert_error(
        spec("adaptive_avgpool([2, 0])"),
        "3:20",
        "E0306",
        "argument `output_size` of `adaptive_avgpool` must be an int > 0 or a list of one "
        "per spatial axis, got a list of 2 ints",
    )


def test_ceil_mode_is_refused_with_same_padding():
    assert_error(
        spec("maxpool2d(2, padding = same, ceil_mode = true)"),
        "3:32",
        "E0306",
        "`ceil_mode` does not apply with `padding = same`, which already covers the input",
        "remove `ceil_mode`, or give the padding as a number",
    )


def test_upsample_needs_spatial_axes():
    assert_error(
        spec("upsample(2)", "f32[6]"),
        "3:3",
        "E0402",
        "`upsample` expects spatial axes and channels, got shape (6,)",
        "insert `reshape([...])` before `upsample` to give it (spatial axes, channels)",
    )


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("ConvTranspose2d", "conv_transpose2d"),
        ("Conv2DTranspose", "conv_transpose2d"),
        ("UpSampling2D", "upsample"),
        ("Upsample", "upsample"),
        ("ZeroPadding2D", "zero_pad"),
        ("Cropping2D", "cropping"),
        ("AdaptiveAvgPool2d", "adaptive_avgpool"),
        ("AdaptiveMaxPool1d", "adaptive_maxpool"),
        ("SeparableConv2D", "separable_conv2d"),
        ("DepthwiseConv2D", "depthwise_conv2d"),
    ],
)
def test_the_keras_and_pytorch_names_hint_at_the_word(written, meant):
    assert_error(
        spec(f"{written}(2)"),
        "3:3",
        "E0202",
        f"unknown layer `{written}`",
        f"did you mean `{meant}`?",
    )
