"""A typed table streamed (`data.stream` on a CSV with string cells or `data.columns`): its
columns, vocabularies and statistics are fitted in passes over the file, each batch's cells
encoded as it is read, so a streamed run's schema, statistics, unseen counts and history are
the in-memory run's bit for bit; it resumes in mid-epoch; a bad cell is named at its place in
the file in both modes with the same message, whether met while fitting or while training.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dnn.compiler.diagnostics import SpecError
from dnn.runtime import pipeline
from dnn.runtime.cli import main
from dnn.runtime.fit import train
from test_stream import history

import dnn

SPEC = """dnn 1
model m {
  input notes: i32[4]
  input x: f32[10]
  e = embedding(10, 2)(notes) -> flatten
  output dense(2)(concat(e, x))
}
data {
  source = csv("t.csv", label = "label")
  columns = { notes: text(length = 4, max_words = 4)COLUMNS }
  split = { train: 0.7, val: 0.15, test: 0.15 }
  normalize = standardize
  stream = STREAM
}
train {
  loss = cross_entropy
  metrics = [accuracy]
  batch_size = 16
  epochs = 2
  optimizer = adam(lr = 0.01)
}
"""


def table(rows: int = 300) -> str:
    """A table with a number column, one with gaps (`NA`), a text column and a category:
    the last rows bring values and words train may never see (counted as unseen)."""
    rng = random.Random(1)
    lines = ["a,b,notes,kind,label"]
    for i in range(rows):
        late = i >= rows * 5 // 6
        kind = rng.choice(["x", "q", "r"] if late else ["x", "y", "z"])
        b = "NA" if i % 17 == 0 else f"{rng.gauss(0, 1):.4f}"
        vocab = ["red", "green", "blue", "big", "small"] + (["huge", "tiny"] if late else [])
        notes = " ".join(rng.choice(vocab) for _ in range(3))
        lines.append(f"{i % 7},{b},{notes},{kind},{int(kind == 'x')}")
    return "\n".join(lines) + "\n"


def write(folder: Path, stream: str, columns: str = "", name: str = "") -> Path:
    path = folder / (name or f"{stream}.dnn")
    path.write_text(SPEC.replace("STREAM", stream).replace("COLUMNS", columns))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same typed table in memory, and streamed, stopped after step 20 (epoch 2 of 2,
    14 steps each) and resumed (test_stream.py checks a streamed run stopped and resumed
    equals one run straight through)."""
    folder = tmp_path_factory.mktemp("stream_table")
    (folder / "t.csv").write_text(table())
    memory, streamed = write(folder, "false"), write(folder, "true")
    train(dnn.load(str(memory)), folder / "memory", mode="quiet")
    stopped = train(dnn.load(str(streamed)), folder / "streamed", mode="quiet", stop_after_steps=20)
    assert stopped["finished"] is False and stopped["step"] == 20
    train(dnn.load(str(streamed)), folder / "streamed", mode="quiet", resume=True)
    return folder


def test_a_streamed_typed_table_equals_the_in_memory_run(runs: Path) -> None:
    assert pipeline.prepare(dnn.load(str(runs / "true.dnn"))).streamed  # it did stream
    memory, streamed = runs / "memory", runs / "streamed"
    assert history(streamed) == history(memory)
    columns = json.loads((memory / "columns.json").read_text())
    assert json.loads((streamed / "columns.json").read_text()) == columns
    # the vocabularies and fills as fitted, and cells unseen in every split, counted
    kinds = {c["name"]: c["type"] for c in columns["columns"]}
    assert kinds == {"a": "number", "b": "number", "notes": "text", "kind": "category"}
    assert {"train", "val", "test"} <= columns["unseen"].keys()
    assert columns["unseen"]["test"]["notes"]["count"] > 0
    with np.load(memory / "preprocess.npz") as a, np.load(streamed / "preprocess.npz") as b:
        assert a.files == b.files and a.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _error(path: Path) -> str:
    try:
        pipeline.prepare(dnn.load(str(path)))
    except SpecError as e:
        return str(e)
    raise AssertionError(f"{path.name}: no error")


