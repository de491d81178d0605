"""Two local processes train one model with `jax.distributed` (CPU, gloo collectives) and end
in step: the same metrics in both, equal to one process driving the same two devices, with
the data in memory and streamed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dnn.runtime.fit import train

import dnn

DNN = str(Path(sys.executable).parent / "dnn")

SPEC = """dnn 1
model tiny {
  input pixels: f32[64]
  dense(32) -> relu
  dense(10)
}
data {
  source = builtin("digits")
  normalize = standardize
}
train {
  batch_size = 64
  epochs = 2
  devices = all
  loop = steps
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def env(devices: int) -> dict[str, str]:
    """This many CPU devices, compiled as conftest.py compiles (without XLA's expensive passes:
    each of the processes compiles every program from scratch)."""
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} "
        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
        "DNN_CACHE_DIR": "off",
    }


def two_processes(spec: Path, out: Path) -> list[tuple[int, str, str]]:
    """`dnn train` in two processes of one run (one CPU device each): (status, stdout, stderr)."""
    port = free_port()
    procs = [
        subprocess.Popen(
            [
                DNN,
                "train",
                str(spec),
                "--out",
                str(out),
                "--quiet",
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    return [(p.returncode, o, e) for p, (o, e) in zip(procs, outs, strict=True)]


def finals_in_step(runs: list[tuple[int, str, str]]) -> None:
    for code, _, err in runs:
        assert code == 0, err[-2000:]
    finals = [
        [x for x in out.splitlines() if x.startswith(("  train:", "  val:", "  test:"))]
        for _, out, _ in runs
    ]
    assert finals[0] == finals[1] and len(finals[0]) == 3 and "test: loss" in finals[0][2]


def test_two_processes_train_in_step_in_memory_and_streamed(tmp_path: Path) -> None:
    """In memory (`devices = all`), and streamed with the devices the flags imply: each
    process reads its share of every batch (runtime/data/batches.py), and both runs equal
    one process driving two devices (this one, in process: a launch pays JAX's import)."""
    spec, streamed = tmp_path / "tiny.dnn", tmp_path / "streamed.dnn"
    spec.write_text(SPEC)
    streamed.write_text(
        SPEC.replace("  devices = all\n", "").replace(
            "  normalize = standardize\n", "  normalize = standardize\n  stream = true\n"
        )
    )
    finals_in_step(two_processes(spec, tmp_path / "multi"))
    runs = two_processes(streamed, tmp_path / "streamed")
    finals_in_step(runs)
    note = "multi-host: 2 processes train as one on all 2 devices (`devices = all`)"
    assert note in runs[0][2].splitlines() and note not in runs[1][2]
    saved = (tmp_path / "streamed" / "hparams.yaml").read_text()
    assert "  devices: all\n" in saved and "  stream: true\n" in saved
    # one process driving two devices: this one (conftest gives it four), no new launch
    b = train(dnn.load(str(spec), ["train.devices=2"]), tmp_path / "single", mode="quiet")
    for run in ("multi", "streamed"):
        a = json.loads((tmp_path / run / "result.json").read_text())
        for split in ("train", "val", "test"):
            assert a[split]["loss"] == pytest.approx(b[split]["loss"], rel=1e-5), run
            assert a[split]["accuracy"] == pytest.approx(b[split]["accuracy"], abs=1e-9), run


def test_multi_host_refuses_a_device_count_that_leaves_processes_out(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.dnn"
    spec.write_text(SPEC.replace("  devices = all\n", "  devices = 1\n"))
    for code, _, err in two_processes(spec, tmp_path / "multi"):
        assert code == 1 and "Traceback" not in err, err[-2000:]
        assert (
            f"{spec}:14:13: error[E0602]: `devices = 1`, but a multi-host run trains on all 2 "
            "devices of its 2 processes\n"
            "14 |   devices = 1\n"
            "   |             ^\n"
            "  hint: use `devices = all`"
        ) in err
