"""`dnn eval --run DIR` and `dnn predict --run DIR` without the spec file (issue 17, point 7):
the run folder's own spec.dnn is read, and its relative data paths resolve from where the spec
was trained (env.yaml's `cwd` and `spec`), whatever the current folder is. `dnn predict` reads
a CSV of inputs with or without a header row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dnn.runtime.cli import main

SPEC = """dnn 1
model m {
  input x: f32[3]
  dense(2)
}
data {
  source = csv("data/points.csv")
  split = { train: 0.6, val: 0.2, test: 0.2 }
}
train {
  epochs = 2
  batch_size = 8
  seed = 0
}
"""


def test_eval_and_predict_read_the_runs_own_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    rows = [f"{a:.4f},{b:.4f},{c:.4f},{int(a + b > 0)}" for a, b, c in x]
    (project / "data" / "points.csv").write_text("a,b,c,label\n" + "\n".join(rows) + "\n")
    (project / "spec.dnn").write_text(SPEC)
    monkeypatch.chdir(project)
    assert main(["train", "spec.dnn", "--out", "run", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "spec.dnn", "--run", "run", "--format", "json"]) == 0
    with_file = json.loads(capsys.readouterr().out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = project / "run"
    assert main(["eval", "--run", str(run), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == with_file
    np.save(elsewhere / "x.npy", x[:5].astype(np.float32))
    assert main(["predict", "--run", str(run), "--input", "x.npy", "--output", "y.npy"]) == 0
    assert np.load(elsewhere / "y.npy").shape == (5,)
    # a CSV of inputs needs no header: a first row of numbers is an example (it failed with
    # "column `0.1257...` appears twice in the header")
    lines = [",".join(f"{v:.9g}" for v in row) for row in x[:5].astype(np.float32)]
    (elsewhere / "x.csv").write_text("\n".join(lines) + "\n")
    assert main(["predict", "--run", str(run), "--input", "x.csv", "--output", "z.npy"]) == 0
    np.testing.assert_array_equal(np.load(elsewhere / "z.npy"), np.load(elsewhere / "y.npy"))
    (elsewhere / "h.csv").write_text("a,b,c\n" + "\n".join(lines) + "\n")  # a header still
    assert main(["predict", "--run", str(run), "--input", "h.csv", "--output", "h.npy"]) == 0
    np.testing.assert_array_equal(np.load(elsewhere / "h.npy"), np.load(elsewhere / "y.npy"))


def test_a_folder_without_a_spec_is_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "--run", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"{tmp_path}: error: not a run folder: it holds no spec.dnn\n"
        "  hint: give the spec file too: `dnn eval SPEC --run DIR`\n"
    )


def test_the_runs_table_reads_at_80_columns() -> None:
    """`dnn runs` cut every cell to an ellipsis at 80 columns (issue 17, point 7)."""
    import io

    from dnn.runtime.runs import RunInfo, table
    from rich.console import Console

    metrics = {"test_loss": 0.2099, "test_accuracy": 0.9944, "test_top_k": 1.0}
    runs = [
        RunInfo(
            Path("runs/digits_autoencoder-20261206-093620"),
            "digits_autoencoder.dnn",
            "2026-12-06T09:36:20+0000",
            "finished",
            40,
            metrics,
            11.8,
        ),
        RunInfo(Path("runs/b"), "tiny.dnn", "2026-12-06T10:01:02+0000", "stopped", 1, {}, None),
    ]
    out = io.StringIO()
    Console(file=out, width=80).print(table(runs))
    text = out.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if "started" in line)
    width = lines[head].index("started")
    first = "".join(line[:width].strip() for line in lines[head + 2 : head + 5])
    assert first == "digits_autoencoder-20261206-093620digits_autoencoder.dnn"  # folded, not cut
    for shown in ("2026-12-06", "09:36", "finished", "40 epochs", "loss 0.2099", "11.8 s"):
        assert shown in text, shown
    for shown in ("accuracy 0.9944", "top_k 1.0000", "stopped", "tiny.dnn", "10:01"):
        assert shown in text, shown
    assert "1 epoch " in text and "1 epochs" not in text
