"""The training runtime end to end: run folder, resume equality, a SIGKILL in mid-run, early
stopping, plateau, non-finite loss, eval/predict, ensembles, transfer learning, bad data.

Specs are small (an MLP on the built-in digits, a few epochs) so the file stays fast.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import yaml
from dnn.runtime import infer, pipeline
from dnn.runtime.cli import main
from dnn.runtime.data import sources
from dnn.runtime.data import split as data_split
from dnn.runtime.fit import train, transfer
from dnn.runtime.train import Engine

import dnn

DNN = str(Path(sys.executable).parent / "dnn")

MLP = """dnn 1
model tiny {{
  input pixels: f32[64]
  dense(32) -> relu
  dropout(0.2)
  h = dense(16) -> relu
  out = dense(10)
}}
data {{
  source = builtin("digits")
  split = {{ train: 0.7, val: 0.15, test: 0.15 }}
  normalize = standardize
  augment = [noise(std = 0.05)]
}}
train {{
  batch_size = 64
  epochs = {epochs}
  optimizer = adam(lr = 3e-3)
  schedule = cosine(decay_steps = 6 epochs, warmup = 5 steps)
  seed = 1
  {extra}
}}
"""


def spec(tmp_path: Path, epochs: int = 4, extra: str = "", name: str = "tiny.dnn") -> Path:
    path = tmp_path / name
    path.write_text(MLP.format(epochs=epochs, extra=extra))
    return path


def params_of(run: Path, slot: str = "last") -> dict:
    folder = run / "checkpoints" / slot
    step = max(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    return ocp.StandardCheckpointer().restore((folder / str(step) / "state").resolve())["params"]


def flat(tree: dict) -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update({f"{k}/{kk}": vv for kk, vv in flat(v).items()})
        else:
            out[k] = np.asarray(v)
    return out


def finals(result: dict) -> dict:
    return {s: result[s] for s in ("train", "val", "test")}


def test_run_folder_holds_everything(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(dnn.load(str(spec(tmp_path, epochs=3))), run, mode="quiet")
    for name in ("spec.dnn", "hparams.yaml", "env.yaml", "metrics.jsonl", "result.json"):
        assert (run / name).is_file(), name
    plots = sorted(p.name for p in (run / "plots").iterdir())
    assert plots == ["accuracy.png", "loss.png", "lr.png"]
    assert (run / "tensorboard" / "train").is_dir() and (run / "tensorboard" / "val").is_dir()
    assert (run / "plots" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "samples_per_s"} <= set(lines[0])
    saved = json.loads((run / "result.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["epochs_run"] == 3 and saved["params"] == 32 * 65 + 16 * 33 + 10 * 17
    assert 0.5 < saved["test"]["accuracy"] <= 1.0
    hp = yaml.safe_load((run / "hparams.yaml").read_text())
    assert hp["train"]["optimizer"]["adam"]["lr"] == pytest.approx(3e-3)
    assert hp["data"]["source"] == {"builtin": {"name": "digits"}}
    env = yaml.safe_load((run / "env.yaml").read_text())
    assert env["seed"] == 1 and "jax" in env["packages"] and env["devices"]
    # the saved spec is the canonical text of what was trained, and checks again
    assert dnn.loads((run / "spec.dnn").read_text(), "spec.dnn").model.params == saved["params"]


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    path = spec(tmp_path, epochs=4, extra="early_stopping = { monitor: val_accuracy, patience: 3 }")
    straight = train(dnn.load(str(path)), tmp_path / "a", mode="quiet")
    first = train(dnn.load(str(path)), tmp_path / "b", stop_after=2, mode="quiet")
    assert first == {"stopped_after": 2, "finished": False, "run": str(tmp_path / "b")}
    assert not (tmp_path / "b" / "result.json").exists()
    resumed = train(dnn.load(str(path)), tmp_path / "b", resume=True, mode="quiet")
    assert finals(resumed) == finals(straight)
    assert resumed["epochs_run"] == straight["epochs_run"] == 4
    pa, pb = flat(params_of(tmp_path / "a")), flat(params_of(tmp_path / "b"))
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    history = lambda d: [  # noqa: E731
        {k: v for k, v in json.loads(x).items() if k not in ("time", "samples_per_s")}
        for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()
    ]
    assert history("a") == history("b")


def test_resume_refuses_a_changed_spec_and_a_finished_run(tmp_path: Path, capsys) -> None:
    path = spec(tmp_path, epochs=2)
    run = tmp_path / "run"
    assert main(["train", str(path), "--out", str(run), "--stop-after", "1", "--quiet"]) == 0
    code = main(["train", str(path), "--out", str(run), "--resume", "--set", "train.seed=5"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot resume" in err and "train.seed: 1 -> 5" in err
    assert "hint: resume with the same spec" in err
    assert main(["train", str(path), "--out", str(run), "--resume", "--quiet"]) == 0
    assert main(["train", str(path), "--out", str(run), "--resume", "--quiet"]) == 1
    assert "already finished (epoch 2)" in capsys.readouterr().err
    assert main(["train", str(path), "--out", str(run), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"the run folder {run} already holds a checkpoint (last)" in err
    assert "hint: pass --resume to continue that run, or another --out" in err
    assert (run / "result.json").exists()


# Issue 14, class 6 (runs and interruption): a run stopped before its first checkpoint left a
# folder that blocked both a rerun ("already exists") and --resume ("nothing to resume").


def interrupted_run(tmp_path: Path) -> tuple[Path, Path]:
    """A run folder as Ctrl-C leaves it after epoch 1, before any checkpoint (SIGINT)."""
    path, run = spec(tmp_path, epochs=5000), tmp_path / "run"
    cmd = [DNN, "train", str(path), "--out", str(run), "--quiet", "--checkpoint-every", "1e9"]
    # A terminal's Ctrl-C reaches a foreground process. A shell without job control starts
    # background commands (`make test &`, a CI step) with SIGINT ignored, and an ignored signal
    # stays ignored across fork and exec: the child then never sees the interrupt (two
    # fresh-clone runs timed out here). A caught one is reset to the default on exec, so
    # catching it while the child starts gives the child the terminal's disposition.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "continues from the start (no checkpoint yet)" in err
    assert not (run / "checkpoints" / "last").exists()
    return path, run


def test_a_run_stopped_before_its_first_checkpoint_is_replaced(tmp_path: Path, capsys) -> None:
    path, run = interrupted_run(tmp_path)
    started = yaml.safe_load((run / "env.yaml").read_text())["started"]
    again = tmp_path / "again"
    shutil.copytree(run, again)
    assert main(["train", str(path), "--out", str(run), "--epochs", "1", "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{run}: replaced the run started {started}, which stopped before its first checkpoint"
    ]
    assert json.loads((run / "result.json").read_text())["epochs_run"] == 1
    # --resume, as the interrupt message suggests, starts it again too
    argv = ["train", str(path), "--out", str(again), "--resume", "--epochs", "1", "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{again}: nothing to resume (the run started {started} stopped before its first "
        "checkpoint); starting it again"
    ]
    assert json.loads((again / "result.json").read_text())["epochs_run"] == 1


def test_a_folder_that_is_not_a_run_is_never_replaced(tmp_path: Path, capsys) -> None:
    path = spec(tmp_path, epochs=1)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (mine / "env.yaml").write_text("name: conda-env\ndependencies: [numpy]\n")
    for extra in ([], ["--resume"]):
        assert main(["train", str(path), "--out", str(mine), "--quiet", *extra]) == 1
        err = capsys.readouterr().err
        assert (
            f"error: {mine} is not empty and is not a dnn run folder; dnn writes only into an "
            "empty folder or one of its own runs\n  hint: pass another --out"
        ) in err
    (mine / "notes.txt").unlink()  # a conda env.yaml alone is not a run either
    assert main(["train", str(path), "--out", str(mine), "--quiet"]) == 1
    assert "is not a dnn run folder" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["env.yaml"]
    missing = tmp_path / "missing"
    assert main(["train", str(path), "--out", str(missing), "--resume", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"error: nothing to resume in {missing}: no such folder" in err
    assert "hint: run without --resume to start this run" in err


def test_sigkill_in_mid_run_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    path = spec(tmp_path, epochs=25)
    run = tmp_path / "run"
    cmd = [DNN, "train", str(path), "--out", str(run), "--checkpoint-every", "0", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run / "checkpoints" / "last"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        steps = [int(p.name) for p in last.iterdir() if p.name.isdigit()] if last.is_dir() else []
        if steps and max(steps) >= 3:
            break
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "result.json").exists()
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((run / "result.json").read_text())
    assert result["epochs_run"] == 25
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 26))


def test_early_stopping_restores_the_best_epoch(tmp_path: Path) -> None:
    # a learning rate this high makes the validation loss wander: patience 1 stops early
    extra = "early_stopping = { monitor: val_loss, patience: 1 }"
    path = spec(tmp_path, epochs=30, extra=extra)
    run = tmp_path / "run"
    result = train(dnn.load(str(path), ["train.optimizer.lr=0.05"]), run, mode="quiet")
    history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    best = min(history, key=lambda r: r["val_loss"])
    assert result["epochs_run"] == len(history) < 30
    assert result["restored_best"] and result["best_epoch"] == best["epoch"]
    assert result["val"]["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert history[-1]["epoch"] - best["epoch"] == 1  # patience 1


def test_reduce_on_plateau_lowers_the_rate(tmp_path: Path) -> None:
    extra = "early_stopping = none"
    text = MLP.format(epochs=6, extra=extra).replace(
        "schedule = cosine(decay_steps = 6 epochs, warmup = 5 steps)",
        "schedule = reduce_on_plateau(monitor = val_loss, patience = 0, factor = 0.5, "
        "threshold = 10.0)",  # no epoch ever improves by 1000 %: the rate halves each epoch
    )
    path = tmp_path / "plateau.dnn"
    path.write_text(text)
    train(dnn.load(str(path)), tmp_path / "run", mode="quiet")
    rates = [
        json.loads(x)["lr"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    # the rate reported for epoch e is the one its steps used: halved after each epoch but the first
    expected = [3e-3] + [3e-3 * 0.5**k for k in range(1, 6)]
    assert rates == pytest.approx(expected, rel=1e-6)


def test_reduce_on_plateau_after_a_warm_up(tmp_path: Path) -> None:
    # Issue 14, class 6: `reduce_on_plateau` takes `warmup`. 1,257 training examples in
    # batches of 64: 20 steps an epoch; warm-up over 30 steps, then lr_0 times the plateau's
    # factor, which halves after every watched epoch (none improves by 1000 %). The plateau
    # watches the epochs that end after step 30: epoch 2 (40 steps) on, not epoch 1 (20).
    text = MLP.format(epochs=4, extra="").replace(
        "schedule = cosine(decay_steps = 6 epochs, warmup = 5 steps)",
        "schedule = reduce_on_plateau(monitor = val_loss, patience = 0, factor = 0.5, "
        "threshold = 10.0, warmup = 30 steps)",
    )
    path = tmp_path / "plateau.dnn"
    path.write_text(text)
    train(dnn.load(str(path)), tmp_path / "run", mode="quiet")
    history = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # the rate reported for an epoch is its last step's: step 19, 39, 59, 79
    lr = 3e-3
    expected = [lr * 19 / 30, lr, lr * 0.5, lr * 0.25]
    assert [r["lr"] for r in history] == pytest.approx(expected, rel=1e-6)


# Issue 14, class 6: `dnn train` ignored a `sweep` section silently, and trained silently when
# nothing could change.


def test_train_says_it_trains_the_base_point_of_a_sweep(tmp_path: Path, capsys) -> None:
    path = spec(tmp_path, epochs=1)
    path.write_text(
        path.read_text() + "sweep {\n  train.optimizer.lr = loguniform(1e-4, 1e-2)\n}\n"
    )
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    line = MLP.count("\n") + 1  # the `sweep` line, after the spec's own lines
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:{line}:1: warning[W0803]: `dnn train` trains the base point (the spec's own "
        "values); it does not run the `sweep` search",
        f"{line} | sweep {{",
        "   | ^^^^^",
        "  hint: run the search with `dnn sweep`; train one of its points with "
        "`--set train.optimizer.lr=VALUE`",
    ]
    saved = yaml.safe_load((tmp_path / "run" / "hparams.yaml").read_text())
    assert saved["train"]["optimizer"]["adam"]["lr"] == 0.003  # the base point


def test_train_warns_when_nothing_trains(tmp_path: Path, capsys) -> None:
    path = spec(tmp_path, epochs=1, extra='freeze = ["*"]')
    assert main(["train", str(path), "--out", str(tmp_path / "frozen"), "--quiet"]) == 0
    err = capsys.readouterr().err
    warning = f"{path}:21:12: warning[W0804]: `freeze` covers every layer with weights: "
    assert err.count(warning) == 1  # once: `dnn check`'s warning is not repeated
    assert (
        '21 |   freeze = ["*"]' in err and "hint: leave out of `freeze` the layers to train" in err
    )
    none = tmp_path / "none.dnn"  # a model without weights trained (was KeyError: 'params')
    none.write_text(
        'dnn 1\nmodel m {\n  input x: f32[2]\n  relu\n}\ndata {\n  source = builtin("moons")\n}\n'
        "train {\n  epochs = 1\n}\n"
    )
    assert main(["train", str(none), "--out", str(tmp_path / "none"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"{none}:2:1: warning[W0804]: model `m` has no weights: training changes nothing" in err
    assert "Traceback" not in err


def test_non_finite_loss_stops_with_epoch_and_step(tmp_path: Path, capsys) -> None:
    path = spec(tmp_path, epochs=3)
    run = tmp_path / "run"
    code = main(
        [
            "train",
            str(path),
            "--out",
            str(run),
            "--quiet",
            "--set",
            "train.optimizer=sgd(lr = 1e12)",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    # where it began, at its spec line (tests/test_nonfinite.py checks each kind of origin)
    assert f"{path}:6:7: error[E0605]: the loss is not finite (nan or inf) at epoch 1, step " in err
    assert "are the first that are not" in err and "Traceback" not in err
    assert "hint: lower the learning rate" in err
    assert not (run / "result.json").exists()


def test_eval_and_predict_use_the_run(tmp_path: Path, capsys) -> None:
    path = spec(tmp_path, epochs=3)
    run = tmp_path / "run"
    result = train(dnn.load(str(path)), run, mode="quiet")
    assert main(["eval", str(path), "--run", str(run), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["test"] == pytest.approx(result["test"], rel=1e-6)
    # raw test inputs, split as the run split them: predictions reach the same accuracy
    program = dnn.load(str(path))
    table = sources.load_source(
        program.data.source,
        task="classification",
        base_dir=tmp_path,
        span=program.data.span_of("source"),
        sources={},
    )
    test = data_split.split(table, (0.7, 0.15, 0.15), 0)["test"]
    np.save(tmp_path / "x.npy", test.x)
    args = ["predict", str(path), "--run", str(run), "--input", str(tmp_path / "x.npy")]
    assert main([*args, "--output", str(tmp_path / "y.npy")]) == 0
    labels = np.load(tmp_path / "y.npy")
    assert labels.shape == (len(test.y),)
    assert np.mean(labels == test.y) == pytest.approx(result["test"]["accuracy"])
    assert main([*args, "--output", str(tmp_path / "y.csv")]) == 0
    rows = (tmp_path / "y.csv").read_text().splitlines()
    assert rows[0] == "label," + ",".join(f"p_{i}" for i in range(10))
    assert [int(r.split(",")[0]) for r in rows[1:]] == labels.tolist()
    probs = np.array([[float(v) for v in r.split(",")[1:]] for r in rows[1:]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    # another model than the run's: a short error naming both, not a checkpoint dump
    assert main(["eval", str(path), "--run", str(run), "--set", "train.seed=3"]) == 0
    capsys.readouterr()
    other = tmp_path / "other.dnn"
    other.write_text(path.read_text().replace("dense(32)", "dense(48)"))
    assert main(["eval", str(other), "--run", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"the run in {run} trained `tiny` (7 layers, 2,778 params), not this spec's" in err
    assert f"hint: use the spec the run was trained from, or compare: dnn diff {run}" in err


def test_ensemble_reports_members_and_the_mean(tmp_path: Path) -> None:
    path = spec(tmp_path, epochs=2, extra="ensemble = 3")
    result = train(dnn.load(str(path)), tmp_path / "run", mode="quiet")
    members = result["test"]["members"]
    assert len(members) == 3 and result["members"] == 3
    assert len({m["loss"] for m in members}) == 3  # different seeds, different members
    # the ensemble's loss is that of the mean probability: at most the members' mean (Jensen)
    assert result["test"]["loss"] <= np.mean([m["loss"] for m in members]) + 1e-6
    stacked = flat(params_of(tmp_path / "run"))
    assert stacked["out/kernel"].shape == (3, 16, 10)


def test_init_from_loads_matching_layers_and_freeze_keeps_them(tmp_path: Path, capsys) -> None:
    source = tmp_path / "source"
    train(dnn.load(str(spec(tmp_path, epochs=1))), source, mode="quiet")
    text = MLP.format(epochs=1, extra=f'init_from = "{source}"\n  freeze = ["dense"]').replace(
        "out = dense(10)", "head = dense(10)"
    )
    path = tmp_path / "transfer.dnn"
    path.write_text(text)
    run = tmp_path / "run"
    assert main(["train", str(path), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "loaded 2 layers (dense, dense_1)" in err  # `h = dense(16) -> relu` names the relu
    assert "new layers (initialized fresh): head" in err
    before, after = flat(params_of(source, "best")), flat(params_of(run))
    np.testing.assert_array_equal(before["dense/kernel"], after["dense/kernel"])  # frozen
    assert not np.array_equal(before["dense_1/kernel"], after["dense_1/kernel"])  # then trained


def test_init_from_a_folder_without_checkpoints_is_a_spec_error(tmp_path: Path, capsys) -> None:
    path = spec(tmp_path, epochs=1, extra=f'init_from = "{tmp_path / "nothing"}"')
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"{path}:" in err and "`init_from`: no checkpoint in" in err
    assert "hint: give the folder of a finished `dnn train` run" in err


CSV_SPEC = """dnn 1
model m {{
  input x: f32[2]
  dense(3)
}}
data {{
  source = csv("{file}", label = "y")
}}
train {{
  epochs = 1
}}
"""


@pytest.mark.parametrize(
    ("content", "where", "message"),
    [
        ("a,b,y\n1,2,0\n3,inf,1\n", "data.csv:3:3", "column `b`"),
        ("a,b,y\n1,2,0\n3,4,7\n", "data.csv:3:5", "7"),
        ("", "data.csv", "empty"),
    ],
    ids=["inf", "label", "empty"],
)
def test_bad_data_is_reported_with_file_row_and_column(
    tmp_path: Path, capsys, content: str, where: str, message: str
) -> None:
    (tmp_path / "data.csv").write_text(content)
    path = tmp_path / "m.dnn"
    path.write_text(CSV_SPEC.format(file="data.csv"))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert where in err and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written before the data is known good


def test_a_missing_data_file_points_at_the_source_field(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.dnn"
    path.write_text(CSV_SPEC.format(file="missing.csv"))
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"{path}:7:" in err and "missing.csv" in err and "^" in err


def test_saved_spec_is_self_contained_with_overrides(tmp_path: Path) -> None:
    from dnn.runtime.rundir import spec_text

    examples = Path(__file__).parent.parent / "examples"
    program = dnn.load(str(examples / "resnet_small.dnn"), ["train.optimizer.lr=0.01"])
    copy = tmp_path / "spec.dnn"  # elsewhere: the imported blocks/ folder is not beside it
    copy.write_text(spec_text(program))
    again = dnn.load(str(copy))
    assert again.model == program.model and again.train == program.train
    assert "import" not in copy.read_text() and "# from blocks/resnet.dnn" in copy.read_text()


def test_runs_lists_and_compares(tmp_path: Path, capsys) -> None:
    path = spec(tmp_path, epochs=1)
    train(dnn.load(str(path)), tmp_path / "runs" / "a", mode="quiet")
    train(dnn.load(str(path), ["train.optimizer.lr=0.01"]), tmp_path / "runs" / "b", mode="quiet")
    two = dnn.load(str(path), ["train.epochs=2"])
    train(two, tmp_path / "runs" / "c", stop_after=1, mode="quiet")
    capsys.readouterr()
    assert main(["runs", str(tmp_path / "runs")]) == 0
    table = capsys.readouterr().out
    assert "finished" in table and "stopped" in table and "tiny.dnn" in table
    png = tmp_path / "curves.png"
    code = main(
        [
            "runs",
            "compare",
            str(tmp_path / "runs" / "a"),
            str(tmp_path / "runs" / "b"),
            "-o",
            str(png),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "train.optimizer.lr" in out and "1e-2" in out.replace("0.01", "1e-2")
    assert main(["runs", "compare", str(tmp_path), str(tmp_path / "runs" / "a")]) == 1


def test_progress_modes() -> None:
    import io

    from dnn.runtime.progress import Display

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    record = {"epoch": 1, "loss": 0.25, "accuracy": 0.5, "time": 0.5, "samples_per_s": 2000.0}
    assert Display.choose(quiet=False, stream=io.StringIO()) == "lines"
    assert Display.choose(quiet=False, stream=Terminal()) == "bar"
    assert Display.choose(quiet=True, stream=Terminal()) == "quiet"
    for mode, stream in (("lines", io.StringIO()), ("bar", Terminal()), ("quiet", io.StringIO())):
        with Display(2, 4, mode, stream) as d:
            d.start_epoch(1)
            if d.progress is not None:
                d.progress.refresh()
                assert "compiling the training step" in stream.getvalue()
            d.step(2, 128, 0.3)
            d.end_epoch(record)
            d.start_epoch(2)  # compiled by now: no note; the bar shows the last epoch's
            # figures (issue 17: it kept the first step's loss and speed for the whole run when
            # no later step reported, an epoch shorter than BAR_EVERY_S or a scanned one)
            if d.progress is not None:
                fields = d.progress.tasks[0].fields
                assert (fields["info"], fields["speed"]) == ("loss 0.2500", "2,000 samples/s")
                d.step(1, 64, 0.2)  # a step of epoch 2 that reports replaces them
                assert d.progress.tasks[0].fields["info"] == "loss 0.2000"
        text = stream.getvalue()
        if mode == "quiet":
            assert text == ""
        else:
            assert "epoch 1/2  loss 0.2500  accuracy 0.5000  (0.5 s, 2,000 samples/s)" in text
        if mode == "bar":
            assert "loss 0.2000" in text and "samples/s" in text and "eta" in text


REGRESSION = """dnn 1
model reg {
  input x: f32[10]
  dense(16) -> relu
  dense(1)
}
data {
  source = builtin("diabetes")
  normalize = standardize
}
train {
  loss = mse
  metrics = [mse, mae, r2]
  epochs = 3
  optimizer = adam(lr = 1e-2)
}
"""

BINARY = """dnn 1
model bin {
  input x: f32[30]
  dense(8) -> relu
  dense(1)
}
data {
  source = builtin("breast_cancer")
  normalize = standardize
}
train {
  loss = binary_cross_entropy
  metrics = [accuracy, f1]
  epochs = 3
  optimizer = adam(lr = 1e-2)
}
"""


def test_regression_targets_train_and_report_regression_metrics(tmp_path: Path) -> None:
    path = tmp_path / "reg.dnn"
    path.write_text(REGRESSION)
    result = train(dnn.load(str(path)), tmp_path / "run", mode="quiet")
    test = result["test"]
    assert set(test) == {"loss", "mse", "mae", "r2"}
    assert test["mse"] == pytest.approx(test["loss"], rel=1e-5)  # the loss is the mse
    assert test["mae"] ** 2 <= test["mse"] + 1e-6  # Jensen: mean |e| squared <= mean e^2


def test_binary_single_logit_classification(tmp_path: Path) -> None:
    path = tmp_path / "bin.dnn"
    path.write_text(BINARY)
    result = train(dnn.load(str(path)), tmp_path / "run", mode="quiet")
    assert result["test"]["accuracy"] > 0.85 and 0 < result["test"]["f1"] <= 1


DEEP = """dnn 1
block res(c) {
  h = dense(c)(in) -> relu
  add(in, dense(c)(h))
}
model deep {
  input pixels: f32[64]
  dense(16)
  repeat 8 { res(16) }
  dense(10)
}
data {
  source = builtin("digits")
  normalize = standardize
}
train {
  epochs = 2
  optimizer = adam(lr = 1e-3)
  regularizer = l2(1e-4)
  loop = steps
}
"""


@pytest.fixture(scope="module")
def deep_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """DEEP trained for 3 epochs scanned (`scan_repeats = true`) and unrolled, once for the
    two tests below: each run's result, in its folder ("true", "false")."""
    folder = tmp_path_factory.mktemp("deep")
    path = folder / "deep.dnn"
    path.write_text(DEEP.replace("  epochs = 2\n", "  epochs = 3\n"))
    runs: dict = {"folder": folder}
    for scan in ("true", "false"):
        program = dnn.load(str(path), [f"train.scan_repeats={scan}"])
        runs[scan] = train(program, folder / scan, mode="quiet")
    return runs


