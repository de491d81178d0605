"""`data.on_error = skip` on data read whole (`stream = false`, runtime/data/skipping.py): the
bad examples a streamed run leaves out are left out, the splits are cut over the source's full
count, and the run trains on the streamed run's batches: the same losses (==) and the same
skipped.json. A typed table (which cannot stream) drops its bad rows from its splits; a run
whose every train example is bad stops with the first one named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dnn.compiler.diagnostics import SpecError
from dnn.runtime import data_report, pipeline
from dnn.runtime.cli import main
from dnn.runtime.data.skipping import KeptExamples
from dnn.runtime.data.split import split_rows
from dnn.runtime.fit import train
from PIL import Image

import dnn

SPEC = """dnn 1
model m {{
  input x: {shape}
  {body}
}}
data {{
  source = {source}
  normalize = standardize
  stream = {stream}
  on_error = skip
  workers = 0
}}
train {{
  optimizer = sgd(lr = 0.1)
  batch_size = 4
  epochs = 1
  loop = steps
}}
"""
CSV = dict(shape="f32[2]", body="dense(2)", source='csv("t.csv", label = "label")')
IMAGES = dict(shape="f32[4, 4, 1]", body="flatten\n  dense(2)", source='images("img")')
N = 24  # rows of the CSV, images in the folder
SHARES = (0.8, 0.1, 0.1)  # the default split


def spec(folder: Path, name: str, stream: str, **parts: str) -> Path:
    path = folder / name
    path.write_text(SPEC.format(stream=stream, **parts))
    return path


def csv_rows() -> list[str]:
    """N rows, three of them bad: a short row, an empty label, a label the model lacks."""
    rng = np.random.default_rng(0)
    rows = [f"{a:.3f},{b:.3f},{int(a > b)}" for a, b in rng.random((N, 2))]
    rows[3], rows[11], rows[17] = "0.5,0.25", "0.5,0.25,", "0.5,0.25,5"
    return rows


def history(run: Path) -> list[dict[str, Any]]:
    drop = ("time", "samples_per_s", "data_wait_s")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in drop} for x in lines]


def both(folder: Path, **parts: str) -> dict[str, Any]:
    """The same spec trained streamed and read whole: each run's result and folder."""
    out = {}
    for stream in ("true", "false"):
        path = spec(folder, f"{stream}.dnn", stream, **parts)
        out[stream] = (train(dnn.load(str(path)), folder / stream, mode="quiet"), folder / stream)
    return out


def assert_same_runs(runs: dict[str, Any]) -> dict[str, Any]:
    (streamed, a), (whole, b) = runs["true"], runs["false"]
    assert history(b) == history(a)
    for split in ("train", "val", "test"):
        assert whole[split]["loss"] == streamed[split]["loss"]
    assert whole["skipped"] == streamed["skipped"]
    assert (b / "skipped.json").read_text() == (a / "skipped.json").read_text()
    listed: dict[str, Any] = json.loads((b / "skipped.json").read_text())
    return listed


@pytest.fixture(scope="module")
def csv_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("csv")
    (folder / "t.csv").write_text("f1,f2,label\n" + "\n".join(csv_rows()) + "\n")
    return {"folder": folder, **both(folder, **CSV)}


def test_a_csv_read_whole_trains_as_the_streamed_run_skipping_the_same_rows(
    csv_runs: dict[str, Any],
) -> None:
    listed = assert_same_runs(csv_runs)
    origin = str(csv_runs["folder"] / "t.csv")
    reasons = {
        "row 4": "row 4 has 2 fields but the header has 3",
        "row 12": "label in row 12 is empty",
        "row 18": "label `5` at row 18 is outside the 2 classes the model outputs",
    }
    found = [s for records in listed["skipped"].values() for s in records]
    assert sorted(found, key=lambda s: int(s["where"].split()[1])) == [
        {"origin": origin, "where": w, "reason": r} for w, r in reasons.items()
    ]
    assert sum(listed["counts"].values()) == 3


def test_read_whole_the_splits_are_cut_over_the_full_count(csv_runs: dict[str, Any]) -> None:
    prepared = pipeline.prepare(dnn.load(str(csv_runs["folder"] / "false.dnn")))
    cut = split_rows(N, SHARES, 0)
    for split in ("train", "val", "test"):
        streamed = prepared.streamed[split]
        assert isinstance(streamed.examples, KeptExamples)  # from memory, not the file
        np.testing.assert_array_equal(streamed.rows, cut[split])
    kept = [int(r) for r in cut["train"] if r not in (3, 11, 17)]
    np.testing.assert_array_equal(prepared.splits["train"].index, kept)  # its head: all
    assert data_report._read(prepared) == "kept"  # `dnn data`: read whole, batch by batch


