"""Streamed sources (`runtime/data/sources.py`): each word's rows equal the in-memory loader's,
bit for bit; bad examples are named with file and row, offset or record; `skip` skips them.

Small files are generated once per module. References go through the front end's `value`, so
a source's arguments are validated as in a spec; errors are checked as rendered.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dnn.compiler.diagnostics import Span
from dnn.compiler.driver import value
from dnn.runtime.data import sources
from dnn.runtime.data.sources import Skipped, open_examples
from dnn.runtime.data.table import Table, _Where
from PIL import Image

from dnn import SpecError

SPAN = Span("spec.dnn", 7, 12, 7, 30)
WHERE = _Where(SPAN, {}, SPAN)


def ref(text: str):
    return value(text, "dataset")[0]


def opened(text: str, base: Path, task: str = "classification", on_error: str = "fail", **kw):
    return open_examples(ref(text), task, base, WHERE, on_error, **kw)


def in_memory(text: str, base: Path, task: str = "classification") -> Table:
    return sources.load_source(ref(text), task=task, base_dir=base, span=SPAN, sources={})


def assert_same_rows(examples: sources.Examples, table: Table) -> None:
    """Every row of `examples` is the table's row: same bytes, dtype and shape."""
    assert len(examples) == len(table)
    assert (examples.classes, examples.class_names) == (table.classes, table.class_names)
    assert tuple(examples.shape) == table.x.shape[1:] and examples.dtype == table.x.dtype
    items = examples._getitems(range(len(examples)))
    for i, (x, y) in enumerate(items):
        assert x.dtype == table.x.dtype and x.tobytes() == table.x[i].tobytes(), i
        assert (
            np.asarray(y).dtype == table.y.dtype and np.asarray(y).tobytes() == table.y[i].tobytes()
        )


def error(fn, *args, **kw) -> str:
    with pytest.raises(SpecError) as e:
        fn(*args, **kw)
    return str(e.value)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3, 2))
    y = np.arange(40) % 3
    np.savez(d / "plain.npz", x=x, y=y)
    np.savez_compressed(d / "packed.npz", x=x, y=y)
    np.save(d / "ids.npy", rng.integers(0, 20, (40, 5)))
    np.save(d / "names.npy", np.array(["cat", "dog", "emu", "ant"] * 10))
    lines = ["a, b ,label", ""] + [f"{v:.6g},{w:.6g},{k}" for v, w, k in rng.normal(size=(30, 3))]
    (d / "reg.csv").write_text("\n".join(lines) + "\n")
    rows = ["f1,f2,kind", '1.5,"2",cat', "", "3,4,dog", "5,6,cat", "7,8,emu", "9,10,dog"]
    (d / "cls.csv").write_text("\r\n".join(rows) + "\r\n")
    bad = ["f1,f2,kind", "1,2,cat", "3,4,dog", "5,cat", "7,x,dog", "9,10,", "11,12,cat"]
    (d / "bad.csv").write_text("\n".join(bad) + "\n")
    for k, (cls, mode) in enumerate([("cat", "L"), ("cat", "RGB"), ("dog", "L"), ("dog", "L")]):
        (d / "img" / cls).mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(rng.integers(0, 255, (6, 5, 3) if mode == "RGB" else (6, 5), np.uint8))
        im.save(d / "img" / cls / f"{k}.png")
    return d