def test_scanned_repeats_train_like_unrolled_ones(deep_runs: dict) -> None:
    runs, folder = deep_runs, deep_runs["folder"]
    for split in ("train", "val", "test"):
        assert runs["true"][split]["loss"] == pytest.approx(runs["false"][split]["loss"], rel=1e-4)
    # checkpoints hold one entry per node whether or not the run was scanned
    scanned, unrolled = params_of(folder / "true"), params_of(folder / "false")
    assert set(scanned) == set(unrolled) and "res_3/dense" in scanned
    assert not [k for k in scanned if ".." in k]
    assert np.shape(scanned["res_3/dense"]["kernel"]) == (16, 16)


def _state_of(run: Path) -> dict:
    folder = run / "checkpoints" / "last"
    step = max(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    return ocp.StandardCheckpointer().restore((folder / str(step) / "state").resolve())


def test_a_run_moves_between_scan_decisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deep_runs: dict
) -> None:
    """`scan_repeats = auto` decides per backend; a checkpoint written under one decision
    resumes, evaluates and transfers under the other (checkpoints are per node)."""
    from dnn.compiler import lower_scan

    path = tmp_path / "deep.dnn"
    path.write_text(DEEP.replace("  epochs = 2\n", "  epochs = 3\n"))
    program = dnn.load(str(path))  # auto: 8 dense blocks are scanned on any backend
    assert lower_scan.plan_for(program).groups
    # the straight run: the scanned one of `deep_runs` (auto scans as `scan_repeats = true`)
    assert lower_scan.plan_for(program) == lower_scan.plan_for(
        dnn.load(str(path), ["train.scan_repeats=true"])
    )
    straight, straight_run = deep_runs["true"], deep_runs["folder"] / "true"
    # begun where auto leaves the run unrolled, resumed where it scans it
    with monkeypatch.context() as m:
        m.setattr(lower_scan, "MIN_AUTO", 100)
        assert not lower_scan.plan_for(program).groups
        train(program, tmp_path / "moved", stop_after=1, mode="quiet")
    moved = train(program, tmp_path / "moved", resume=True, mode="quiet")
    for split in ("train", "val", "test"):
        assert moved[split]["loss"] == pytest.approx(straight[split]["loss"], rel=1e-4)
    # the optimizer's moments are unstacked too
    opt = _state_of(straight_run)["opt"]
    mus = [t["mu"] for t in _mappings(opt) if "mu" in t]
    assert mus and "res_7/dense_1" in mus[0] and not [k for k in mus[0] if ".." in k]
    # the scanned run's weights evaluated by an unrolled engine, and transferred into one
    with monkeypatch.context() as m:
        m.setattr(lower_scan, "MIN_AUTO", 100)
        again = infer.evaluate(program, straight_run, "test")
        assert again["loss"] == pytest.approx(straight["test"]["loss"], rel=1e-5)
        target = dnn.load(str(path), [f'train.init_from="{straight_run}"'])
        engine = Engine(target, pipeline.prepare(target), 1)
        assert engine.scan is None
        st, notes, _ = transfer(target, engine.init(), engine)
    assert f"loaded {len(st['params'])} layers" in notes[0]
    assert len(notes) == 1  # nothing skipped, nothing new
    source = params_of(straight_run)
    for layer, leaves in st["params"].items():
        for name, value in leaves.items():
            np.testing.assert_array_equal(np.asarray(value), np.asarray(source[layer][name]))


