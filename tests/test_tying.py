"""Weight tying (issue 15, point 5): `dense(vocab, tie = tok)` uses the table of the
`embedding` whose output is `tok`, transposed, as its kernel (Press & Wolf 2017; GPT-2's head).

The static count holds the table once; the built module has one table, and its gradient is the
sum of both uses' gradients, checked against a float64 NumPy computation of each; a tie that
cannot hold is refused at check time, whole (position, code, message, hint).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import assert_error
from test_layers_numeric import TOL, Built, rand
from test_lower_flax import built, counts

import dnn

LM = """model lm {{
  input ids: i32[5]
  tok = embedding(7, 4)(ids)
  h = dense(4)(tok) -> tanh
  output {head}
}}
"""


def test_the_table_is_counted_once():
    program = dnn.loads(LM.format(head="dense(7, tie = tok)(h)"))
    by_name = {n.name: n.params for n in program.model.nodes}
    assert by_name["dense_1"] == 7  # the tied head owns its bias only
    assert program.model.trainable == 7 * 4 + (4 * 4 + 4) + 7
    variables, _ = built(program)  # shapes of every node as built
    assert counts(variables) == {k: v for k, v in by_name.items() if v}


def test_without_a_bias_the_head_has_no_weights_of_its_own():
    program = dnn.loads(LM.format(head="dense(7, tie = tok, use_bias = false)(h)"))
    variables, _ = built(program)
    assert sorted(variables["params"]) == ["dense", "tok"]
    assert program.model.trainable == 7 * 4 + 4 * 4 + 4


@pytest.mark.usefixtures("x64")
def test_the_gradient_of_the_table_is_the_sum_of_both_uses():
    ids = np.array([[0, 3, 3, 6, 1], [2, 2, 5, 0, 4]])
    b = Built(
        "tok = embedding(7, 4)(ids)\nh = dense(4)(tok) -> tanh\noutput dense(7, tie = tok)(h)",
        ids=ids,
    )
    c = rand(2, 5, 7, seed=9)  # L = sum(y · c), so dL/dy = c

    def loss(params):
        y = b.model.apply({"params": params}, ids)
        return (y * c).sum()

    grads = jax.grad(loss)(b.variables["params"])
    E, W, bias = b.p("tok")["embedding"], b.p("dense")["kernel"], b.p("dense")["bias"]
    h = np.tanh(E[ids] @ W + bias)
    y = h @ E.T + b.p("dense_1")["bias"]
    np.testing.assert_allclose(b(), y, **TOL)  # the tied kernel is the table, transposed
    as_kernel = np.einsum("btv,btd->vd", c, h)  # the head's use: dL/dE = (hᵀ c)ᵀ
    da = (c @ E) * (1 - h**2)
    as_lookup = np.zeros_like(E)
    np.add.at(as_lookup, ids, da @ W.T)  # the lookup's use: rows scattered back to their ids
    assert np.abs(as_kernel).min() > 0 and np.abs(as_lookup).max() > 0
    np.testing.assert_allclose(grads["tok"]["embedding"], as_kernel + as_lookup, **TOL)
    np.testing.assert_allclose(grads["dense_1"]["bias"], c.sum((0, 1)), **TOL)


REFUSED = [
    (
        "dense(8, tie = tok)(h)",
        "5:16",
        "E0401",
        "`dense(8)` is tied to `tok`, whose table [7, 4] has 7 rows: the tied kernel is its "
        "transpose [4, 7], one unit per token id",
        "write `dense(7, tie = tok)`",
    ),
    (
        "dense(7, tie = tok)(dense(3)(h))",
        "5:19",
        "E0401",
        "`dense` tied to `tok` takes 4 features (the kernel is the transpose of its table "
        "[7, 4]: [4, 7]), got shape (5, 3)",
        "project to 4 features first: insert `dense(4)` before it",
    ),
    (
        "dense(7, tie = h)(h)",
        "5:19",
        "E0305",
        "argument `tie` of `dense` must be an `embedding`'s output, by its name, got `h`, "
        "a `tanh` output",
        "name the `embedding`'s own output, e.g. `tok = embedding(...)(ids)`, and write "
        "`tie = tok`",
    ),
    (
        "dense(7, tie = ids)(h)",
        "5:19",
        "E0305",
        "argument `tie` of `dense` must be an `embedding`'s output, by its name, got the "
        "input `ids`",
        "write `tie = tok`",
    ),
    (
        "dense(7, tie = tok, regularizer = l2(1e-4))(h)",
        "5:30",
        "E0306",
        "`regularizer` of a tied `dense` would act on the table of `tok`, which the `dense` "
        "does not own",
        "give the `regularizer` to the embedding, or remove it here",
    ),
    ("conv1d(7, 1, tie = tok)(h)", "5:23", "E0308", "argument `tie` cannot be a tensor", ""),
]


@pytest.mark.parametrize(("head", "where", "code", "message", "hint"), REFUSED)
def test_a_tie_that_cannot_hold_is_refused(head, where, code, message, hint):
    src = LM.format(head=head)
    assert_error(src, where, code, message, hint)


def test_a_repeated_tie_names_its_own_iteration_s_table():
    """The iterations after the first are copies of it (`_replicate`), their ties renamed."""
    src = """model m {
  input ids: i32[5]
  input x: f32[5, 4]
  dense(4)(x)
  repeat 3 {
    t = embedding(4, 4)(ids)
    h = add(in, t)
    dense(4, tie = t)(h)
  }
}
"""
    nodes = dnn.loads(src).model.nodes
    ties = [(n.name, getattr(n.arg("tie"), "node", None)) for n in nodes if n.op == "dense"]
    assert ties == [("dense", None), ("dense_1", "t"), ("dense_2", "t_1"), ("dense_3", "t_2")]


def test_a_tied_model_trains(tmp_path):
    """Checked means it runs: the loss, the optimizer's masks (weight decay) and the train step
    take a model whose head owns a bias only."""
    src = """model tied {
  input ids: i32[13]
  tok = embedding(20, 8)(ids)
  sequence_pool(mean)
  dense(8) -> tanh
  dense(20, tie = tok)
  dense(2)
}

data {
  source = builtin("tokens")
}

train {
  epochs = 1
  optimizer = adamw(lr = 3e-3, weight_decay = 1e-2)
}
"""
    result = dnn.loads(src).fit(tmp_path / "run", quiet=True)
    assert np.isfinite(result["test"]["loss"])
