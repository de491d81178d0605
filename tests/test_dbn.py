"""Deep belief networks (issue 15): the `rbm` layer and `pretrain = cd(...)`.

One CD-k update (k = 1 and 2, bernoulli and gaussian visible units, with momentum and weight
cost) is compared with a float64 NumPy reference written from the formula of `dnn help cd`,
fed the same uniform draws; the layer's forward pass with sigmoid(x W + c) and its parameter
count with the built module; the refusals are matched whole (position, code, message, hint);
a short run pretrains and writes pretrain.jsonl and the two figures; pretraining through a
scanned repeat equals the unrolled one.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from dnn.compiler.diagnostics import E_PRETRAIN, SpecError
from dnn.runtime import pipeline, pretrain
from dnn.runtime.pretrain import CD
from dnn.runtime.pretrain import cd_update as eager_update
from dnn.runtime.train import Engine
from test_layers_numeric import TOL, Built, rand
from test_lower_flax import built, counts

import dnn

EXAMPLES = Path(__file__).parent.parent / "examples"
cd_update = jax.jit(eager_update, static_argnames=("cfg",))  # one compile, not one per op


# ------------------------------------------------------------------ NumPy reference


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def ref_cd(p, vel, v0, u, k, lr, momentum, decay, gaussian):
    """Hinton (2010), example by example: h⁰ sampled, reconstructions and the last hidden step
    as probabilities; the statistics as sums of outer products over the examples."""
    w, b, c = p["kernel"], p["visible_bias"], p["bias"]
    n = len(v0)
    pos_w, neg_w = np.zeros_like(w), np.zeros_like(w)
    pos_b, neg_b, pos_c, neg_c = (
        np.zeros_like(b),
        np.zeros_like(b),
        np.zeros_like(c),
        np.zeros_like(c),
    )
    err = 0.0
    for i in range(n):
        p0 = sigmoid(v0[i] @ w + c)
        prob, v = p0, v0[i]
        for t in range(k):
            h = (u[t, i] < prob).astype(np.float64)
            a = w @ h + b
            v = a if gaussian else sigmoid(a)
            if t == 0:
                err += np.mean((v0[i] - v) ** 2) / n
            prob = sigmoid(v @ w + c)
        pos_w += np.outer(v0[i], p0)
        neg_w += np.outer(v, prob)
        pos_b, neg_b, pos_c, neg_c = pos_b + v0[i], neg_b + v, pos_c + p0, neg_c + prob
    grads = {
        "kernel": (pos_w - neg_w) / n - decay * w,
        "visible_bias": (pos_b - neg_b) / n,
        "bias": (pos_c - neg_c) / n,
    }
    vel = {key: momentum * vel[key] + lr * g for key, g in grads.items()}
    return {key: p[key] + vel[key] for key in p}, vel, err


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_one_cd_k_update_is_the_formula(k: int, visible: str) -> None:
    rng = np.random.default_rng(k)
    n, d, units = 5, 6, 4
    gaussian = visible == "gaussian"
    v0 = rng.normal(size=(n, d)) if gaussian else rng.uniform(size=(n, d))
    p = {
        "kernel": rng.normal(scale=0.5, size=(d, units)),
        "visible_bias": rng.normal(size=d),
        "bias": rng.normal(size=units),
    }
    vel = {key: rng.normal(scale=0.1, size=a.shape) for key, a in p.items()}
    u = rng.uniform(size=(k, n, units))
    cfg = CD(k, 0.1, 0.5, 2e-3, gaussian)
    got_p, got_vel, got_err = cd_update(p, vel, v0, u, cfg)
    want_p, want_vel, want_err = ref_cd(p, vel, v0, u, k, 0.1, 0.5, 2e-3, gaussian)
    for key in p:
        np.testing.assert_allclose(np.asarray(got_p[key]), want_p[key], **TOL)
        np.testing.assert_allclose(np.asarray(got_vel[key]), want_vel[key], **TOL)
    np.testing.assert_allclose(float(got_err), want_err, **TOL)


@pytest.mark.usefixtures("x64")
def test_a_padded_batch_updates_as_its_real_rows() -> None:
    """The last, smaller batch of an epoch is padded and masked: the update is that of its
    real rows alone."""
    rng = np.random.default_rng(5)
    v0, u = rng.uniform(size=(4, 6)), rng.uniform(size=(1, 4, 3))
    p = {
        "kernel": rng.normal(size=(6, 3)),
        "visible_bias": rng.normal(size=6),
        "bias": rng.normal(size=3),
    }
    vel = {key: np.zeros_like(a) for key, a in p.items()}
    cfg = CD(1, 0.1, 0.5, 2e-3, False)
    masked = cd_update(p, vel, v0, u, cfg, np.array([1, 1, 0, 0]))
    alone = cd_update(p, vel, v0[:2], u[:, :2], cfg)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), masked, alone)


@pytest.mark.usefixtures("x64")
def test_rbm_in_the_network_is_its_hidden_probabilities() -> None:
    x = rand(3, 7)
    b = Built("rbm(5)", x=x)
    p = b.p("rbm")
    np.testing.assert_allclose(b(), sigmoid(x @ p["kernel"] + p["bias"]), **TOL)
    assert p["visible_bias"].shape == (7,)


def test_rbm_parameters_equal_the_built_module() -> None:
    program = dnn.loads(
        "model m {\n  input x: f32[64]\n  rbm(256) -> rbm(128, visible = gaussian)\n  dense(10)\n}\n"
    )
    variables, _ = built(program)
    assert counts(variables) == {
        "rbm": 64 * 256 + 256 + 64,
        "rbm_1": 256 * 128 + 128 + 256,
        "dense": 1290,
    }
    assert program.model.trainable == sum(counts(variables).values())


# ------------------------------------------------------------------ refusals, whole


def spec(model: str, data: str = "normalize = minmax", train: str = "pretrain = cd") -> str:
    return (
        f"dnn 1\nmodel m {{\n  input x: f32[64]\n  {model}\n  dense(10)\n}}\n"
        f'data {{\n  source = builtin("digits")\n  {data}\n}}\ntrain {{\n  {train}\n}}\n'
    )


def refusals(text: str) -> list[tuple[str, str, str, str | None]]:
    with pytest.raises(SpecError) as info:
        dnn.loads(text, "spec.dnn")
    return [
        (f"{d.span.line}:{d.span.col}", d.code, d.message, d.hint) for d in info.value.diagnostics
    ]


HINT = (
    "add `normalize = minmax` to the data section (each feature to [0, 1]), or use "
    "`rbm(16, visible = gaussian)` for standardized inputs"
)

REFUSED = [
    (
        spec("dense(16)"),
        [
            (
                "12:14",
                E_PRETRAIN,
                "`pretrain = cd(...)` has no layer to pretrain: the model has no `rbm`",
                "write the hidden layers as `rbm(units)`, or remove `pretrain`",
            )
        ],
    ),
    (
        spec("rbm(16)", "normalize = standardize"),
        [
            (
                "4:3",
                E_PRETRAIN,
                "`rbm` with bernoulli visible units takes inputs in [0, 1], but `normalize = "
                "standardize` gives values of either sign",
                HINT,
            )
        ],
    ),
    (
        spec("flatten -> rbm(16)", ""),
        [
            (
                "4:14",
                E_PRETRAIN,
                "`rbm` with bernoulli visible units takes inputs in [0, 1], but `digits` examples "
                "range from 0 to 16 (`normalize = none`)",
                HINT,
            )
        ],
    ),
    (
        spec("rbm(16)", train="pretrain = cd\n  ensemble = 2"),
        [
            (
                "12:14",
                E_PRETRAIN,
                "`pretrain` does not support `ensemble = 2`: pretraining runs once, for one set "
                "of weights",
                "remove `ensemble`, or train the members as separate runs with their own `seed`",
            )
        ],
    ),
    (
        spec("reshape([8, 8, 1]) -> rbm(16)"),
        [
            (
                "4:25",
                "E0402",
                "`rbm` expects an input of rank 1 (features), got shape (8, 8, 1)",
                "insert `flatten` before `rbm`",
            )
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), REFUSED, ids=range(len(REFUSED)))
def test_check_refuses_what_pretraining_cannot_do(text: str, expected: list) -> None:
    assert refusals(text) == expected


@pytest.mark.parametrize(
    ("model", "data"),
    [
        ("rbm(16, visible = gaussian)", "normalize = standardize"),  # gaussian: any values
        ("dense(16) -> rbm(16)", ""),  # not known statically: checked on the data
        ("rbm(16) -> rbm(8)", "normalize = minmax"),  # the second reads probabilities
    ],
)
def test_check_accepts_what_pretraining_can_do(model: str, data: str) -> None:
    dnn.loads(spec(model, data), "spec.dnn")


def test_digits_range_is_what_the_data_holds() -> None:
    program = dnn.loads(spec("rbm(4)", "normalize = none", "epochs = 1"), "spec.dnn")
    from dnn.compiler.registry.data import BUILTIN_DATA

    x = pipeline.prepare(program).splits["train"].x
    assert (float(x.min()), float(x.max())) == BUILTIN_DATA["digits"]["range"]


def tiny(tmp_path: Path, model: str, pretrain: str, x: np.ndarray, extra: str = "") -> dnn.Program:
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(len(x)) % 3)
    text = (
        "dnn 1\nblock hidden(u) {\n  rbm(u)\n}\n"
        f"model m {{\n  input x: f32{list(x.shape[1:])}\n  {model}\n  dense(3)\n}}\n"
        f'data {{\n  source = npz("d.npz")\n  split = {{ train: 0.5, val: 0.25, test: 0.25 }}\n}}\n'
        f"train {{\n  epochs = 2\n  batch_size = 4\n  pretrain = {pretrain}\n{extra}}}\n"
    )
    (tmp_path / "spec.dnn").write_text(text)
    return dnn.load(str(tmp_path / "spec.dnn"))


def refused_at_run(program: dnn.Program) -> list[tuple[str, str, str, str | None]]:
    engine = Engine(program, pipeline.prepare(program), 1)
    with pytest.raises(SpecError) as info:
        pretrain.pretrain(program, engine, engine.init())
    return [
        (f"{d.span.line}:{d.span.col}", d.code, d.message, d.hint) for d in info.value.diagnostics
    ]


def test_inputs_outside_0_1_are_refused_at_the_rbm_line_before_pretraining(tmp_path: Path) -> None:
    x = np.linspace(-1.0, 2.0, 24 * 6).reshape(24, 6)
    program = tiny(tmp_path, "rbm(4)", "cd(epochs = 1)", x)
    [(where, code, message, hint)] = refused_at_run(program)
    assert (where, code, hint) == (
        "7:3",
        E_PRETRAIN,
        "add `normalize = minmax` to the data section (each feature to [0, 1]), or use "
        "`visible = gaussian` for standardized inputs",
    )
    train = pipeline.prepare(program).splits["train"].x
    assert message == (
        "`rbm` has bernoulli visible units, which take values in [0, 1], but its inputs on the "
        f"train split range from {train.min():.4g} to {train.max():.4g}"
    )


def test_a_diverging_pretraining_is_refused_at_the_pretrain_line(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(scale=30.0, size=(24, 6))
    program = tiny(tmp_path, "rbm(4, visible = gaussian)", "cd(epochs = 3, lr = 100.0)", x)
    [(where, code, message, hint)] = refused_at_run(program)
    assert (where, code) == ("17:14", E_PRETRAIN)
    assert message.startswith("pretraining `rbm` diverged at epoch ")
    assert message.endswith(": its reconstruction error or weights are not finite")
    assert (
        hint == "lower `lr` (gaussian visible units want 0.01 or less), or standardize the inputs"
    )


def test_the_layers_init_from_loaded_are_not_pretrained(tmp_path: Path) -> None:
    """`skip`: the names `init_from` loaded (runtime/fit.py `fresh_start`) are used as they
    are, and the layers above read their outputs."""
    x = np.random.default_rng(3).uniform(size=(24, 6))
    program = tiny(tmp_path, "rbm(4) -> rbm(3)", "cd(epochs = 1)", x)
    engine = Engine(program, pipeline.prepare(program), 1)
    start = engine.init()
    before = jax.device_get(start["params"])
    st, records = pretrain.pretrain(program, engine, start, skip=frozenset({"rbm"}))
    after = jax.device_get(st["params"])
    assert [r["layer"] for r in records] == ["rbm_1"]
    jax.tree.map(np.testing.assert_array_equal, after["rbm"], before["rbm"])
    assert not np.array_equal(after["rbm_1"]["kernel"], before["rbm_1"]["kernel"])


# ------------------------------------------------------------------ a run


def test_a_run_pretrains_and_writes_its_log_and_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    x = np.random.default_rng(1).uniform(size=(24, 4, 4, 1))
    program = tiny(tmp_path, "flatten -> rbm(6) -> rbm(5)", "cd(k = 2, epochs = 2)", x)
    run = tmp_path / "run"
    result = dnn.train(program, run, quiet=True, stop_after=1)
    assert result["finished"] is False  # one epoch of fine-tuning is enough here
    log = [json.loads(line) for line in (run / "pretrain.jsonl").read_text().splitlines()]
    assert [(r["layer"], r["epoch"]) for r in log] == [
        ("rbm", 1),
        ("rbm", 2),
        ("rbm_1", 1),
        ("rbm_1", 2),
    ]
    assert all(r["recon_error"] > 0 and r["val_recon_error"] > 0 for r in log)
    for name in ("rbm_reconstructions.png", "rbm_filters.png"):
        assert (run / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pretraining_through_a_scanned_repeat_equals_the_unrolled_one(tmp_path: Path) -> None:
    x = np.random.default_rng(2).uniform(size=(24, 4))
    done = []
    for scan in ("true", "false"):
        program = tiny(
            tmp_path,
            "repeat 2 { hidden(4) }",
            "cd(epochs = 1)",
            x,
            f"  scan_repeats = {scan}\n",
        )
        engine = Engine(program, pipeline.prepare(program), 1)
        assert (engine.scan is not None) == (scan == "true")
        st, records = pretrain.pretrain(program, engine, engine.init())
        done.append((records, jax.device_get(engine.to_disk(st["params"]))))
    (ra, pa), (rb, pb) = done
    assert [r["recon_error"] for r in ra] == [r["recon_error"] for r in rb]
    jax.tree.map(np.testing.assert_array_equal, pa, pb)


def test_the_example_checks() -> None:
    program = dnn.load(str(EXAMPLES / "digits_dbn.dnn"))
    assert [n.op for n in program.model.nodes] == ["input", "rbm", "rbm", "dense"]
    assert program.train.pretrain.name == "cd"