def _mappings(tree: object) -> list[dict]:
    """Every mapping in a restored tree (Orbax gives sequences back as mappings or lists)."""
    found: list[dict] = []
    if isinstance(tree, dict):
        found.append(tree)
        for v in tree.values():
            found += _mappings(v)
    elif isinstance(tree, list | tuple):
        for v in tree:
            found += _mappings(v)
    return found


def test_a_scanned_ensemble_checkpoints_per_node_with_the_member_axis_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "deep.dnn"
    path.write_text(DEEP)
    program = dnn.load(str(path), ["train.ensemble=2", "train.epochs=1"])
    result = train(program, tmp_path / "run", mode="quiet")
    saved = params_of(tmp_path / "run")
    assert np.shape(saved["res_3/dense"]["kernel"]) == (2, 16, 16)
    members = np.asarray(saved["res_3/dense"]["kernel"])
    assert not np.array_equal(members[0], members[1])  # two members, not one copied
    again = infer.evaluate(program, tmp_path / "run", "test")
    assert again["loss"] == pytest.approx(result["test"]["loss"], rel=1e-5)


def test_scanned_epochs_train_like_per_step_epochs(tmp_path: Path) -> None:
    """`loop = scan` (one XLA program an epoch, the last smaller batch inside it) and
    `loop = steps` run the same steps: same losses and weights, dropout and noise included."""
    results, weights = {}, {}
    for loop in ("scan", "steps"):
        path = spec(tmp_path, epochs=2, extra=f"loop = {loop}", name=f"{loop}.dnn")
        results[loop] = train(dnn.load(str(path)), tmp_path / loop, mode="quiet")
        weights[loop] = flat(params_of(tmp_path / loop))
    assert results["scan"]["epochs"] == results["steps"]["epochs"] == 2
    for split in ("train", "val", "test"):
        for k, v in results["steps"][split].items():
            assert results["scan"][split][k] == pytest.approx(v, rel=1e-5, abs=1e-7), (split, k)
    for k, v in weights["steps"].items():
        np.testing.assert_allclose(weights["scan"][k], v, rtol=1e-5, atol=1e-6, err_msg=k)
    # the tail batch (1,258 training rows = 19 x 64 + 42) ran inside the scanned program
    from dnn.runtime import fit
    from dnn.runtime.progress import Display

    program = dnn.load(str(tmp_path / "scan.dnn"))
    engine = Engine(program, pipeline.prepare(program), 1)
    assert engine.scanned and engine.full == 19 and engine.tail == 42
    x, y = (
        jnp.asarray(a)
        for a in (engine.prepared.splits["train"].x, engine.prepared.splits["train"].y)
    )
    st, acc = fit._one_epoch(engine, engine.init(), 1, x, y, Display(1, 20, "quiet"))
    assert int(acc["count"]) == 1258 and int(st["step"]) == 20
    assert engine.step._cache_size() == 0  # no per-step program was compiled


