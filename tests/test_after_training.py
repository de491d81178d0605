"""After training (issue 17, points 4-6): TensorBoard event files, `dnn eval`'s reports and
plots, `dnn predict` on .npz archives and images, the commands printed after a run.

Two small runs are shared: a classifier trained on a folder of 10x10 PNG digits resized to
8x8 (`images(..., size = [8, 8])`), and a regression. The per-class numbers are checked
against scikit-learn on the same predictions; TensorBoard's scalars are read back with
TensorBoard's own event reader.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dnn.compiler.driver import load
from dnn.runtime import report, rundir
from dnn.runtime.cli import main
from dnn.runtime.data import sources, split
from dnn.runtime.data.table import Table
from PIL import Image
from sklearn.metrics import precision_recall_fscore_support
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

IMAGES = """dnn 1
model pixels {
  input image: f32[8, 8, 1]
  flatten
  dense(16) -> relu
  dense(3)
}
data {
  source = images("imgs", size = [8, 8])
  split = { train: 0.6, val: 0.2, test: 0.2 }
}
train {
  loss = cross_entropy
  metrics = [accuracy]
  batch_size = 32
  epochs = 2
  optimizer = adam(lr = 1e-2)
}
"""

REGRESSION = """dnn 1
model line {
  input x: f32[10]
  dense(1)
}
data {
  source = builtin("diabetes")
  targets = standardize
}
train {
  loss = mse
  metrics = [mae]
  epochs = 1
  optimizer = sgd(lr = 0.05)
}
"""


def image_run(root: Path) -> tuple[Path, str]:
    """A trained image classifier's run folder, and what `dnn train` printed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for k in range(3):
        folder = root / "imgs" / f"digit{k}"
        folder.mkdir(parents=True)
        for i, pixels in enumerate(digits.images[digits.target == k][:30]):
            im = Image.fromarray((pixels * 255 / 16).astype(np.uint8), "L").resize((10, 10))
            im.save(folder / f"{i:02d}.png")
    (root / "spec.dnn").write_text(IMAGES)
    run = root / "run"
    argv = ["train", str(root / "spec.dnn"), "--out", str(run), "--histograms"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    return run, out.getvalue()


def regression_run(root: Path) -> Path:
    (root / "spec.dnn").write_text(REGRESSION)
    assert main(["train", str(root / "spec.dnn"), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


# ------------------------------------------------------------------ one image run, end to end


def test_an_image_run_tensorboard_eval_predict_and_next_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One run (its compile is most of the cost) read every way: TensorBoard's reader,
    `dnn eval`'s report against scikit-learn, `dnn predict` on .npz, folders and files."""
    run, printed = image_run(tmp_path)
    _tensorboard_reads_back_the_epoch_scalars(run)
    _train_ends_with_the_next_commands(run, printed)
    test = _eval_equals_scikit_learn_on_predicted_labels(run, capsys)
    _predict_reads_image_folders_and_files(run, tmp_path, test)
    _predict_errors_name_the_inputs(run, tmp_path, capsys)


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def _tensorboard_reads_back_the_epoch_scalars(run: Path) -> None:
    history = rundir.read_history(run / "metrics.jsonl")
    train, val = _events(run / "tensorboard" / "train"), _events(run / "tensorboard" / "val")
    for key, acc, tag in (
        ("loss", train, "epoch/loss"),
        ("accuracy", train, "epoch/accuracy"),
        ("lr", train, "epoch/lr"),
        ("val_loss", val, "epoch/loss"),
        ("val_accuracy", val, "epoch/accuracy"),
    ):
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        want = [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in history]
        assert got == want, tag
    assert history[0]["lr"] == pytest.approx(1e-2)
    assert not (run / "plots" / "lr.png").exists()  # a constant rate draws no picture
    # the model summary as text, and a histogram of each weight per epoch (--histograms)
    (summary,) = train.Tensors("model/summary/text_summary")
    text = summary.tensor_proto.string_val[0].decode()
    assert "pixels" in text and "dense_1" in text
    hist = train.Histograms("weights/dense/kernel")
    assert [h.step for h in hist] == [1, 2]
    assert hist[0].histogram_value.num == 64 * 16  # every weight of the 64 x 16 kernel


def _train_ends_with_the_next_commands(run: Path, printed: str) -> None:
    tail = printed.splitlines()
    at = tail.index("next:")
    assert tail[at - 1] == f"run folder: {run}"
    lines = [line.split("  #")[0].strip() for line in tail[at + 1 :]]
    assert lines == [
        f"dnn eval --run {run}",
        f"dnn predict --run {run} --input x.npy --output y.csv",
        f"dnn runs {run.parent}",
        f"dnn export {run} --format onnx -o model.onnx",
        f"tensorboard --logdir {run / 'tensorboard'}",
    ]


def _table(run: Path) -> Table:
    """The image folder as the run's `images` source read it."""
    program = load(str(run.parent / "spec.dnn"))
    return sources.load_source(
        program.data.source,
        task="classification",
        base_dir=run.parent,
        span=program.data.span_of("source"),
        sources={},
    )


def _predict(run: Path, inputs: Path, output: Path) -> None:
    assert (
        main(["predict", "--run", str(run), "--input", str(inputs), "--output", str(output)]) == 0
    )


def _eval_equals_scikit_learn_on_predicted_labels(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> Table:
    """`dnn eval`'s report equals scikit-learn's on the labels `dnn predict` gives for the
    test split's images (given as an .npz by input name)."""
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    test = split.split(_table(run), (0.6, 0.2, 0.2), 0)["test"]
    np.savez(run.parent / "test.npz", image=test.x)
    _predict(run, run.parent / "test.npz", run.parent / "labels.npy")
    labels = np.load(run.parent / "labels.npy")
    assert np.mean(labels == test.y) == pytest.approx(shown["test"]["accuracy"])
    p, r, f, s = precision_recall_fscore_support(test.y, labels, labels=range(3), zero_division=0)
    rows = shown["report"]["classes"]
    assert list(rows) == ["digit0", "digit1", "digit2"]
    assert [rows[k]["precision"] for k in rows] == pytest.approx(p.tolist(), rel=1e-12)
    assert [rows[k]["recall"] for k in rows] == pytest.approx(r.tolist(), rel=1e-12)
    assert [rows[k]["f1"] for k in rows] == pytest.approx(f.tolist(), rel=1e-12)
    assert [rows[k]["support"] for k in rows] == s.tolist()
    confusion = np.array(shown["report"]["confusion"])
    assert confusion.sum() == len(test.y) and np.trace(confusion) == np.sum(labels == test.y)
    png = run / "plots" / "confusion_test.png"
    assert shown["report"]["plots"] == ["plots/confusion_test.png"]  # in the run folder
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return test


def _predict_reads_image_folders_and_files(run: Path, tmp_path: Path, test: Any) -> None:
    """A folder (class subfolders searched, sorted by path) and one file give the labels of
    the same pixels read by the `images` source (10x10 PNGs resized to 8x8 as in training)."""
    imgs = run.parent / "imgs"
    np.savez(tmp_path / "all.npz", x=_table(run).x)  # `x` names the only input too
    _predict(run, tmp_path / "all.npz", tmp_path / "all.npy")
    want = np.load(tmp_path / "all.npy")
    csv = tmp_path / "folder.csv"
    _predict(run, imgs, csv)
    rows = [line.split(",") for line in csv.read_text().splitlines()]
    assert rows[0] == ["file", "label", "p_digit0", "p_digit1", "p_digit2"]
    assert rows[1][0] == str(imgs / "digit0" / "00.png") and len(rows) == 91
    assert [r[1] for r in rows[1:]] == [f"digit{k}" for k in want]
    _predict(run, imgs / "digit2" / "07.png", tmp_path / "one.npy")
    assert np.load(tmp_path / "one.npy").tolist() == [want[60 + 7]]


def _predict_errors_name_the_inputs(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, pixels=np.zeros((2, 8, 8, 1)), extra=np.zeros(2))
    capsys.readouterr()
    out = ["--output", str(tmp_path / "y.npy")]
    assert main(["predict", "--run", str(run), "--input", str(bad), *out]) == 1
    err = capsys.readouterr().err
    assert (
        f"{bad}:1:1: error[E0702]: `{bad}` does not match the model's inputs: no array "
        "`image`; arrays the model does not take: `pixels`, `extra`\n"
        "  hint: the model's inputs are `image` (8, 8, 1): save one array per input, by its name"
    ) in err
    assert "Traceback" not in err


# ------------------------------------------------------------------ a regression run


def test_a_regression_run_draws_residuals_and_takes_no_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = regression_run(tmp_path)
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    png = run / "plots" / "residuals_test.png"
    assert shown["report"] == {"plots": ["plots/residuals_test.png"]}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = tmp_path / "one.png"
    Image.new("L", (8, 8)).save(image)
    out = ["--output", str(tmp_path / "y.npy")]
    assert main(["predict", "--run", str(run), "--input", str(image), *out]) == 1
    err = capsys.readouterr().err
    assert f"{image}:1:1: error[E0702]: the run's model takes `x` (10,), not an image\n" in err
    assert "hint: images are read for a model with one input of shape [height, width," in err
    # a spec whose normalizer is not the run's: refused at it (the saved statistics are not its)
    other = tmp_path / "other.dnn"
    other.write_text(
        REGRESSION.replace('builtin("diabetes")', 'builtin("diabetes")\n  normalize = minmax')
    )
    assert main(["eval", str(other), "--run", str(run)]) == 1
    err = capsys.readouterr().err
    assert (
        f"error[E0602]: the run in `{run}` was trained with `normalize = none`, but the "
        "spec says `minmax`: the run's saved statistics are for its own"
    ) in err


# ------------------------------------------------------------------ pieces


def test_class_report_equals_scikit_learn() -> None:
    """Per-class precision, recall, F1, support and the averages on hand-made predictions:
    a class never predicted (precision 0/0, scikit-learn's zero_division=0) included."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 3, 200))
    pred[pred == 3] = 0  # class 3 is never predicted
    got = report.classes_report(y, pred, ("a", "b", "c", "d"))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(4), zero_division=0)
    np.testing.assert_allclose(got.precision, p, rtol=1e-12)
    np.testing.assert_allclose(got.recall, r, rtol=1e-12)
    np.testing.assert_allclose(got.f1, f, rtol=1e-12)
    assert got.support.tolist() == s.tolist()
    assert got.precision[3] == 0 and got.confusion is not None and got.confusion.sum() == 200
    for name, average in (("macro avg", "macro"), ("weighted avg", "weighted")):
        want = precision_recall_fscore_support(y, pred, average=average, zero_division=0)[:3]
        row = got.averages()[name]
        assert [row["precision"], row["recall"], row["f1"]] == pytest.approx(want, rel=1e-12)
    # the text table lays the rows out as scikit-learn's classification_report does
    lines = got.text().splitlines()
    assert lines[0] == "              precision     recall         f1    support"
    assert lines[2] == f"           b  {p[1]:9.4f}  {r[1]:9.4f}  {f[1]:9.4f}  {s[1]:9d}"
    assert lines[-2].startswith("   macro avg  ") and lines[-1].endswith("        200")
    # multi-label rows: each label its own yes/no decision
    yl, pl = rng.integers(0, 2, (50, 3)), rng.integers(0, 2, (50, 3))
    got = report.labels_report(yl, pl, ("x", "y", "z"))
    p, r, f, s = precision_recall_fscore_support(yl, pl, zero_division=0)
    np.testing.assert_allclose(np.stack([got.precision, got.recall, got.f1]), [p, r, f])
    assert got.support.tolist() == s.tolist()


def test_run_plots_log_scale_learning_rate_and_best_epoch(tmp_path: Path) -> None:
    assert rundir.log_scale("loss", [5.0, 0.5, 0.01])  # 500x: more than two decades
    assert not rundir.log_scale("loss", [5.0, 0.1])  # 50x
    assert not rundir.log_scale("accuracy", [0.001, 0.9])  # a quantity to maximize
    assert not rundir.log_scale("loss", [5.0, 0.0])  # a zero has no log
    history = [
        {"epoch": e, "loss": 10.0 ** (1 - e), "val_loss": 10.0 ** (1 - e) * 2, "lr": 0.1 / e}
        for e in (1, 2, 3, 4)
    ]
    written = rundir.plot_history(history, tmp_path, best_epoch=3)
    assert [p.name for p in written] == ["loss.png", "lr.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_an_npz_of_several_inputs_is_laid_out_in_the_models_order(tmp_path: Path) -> None:
    from dnn.compiler.diagnostics import SpecError
    from dnn.runtime import inputs

    wanted = inputs.Wanted((("a", (2,)), ("b", (3, 1))), (5,))
    a, b = np.arange(8.0).reshape(4, 2), 100 + np.arange(12.0).reshape(4, 3, 1)
    np.savez(tmp_path / "ab.npz", b=b, a=a)  # the archive's order is not the model's
    x, files = inputs.read(tmp_path / "ab.npz", wanted)
    assert files is None
    np.testing.assert_array_equal(x, np.concatenate([a, b.reshape(4, 3)], axis=1))
    np.savez(tmp_path / "short.npz", a=a, b=b[:3])
    with pytest.raises(SpecError) as info:
        inputs.read(tmp_path / "short.npz", wanted)
    (d,) = info.value.diagnostics
    assert (
        d.message == f"the arrays of `{tmp_path / 'short.npz'}` hold different counts: `a` 4, `b` 3"
    )
    np.savez(tmp_path / "x.npz", x=a)  # `x` stands for the input only where there is one
    with pytest.raises(SpecError) as info:
        inputs.read(tmp_path / "x.npz", wanted)
    (d,) = info.value.diagnostics
    assert "no array `a`, `b`; arrays the model does not take: `x`" in d.message
    assert (
        d.hint
        == "the model's inputs are `a` (2,), `b` (3, 1): save one array per input, by its name"
    )


def test_the_next_commands_call_dnn_as_the_user_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dnn.runtime.cli_train import _executable

    exe = tmp_path / "venv" / "bin" / "dnn"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("sys.argv", [str(exe)])
    assert _executable() == str(exe)  # `make train`'s .venv/bin/dnn, not on PATH
    monkeypatch.setenv("PATH", str(exe.parent))
    assert _executable() == "dnn"  # the one PATH finds: its short name
    monkeypatch.setattr("sys.argv", ["/usr/bin/pytest"])
    assert _executable() == "dnn"


def test_the_next_predict_command_fits_the_runs_inputs_and_outputs(tmp_path: Path) -> None:
    """A typed table's run predicts from a CSV of its columns; several outputs go to an .npz."""
    from dnn.runtime.cli_train import next_commands

    def predict(run: Path) -> str:
        return next(line for line in next_commands(run).splitlines() if " predict " in line)

    plain, table, several = (tmp_path / n for n in ("plain", "table", "several"))
    for run in (plain, table, several):
        run.mkdir()
        outputs = [{"name": "a"}] if run is several else []
        (run / "preprocess.json").write_text(json.dumps({"outputs": outputs}))
    (table / "columns.json").write_text("{}")
    assert "--input x.npy --output y.csv" in predict(plain)
    assert "--input x.csv --output y.csv" in predict(table)
    assert "--input x.npy --output y.npz" in predict(several)