@pytest.mark.parametrize(
    ("cell", "columns", "first"),
    [
        (
            "oops",  # row 41's `a`
            ", a: number",
            "t.csv:42:1: error[E0705]: value `oops` in number column `a` is not a number",
        ),
        (
            "",  # `kind`: x, x, y in train rows 0-2, z first in row 3 (line 5)
            ", kind: binary",
            "t.csv:5:25: error[E0705]: binary column `kind` has a third value `z` (besides `x` and `y`)",
        ),
    ],
)
def test_a_bad_cell_met_while_fitting_is_named_alike_in_both_modes(
    tmp_path: Path, monkeypatch: Any, cell: str, columns: str, first: str
) -> None:
    monkeypatch.chdir(tmp_path)  # files named as the user would see them
    lines = table(60).splitlines()
    if cell:
        lines[41] = f"{cell},{lines[41].split(',', 1)[1]}"
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    texts = [_error(write(tmp_path, s, columns, "s.dnn")) for s in ("false", "true")]
    assert texts[0] == texts[1]
    assert texts[1].splitlines()[0] == first
    assert "the data named here" in texts[1]


def test_a_bad_cell_met_in_mid_evaluation_is_named(tmp_path: Path, capsys: Any) -> None:
    """A number column of a separate val table with a word past the split's head (64 rows):
    met when the evaluation reads that batch, named at its cell."""
    (tmp_path / "t.csv").write_text(table(120))
    val = table(100).splitlines()
    val[91] = "seven," + val[91].split(",", 1)[1]
    (tmp_path / "v.csv").write_text("\n".join(val) + "\n")
    spec = SPEC.replace("STREAM", "true").replace("COLUMNS", "")
    spec = spec.replace(
        "split = { train: 0.7, val: 0.15, test: 0.15 }", 'val = csv("v.csv", label = "label")'
    )
    (tmp_path / "s.dnn").write_text(spec.replace("epochs = 2", "epochs = 1"))
    assert main(["train", str(tmp_path / "s.dnn"), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "v.csv:92:1: error[E0705]: value `seven` in number column `a` is not a number" in err
    assert "92 | seven," in err
    assert "Traceback" not in err


def test_auto_measures_a_typed_table_by_its_cells_as_strings(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """`stream = auto` weighs a typed table read whole as its cells take in memory (Python
    strings, `csvrows.TYPED_EXPANDS` times the file), not as float32 rows: a table whose
    rows would fit as floats streams where its strings would not."""
    from dnn.runtime import memory_limit
    from dnn.runtime.data import csvrows

    (tmp_path / "t.csv").write_text(table())
    program = dnn.load(str(write(tmp_path, "auto")))
    assert not pipeline.prepare(program).streamed  # plenty of memory: read whole
    size = (tmp_path / "t.csv").stat().st_size
    free = size * csvrows.TYPED_EXPANDS  # half of it is less than the strings take
    assert 300 * 4 * 4 < free // 2  # the rows as float32 would fit
    monkeypatch.setattr(memory_limit, "available", lambda devices: (free, "test"))
    assert pipeline.prepare(program).streamed


def test_a_split_with_no_rows_streams_empty(tmp_path: Path) -> None:
    """No share for `test`: its streamed split holds no row, and its empty head encodes."""
    (tmp_path / "t.csv").write_text(table(60))
    path = write(tmp_path, "true")
    path.write_text(path.read_text().replace("val: 0.15, test: 0.15", "val: 0.3"))
    prepared = pipeline.prepare(dnn.load(str(path)))
    assert prepared.size("test") == 0 and prepared.size("train") == 42
    assert prepared.splits["test"].x.shape == (0, 14)


CLASSES = """dnn 1
model m {
  input x: f32[1]
  output dense(3)(x)
}
data {
  source = csv("t.csv", label = "species")
  val = csv("v.csv", label = "species")
  split = { train: 0.8, test: 0.2 }
  stream = STREAM
}
train {
  loss = cross_entropy
  batch_size = 4
  epochs = 1
}
"""


def _val_labels(path: Path) -> tuple[list[int], tuple[str, ...]]:
    prepared = pipeline.prepare(dnn.load(str(path)))
    if prepared.streamed:
        ys = [y[mask] for _, y, mask in prepared.streamed["val"].in_order(4)]
        return np.concatenate(ys).tolist(), prepared.class_names
    return prepared.splits["val"].y.tolist(), prepared.class_names


def test_a_separate_val_file_numbers_its_classes_as_the_train_data(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """`v.csv` holds only `dog` and `eel`: labelled 1 and 2, the train data's numbers for
    them (its own sorted names would make them 0 and 1); a class train lacks is named at its
    row, alike in both modes."""
    monkeypatch.chdir(tmp_path)
    names = ["cat", "dog", "eel"]
    (tmp_path / "t.csv").write_text(
        "a,species\n" + "".join(f"{i},{names[i % 3]}\n" for i in range(30))
    )
    (tmp_path / "v.csv").write_text("a,species\n1,eel\n2,dog\n3,eel\n")
    path = tmp_path / "s.dnn"
    for stream in ("false", "true"):
        path.write_text(CLASSES.replace("STREAM", stream))
        assert _val_labels(path) == ([2, 1, 2], ("cat", "dog", "eel")), stream
    (tmp_path / "v.csv").write_text("a,species\n1,eel\n2,fox\n")
    texts = []
    for stream in ("false", "true"):
        path.write_text(CLASSES.replace("STREAM", stream))
        try:
            _val_labels(path)
        except SpecError as e:
            texts.append(str(e))
    assert len(texts) == 2 and texts[0] == texts[1]
    assert texts[0].splitlines()[0] == (
        "v.csv:3:3: error[E0702]: label `fox` in row 2 is not a class of the train data"
    )
    assert "hint: its classes: `cat`, `dog`, `eel`" in texts[0]


NUMERIC = """dnn 1
model m {
  input x: f32[3]
  output dense(2)(x)
}
data {
  source = csv("FILE", label = "label")
  normalize = standardize
  stream = STREAM
}
train {
  loss = cross_entropy
  batch_size = 4
}
"""


def test_a_trained_typed_schema_reads_a_table_of_numbers_as_cells(tmp_path: Path) -> None:
    """`dnn eval` on a run trained on a typed table (gaps in `b`: a number column with an
    is-missing feature) reads a new CSV with no gap through the run's columns: 3 values, not
    the 2 numbers the CSV alone would give."""
    rows = "".join(f"{i},{'NA' if i % 5 == 0 else i / 3},{i % 2}\n" for i in range(20))
    (tmp_path / "t.csv").write_text("a,b,label\n" + rows)
    clean = "".join(f"{i},{i / 3},{i % 2}\n" for i in range(20))
    (tmp_path / "clean.csv").write_text("a,b,label\n" + clean)
    for stream in ("false", "true"):
        (tmp_path / "t.dnn").write_text(NUMERIC.replace("FILE", "t.csv").replace("STREAM", stream))
        run = pipeline.prepare(dnn.load(str(tmp_path / "t.dnn")))
        assert run.schema is not None and run.raw_shape == (3,)
        spec = NUMERIC.replace("FILE", "clean.csv").replace("STREAM", stream)
        (tmp_path / "clean.dnn").write_text(spec)
        again = pipeline.prepare(
            dnn.load(str(tmp_path / "clean.dnn")), run.stats, run.targets, run.schema
        )
        assert again.schema == run.schema and again.raw_shape == (3,), stream


def test_a_word_past_the_first_thousand_rows_is_named_alike_in_both_modes(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Whether a CSV is a typed table is read from its first 1,000 rows in both modes, so a
    word further down fails at its cell, with the same message, read whole or streamed."""
    monkeypatch.chdir(tmp_path)
    rows = [f"{i},{i % 7},{i % 2}" for i in range(1200)]
    rows[1100] = "1100,abc,0"
    (tmp_path / "t.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    texts = []
    for stream in ("false", "true"):
        (tmp_path / "s.dnn").write_text(
            NUMERIC.replace("FILE", "t.csv").replace("STREAM", stream).replace("f32[3]", "f32[2]")
        )
        texts.append(_error(tmp_path / "s.dnn"))
    assert texts[0] == texts[1]
    assert texts[0].splitlines()[0] == (
        "t.csv:1102:6: error[E0702]: value `abc` in column `b` is not a number"
    )
