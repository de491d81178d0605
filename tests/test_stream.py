"""Streamed data (`data.stream`, runtime/data/batches.py): a streamed run trains on the same
batches in the same order as in memory, so its history and weights are the in-memory run's
bit for bit; it stops in mid-epoch (after a step count, or on SIGTERM) and resumes there
bit for bit; `dnn eval` reads a streamed split; `stream = auto` streams what does not fit;
a bad label met in mid-epoch is named with its file and example.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dnn.runtime import infer, memory_limit, pipeline
from dnn.runtime.cli import main
from dnn.runtime.data.split import split_rows
from dnn.runtime.fit import train
from sklearn.datasets import load_digits
from test_train import flat, params_of

import dnn

SPEC = """dnn 1
model m {{
  input x: f32[64]
  dense(32) -> relu
  dropout(0.2)
  dense(10)
}}
data {{
  source = {source}
  normalize = standardize
  augment = [noise(0.1)]
  stream = {stream}
}}
train {{
  optimizer = sgd(lr = 0.05, momentum = 0.9)
  batch_size = 50
  epochs = 2
}}
"""
DIGITS = 'builtin("digits")'


def write(folder: Path, stream: str, name: str, source: str = DIGITS) -> Path:
    path = folder / name
    path.write_text(SPEC.format(stream=stream, source=source))
    return path


def history(run: Path) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    drop = ("time", "samples_per_s", "data_wait_s")  # timings
    return [{k: v for k, v in json.loads(x).items() if k not in drop} for x in lines]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same spec in memory, streamed, streamed and stopped after step 40 (epoch 2 of 2,
    29 steps each), and streamed and stopped by SIGTERM in epoch 2; the stopped runs
    resumed."""
    folder = tmp_path_factory.mktemp("stream")
    memory, streamed = write(folder, "false", "memory.dnn"), write(folder, "true", "stream.dnn")
    out: dict[str, Any] = {"folder": folder, "spec": streamed}
    out["memory"] = train(dnn.load(str(memory)), folder / "memory", mode="quiet")
    out["streamed"] = train(dnn.load(str(streamed)), folder / "streamed", mode="quiet")
    out["stopped"] = train(
        dnn.load(str(streamed)), folder / "stopped", mode="quiet", stop_after_steps=40
    )
    out["resumed"] = train(dnn.load(str(streamed)), folder / "stopped", mode="quiet", resume=True)

    def terminate(record: dict[str, Any]) -> bool:  # SIGTERM, as a scheduler preempting us
        os.kill(os.getpid(), signal.SIGTERM)
        return False

    out["terminated"] = train(
        dnn.load(str(streamed)), folder / "sigterm", mode="quiet", on_epoch=terminate
    )
    out["sigterm_meta"] = _last_meta(folder / "sigterm")
    out["after_sigterm"] = train(
        dnn.load(str(streamed)), folder / "sigterm", mode="quiet", resume=True
    )
    return out