def test_an_image_folder_with_a_corrupt_png_trains_as_the_streamed_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for k, name in enumerate(("cat", "dog")):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(N // 2):
            pixels = (rng.random((4, 4)) * 128 + 100 * k).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / name / f"{i}.png")
    (tmp_path / "img" / "cat" / "3.png").write_bytes(b"not a png")
    png = (tmp_path / "img" / "dog" / "5.png").read_bytes()
    (tmp_path / "img" / "dog" / "5.png").write_bytes(png[:40])  # cut short
    listed = assert_same_runs(both(tmp_path, **IMAGES))
    found = {s["where"]: s["reason"] for records in listed["skipped"].values() for s in records}
    img = tmp_path / "img"
    assert found == {
        "cat/3.png": f"cannot read image `{img / 'cat/3.png'}`: not an image Pillow can read",
        "dog/5.png": f"cannot read image `{img / 'dog/5.png'}`: not an image Pillow can read",
    }


def test_a_typed_table_read_whole_gives_the_streamed_batches(tmp_path: Path) -> None:
    """A table with a string column read whole under `skip`: the streamed run's schema,
    statistics, splits and batches, the same bad rows skipped with the same records."""
    rows = [r.replace(",", f",{'ab'[i % 2]},", 1) for i, r in enumerate(csv_rows())]
    rows[3] = "0.5,a"  # still short
    (tmp_path / "t.csv").write_text("f1,kind,f2,label\n" + "\n".join(rows) + "\n")
    typed = {**CSV, "shape": "f32[3]"}
    whole, streamed = (
        pipeline.prepare(dnn.load(str(spec(tmp_path, f"{m}.dnn", m, **typed))))
        for m in ("false", "true")
    )
    assert whole.schema is not None and whole.schema == streamed.schema
    assert whole.stats.keys() == streamed.stats.keys()
    for k in whole.stats:
        np.testing.assert_array_equal(whole.stats[k], streamed.stats[k])
    for split in ("train", "val", "test"):
        a, b = whole.streamed[split], streamed.streamed[split]
        assert isinstance(a.examples, KeptExamples) and a.examples.typed
        np.testing.assert_array_equal(a.rows, b.rows)
        for (xa, ya, _), (xb, yb, _) in zip(
            a.epoch(np.arange(len(a))[::-1], 4), b.epoch(np.arange(len(b))[::-1], 4), strict=True
        ):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
        assert sorted(a.skipped) == sorted(b.skipped)
    found = {s.where: s.reason for split in whole.streamed.values() for s in split.skipped}
    assert found == {
        "row 4": "row 4 has 2 fields but the header has 4",
        "row 12": "label in row 12 is empty",
        "row 18": "label `5` at row 18 is outside the 2 classes the model outputs",
    }


PRETRAIN = """dnn 1
model m {
  input x: f32[2]
  rbm(3)
  dense(2)
}
data {
  source = csv("t.csv", label = "label")
  normalize = minmax
  stream = false
  on_error = skip
}
train {
  pretrain = cd(k = 1, epochs = 1, lr = 0.1)
  epochs = 1
}
"""


def test_pretraining_drops_bad_rows_from_the_splits_they_were_cut_into(tmp_path: Path) -> None:
    """`train.pretrain` reads the train split in memory and cannot stream: the bad rows leave
    the splits they were cut into, and `save` lists them in skipped.json."""
    (tmp_path / "t.csv").write_text("f1,f2,label\n" + "\n".join(csv_rows()) + "\n")
    (tmp_path / "p.dnn").write_text(PRETRAIN)
    program = dnn.load(str(tmp_path / "p.dnn"))
    prepared = pipeline.prepare(program)
    assert not prepared.streamed
    cut = split_rows(N, SHARES, 0)
    for split in ("train", "val", "test"):
        kept = [int(r) for r in cut[split] if r not in (3, 11, 17)]
        np.testing.assert_array_equal(prepared.splits[split].index, kept)
        wheres = [s.where for s in prepared.skipped.get(split, [])]
        assert wheres == [f"row {int(r) + 1}" for r in cut[split] if r in (3, 11, 17)]
    pipeline.save(prepared, program, tmp_path)  # what `dnn train` writes first
    listed = json.loads((tmp_path / "skipped.json").read_text())
    assert listed["counts"] == {s: len(v) for s, v in prepared.skipped.items()}
    reasons = {s["reason"] for records in listed["skipped"].values() for s in records}
    assert reasons == {
        "row 4 has 2 fields but the header has 3",
        "label in row 12 is empty",
        "label `5` at row 18 is outside the 2 classes the model outputs",
    }