@pytest.fixture(autouse=True)
def _cwd(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages name files from the working folder: a test's own folder, else the shared one."""
    names = request.fixturenames
    if "tmp_path" in names:
        monkeypatch.chdir(request.getfixturevalue("tmp_path"))
    elif "files" in names:
        monkeypatch.chdir(request.getfixturevalue("files"))


# ----------------------------------------------------------------------------- arrays


def test_npz_rows_are_the_in_memory_rows_memory_mapped(files: Path) -> None:
    examples = opened('npz("plain.npz")', files)
    assert isinstance(examples._array(), np.memmap)  # the member is mapped, not read
    assert_same_rows(examples, in_memory('npz("plain.npz")', files))
    assert examples.nbytes() == 40 * 6 * 4


def test_npz_compressed_member_is_refused_for_streaming(files: Path) -> None:
    text = error(opened, 'npz("packed.npz")', files)
    assert (
        "error[E0707]: array `x` in" in text
        and "packed.npz` is compressed, so it cannot be memory-mapped" in text
    )
    assert "hint: save with `np.savez` (not `savez_compressed`), or set `stream = false`" in text


def test_npy_rows_match_the_npz_loader_on_the_same_arrays(files: Path, tmp_path: Path) -> None:
    xs, ys = np.load(files / "ids.npy"), np.load(files / "names.npy")
    np.savez(tmp_path / "same.npz", x=xs, y=ys)  # the in-memory npz loader is the reference
    examples = opened('npy(x = "ids.npy", y = "names.npy")', files)
    assert examples.dtype == np.int32 and examples.class_names == ("ant", "cat", "dog", "emu")
    assert_same_rows(examples, in_memory('npz("same.npz")', tmp_path))
    # the in-memory `npy` word reads the same rows through its Examples
    assert_same_rows(examples, in_memory('npy(x = "ids.npy", y = "names.npy")', files))


def test_array_nan_met_mid_epoch_fails_or_is_skipped(tmp_path: Path) -> None:
    x = np.ones((6, 2), np.float32)
    x[4, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(6) % 2)
    examples = opened('npy(x = "x.npy", y = "y.npy")', tmp_path)
    assert examples[3][0].tolist() == [1.0, 1.0]
    text = error(examples.__getitem__, 4)
    assert text.startswith(
        "x.npy:1:1: error[E0702]: array `x` in `x.npy` has NaN at example 4, feature 1"
    )
    skipping = opened('npy(x = "x.npy", y = "y.npy")', tmp_path, on_error="skip")
    assert skipping[4] == Skipped(
        "x.npy", "example 4", "array `x` in `x.npy` has NaN at example 4, feature 1"
    )


# ----------------------------------------------------------------------------- CSV


def test_csv_rows_by_offset_equal_the_in_memory_rows(files: Path) -> None:
    for text, task in [
        ('csv("reg.csv")', "regression"),
        ('csv("cls.csv", label = "kind")', "classification"),
    ]:
        assert_same_rows(opened(text, files, task), in_memory(text, files, task))
    assert (files / ".reg.csv.dnn-index").is_file() and (files / ".cls.csv.dnn-index").is_file()


def test_csv_index_is_cached_and_rebuilt_when_the_file_changes(tmp_path: Path, monkeypatch) -> None:
    from dnn.runtime.data import csvrows

    built = []
    real = csvrows._build_index
    monkeypatch.setattr(csvrows, "_build_index", lambda *a: built.append(a[0]) or real(*a))
    (tmp_path / "d.csv").write_text("a,label\n1,0\n2,1\n")
    assert len(opened('csv("d.csv")', tmp_path)) == 2 and len(built) == 1
    assert len(opened('csv("d.csv")', tmp_path)) == 2 and len(built) == 1  # the cache serves
    with open(tmp_path / "d.csv", "a") as f:
        f.write("3,1\n")  # size and mtime change
    examples = opened('csv("d.csv")', tmp_path)
    assert len(examples) == 3 and len(built) == 2 and examples[2][0].tolist() == [3.0]


def test_csv_index_goes_to_the_run_folder_when_the_file_folder_refuses_it(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,label\n1,0\n2,1\n")
    (tmp_path / ".d.csv.dnn-index").mkdir()  # nothing can be written there
    run = tmp_path / "run"
    run.mkdir()
    examples = opened('csv("d.csv")', tmp_path, cache_dir=run)
    assert (run / ".d.csv.dnn-index").is_file() and examples[1][0].tolist() == [2.0]
    assert len(pickle_roundtrip(examples)) == 2


def pickle_roundtrip(obj):
    import pickle

    return pickle.loads(pickle.dumps(obj))


def test_csv_bad_rows_are_named_with_line_and_caret_or_skipped(files: Path) -> None:
    # read as numbers (`cells = False`), as a table whose first 1,000 rows hold only numbers
    examples = opened('csv("bad.csv", label = "kind")', files, cells=False)
    assert examples.class_names == ("cat", "dog")
    assert examples[1][1] == 1
    assert error(examples.__getitem__, 2) == (
        "bad.csv:4:6: error[E0702]: row 3 has 2 fields but the header has 3\n"
        "4 | 5,cat\n"
        "  |      ^\n"
        "  note: spec.dnn:7:12: the data named here\n"
        "  hint: give every row one value per column of the header"
    )
    assert error(examples.__getitem__, 3).startswith(
        "bad.csv:5:3: error[E0702]: value `x` in column `f2` is not a number\n5 | 7,x,dog\n  |   ^"
    )
    assert error(examples.__getitem__, 3).endswith(
        "hint: the table is read as numbers, as its first 1,000 rows (or the train table's) "
        "hold only numbers; to read its cells as a typed table, type the column: "
        "`columns = { f2: category }`"
    )
    assert "error[E0702]: label in row 5 is empty" in error(examples.__getitem__, 4)
    skipping = opened('csv("bad.csv", label = "kind")', files, on_error="skip", cells=False)
    got = [item for item in skipping._getitems(range(6)) if isinstance(item, Skipped)]
    assert [(s.where, s.reason) for s in got] == [
        ("row 3", "row 3 has 2 fields but the header has 3"),
        ("row 4", "value `x` in column `f2` is not a number"),
        ("row 5", "label in row 5 is empty"),
    ]


def test_label_outside_the_model_outputs_is_met_at_its_row(files: Path) -> None:
    examples = opened('csv("cls.csv", label = "kind")', files, outputs=2)
    assert examples[0][1] == 0
    assert error(examples.__getitem__, 3).startswith(
        "cls.csv:6:5: error[E0702]: label `2` at row 4 is outside the 2 classes the model outputs\n"
        "6 | 7,8,emu\n"
        "  |     ^^^"
    )
    assert error(examples.__getitem__, 3).endswith(
        "hint: `cls.csv` has 3 classes: end the model with `dense(3)`"
    )
    one = opened('csv("cls.csv", label = "kind")', files, outputs=1)
    assert error(one.__getitem__, 3).startswith(
        "cls.csv:6:5: error[E0702]: label `2` at row 4 is not 0 or 1, as a model with one output needs"
    )
    assert error(one.__getitem__, 3).endswith(
        "hint: `cls.csv` has 3 classes: end the model with `dense(3)` and train with `cross_entropy`"
    )


# ----------------------------------------------------------------------------- images


def test_images_decoded_per_example_equal_the_in_memory_pixels(files: Path) -> None:
    for text in ['images("img")', 'images("img", size = [4, 3])']:
        examples = opened(text, files)
        assert examples.shape[-1] == 3  # one colour image: every image gets three channels
        assert_same_rows(examples, in_memory(text, files))


def test_a_batch_read_as_stored_and_finished_whole_equals_the_examples(
    files: Path, tmp_path: Path
) -> None:
    """Grain's workers read images as 8-bit pixels (`raw`, a quarter of the float32 bytes)
    and the batch is finished where it is cut: the same bytes as reading each example."""
    from dnn.runtime.data.batches import read_rows, stack

    shutil.copytree(files / "img" / "dog", tmp_path / "grey" / "dog")  # grey only: (H, W)
    for text, base in (('images("img")', files), ('images("grey")', tmp_path)):
        examples = opened(text, base)
        rows = np.arange(len(examples))
        x, _, _ = stack(read_rows(examples, rows, raw=True), examples, raw=True)
        assert x.dtype == np.uint8
        whole, _, _ = stack(read_rows(examples, rows), examples)
        finished = examples.finish_batch(x)
        assert finished.dtype == whole.dtype and finished.tobytes() == whole.tobytes(), text
        empty = examples.finish_batch(stack([], examples, raw=True)[0])
        assert empty.shape == (0, *examples.shape) and empty.dtype == np.float32


def test_corrupt_image_fails_or_is_skipped(files: Path, tmp_path: Path) -> None:
    shutil.copytree(files / "img", tmp_path / "img")
    png = (tmp_path / "img" / "dog" / "2.png").read_bytes()
    (tmp_path / "img" / "dog" / "2.png").write_bytes(png[: len(png) // 2])  # header intact
    (tmp_path / "img" / "cat" / "9.png").write_bytes(b"not an image")
    text = error(opened, 'images("img")', tmp_path)
    assert text.startswith(
        "img/cat/9.png:1:1: error[E0701]: cannot read image `img/cat/9.png`: not an image Pillow can read"
    )
    examples = opened('images("img")', tmp_path, on_error="skip")
    assert examples[2] == Skipped(
        "img", "cat/9.png", "cannot read image `img/cat/9.png`: not an image Pillow can read"
    )
    truncated = examples[3]  # met only when decoded
    assert isinstance(truncated, Skipped) and truncated.where == "dog/2.png"
    assert truncated.reason.startswith("cannot read image `img/dog/2.png`:")


# ----------------------------------------------------------------------------- Parquet


def test_parquet_rows_by_row_group(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=9), rng.integers(0, 5, 9)
    names = ["emu", "ant", "cat"] * 3
    pq.write_table(
        pa.table({"a": a, "b": b, "label": names}), tmp_path / "d.parquet", row_group_size=4
    )
    examples = opened('parquet("d.parquet")', tmp_path)
    assert examples.class_names == ("ant", "cat", "emu") and examples._starts.tolist() == [0, 4, 8]
    expected_x = np.stack([a, b.astype(np.float64)], axis=1).astype(np.float32)
    expected_y = np.array([2, 0, 1] * 3, np.int32)
    for i in [8, 0, 5, 4, 3]:
        x, y = examples[i]
        assert x.tobytes() == expected_x[i].tobytes() and y == expected_y[i]
    assert_same_rows(examples, in_memory('parquet("d.parquet")', tmp_path))


def test_parquet_unreadable_file_and_missing_cell(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_text("a,label\n1,0\n")
    text = error(opened, 'parquet("x.parquet")', tmp_path)
    assert text.startswith(
        "x.parquet:1:1: error[E0701]: cannot read `x.parquet`: not a Parquet file ("
    )
    assert "hint: write it with pyarrow or pandas: `df.to_parquet(path)`" in text
    pq.write_table(pa.table({"a": [1.0, None, 3.0], "label": [0, 1, 0]}), tmp_path / "n.parquet")
    examples = opened('parquet("n.parquet")', tmp_path, on_error="skip")
    assert examples[1] == Skipped(
        "n.parquet", "row 1", "row 1 of `n.parquet` has no finite number in column `a`"
    )


# ----------------------------------------------------------------------------- shards


@pytest.fixture(scope="module")
def shards(files: Path) -> Path:
    examples = opened('npz("plain.npz")', files)
    paths, skipped = sources.write_shards(examples, files / "shards", per_shard=16)
    assert [p.name for p in paths] == [
        f"part-0000{k}.array_record" for k in range(3)
    ] and not skipped
    return files / "shards"


def test_shards_hold_the_source_rows(files: Path, shards: Path) -> None:
    meta = json.loads((shards / "dnn-shards.json").read_text())
    assert meta["files"] == {
        "part-00000.array_record": 16,
        "part-00001.array_record": 16,
        "part-00002.array_record": 8,
    }
    examples = opened('shards("shards/*.array_record")', files)
    assert_same_rows(examples, in_memory('npz("plain.npz")', files))
    assert examples._place(20)[0] == "record 4 of part-00001.array_record"


def test_shards_missing_empty_or_unreadable(files: Path, shards: Path, tmp_path: Path) -> None:
    shutil.copytree(shards, tmp_path / "s")
    assert "error[E0701]: no file matches `s/*.rec`" in error(opened, 'shards("s/*.rec")', tmp_path)
    (tmp_path / "s" / "part-00001.array_record").unlink()
    text = error(opened, 'shards("s/*.array_record")', tmp_path)
    assert (
        "error[E0701]: shard `s/part-00001.array_record` of `s/*.array_record` is missing" in text
    )
    assert "hint: `s/dnn-shards.json` lists 3 shards" in text
    (tmp_path / "s" / "part-00001.array_record").write_bytes(b"\0" * 64)
    text = error(opened, 'shards("s/*.array_record")', tmp_path)
    assert (
        "s/part-00001.array_record:1:1: error[E0701]: cannot read shard `s/part-00001.array_record`"
        in text
    )


def test_shard_label_outside_the_classes_met_mid_epoch(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((5, 2), np.float32), y=np.array([0, 1, 2, 1, 0]))
    sources.write_shards(opened('npz("d.npz")', tmp_path), tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "dnn-shards.json").read_text())
    meta["classes"], meta["class_names"] = 2, ["0", "1"]  # a record now holds a class past them
    (tmp_path / "s" / "dnn-shards.json").write_text(json.dumps(meta))
    examples = opened('shards("s/*.array_record")', tmp_path)
    assert examples[1][1] == 1
    assert error(examples.__getitem__, 2).startswith(
        "s/part-00000.array_record:1:1: error[E0702]: label `2` at record 2 of "
        "part-00000.array_record is outside the 2 classes of `s/*.array_record`"
    )


def test_write_shards_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dnn.runtime.cli import main

    np.savez(tmp_path / "d.npz", x=np.arange(10.0).reshape(5, 2), y=np.array([0, 1, 0, 1, 1]))
    spec = (
        'dnn 1\nmodel m {\n  input x: f32[2]\n  dense(2)\n}\ndata {\n  source = npz("d.npz")\n}\n'
    )
    (tmp_path / "a.dnn").write_text(spec)
    assert main(["data", "a.dnn", "--write-shards", "out", "--per-shard", "2"]) == 0
    assert capsys.readouterr().err.strip() == "out: 5 examples in 3 shards"
    examples = opened('shards("out/*.array_record")', tmp_path)
    assert_same_rows(examples, in_memory('npz("d.npz")', tmp_path))


# ----------------------------------------------------------------------------- Grain workers


def test_error_in_a_grain_worker_process_keeps_its_message(files: Path) -> None:
    import grain
    from absl import flags

    if not flags.FLAGS.is_parsed():  # Grain's workers read its flags; no command line here
        flags.FLAGS.mark_as_parsed()
    examples = opened('csv("bad.csv", label = "kind")', files, cells=False)  # as numbers
    ds = grain.MapDataset.source(examples).to_iter_dataset()
    it = iter(ds.mp_prefetch(grain.multiprocessing.MultiprocessingOptions(num_workers=1)))
    assert next(it)[0].tolist() == [1.0, 2.0] and next(it)[1] == 1
    with pytest.raises(SpecError) as e:
        next(it)
    assert str(e.value).startswith(
        "bad.csv:4:6: error[E0702]: row 3 has 2 fields but the header has 3\n4 | 5,cat"
    )


EXIT_AFTER_WORKERS = """
import numpy as np
import grain
import jax  # noqa: F401 (with JAX loaded, quick_exit skips the interpreter's teardown)
from absl import flags
from dnn.runtime.cli import quick_exit

if __name__ == "__main__":
    flags.FLAGS.mark_as_parsed()
    ds = grain.MapDataset.range(1, 64).map(np.ones).to_iter_dataset()
    options = grain.MultiprocessingOptions(num_workers=2, per_worker_buffer_size=2)
    batches = iter(ds.mp_prefetch(options))
    print(sum(len(next(batches)) for _ in range(5)))
    batches.close()
    quick_exit(0)
"""


def test_a_command_that_ran_grain_workers_exits_without_leaked_resources(tmp_path: Path) -> None:
    """`dnn`'s quick exit (no interpreter teardown) releases the semaphores and shared memory
    of Grain's worker processes, so Python's resource tracker reports none as leaked."""
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(EXIT_AFTER_WORKERS)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "15", done.stderr
    assert "leaked" not in done.stderr, done.stderr


def test_streams_names_the_words() -> None:
    assert [
        w
        for w in ("builtin", "csv", "npz", "npy", "images", "parquet", "shards")
        if sources.streams(ref_of(w))
    ] == ["csv", "npz", "npy", "images", "parquet", "shards"]


def ref_of(word: str):
    from dnn.compiler.values import Ref

    return Ref("dataset", word, ())


def test_a_typed_table_streams_its_cells_as_strings(files: Path) -> None:
    """`cells`: a CSV's input cells as the in-memory typed table holds them (strings), and
    an error at a cell points at it in the file."""
    examples = opened('csv("cls.csv", label = "kind")', files, cells=True)
    x, y = examples[0]  # `1.5,"2",cat`: the quoted cell unquoted, as in memory
    assert x.dtype == object and x.tolist() == ["1.5", "2"] and examples.columns == ("f1", "f2")
    x, y = examples[3]  # `7,8,emu` on line 6 (a blank line 3)
    assert x.tolist() == ["7", "8"] and examples.class_names[int(y)] == "emu"
    text = str(examples.cell_error(3, 1, "E0705", "bad cell", "fix it"))
    assert text.splitlines()[:4] == [
        "cls.csv:6:3: error[E0705]: bad cell",
        "6 | 7,8,emu",
        "  |   ^",
        "  note: spec.dnn:7:12: the data named here",
    ]
    assert "hint: fix it" in text


def test_shard_record_unlike_its_description_is_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2), np.float32), y=np.array([0, 1, 0]))
    sources.write_shards(opened('npz("d.npz")', tmp_path), tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "dnn-shards.json").read_text())
    meta["shape"] = [3]
    (tmp_path / "s" / "dnn-shards.json").write_text(json.dumps(meta))
    examples = opened('shards("s/*.array_record")', tmp_path, on_error="skip")
    assert examples[1] == Skipped(
        "s/*.array_record",
        "record 1 of part-00000.array_record",
        "record 1 of part-00000.array_record holds x of shape (2,) float32, but "
        "`dnn-shards.json` says (3,) float32",
    )
    (tmp_path / "s" / "part-00007.array_record").write_bytes(b"")
    text = error(opened, 'shards("s/*.array_record")', tmp_path)
    assert (
        "error[E0708]: shard `s/part-00007.array_record` is not listed in `s/dnn-shards.json`"
        in text
    )