def _last_meta(run: Path) -> dict[str, Any]:
    folder = run / "checkpoints" / "last"
    step = max(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    return json.loads((folder / str(step) / "meta" / "metadata").read_text())


def test_a_streamed_run_equals_the_in_memory_run(runs: dict[str, Any]) -> None:
    folder = runs["folder"]
    assert pipeline.prepare(dnn.load(str(runs["spec"]))).streamed  # it did stream
    assert history(folder / "streamed") == history(folder / "memory")
    for split in ("train", "val", "test"):
        assert runs["streamed"][split] == runs["memory"][split]
    a, b = flat(params_of(folder / "memory")), flat(params_of(folder / "streamed"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_stopped_in_mid_epoch_it_resumes_at_the_same_batch(runs: dict[str, Any]) -> None:
    folder = runs["folder"]
    assert runs["stopped"] == {
        "stopped_after": 1,
        "finished": False,
        "run": str(folder / "stopped"),
        "step": 40,
    }
    assert history(folder / "stopped") == history(folder / "streamed")
    for split in ("train", "val", "test"):
        assert runs["resumed"][split] == runs["streamed"][split]
    a, b = flat(params_of(folder / "streamed")), flat(params_of(folder / "stopped"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_sigterm_saves_the_step_and_stops(runs: dict[str, Any]) -> None:
    folder = runs["folder"]
    assert runs["terminated"]["finished"] is False
    within = runs["sigterm_meta"]["within"]
    # the first call of epoch 2: its first 16 steps, scanned in one call (fit.CHUNK)
    assert within["epoch"] == 2 and within["batches"] == 16
    assert within["start"] == 0 and within["data"] == {"next_index": 45}  # batch 45 of the run
    assert history(folder / "sigterm") == history(folder / "streamed")
    assert runs["after_sigterm"]["test"] == runs["streamed"]["test"]


def test_eval_reads_a_streamed_split(runs: dict[str, Any], capsys: Any) -> None:
    run = runs["folder"] / "streamed"
    metrics = infer.evaluate(dnn.load(str(runs["spec"])), run, "test")
    assert metrics == runs["streamed"]["test"]
    assert main(["eval", "--run", str(run)]) == 0
    assert f"accuracy {runs['streamed']['test']['accuracy']:.4f}" in capsys.readouterr().out


def test_auto_streams_what_does_not_fit(tmp_path: Path, monkeypatch: Any) -> None:
    program = dnn.load(str(write(tmp_path, "auto", "auto.dnn")))
    assert not pipeline.prepare(program).streamed  # digits fit: in memory
    monkeypatch.setattr(memory_limit, "available", lambda devices: (100_000, "test"))
    prepared = pipeline.prepare(program)  # 1,797 x 64 float32 = 460 KB > half of 100 KB
    assert set(prepared.streamed) == {"train", "val", "test"}
    assert prepared.size("train") + prepared.size("val") + prepared.size("test") == 1797
    assert len(prepared.splits["train"].y) == 64  # the head only


def test_a_bad_label_in_mid_epoch_names_the_file_and_example(tmp_path: Path, capsys: Any) -> None:
    d = load_digits()
    y = d.target.astype(np.int32)
    bad = int(split_rows(len(y), (0.8, 0.1, 0.1), 0)["train"][500])  # past the split's head
    y[bad] = 12
    np.savez(tmp_path / "d.npz", x=d.data.astype(np.float32), y=y)
    path = write(tmp_path, "true", "bad.dnn", 'npz("d.npz")')
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"d.npz:1:1: error[E0702]: label `12` at example {bad} is outside the 10 classes" in err
    assert "bad.dnn:9:12: the data named here" in err


def test_dnn_data_counts_whole_streamed_splits(tmp_path: Path) -> None:
    from dnn.runtime import data_report

    memory = data_report.report(dnn.load(str(write(tmp_path, "false", "m.dnn"))), repeats=1)
    streamed = data_report.report(dnn.load(str(write(tmp_path, "true", "s.dnn"))), repeats=1)
    assert streamed.read == "streamed" and memory.read == "in memory"
    assert streamed.balance == memory.balance  # every example counted, not the head's
    assert sum(streamed.balance["train"].values()) == streamed.splits["train"] == 1437
    assert streamed.normalizer == memory.normalizer
    assert "read: streamed, batch by batch" in data_report.render(streamed)


def test_worker_processes_read_the_same_batches(runs: dict[str, Any], tmp_path: Path) -> None:
    """`workers = 1`: a Grain worker process reads the batches, computing each epoch's
    permutation itself; the first epoch equals the in-memory run's."""
    path = tmp_path / "workers.dnn"
    text = SPEC.format(stream="true\n  workers = 1", source=DIGITS)
    path.write_text(text.replace("  epochs = 2\n", "  epochs = 1\n"))
    train(dnn.load(str(path)), tmp_path / "run", mode="quiet")
    assert history(tmp_path / "run") == history(runs["folder"] / "memory")[:1]


def test_pretraining_is_refused_on_streamed_data(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "true", "dbn.dnn")
    text = path.read_text().replace("  dense(32) -> relu\n", "  rbm(32)\n")
    text = text.replace("standardize", "minmax").replace("  augment = [noise(0.1)]\n", "")
    path.write_text(text.replace("  epochs = 2\n", "  epochs = 2\n  pretrain = cd(epochs = 1)\n"))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "error[E0602]: layer-wise pretraining reads the train split in memory" in err
    assert "hint: set `stream = false`" in err


CSV_SPEC = """dnn 1
model m {
  input x: f32[2]
  dense(2)
}
data {
  source = csv("t.csv", label = "label")
  stream = STREAM
  on_error = skip
}
train {
  optimizer = sgd(lr = 0.1)
  batch_size = 2
  epochs = 1
}
"""


def test_a_csv_with_string_cells_streams_as_a_typed_table_not_skipped_row_by_row(
    tmp_path: Path,
) -> None:
    """An untyped CSV whose inputs hold strings is a typed table: streamed as one (its cells
    encoded, no row skipped as bad) for `stream = true`, read whole under `auto`."""
    rows = [f"{i},{'ab'[i % 2]},{i % 2}" for i in range(12)]
    (tmp_path / "t.csv").write_text("f1,kind,label\n" + "\n".join(rows) + "\n")
    path = tmp_path / "s.dnn"
    path.write_text(CSV_SPEC.replace("STREAM", "true"))
    result = train(dnn.load(str(path)), tmp_path / "run", mode="quiet")
    assert "skipped" not in result and not (tmp_path / "run" / "skipped.json").exists()
    columns = json.loads((tmp_path / "run" / "columns.json").read_text())["columns"]
    assert [(c["name"], c["type"]) for c in columns] == [("f1", "number"), ("kind", "binary")]
    path.write_text(CSV_SPEC.replace("STREAM", "auto"))
    assert not pipeline.prepare(dnn.load(str(path))).streamed  # auto: read whole, typed


def test_a_streamed_run_whose_every_example_is_skipped_stops(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "t.csv").write_text("f1,f2,label\n" + "\n".join(["1,2"] * 10) + "\n")
    path = tmp_path / "s.dnn"
    path.write_text(CSV_SPEC.replace("STREAM", "true"))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert (
        "every example of the train split (8) was skipped as bad (`data.on_error = skip`): "
        "nothing was trained"
    ) in err
    assert json.loads((tmp_path / "run" / "skipped.json").read_text())["counts"]["train"] == 8


@pytest.mark.parametrize("extra", ["normalize = standardize", "columns = { f1: number }"])
def test_fitting_on_a_train_split_of_only_bad_examples_is_named(
    tmp_path: Path, capsys: Any, extra: str
) -> None:
    """A streamed fitting pass (the normalizer's, or a typed table's columns) that meets no
    good example stops with the count and the first bad one, not a traceback."""
    (tmp_path / "t.csv").write_text("f1,f2,label\n" + "\n".join(["1,2"] * 10) + "\n")
    path = tmp_path / "s.dnn"
    path.write_text(
        CSV_SPEC.replace("STREAM", "true").replace("  on_error", f"  {extra}\n  on_error")
    )
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert (
        "s.dnn:10:14: error[E0602]: every example of the train split (8) was skipped as bad: "
        in err
    )
    assert "fields but the header has 3)" in err and "Traceback" not in err


def test_lr_find_refuses_a_streamed_spec(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "true", "lr.dnn")
    assert main(["lr-find", str(path), "--out", str(tmp_path / "lr")]) == 1
    err = capsys.readouterr().err
    assert f"{path}:12:12: error[E0602]: `dnn lr-find` trains from the splits placed on" in err


def test_skip_leaves_bad_examples_out_and_lists_them(tmp_path: Path) -> None:
    d = load_digits()
    x = d.data.astype(np.float32)
    rows = split_rows(len(x), (0.8, 0.1, 0.1), 0)
    bad_train, bad_test = int(rows["train"][100]), int(rows["test"][3])
    x[bad_train, 5] = np.nan
    x[bad_test, 0] = np.inf
    np.savez(tmp_path / "d.npz", x=x, y=d.target.astype(np.int32))
    path = write(tmp_path, "true\n  on_error = skip", "skip.dnn", 'npz("d.npz")')
    result = train(dnn.load(str(path)), tmp_path / "run", mode="quiet")
    assert result["skipped"] == {"train": 1, "test": 1}
    assert all(np.isfinite(result[s]["loss"]) for s in ("train", "val", "test"))
    listed = json.loads((tmp_path / "run" / "skipped.json").read_text())["skipped"]
    npz = str(tmp_path / "d.npz")
    assert listed["train"] == [
        {
            "origin": npz,
            "where": f"example {bad_train}",
            "reason": f"array `x` in `{npz}` has NaN at example {bad_train}, feature 5",
        }
    ]
    assert listed["test"][0]["where"] == f"example {bad_test}"
    assert "has an infinite value" in listed["test"][0]["reason"]


def test_auto_opens_no_source_whose_files_surely_fit(tmp_path: Path, monkeypatch: Any) -> None:
    """`stream = auto` reads a small CSV whole without indexing it first (no file left beside
    it); where memory is short it streams, indexing the CSV once."""
    d = load_digits()
    table = np.column_stack([d.data[:200], d.target[:200]])
    header = ",".join([f"p{i}" for i in range(64)] + ["label"])
    np.savetxt(tmp_path / "d.csv", table, delimiter=",", header=header, comments="", fmt="%g")
    program = dnn.load(str(write(tmp_path, "auto", "csv.dnn", 'csv("d.csv")')))
    assert not pipeline.prepare(program).streamed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csv.dnn", "d.csv"]
    monkeypatch.setattr(memory_limit, "available", lambda devices: (20_000, "test"))
    assert pipeline.prepare(program).streamed
    assert (tmp_path / ".d.csv.dnn-index").exists()


def test_a_small_split_evaluated_in_order_is_read_once(tmp_path: Path, monkeypatch: Any) -> None:
    """A validation split evaluated every epoch starts no pipeline after its first pass
    (a split over `KEEP_BYTES` is read again each time)."""
    from dnn.runtime.data import batches

    class Counting:  # the built-in set's examples, counting the batches read from them
        def __init__(self, examples: Any) -> None:
            self.examples, self.reads = examples, 0

        def __len__(self) -> int:
            return len(self.examples)

        def read(self, rows: np.ndarray) -> Any:
            self.reads += 1
            return self.examples.read(rows)

    prepared = pipeline.prepare(dnn.load(str(write(tmp_path, "true", "s.dnn"))))
    for name, keep in (("val", batches.KEEP_BYTES), ("test", 0)):
        split = prepared.streamed[name]
        split.examples = counting = Counting(split.examples)
        monkeypatch.setattr(batches, "KEEP_BYTES", keep)
        first, again = list(split.in_order(64)), list(split.in_order(64))
        assert sum(int(m.sum()) for _, _, m in first) == split.n
        for a, b in zip(first, again, strict=True):
            assert all((u == v).all() for u, v in zip(a, b, strict=True))
        assert counting.reads == len(first) * (1 if keep else 2), name
