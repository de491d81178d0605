"""Training on a mesh of 4 (CPU) devices equals training on one: data and fsdp sharding.

conftest.py gives this process 4 host-platform CPU devices, so the meshes here are real XLA
SPMD programs (all-reduce of gradients, sharded parameters), not a simulation.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from dnn.runtime.fit import train
from dnn.runtime.placement import Placement
from test_train import MLP, flat, params_of

import dnn

pytestmark = pytest.mark.skipif(len(jax.devices()) < 4, reason="needs 4 host devices")


def run(tmp_path: Path, name: str, *overrides: str) -> tuple[dict, dict]:
    path = tmp_path / "tiny.dnn"
    path.write_text(MLP.format(epochs=2, extra=""))
    program = dnn.load(str(path), ["train.loop=steps", *overrides])
    result = train(program, tmp_path / name, mode="quiet")
    history = [
        json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().split("\n") if x
    ]
    return result, {"history": history, "params": flat(params_of(tmp_path / name))}


@pytest.fixture(scope="module")
def on_one_device(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """The one-device run both shardings are compared with (trained once for both)."""
    return run(tmp_path_factory.mktemp("one"), "one")


@pytest.mark.parametrize("shard", ["data", "fsdp"])
def test_four_devices_equal_one(
    tmp_path: Path, shard: str, on_one_device: tuple[dict, dict]
) -> None:
    one, a = on_one_device
    four, b = run(tmp_path, "four", "train.devices=4", f"train.shard={shard}")
    for ra, rb in zip(a["history"], b["history"], strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
        assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-5)
    for k in a["params"]:
        np.testing.assert_allclose(b["params"][k], a["params"][k], rtol=2e-5, atol=2e-6, err_msg=k)
    assert four["test"]["accuracy"] == pytest.approx(one["test"]["accuracy"], abs=1e-9)


def test_fsdp_splits_weights_and_data_replicates_them() -> None:
    shapes = {
        "k": jax.ShapeDtypeStruct((64, 32), np.float32),
        "b": jax.ShapeDtypeStruct((3,), np.float32),
    }
    fsdp = Placement.of(4, "fsdp").state(shapes)
    assert fsdp["k"].spec == jax.sharding.PartitionSpec("data", None)  # 64 is the larger axis
    assert fsdp["b"].spec == jax.sharding.PartitionSpec()  # 3 does not split 4 ways
    data = Placement.of(4, "data").state(shapes)
    assert all(s.spec == jax.sharding.PartitionSpec() for s in data.values())


def test_more_devices_than_the_machine_has_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "tiny.dnn"
    path.write_text(MLP.format(epochs=1, extra="devices = 64"))
    with pytest.raises(dnn.SpecError) as info:
        train(dnn.load(str(path)), tmp_path / "run", mode="quiet")
    text = str(info.value)
    assert "`devices = 64` but this machine has 4 CPU devices" in text and "devices = all" in text


def test_the_engine_state_really_lives_on_four_devices(tmp_path: Path) -> None:
    from dnn.runtime import pipeline
    from dnn.runtime.train import Engine

    path = tmp_path / "tiny.dnn"
    path.write_text(MLP.format(epochs=1, extra="devices = 4\n  shard = fsdp"))
    program = dnn.load(str(path))
    engine = Engine(program, pipeline.prepare(program), 1)
    kernel = engine.init()["params"]["dense"]["kernel"]  # (64, 32)
    assert len(kernel.sharding.device_set) == 4
    assert {s.data.shape for s in kernel.addressable_shards} == {(16, 32)}


def test_bf16_computes_in_bfloat16_and_keeps_f32_weights(tmp_path: Path) -> None:
    from dnn.runtime import pipeline
    from dnn.runtime.train import Engine

    path = tmp_path / "tiny.dnn"
    path.write_text(MLP.format(epochs=1, extra="precision = bf16"))
    program = dnn.load(str(path))
    engine = Engine(program, pipeline.prepare(program), 1)
    st = engine.init()
    x = np.zeros((4, 64), np.float32)
    jaxpr = str(
        jax.make_jaxpr(lambda p: engine._forward(p, {}, x, False, jax.random.key(0)))(st["params"])
    )
    dots = [line for line in jaxpr.splitlines() if "dot_general" in line]
    assert dots and all("bf16" in line for line in dots)
    out, _ = engine._forward(st["params"], {}, x, False, jax.random.key(0))
    assert out.dtype == np.float32
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(st["params"]))
    assert all(
        leaf.dtype == np.float32
        for leaf in jax.tree.leaves(st["opt"])
        if hasattr(leaf, "dtype") and leaf.dtype.kind == "f"
    )