def test_a_best_checkpoint_ahead_of_the_last_one_is_dropped_on_resume(tmp_path: Path) -> None:
    """A run killed after saving `best` of epoch k but before `last` of epoch k (the SIGKILL
    test can land there) resumes from `last`, recomputes epoch k and ends as a straight run."""
    import shutil

    path = spec(tmp_path, epochs=6)
    straight = train(dnn.load(str(path)), tmp_path / "straight", mode="quiet")
    train(dnn.load(str(path)), tmp_path / "ahead", stop_after=4, mode="quiet")
    run = tmp_path / "run"
    train(dnn.load(str(path)), run, stop_after=3, mode="quiet")
    future = tmp_path / "ahead" / "checkpoints" / "best" / "4"
    assert future.is_dir()  # epoch 4 improved val_loss (deterministic for this spec)
    shutil.copytree(future, run / "checkpoints" / "best" / "4")
    # saving every epoch, as `--checkpoint-every 0` does, writes `best` of epoch 4 again
    resumed = train(dnn.load(str(path)), run, resume=True, mode="quiet", checkpoint_every=0)
    for split in ("train", "val", "test"):
        assert resumed[split] == straight[split]
    assert resumed["best_epoch"] == straight["best_epoch"]
    best = run / "checkpoints" / "best"
    assert sorted(int(p.name) for p in best.iterdir() if p.name.isdigit())[-1] == 6
