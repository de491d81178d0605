"""The lowered Flax module builds exactly the shapes and parameter counts the checker inferred."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dnn.compiler.lower_flax import lower_model
from dnn.compiler.registry.layers import ACTIVATIONS, LAYERS
from dnn.compiler.values import DTYPES

import dnn

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.dnn"))

EVERY_LAYER = """
model every {
  input img: f32[12, 12, 3]
  input seq: f32[6, 4]
  input ids: i32[5]
  input vol: f32[6, 6, 6, 2]
  a = conv2d(4, 3, padding = same)(img) -> batchnorm -> relu
  b = conv2d(4, 3, stride = 2, padding = 1, dilation = 1, groups = 1)(img) -> layernorm
  b2 = groupnorm(2)(b) -> instancenorm -> rmsnorm
  c = conv2d(6, kernel = 3, groups = 3, padding = same, use_bias = false)(img) -> prelu
  p = maxpool(2)(a) -> avgpool2d(3, stride = 1, padding = same) -> local_response_norm(size = 3)
  q = concat(p, b2) -> dropout(0.5) -> global_avgpool
  r = add(global_maxpool(c), dense(6)(q)) -> elu -> selu -> gelu -> silu -> softplus
  s = maximum(average(subtract(r, multiply(r, r)), r), r) -> leaky_relu -> relu6
  t = simple_rnn(5, return_sequences = true)(seq) -> lstm(3, bidirectional = true, return_sequences = true)
  u = gru(4)(t) -> tanh -> sigmoid -> softsign -> hard_sigmoid -> hard_tanh -> mish -> identity
  v = embedding(20, 4)(ids) -> conv1d(3, 2) -> maxpool1d(2) -> avgpool1d(2) -> flatten
  w = conv3d(2, 3)(vol) -> maxpool3d(2) -> avgpool3d(2) -> reshape([-1]) -> softmax
  x = gru(2, bidirectional = true)(seq) -> log_softmax
  y = conv_transpose2d(2, 3, stride = 2, padding = 1, output_padding = 1)(img) -> depthwise_conv2d(3)
  z = separable_conv2d(2, 3)(y) -> upsample(2, mode = bilinear) -> adaptive_avgpool(3) -> zero_pad(1)
  y1 = cropping([[1, 0], 1])(z) -> adaptive_maxpool(2) -> flatten
  y2 = conv_transpose1d(2, 3)(seq) -> flatten
  y3 = conv_transpose3d(2, 2, stride = 2)(vol) -> maxpool3d(3, ceil_mode = true) -> flatten
  k = padding_mask(0)(ids)
  e = embedding(20, 4)(ids) -> sinusoidal_embedding
  y4 = multi_head_attention(2, 3, value_dim = 2)(seq, e, k) -> positional_embedding -> cls_token -> take(0)
  y5 = patch_embed(4, 3)(img) -> take(-1)
  y6 = sequence_pool(max)(e, k)
  y7 = rbm(3, visible = gaussian)(rbm(5)(r))
  output concat(s, u, v, w, x, y1, y2, y3, y4, y5, y6, y7)
}
"""


def built(program: dnn.Program) -> tuple[dict, object]:
    g = program.model
    model = lower_model(g)
    inputs = {n.name: jnp.zeros((2, *n.shape), DTYPES[n.dtype]) for n in g.nodes if n.op == "input"}
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), inputs))
    out = jax.eval_shape(model.apply, variables, inputs)
    every = jax.eval_shape(lambda v, x: model.apply(v, x, every_value=True), variables, inputs)
    built_shapes = {name: v.shape[1:] for name, v in every.items()}
    assert built_shapes == {n.name: n.shape for n in g.nodes}  # every node, not only outputs
    return variables, out


def counts(variables: dict) -> dict[str, int]:
    """Parameters (trainable and state) per layer name."""
    out: dict[str, int] = {}
    for collection in variables.values():
        for name, leaves in collection.items():
            layer = name.split("/forward")[0].split("/backward")[0]
            size = sum(math.prod(x.shape) for x in jax.tree.leaves(leaves))
            out[layer] = out.get(layer, 0) + size
    return out


WORDS = {e.name for e in LAYERS} | {e.name for e in ACTIVATIONS}


def test_every_layer_word_has_a_lowering() -> None:
    for words in (LAYERS, ACTIVATIONS):
        assert words.implementation_gaps() == ([], [])


def test_every_layer_kind_matches_static_inference() -> None:
    program = dnn.loads(EVERY_LAYER)
    used = {n.op for n in program.model.nodes} - {"input"}
    assert used == WORDS, sorted(WORDS - used)
    variables, out = built(program)
    static = {n.name: n.params + n.state for n in program.model.nodes if n.params + n.state}
    assert counts(variables) == static
    assert out.shape == (2, *program.model.node(program.model.outputs[0]).shape)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_match_static_inference(path: Path) -> None:
    program = dnn.load(str(path))
    variables, out = built(program)
    assert sum(counts(variables).values()) == program.model.params
    outs = out if isinstance(out, tuple) else (out,)
    shapes = [program.model.node(o).shape for o in program.model.outputs]
    assert [o.shape[1:] for o in outs] == shapes


def test_lecture_counts_from_the_built_model() -> None:
    src = "model m {\n  input x: f32[10, 5]\n  dense(100)\n  dense(20)\n  dense(1)\n}\n"
    variables, out = built(dnn.loads(src))
    assert sum(counts(variables).values()) == 2641 and out.shape == (2, 10, 1)


def test_dense_matches_numpy() -> None:
    program = dnn.loads("model m {\n  input x: f32[3]\n  dense(2)\n}\n")
    model = lower_model(program.model)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    variables = model.init(jax.random.key(1), x)
    w, b = (np.asarray(variables["params"]["dense"][k], np.float64) for k in ("kernel", "bias"))
    np.testing.assert_allclose(model.apply(variables, x), x.astype(np.float64) @ w + b, rtol=1e-5)