def test_rows_read_from_many_threads_at_once(files: Path, tmp_path: Path) -> None:
    """Grain reads a process's examples from several threads: no shared file position."""
    from concurrent.futures import ThreadPoolExecutor

    a = np.arange(64.0)
    pq.write_table(pa.table({"a": a, "label": np.arange(64) % 2}), "p.parquet", row_group_size=8)
    for text, base in [('csv("reg.csv")', files), ('parquet("p.parquet")', tmp_path)]:
        examples = opened(text, base, "regression")
        order = np.random.default_rng(0).permutation(len(examples)).tolist() * 4
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(examples.__getitem__, order))
        fresh = opened(text, base, "regression")
        assert all(g[0].tobytes() == fresh[i][0].tobytes() for g, i in zip(got, order, strict=True))


def test_shard_records_read_by_slicing_and_a_corrupt_one_caught(tmp_path: Path) -> None:
    """The records after the first are read at the first's offsets (shards._Layout): equal to
    `np.load`; a record whose bytes changed fails zip's CRC-32 and is named."""
    from array_record.python.array_record_module import ArrayRecordWriter
    from dnn.runtime.data import shards as shard_module
    from grain.sources import ArrayRecordDataSource

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(4, 3)).astype(np.float32), y=[0, 1, 0, 1])
    sources.write_shards(opened('npz("d.npz")', tmp_path), tmp_path / "s")
    examples = opened('shards("s/*.array_record")', tmp_path, on_error="skip")
    assert_same_rows(examples, in_memory('npz("d.npz")', tmp_path))
    assert isinstance(examples.__dict__["_layout"], shard_module._Layout)  # the fast path read
    path = tmp_path / "s" / "part-00000.array_record"
    records = [bytes(r) for r in ArrayRecordDataSource([str(path)]).__getitems__([0, 1, 2, 3])]
    offset = examples.__dict__["_layout"].arrays[0][0]  # x's first value in every record
    bad = bytearray(records[2])
    bad[offset] ^= 0x40
    writer = ArrayRecordWriter(str(path), "group_size:1")
    for r in (records[0], records[1], bytes(bad), records[3]):
        writer.write(r)
    writer.close()
    examples = opened('shards("s/*.array_record")', tmp_path, on_error="skip")
    assert examples[0][1] == 0 and examples[3][1] == 1
    skipped = examples[2]
    assert isinstance(skipped, Skipped) and skipped.where == "record 2 of part-00000.array_record"
    assert "is not an NPZ of `x` and `y` (Bad CRC-32" in skipped.reason


