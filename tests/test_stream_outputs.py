"""A model with several outputs, streamed (`data.stream`): an `npz` source's `x` and one array
per output, or a `csv` source's columns named after the outputs, open as `Examples` whose row
`i` is the in-memory reader's row `i` (the targets side by side, `blocks` saying where); the
streamed run's losses equal the in-memory run's, it stops in mid-epoch and resumes; a bad cell
or label names its file and row, or is skipped.

The CSV and the npz archive hold the same numbers (the archive's are the CSV's text parsed),
so a streamed CSV run is compared with the in-memory npz run. The runs take one jitted step
per batch (`loop = steps`: one compile serves every batch; tests/test_stream.py covers the
scanned epochs against streamed chunks for one output).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dnn.compiler.diagnostics import Span, SpecError
from dnn.compiler.driver import value
from dnn.runtime import data_report, infer, memory_limit, pipeline
from dnn.runtime.data import sources
from dnn.runtime.data.sources import Skipped
from dnn.runtime.data.table import _Where
from dnn.runtime.fit import train
from test_stream import history
from test_train import flat, params_of

import dnn

SPEC = """dnn 1
model m {
  input x: f32[6]
  h = dense(16)(x) -> relu
  output digit = dense(3)(h)
  output size = dense(2)(h)
  output flag = dense(1)(h)
}
data {
  source = SOURCE
  normalize = standardize
  targets = standardize
  stream = STREAM
}
train {
  loss = { digit: cross_entropy, size: mse, flag: binary_cross_entropy }
  loss_weights = { size: 0.5, flag: 2.0 }
  epochs = 1
  loop = steps
  batch_size = 16
  optimizer = adam(lr = 0.02)
}
"""
CSV, NPZ = 'csv("multi.csv")', 'npz("multi.npz")'
OUTPUTS = (("digit", "multiclass", 3), ("size", "regression", 2), ("flag", "binary", 1))
HEADER = "x0,x1,x2,flag,x3,x4,x5,size_0,digit,size_1"
SPAN = Span("spec.dnn", 10, 12, 10, 30)
WHERE = _Where(SPAN, {}, SPAN)


def write_data(folder: Path, n: int = 200) -> list[str]:
    """`multi.csv` (class names for `digit`, `size_0`/`size_1`, a 0/1 `flag` between the
    inputs) and `multi.npz` holding the same numbers; returns the CSV's lines."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6))
    names = np.array(["high", "low", "mid"])  # sorted, as the CSV reader numbers them
    digit = np.array([1, 2, 0])[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)]
    size = np.stack([x[:, 2] + x[:, 3], x[:, 4]], axis=1) * 10 + 100
    flag = (x[:, 5] > 0).astype(int)
    xs, ss = [[f"{v:.5f}" for v in r] for r in x], [[f"{v:.4f}" for v in r] for r in size]
    lines = [HEADER] + [
        ",".join([*a[:3], str(f), *a[3:], s[0], names[d], s[1]])
        for a, s, f, d in zip(xs, ss, flag, digit, strict=True)
    ]
    (folder / "multi.csv").write_text("\n".join(lines) + "\n")
    as_read = lambda cells: np.array(cells, np.float64).astype(np.float32)  # noqa: E731
    np.savez(folder / "multi.npz", x=as_read(xs), digit=digit, size=as_read(ss), flag=flag)
    return lines


def spec(folder: Path, name: str, source: str, stream: str, extra: str = "") -> Path:
    path = folder / name
    text = SPEC.replace("SOURCE", source).replace("STREAM", stream)
    path.write_text(text.replace("  stream =", f"{extra}  stream =") if extra else text)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("multi")
    write_data(d)
    return d