def test_a_compressed_npz_read_whole_skips_its_rows_with_nan(tmp_path: Path) -> None:
    """An archive read whole need not be memory-mappable; a row holding NaN is left out."""
    x = np.arange(2 * N, dtype=np.float32).reshape(N, 2)
    bad = int(split_rows(N, SHARES, 0)["val"][1])
    x[bad, 1] = np.nan
    np.savez_compressed(tmp_path / "d.npz", x=x, y=np.arange(N) % 2)
    path = spec(tmp_path, "npz.dnn", "false", **{**CSV, "source": 'npz("d.npz")'})
    val = pipeline.prepare(dnn.load(str(path))).streamed["val"]
    assert len(val) == 3 and sum(int(m.sum()) for _, _, m in val.in_order(4)) == 2
    assert [s.reason for s in val.skipped] == [
        f"array `x` in `{tmp_path / 'd.npz'}` has NaN at example {bad}, feature 1"
    ]


def test_every_train_example_bad_stops_with_the_first_named(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "t.csv").write_text("f1,f2,label\n" + "\n".join(["1,2"] * 10) + "\n")
    path = spec(tmp_path, "bad.dnn", "false", **CSV)
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-5:] == [
        f"{path}:10:14: error[E0602]: every example of the train split (8) was skipped as bad: "
        f"nothing to train on (the first: row 1 of `{tmp_path / 't.csv'}`: row 1 has 2 fields "
        "but the header has 3)",
        "10 |   on_error = skip",
        "   |              ^^^^",
        "  hint: fix the data, or set `on_error = fail` to stop at the first bad example, "
        "shown in its file",
        "1 error",
    ]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_lr_find_refuses_data_whose_bad_examples_were_skipped(csv_runs: dict[str, Any]) -> None:
    program = dnn.load(str(csv_runs["folder"] / "false.dnn"))
    with pytest.raises(SpecError) as e:
        pipeline.in_memory(program, pipeline.prepare(program), "`dnn lr-find`")
    (d,) = e.value.diagnostics
    assert (d.code, d.span.line, d.span.col) == ("E0602", 10, 14)
    assert d.message == (
        "`dnn lr-find` trains from the splits placed on the device, but `on_error = skip` left "
        "bad examples out of this spec's data, which is then read batch by batch as a streamed "
        "run reads it"
    )


def test_check_warns_of_skip_only_for_a_model_with_several_outputs(
    tmp_path: Path, capsys: Any
) -> None:
    """Read whole, `on_error = skip` acts (no W0810 any more), but not for several outputs."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    text = (examples / "digits_two_heads.dnn").read_text()
    path = tmp_path / "two.dnn"
    path.write_text(text.replace("standardize\n", "standardize\n  on_error = skip\n"))
    one = spec(tmp_path, "one.dnn", "false", **CSV)
    assert main(["check", str(one)]) == 0 and "on_error" not in capsys.readouterr().err
    assert main(["check", str(path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[:4] == [
        f"{path}:19:14: warning[W0810]: `on_error = skip` leaves no example out for a model "
        "with several outputs, whose targets are read whole: the first bad example stops the run",
        "19 |   on_error = skip",
        "   |              ^^^^",
        "  hint: leave the field out",
    ]


def test_a_cell_that_is_no_number_past_the_sampled_rows_is_skipped(tmp_path: Path) -> None:
    """A string among a CSV's first 1,000 rows makes it a typed table, in both modes; one
    further down is a bad cell, skipped read whole as streamed."""
    from dnn.runtime.data import load
    from dnn.runtime.data.examples import Skipped

    rows = [f"{i % 7},{i % 3},{i % 2}" for i in range(1002)]
    rows[1001] = "abc,1,0"
    (tmp_path / "t.csv").write_text("f1,f2,label\n" + "\n".join(rows) + "\n")
    program = dnn.load(str(spec(tmp_path, "cell.dnn", "false", **CSV)))
    source, _, _ = load.load_tables(program, "multiclass")
    origin = str(tmp_path / "t.csv")
    message = "value `abc` in column `f1` is not a number"
    assert source.skipped == ((1001, Skipped(origin, "row 1002", message)),)
    assert len(source) == 1001 and source.count() == 1002


def test_a_typed_table_whose_every_row_is_bad_stops_at_on_error(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{'ab'[i % 2]}" for i in range(10))  # every row short
    (tmp_path / "t.csv").write_text("f1,kind,label\n" + rows + "\n")
    path = spec(tmp_path, "typed.dnn", "false", **CSV)
    with pytest.raises(SpecError) as e:
        pipeline.prepare(dnn.load(str(path)))
    (d,) = e.value.diagnostics
    assert (d.code, d.span.line) == ("E0602", 10)
    assert d.message.startswith("every example of the train split (8) was skipped as bad")