IMAGE_VAL = """dnn 1
model m {
  input x: f32[6, 5, 3]
  output x -> flatten -> dense(2)
}
data {
  source = images("img")
  val = images("val")
  split = { train: 0.5, test: 0.5 }
  stream = STREAM
}
train {
  loss = cross_entropy
  batch_size = 2
  epochs = 1
}
"""


def test_a_separate_val_folder_numbers_its_classes_as_the_train_folder(
    files: Path, tmp_path: Path
) -> None:
    from dnn.runtime import pipeline

    import dnn

    shutil.copytree(files / "img", tmp_path / "img")
    (tmp_path / "val" / "dog").mkdir(parents=True)  # `dog` alone: class 1 (a colour image)
    shutil.copy(files / "img" / "cat" / "1.png", tmp_path / "val" / "dog" / "1.png")
    path = tmp_path / "s.dnn"
    for stream in ("false", "true"):
        path.write_text(IMAGE_VAL.replace("STREAM", stream))
        prepared = pipeline.prepare(dnn.load(str(path)))
        if prepared.streamed:
            y = np.concatenate([y[m] for _, y, m in prepared.streamed["val"].in_order(4)])
        else:
            y = prepared.splits["val"].y
        assert y.tolist() == [1] and prepared.class_names == ("cat", "dog"), stream
    (tmp_path / "val" / "dog").rename(tmp_path / "val" / "emu")
    for stream in ("false", "true"):
        path.write_text(IMAGE_VAL.replace("STREAM", stream))
        text = error(pipeline.prepare, dnn.load(str(path)))
        assert "is not a class of the train data" in text and "`emu`" in text, text