@pytest.fixture(autouse=True)
def _cwd(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages name files from the working folder: a test's own folder, else the shared one."""
    names = request.fixturenames
    if "tmp_path" in names:
        monkeypatch.chdir(request.getfixturevalue("tmp_path"))
    elif "folder" in names:
        monkeypatch.chdir(request.getfixturevalue("folder"))


@pytest.fixture(scope="module")
def runs(folder: Path) -> dict[str, Any]:
    """The npz archive in memory; the CSV streamed, stopped after step 6 of its epoch's 10
    (one epoch: the runs' cost is their compiles), then resumed."""
    memory, streamed = spec(folder, "m.dnn", NPZ, "false"), spec(folder, "s.dnn", CSV, "true")
    out: dict[str, Any] = {"spec": streamed}
    out["memory"] = train(dnn.load(str(memory)), folder / "memory", mode="quiet")
    program = dnn.load(str(streamed))
    out["stopped"] = train(program, folder / "streamed", mode="quiet", stop_after_steps=6)
    out["resumed"] = train(program, folder / "streamed", mode="quiet", resume=True)
    return out


def test_a_streamed_csv_run_equals_the_in_memory_run_and_resumes(
    folder: Path, runs: dict[str, Any]
) -> None:
    assert pipeline.prepare(dnn.load(str(runs["spec"]))).streamed  # it did stream
    assert runs["stopped"]["finished"] is False and runs["stopped"]["step"] == 6
    assert history(folder / "streamed") == history(folder / "memory")
    assert len(history(folder / "memory")) == 1
    for split in ("train", "val", "test"):
        assert runs["resumed"][split] == runs["memory"][split]
    a, b = flat(params_of(folder / "memory")), flat(params_of(folder / "streamed"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_eval_reads_the_streamed_splits(folder: Path, runs: dict[str, Any]) -> None:
    metrics = infer.evaluate(dnn.load(str(runs["spec"])), folder / "streamed", "test")
    assert metrics == runs["resumed"]["test"]


@pytest.mark.parametrize("source", [NPZ, CSV])
def test_streamed_batches_are_the_in_memory_splits(folder: Path, source: str) -> None:
    """Every streamed split, read in order and transformed (inputs standardized, the `size`
    columns standardized, labels kept), is the in-memory split, bit for bit."""
    memory = pipeline.prepare(dnn.load(str(spec(folder, "m.dnn", source, "false"))))
    streamed = pipeline.prepare(dnn.load(str(spec(folder, "s.dnn", source, "true"))))
    assert streamed.blocks == memory.blocks and memory.blocks
    assert streamed.targets.columns == memory.targets.columns == (1, 2)
    for k, v in memory.targets.stats.items():
        assert streamed.targets.stats[k].tobytes() == v.tobytes(), k
    for k, v in memory.stats.items():
        assert streamed.stats[k].tobytes() == v.tobytes(), k
    for name, table in memory.splits.items():
        parts = list(streamed.streamed[name].in_order(64))
        x = np.concatenate([x[m] for x, _, m in parts])
        y = np.concatenate([y[m] for _, y, m in parts])
        assert x.dtype == table.x.dtype and x.tobytes() == table.x.tobytes(), name
        assert y.dtype == table.y.dtype and y.tobytes() == table.y.tobytes(), name


@pytest.mark.parametrize("source", [NPZ, CSV])
def test_rows_are_the_in_memory_readers_rows(folder: Path, source: str) -> None:
    ref = value(source, "dataset")[0]
    table, blocks = sources.load_outputs(ref, OUTPUTS, base_dir=folder, span=SPAN, sources={})
    examples = sources.open_outputs(ref, OUTPUTS, folder, WHERE, "fail")
    assert examples.blocks == blocks and len(examples) == len(table) == 200
    assert [(b.name, b.start, b.width, b.classes) for b in blocks] == [
        ("digit", 0, 1, 3),
        ("size", 1, 2, None),
        ("flag", 3, 1, 2),
    ]
    for i, (x, y) in enumerate(examples._getitems(range(len(examples)))):
        assert x.dtype == table.x.dtype and x.tobytes() == table.x[i].tobytes(), i
        assert y.dtype == table.y.dtype and y.tobytes() == table.y[i].tobytes(), i
    sent = pickle.loads(pickle.dumps(examples))  # as Grain sends it to a worker process
    assert sent.blocks == blocks and sent[199][1].tobytes() == table.y[199].tobytes()


def _bad_csv(tmp_path: Path, row: int, column: str, cell: str) -> str:
    """The fixture's CSV with one cell replaced; returns that row's new line."""
    lines = write_data(tmp_path)
    cells = lines[row].split(",")
    cells[HEADER.split(",").index(column)] = cell
    lines[row] = ",".join(cells)
    (tmp_path / "multi.csv").write_text("\n".join(lines) + "\n")
    return lines[row]


def _open_csv(base: Path, on_error: str = "fail") -> Any:
    return sources.open_outputs(value(CSV, "dataset")[0], OUTPUTS, base, WHERE, on_error)


@pytest.mark.parametrize(
    ("column", "cell", "message", "hint"),
    [
        (
            "digit",
            "zzz",
            "label `zzz` (class 3) in row 150 is outside output `digit`'s 3 classes",
            "column `digit` has 4 classes: end `digit` with `dense(4)`",
        ),
        ("digit", "", "label in row 150 is empty", "give every row a label"),
        (
            "flag",
            "2",
            "label `2` in row 150 is outside output `flag`'s 2 classes",
            "column `flag` has 3 classes: end `flag` with `dense(3)`",
        ),
        (
            "size_1",
            "big",
            "value `big` in column `size_1` is not a number",
            "inputs must be numbers: fill in the value, or drop the row or the column",
        ),
        (
            "x4",
            "inf",
            "value `inf` in column `x4` is not a finite number",
            "inputs must be numbers: fill in the value, or drop the row or the column",
        ),
    ],
)
def test_a_bad_cell_fails_at_its_row_or_is_skipped(
    tmp_path: Path, column: str, cell: str, message: str, hint: str
) -> None:
    """Met when its row is read (here row 150, line 151), named with the file, line and
    column, the in-memory reader's words; `on_error = skip` leaves the row out instead."""
    line = _bad_csv(tmp_path, 150, column, cell)
    examples = _open_csv(tmp_path)
    assert len(examples[148]) == len(examples[150]) == 2  # the rows around it read
    with pytest.raises(dnn.SpecError) as e:
        examples[149]
    (d,) = e.value.diagnostics
    col = len(",".join(line.split(",")[: HEADER.split(",").index(column)])) + 2
    assert (d.code, d.span.path, d.span.line, d.span.col) == ("E0702", "multi.csv", 151, col)
    assert (d.message, d.hint) == (message, hint)
    assert f"151 | {line}" in str(e.value)  # the row shown, a caret under the cell
    skipped = _open_csv(tmp_path, "skip")[149]
    assert skipped == Skipped("multi.csv", "row 150", message)


def test_a_second_label_column_is_counted_once_per_file(tmp_path: Path) -> None:
    """`flag`'s classes (the index counts `digit`'s) are kept beside the CSV, and counted
    again once the file changes."""
    write_data(tmp_path)
    assert _open_csv(tmp_path).blocks[2].classes == 2
    kept = json.loads((tmp_path / ".multi.csv.dnn-labels").read_text())["columns"]
    assert kept == {"flag": [True, 1, ["0", "1"]]}
    _bad_csv(tmp_path, 7, "flag", "10")
    with pytest.raises(dnn.SpecError) as e:
        _open_csv(tmp_path)[6]
    assert (
        e.value.diagnostics[0].hint == "column `flag` has 11 classes: end `flag` with `dense(11)`"
    )


def test_memory_refuses_a_negative_label_as_streaming_does(tmp_path: Path) -> None:
    """Whole-number labels below 0 are outside an output's classes in both modes (the
    in-memory reader let them through before)."""
    _bad_csv(tmp_path, 7, "flag", "-1")
    message = "label `-1` in row 7 is outside output `flag`'s 2 classes"
    with pytest.raises(dnn.SpecError, match=message):
        _open_csv(tmp_path)[6]
    ref = value(CSV, "dataset")[0]
    with pytest.raises(dnn.SpecError, match=message):
        sources.load_outputs(ref, OUTPUTS, base_dir=tmp_path, span=SPAN, sources={})


def test_a_csv_header_problem_is_the_in_memory_readers(tmp_path: Path) -> None:
    write_data(tmp_path)
    lines = (tmp_path / "multi.csv").read_text().splitlines()
    lines[0] = HEADER.replace(",digit,", ",digits,")
    (tmp_path / "multi.csv").write_text("\n".join(lines) + "\n")
    for stream in ("false", "true"):
        path = spec(tmp_path, f"{stream}.dnn", CSV, stream)
        with pytest.raises(dnn.SpecError) as e:
            pipeline.prepare(dnn.load(str(path)))
        (d,) = e.value.diagnostics
        assert (d.span.path, d.span.line, d.span.col) == ("multi.csv", 1, 1)
        assert d.message == "`multi.csv` has no column `digit` for output `digit`"
        assert d.hint == "did you mean `digits`?"
    assert not (tmp_path / ".multi.csv.dnn-index").exists()  # refused before indexing


def test_skip_leaves_a_bad_row_out_of_its_split(tmp_path: Path) -> None:
    from dnn.runtime.data.split import split_rows

    bad = int(split_rows(200, (0.8, 0.1, 0.1), 0)["train"][100])  # past the split's head
    _bad_csv(tmp_path, bad + 1, "size_0", "n/a")
    path = spec(tmp_path, "s.dnn", CSV, "true", "  on_error = skip\n")
    split = pipeline.prepare(dnn.load(str(path))).streamed["train"]
    read = sum(int(m.sum()) for _, _, m in split.in_order(64))
    assert (split.n, read) == (160, 159)
    assert split.skipped == [
        Skipped("multi.csv", f"row {bad + 1}", "value `n/a` in column `size_0` is not a number")
    ]


def test_npz_inputs_are_checked_per_example(tmp_path: Path) -> None:
    """Streamed or read whole under `on_error = skip` (a compressed archive too, which only
    the streamed reader refuses: it cannot be memory-mapped)."""
    write_data(tmp_path)
    with np.load(tmp_path / "multi.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["x"][42, 3] = np.nan
    np.savez(tmp_path / "multi.npz", **arrays)
    ref = value(NPZ, "dataset")[0]
    examples = sources.open_outputs(ref, OUTPUTS, tmp_path, WHERE, "fail")
    assert len(examples[41]) == 2
    with pytest.raises(dnn.SpecError, match="array `x` in `multi.npz` has NaN at example 42"):
        examples[42]
    assert sources.open_outputs(ref, OUTPUTS, tmp_path, WHERE, "skip")[42].where == "example 42"
    np.savez_compressed(tmp_path / "multi.npz", **arrays)
    with pytest.raises(dnn.SpecError, match="array `x` in `multi.npz` is compressed"):
        sources.open_outputs(ref, OUTPUTS, tmp_path, WHERE, "skip")
    held = sources.open_outputs(ref, OUTPUTS, tmp_path, WHERE, "skip", whole=True)
    assert held[42].where == "example 42" and held[41][0].tobytes() == arrays["x"][41].tobytes()


def test_auto_streams_several_outputs_that_do_not_fit(folder: Path, monkeypatch: Any) -> None:
    program = dnn.load(str(spec(folder, "auto.dnn", NPZ, "auto")))
    assert not pipeline.prepare(program).streamed
    monkeypatch.setattr(memory_limit, "available", lambda devices: (4_000, "test"))
    prepared = pipeline.prepare(program)  # 200 x 6 float32 = 4,800 bytes > half of 4,000
    assert set(prepared.streamed) == {"train", "val", "test"} and prepared.blocks


def test_dnn_data_reports_a_streamed_source(folder: Path) -> None:
    memory = data_report.report(dnn.load(str(spec(folder, "m.dnn", CSV, "false"))), repeats=1)
    streamed = data_report.report(dnn.load(str(spec(folder, "s.dnn", CSV, "true"))), repeats=1)
    assert (memory.read, streamed.read) == ("in memory", "streamed")
    assert streamed.splits == memory.splits == {"train": 160, "val": 20, "test": 20}
    assert streamed.normalizer == memory.normalizer
    assert "read: streamed, batch by batch" in data_report.render(streamed)


def test_a_cache_is_keyed_by_the_outputs(tmp_path: Path) -> None:
    """`data.cache` stores each row's targets side by side: a spec whose outputs lay them out
    otherwise uses a cache of its own, and a cached read gives the same rows."""
    write_data(tmp_path)
    path = spec(tmp_path, "c.dnn", CSV, "true", "  cache = true\n")
    first = pipeline.prepare(dnn.load(str(path))).streamed["train"]
    rows = [first.examples[i] for i in range(len(first.examples))]
    again = pipeline.prepare(dnn.load(str(path))).streamed["train"].examples
    assert again._cache.filled() == 200  # every row stored by the first read
    for i, (x, y) in enumerate(rows):
        got = again[i]
        assert got[0].tobytes() == x.tobytes() and got[1].tobytes() == y.tobytes()
    swapped = path.read_text().replace("  output size = dense(2)(h)\n", "")
    swapped = swapped.replace(
        "output flag = dense(1)(h)", "output flag = dense(1)(h)\n  output size = dense(2)(h)"
    )
    path.write_text(swapped)
    other = pipeline.prepare(dnn.load(str(path))).streamed["train"].examples
    assert other._cache.folder != again._cache.folder
    assert other.blocks[2].name == "size" and other.blocks[2].start == 2


def test_a_builtin_set_with_several_targets_streams_from_memory(tmp_path: Path) -> None:
    """`digits_multi` is read whole, then batched through the streamed pipeline."""
    base = Path(__file__).parent.parent / "examples" / "digits_two_heads.dnn"
    text = base.read_text().replace("standardize\n", "standardize\n  stream = true\n", 1)
    (tmp_path / "heads.dnn").write_text(text)
    streamed = pipeline.prepare(dnn.load(str(tmp_path / "heads.dnn")))
    memory = pipeline.prepare(dnn.load(str(tmp_path / "heads.dnn"), ["data.stream=false"]))
    assert streamed.streamed and not memory.streamed and streamed.blocks == memory.blocks
    for name, table in memory.splits.items():
        parts = list(streamed.streamed[name].in_order(256))
        y = np.concatenate([y[m] for _, y, m in parts])
        assert y.tobytes() == table.y.tobytes() and y.shape == (len(table), 2), name


TAGS_SPEC = """dnn 1
model m {
  input x: f32[4]
  h = dense(8)(x) -> relu
  output tags = dense(3)(h)
  output kind = dense(3)(h)
  output val = dense(1)(h)
}
data {
  source = csv("t.csv")
  val = csv("v.csv")
  split = { train: 0.8, test: 0.2 }
  normalize = minmax
  targets = standardize
  stream = STREAM
}
train {
  loss = { tags: binary_cross_entropy, kind: cross_entropy, val: mse }
  epochs = 1
  batch_size = 8
}
"""


def test_multi_hot_columns_and_a_separate_val_file_stream_as_in_memory(tmp_path: Path) -> None:
    """Output `tags` reads its multi-hot rows from `tags_0` ... `tags_2`, `kind` whole-number
    labels, `val` one real value; the val split is a file of its own."""
    rng = np.random.default_rng(1)
    x, tags = rng.normal(size=(60, 4)), (rng.random((60, 3)) > 0.5).astype(int)
    rows = [
        f"{a[0]:.4f},{t[0]},{a[1]:.4f},{t[1]},{t[2]},{a[2]:.4f},{k},{a[3]:.4f},{3 * a[0]:.3f}"
        for a, t, k in zip(x, tags, rng.integers(0, 3, 60), strict=True)
    ]
    header = "a,tags_0,b,tags_1,tags_2,c,kind,d,val"
    (tmp_path / "t.csv").write_text("\n".join([header, *rows]) + "\n")
    (tmp_path / "v.csv").write_text("\n".join([header, *rows[:15]]) + "\n")
    for stream in ("true", "false"):
        (tmp_path / f"{stream}.dnn").write_text(TAGS_SPEC.replace("STREAM", stream))
    streamed = pipeline.prepare(dnn.load(str(tmp_path / "true.dnn")))
    memory = pipeline.prepare(dnn.load(str(tmp_path / "false.dnn")))
    assert [(b.name, b.start, b.width, b.classes) for b in streamed.blocks] == [
        ("tags", 0, 3, 3),
        ("kind", 3, 1, 3),
        ("val", 4, 1, None),
    ]
    assert streamed.blocks == memory.blocks and streamed.targets.columns == (4,)
    for name, table in memory.splits.items():
        parts = list(streamed.streamed[name].in_order(16))
        x = np.concatenate([x[m] for x, _, m in parts])
        y = np.concatenate([y[m] for _, y, m in parts])
        assert x.tobytes() == table.x.tobytes() and y.tobytes() == table.y.tobytes(), name
    rows[30] = rows[30].split(",", 2)[0] + ",2," + rows[30].split(",", 2)[2]
    (tmp_path / "t.csv").write_text("\n".join([header, *rows]) + "\n")
    outputs = (("tags", "multilabel", 3), ("kind", "multiclass", 3), ("val", "regression", 1))
    ref = value('csv("t.csv")', "dataset")[0]
    with pytest.raises(dnn.SpecError) as e:
        sources.open_outputs(ref, outputs, tmp_path, WHERE, "fail")[30]
    (d,) = e.value.diagnostics
    assert (d.span.line, d.message) == (32, "value `2` in column `tags_0` is not 0 or 1")
    assert d.hint == "output `tags` reads one yes/no label per unit from these columns"


def test_skip_read_whole_trains_as_the_streamed_run(tmp_path: Path, capsys: Any) -> None:
    """`stream = false, on_error = skip`: the CSV read by its streamed reader, the bad row
    left out; the splits then go through the streamed stages from memory, so each batch is
    the streamed run's. Nothing skipped: read whole as under `fail`. No W0810 (it stays for a
    built-in set, whose targets are read whole)."""
    from dnn.runtime.cli import main

    _bad_csv(tmp_path, 120, "digit", "zzz")
    specs = {
        s: spec(tmp_path, f"{s}.dnn", CSV, s, "  on_error = skip\n") for s in ("true", "false")
    }
    assert main(["check", str(specs["false"])]) == 0
    assert "W0810" not in capsys.readouterr().err
    streamed, whole = (pipeline.prepare(dnn.load(str(specs[s]))) for s in ("true", "false"))
    assert whole.streamed and whole.blocks == streamed.blocks
    for name, split in streamed.streamed.items():
        a, b = list(split.in_order(64)), list(whole.streamed[name].in_order(64))
        for u, v in zip(a, b, strict=True):
            assert all(p.tobytes() == q.tobytes() for p, q in zip(u, v, strict=True)), name
        assert split.skipped == whole.streamed[name].skipped
    message = "label `zzz` (class 3) in row 120 is outside output `digit`'s 3 classes"
    assert [s.reason for s in streamed.streamed["train"].skipped] == [message]
    write_data(tmp_path)  # nothing to skip: the in-memory run of `fail`
    fail = pipeline.prepare(dnn.load(str(spec(tmp_path, "fail.dnn", CSV, "false"))))
    kept = pipeline.prepare(dnn.load(str(specs["false"])))
    assert not kept.streamed and kept.blocks == fail.blocks
    for name, table in fail.splits.items():
        assert kept.splits[name].x.tobytes() == table.x.tobytes(), name
        assert kept.splits[name].y.tobytes() == table.y.tobytes(), name


def test_a_train_split_of_only_bad_rows_stops_at_on_error(tmp_path: Path) -> None:
    lines = write_data(tmp_path, 10)
    (tmp_path / "multi.csv").write_text("\n".join([lines[0], *(r + ",x" for r in lines[1:])]))
    path = spec(tmp_path, "s.dnn", CSV, "true", "  on_error = skip\n")
    with pytest.raises(dnn.SpecError) as e:
        pipeline.prepare(dnn.load(str(path)))
    (d,) = e.value.diagnostics
    assert (d.code, d.span.line, d.span.col) == ("E0602", 13, 14)
    assert d.message.startswith("every example of the train split (8) was skipped as bad: ")
    from dnn.runtime.data.split import split_rows

    first = int(split_rows(10, (0.8, 0.1, 0.1), 0)["train"][0]) + 1  # in the split's order
    assert d.message.endswith(f"row {first} has 11 fields but the header has 10)")


SEPARATE = """dnn 1
model m {
  input x: f32[1]
  output digit = dense(3)(x)
  output size = dense(1)(x)
}
data {
  source = csv("t.csv")
  val = csv("v.csv")
  split = { train: 0.8, test: 0.2 }
  stream = STREAM
}
train {
  loss = { digit: cross_entropy, size: mse }
  batch_size = 4
}
"""


def test_a_separate_val_file_numbers_an_outputs_classes_as_the_train_data(
    tmp_path: Path,
) -> None:
    """`v.csv`'s `digit` column holds only `low` and `mid`: 1 and 2, the train data's numbers
    (its own sorted names would make them 0 and 1); a class train lacks is an error, in both
    modes."""
    names = ["high", "low", "mid"]
    rows = "".join(f"{i},{names[i % 3]},{i / 2}\n" for i in range(30))
    (tmp_path / "t.csv").write_text("x,digit,size\n" + rows)
    (tmp_path / "v.csv").write_text("x,digit,size\n1,mid,0.5\n2,low,1.0\n3,mid,1.5\n")
    path = tmp_path / "s.dnn"
    for stream in ("false", "true"):
        path.write_text(SEPARATE.replace("STREAM", stream))
        prepared = pipeline.prepare(dnn.load(str(path)))
        if prepared.streamed:
            y = np.concatenate([y[m] for _, y, m in prepared.streamed["val"].in_order(4)])
        else:
            y = prepared.splits["val"].y
        assert y[:, 0].tolist() == [2, 1, 2], stream
        assert prepared.blocks[0].names == ("high", "low", "mid"), stream
    (tmp_path / "v.csv").write_text("x,digit,size\n1,mid,0.5\n2,odd,1.0\n")
    for stream in ("false", "true"):
        path.write_text(SEPARATE.replace("STREAM", stream))
        with pytest.raises(SpecError) as e:
            prepared = pipeline.prepare(dnn.load(str(path)))
            list(prepared.streamed["val"].in_order(4)) if prepared.streamed else None
        assert "label `odd` of output `digit` in row 2" in str(e.value), stream
        assert "is not a class of the train data" in str(e.value), stream
