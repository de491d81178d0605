"""Two local processes train one model with `jax.distributed` (CPU, gloo collectives) and end
in step: the same metrics in both, equal to one process driving the same two devices."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "DNN_CACHE_DIR": "off",
    }


def test_two_processes_train_in_step(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.dnn"
    spec.write_text(SPEC)
    port = free_port()
    procs = [
        subprocess.Popen(
            [
                DNN,
                "train",
                str(spec),
                "--out",
                str(tmp_path / "multi"),
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
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    finals = [
        [x for x in out.splitlines() if x.startswith(("  train:", "  val:", "  test:"))]
        for out, _ in outs
    ]
    assert finals[0] == finals[1] and len(finals[0]) == 3 and "test: loss" in finals[0][2]
    single = subprocess.run(
        [DNN, "train", str(spec), "--out", str(tmp_path / "single"), "--quiet"],
        env=env(2),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    a = json.loads((tmp_path / "multi" / "result.json").read_text())
    b = json.loads((tmp_path / "single" / "result.json").read_text())
    for split in ("train", "val", "test"):
        assert a[split]["loss"] == pytest.approx(b[split]["loss"], rel=1e-5)
        assert a[split]["accuracy"] == pytest.approx(b[split]["accuracy"], abs=1e-9)