def test_a_plain_png_decodes_to_pillows_pixels_and_others_go_through_pillow(
    tmp_path: Path,
) -> None:
    """A streamed folder's 8-bit grey and RGB PNGs go through libspng (pyspng); a PNG with
    alpha, a palette, a transparent colour or 16 bits goes through Pillow. Either way the
    pixels are Pillow's, byte for byte."""
    from dnn.runtime.data import images

    assert images._spng is not None  # the `stream` extra installs it
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (7, 5, 3), np.uint8)
    grey = rng.integers(0, 256, (7, 5), np.uint8)
    made = {
        "rgb": (Image.fromarray(rgb), {}, True),
        "grey": (Image.fromarray(grey), {}, True),
        "rgba": (Image.fromarray(np.dstack([rgb, grey])), {}, False),
        "palette": (Image.fromarray(rgb).convert("P"), {}, False),
        "transparent": (Image.fromarray(grey), {"transparency": 7}, False),
        "deep": (Image.fromarray(grey.astype(np.uint16) * 257), {}, False),
    }
    for name, (im, options, plain) in made.items():
        path = tmp_path / f"{name}.png"
        im.save(path, **options)
        assert images._plain_png(path.read_bytes()) is plain, name
        with Image.open(path) as opened:
            want = np.asarray(opened.convert("L" if opened.mode in images._GRAY_MODES else "RGB"))
        got = images._decode_image(name, str(path), None)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name
    assert not images._plain_png(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # no IHDR
