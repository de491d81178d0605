"""Data sources read whole (`runtime/data/`: the source words of sources.py, split, fit):
built-in sets, CSV, NPZ and image folders.

Files are written to a fresh working folder per test, and specs go through the real front end,
so a source's `Ref` and the span of its `source` field are what `dnn train` would see. Every
error is checked as rendered: `path:line:col: error[CODE]: message`, the caret under the right
characters of the data file, and the hint.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from dnn.compiler.diagnostics import E_DATA, E_FILE, E_SECTION
from dnn.compiler.ir import Program
from dnn.compiler.registry.data import BUILTIN_DATA
from dnn.runtime.data.sources import load_source
from dnn.runtime.data.split import split
from dnn.runtime.data.table import Table
from dnn.runtime.data.transforms import fit_to_model
from dnn.runtime.inputs import read_inputs
from PIL import Image

from dnn import SpecError, loads

SPEC = """dnn 1
model m {{
  input x: {dtype}[{shape}]
  {layers}dense({outputs})
}}
data {{
  source = {source}
}}
train {{
  loss = {loss}
}}
"""
SOURCE = "spec.dnn:7:12"  # where `source = ...` puts its value in SPEC
INPUT = "spec.dnn:3:3"  # the input declaration


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def program(
    source: str, shape: tuple[int, ...] = (2,), outputs: int = 3, loss: str | None = None
) -> Program:
    """A spec reading `source`; its loss (one `dnn check` accepts for the output) sets the task."""
    loss = loss or ("binary_cross_entropy" if outputs == 1 else "cross_entropy")
    dims = ", ".join(map(str, shape))
    ids = source == 'builtin("tokens")'  # integer examples: ids into an embedding
    layers = "embedding(20, 2) -> flatten -> " if ids else "flatten -> " if len(shape) > 1 else ""
    text = SPEC.format(
        source=source,
        shape=dims,
        outputs=outputs,
        loss=loss,
        dtype="i32" if ids else "f32",
        layers=layers,
    )
    return loads(text, "spec.dnn")


def load(
    source: str,
    task: str = "classification",
    base_dir: str = ".",
    shape: tuple[int, ...] = (2,),
    outputs: int = 3,
) -> Table:
    """Load a source written as in a spec, e.g. `csv("x.csv", label = "y")`."""
    p = program(source, shape, outputs, "mse" if task == "regression" else None)
    assert p.data is not None
    return load_source(
        p.data.source,
        task=task,
        base_dir=Path(base_dir),
        span=p.data.span_of("source"),
        sources=p.sources,
    )


def builtin(name: str, task: str | None = None) -> Table:
    meta = BUILTIN_DATA[name]  # the checker matches the spec's model to a built-in set
    task = task or meta["task"]
    outputs = 1 if task == "regression" else meta["classes"]
    return load(f'builtin("{name}")', task, shape=meta["shape"], outputs=outputs)


def fit(table: Table, shape: tuple[int, ...], outputs: int) -> Table:
    """`fit_to_model` as the trainer calls it: errors about the model point at its input."""
    p = program('csv("x.csv")', shape, outputs)
    assert p.model is not None
    span = p.model.node("x").span
    return fit_to_model(table, shape, "x", outputs, span=span, sources=p.sources)


def write(name: str, text: str) -> str:
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    Path(name).write_text(text, encoding="utf-8")
    return name


def image(path: str, size: tuple[int, int] = (4, 5), mode: str = "L", value: int = 51) -> None:
    """A solid image of `size` (height, width)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 0, 255)
    Image.new(mode, (size[1], size[0]), color).save(path)


def fails(call: object, where: str, message: str, hint: str | None = "", code: str = E_DATA) -> str:
    """`call()` raises a SpecError rendered as `where: error[code]: message` with this hint
    (None: no hint)."""
    with pytest.raises(SpecError) as info:
        call()  # type: ignore[operator]
    text = str(info.value)
    assert text.splitlines()[0] == f"{where}: error[{code}]: {message}", text
    assert (f"  hint: {hint}" in text) if hint is not None else "hint:" not in text, text
    assert "Traceback" not in text
    return text


def caret(text: str) -> tuple[str, int, int]:
    """The excerpt of a rendered error: the source line, and the caret's column and width."""
    lines = text.splitlines()
    src = lines[1].partition(" | ")[2]
    marks = lines[2].partition(" | ")[2]
    return src, marks.index("^") + 1, marks.count("^")


def csv_fails(text: str, where: str, message: str, hint: str, **kw: str) -> str:
    write("x.csv", text)
    source = kw.get("source", 'csv("x.csv", label = "y")')
    return fails(lambda: load(source, kw.get("task", "classification")), where, message, hint)


# ----------------------------------------------------------------------------- built-in sets


@pytest.mark.parametrize("name", list(BUILTIN_DATA))
def test_builtin_matches_its_description(name: str) -> None:
    meta, t = BUILTIN_DATA[name], builtin(name)
    dtype = np.int32 if meta.get("dtype") == "int" else np.float32  # token ids stay ids
    assert t.x.shape == (meta["samples"], *meta["shape"]) and t.x.dtype == dtype
    assert t.classes == meta["classes"] and t.task == meta["task"]
    assert t.origin == f"builtin:{name}" and np.isfinite(t.x).all()
    if meta["classes"] is None:
        assert t.y.shape == (meta["samples"],) and t.y.dtype == np.float32
        assert t.class_names == ()
    else:
        assert t.y.dtype == np.int32 and len(t.class_names) == meta["classes"]
        assert sorted(set(t.y.tolist())) == list(range(meta["classes"]))


@pytest.mark.parametrize("name", ["moons", "circles", "spirals", "xor", "sequence", "tokens"])
def test_generated_sets_are_the_same_on_every_load(name: str) -> None:
    a, b = builtin(name), builtin(name)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)


def test_generated_sets_follow_their_docs() -> None:
    xor, seq, spirals = builtin("xor"), builtin("sequence"), builtin("spirals")
    assert np.abs(xor.x).max() <= 1
    assert np.array_equal(xor.y, (np.sign(xor.x[:, 0]) != np.sign(xor.x[:, 1])).astype(np.int32))
    assert np.array_equal(seq.y, (seq.x.sum(axis=(1, 2)) > 0).astype(np.int32))
    assert np.bincount(spirals.y).tolist() == [334, 333, 333]
    assert builtin("iris").class_names == ("setosa", "versicolor", "virginica")
    tokens = builtin("tokens")
    assert tokens.x.min() == 0 and tokens.x.max() == BUILTIN_DATA["tokens"]["vocab"] - 1
    assert np.array_equal(tokens.y, ((tokens.x < 10).sum(axis=1) > 6).astype(np.int32))


def test_classification_set_under_a_regression_loss_gives_numbers() -> None:
    t = builtin("iris", "regression")
    assert t.y.dtype == np.float32 and t.classes is None and set(t.y.tolist()) == {0.0, 1.0, 2.0}


def test_regression_set_under_a_classification_loss_is_refused_by_check_class_1() -> None:
    """Loss / target consistency (issue 14, class 1): known statically for built-in sets."""
    fails(
        lambda: program('builtin("diabetes")', (10,), 2),
        "spec.dnn:10:10",
        "`cross_entropy` needs class labels, but `diabetes` has real-valued targets",
        "train with a regression loss such as `mse`, `mae` or `huber`",
        code=E_SECTION,
    )


def test_regression_set_under_a_classification_loss_in_the_loader() -> None:
    p = program('builtin("diabetes")', (10,), 1, "mse")
    assert p.data is not None
    load_classes = partial(
        load_source,
        p.data.source,
        task="classification",
        base_dir=Path("."),
        span=p.data.span_of("source"),
        sources=p.sources,
    )
    fails(
        load_classes,
        SOURCE,
        '`builtin("diabetes")` has real-valued targets, not class labels',
        "use a regression loss such as `mse`, with one output",
    )


# ----------------------------------------------------------------------------- CSV


def test_csv_with_class_names() -> None:
    write("x.csv", "a, b ,species\n1,2,virginica\n3.5,-4,setosa\n\n5,6e1,virginica\n\n")
    t = load('csv("x.csv", label = "species")')
    assert t.x.tolist() == [[1, 2], [3.5, -4], [5, 60]] and t.x.dtype == np.float32
    assert t.y.tolist() == [1, 0, 1] and t.y.dtype == np.int32
    assert (t.classes, t.class_names, t.origin, t.kind) == (
        2,
        ("setosa", "virginica"),
        "x.csv",
        "csv",
    )


def test_csv_integer_labels_are_used_as_given_and_label_column_may_be_anywhere() -> None:
    write("x.csv", "y,a\n2,1\n0,2\n")
    t = load('csv("x.csv", label = "y")')
    assert t.y.tolist() == [2, 0] and t.x.tolist() == [[1], [2]]
    assert t.classes == 3 and t.class_names == ("0", "1", "2")


def test_csv_regression_targets_and_quoted_fields() -> None:
    write("x.csv", '\ufeff"a","b, c",y\n"1",2,0.25\n3," 4",-1e2\n')  # byte-order mark, quotes
    t = load('csv("x.csv", label = "y")', "regression")
    assert t.x.tolist() == [[1, 2], [3, 4]] and t.y.tolist() == [0.25, -100.0]
    assert t.y.dtype == np.float32 and t.classes is None and t.class_names == ()


def test_csv_path_is_relative_to_the_spec_folder() -> None:
    write("specs/data/x.csv", "a,y\n1,0\n")
    assert load('csv("data/x.csv", label = "y")', base_dir="specs").origin == "specs/data/x.csv"


def test_missing_csv() -> None:
    text = fails(
        lambda: load('csv("nope.csv")'),
        SOURCE,
        "cannot read `nope.csv`: No such file or directory",
        "the path is relative to the folder of the spec file",
        E_FILE,
    )
    assert caret(text) == ('  source = csv("nope.csv")', 12, 15)


def test_unknown_csv_column() -> None:
    write("x.csv", "sepal,species\n1,a\n")
    text = fails(
        lambda: load('csv("x.csv", label = "specis")'),
        SOURCE,
        "`x.csv` has no column `specis`",
        "did you mean `species`?",
    )
    assert caret(text)[1] == 12
    fails(
        lambda: load('csv("x.csv", label = "target")'),
        SOURCE,
        "`x.csv` has no column `target`",
        'columns: `sepal`, `species`; write `csv("x.csv", label = "sepal")`',
    )


def test_empty_csv() -> None:
    text = csv_fails(
        "\n  \n",
        "x.csv:1:1",
        "`x.csv` is empty: no header row",
        "write a header row of column names, then one row per example",
    )
    assert f"  note: {SOURCE}: the data named here" in text


def test_csv_with_header_only() -> None:
    text = csv_fails(
        "a,y\n",
        "x.csv:1:1",
        "`x.csv` has a header but no rows",
        "add one row per example below the header",
    )
    assert caret(text) == ("a,y", 1, 3)


def test_csv_row_with_too_many_fields() -> None:
    text = csv_fails(
        "a,b,y\n1,2,0\n\n1,2,0,9,9\n",
        "x.csv:4:7",
        "row 2 has 5 fields but the header has 3",
        "give every row one value per column of the header",
    )
    assert caret(text) == ("1,2,0,9,9", 7, 3)


def test_csv_row_with_too_few_fields() -> None:
    text = csv_fails(
        "a,b,y\n1,2\n",
        "x.csv:2:4",
        "row 1 has 2 fields but the header has 3",
        "give every row one value per column of the header",
    )
    assert caret(text) == ("1,2", 4, 1)


@pytest.mark.parametrize(
    "row, where, message",
    [
        ("1, abc ,0", "x.csv:3:4", "value `abc` in column `b` is not a number"),
        ("1,,0", "x.csv:3:3", "empty value in column `b`"),
        ("NaN,2,0", "x.csv:3:1", "value `NaN` in column `a` is not a finite number"),
        ("1,-inf,0", "x.csv:3:3", "value `-inf` in column `b` is not a finite number"),
    ],
)
def test_bad_input_value_in_csv(row: str, where: str, message: str) -> None:
    column = "a" if "`a`" in message else "b"
    if "finite" in message:  # a number, not a finite one
        hint = "inputs must be numbers: fill in the value, or drop the row or the column"
    else:  # a word or a gap in a table read as numbers: type the column to read cells
        kind = "number" if "empty" in message else "category"
        hint = typed_hint(column, kind)
    text = csv_fails(f"a,b,y\n1,2,0\n{row}\n", where, message, hint)
    src, col, width = caret(text)
    value = message.split("`")[1] if "value `" in message else ""
    assert src == row and col == int(where.split(":")[2]) and width == max(len(value), 1)
    assert f"  note: {SOURCE}: the data named here" in text


def typed_hint(column: str, kind: str) -> str:
    """The hint under a word or a gap met in a table read as numbers."""
    return (
        "the table is read as numbers, as its first 1,000 rows (or the train table's) hold "
        "only numbers; to read its cells as a typed table, type the column: "
        f"`columns = {{ {column}: {kind} }}`"
    )


def test_caret_under_a_quoted_field() -> None:
    text = csv_fails(
        'a,b,y\n"1","x ""2""",0\n',
        "x.csv:2:5",
        'value `x "2"` in column `b` is not a number',
        typed_hint("b", "category"),
    )
    assert caret(text) == ('"1","x ""2""",0', 5, 9)


def test_first_bad_value_in_file_order_is_reported() -> None:
    csv_fails("a,b,y\n1,x,0\nz,2,0\n", "x.csv:2:3", "value `x` in column `b` is not a number", "")


def test_duplicate_csv_column() -> None:
    text = csv_fails(
        "a,b,a,y\n1,2,3,0\n",
        "x.csv:1:5",
        "column `a` appears twice in the header",
        "give every column its own name",
    )
    assert caret(text) == ("a,b,a,y", 5, 1)


def test_csv_with_only_a_label_column() -> None:
    csv_fails(
        "y\n1\n",
        "x.csv:1:1",
        "`x.csv` has no input columns besides the label `y`",
        "add a column for each input",
    )


def test_empty_label() -> None:
    csv_fails("a,y\n1,0\n2,\n", "x.csv:3:3", "label in row 2 is empty", "give every row a label")


def test_real_valued_label_under_classification() -> None:
    text = csv_fails(
        "a,y\n1,0\n2,0.5\n",
        "x.csv:3:3",
        "label `0.5` in row 2 is not a class index or name",
        "class labels are whole numbers from 0, or names; use a regression loss such as `mse` "
        "for real-valued targets",
    )
    assert caret(text) == ("2,0.5", 3, 3)


@pytest.mark.parametrize(
    "label, message",
    [("setosa", "is not a number"), ("nan", "is not a finite number")],
)
def test_bad_regression_label(label: str, message: str) -> None:
    csv_fails(
        f"a,y\n1,0.5\n2,{label}\n",
        "x.csv:3:3",
        f"label `{label}` in row 2 {message}",
        "a regression loss needs numbers; use `cross_entropy` for class names",
        task="regression",
    )


def test_csv_that_is_not_utf8() -> None:
    Path("x.csv").write_bytes(b"a,y\n\xff,1\n")
    fails(
        lambda: load('csv("x.csv")'),
        "x.csv:1:1",
        "cannot read `x.csv`: not UTF-8 text (byte 4)",
        "save the file as UTF-8",
        E_FILE,
    )


def test_rendered_csv_error_in_full() -> None:
    write("x.csv", "a,b,species\n1.0,2,setosa\n3, abc ,virginica\n")
    with pytest.raises(SpecError) as info:
        load('csv("x.csv", label = "species")')
    assert str(info.value).splitlines() == [
        "x.csv:3:4: error[E0702]: value `abc` in column `b` is not a number",
        "3 | 3, abc ,virginica",
        "  |    ^^^",
        "  note: spec.dnn:7:12: the data named here",
        f"  hint: {typed_hint('b', 'category')}",
    ]
    (d,) = info.value.diagnostics
    assert (d.span.line, d.span.col, d.span.end_col) == (3, 4, 7)


# ----------------------------------------------------------------------------- labels against the model


def test_csv_label_outside_the_classes_names_its_row() -> None:
    write("x.csv", "a,y\n1,0\n2,1\n3,3\n4,2\n")
    t = load('csv("x.csv", label = "y")')
    text = fails(
        lambda: fit(t, (1,), 3),
        "x.csv:4:3",
        "label `3` in row 3 is outside the 3 classes the model outputs",
        "`x.csv` has 4 classes: end the model with `dense(4)`",
    )
    assert caret(text) == ("3,3", 3, 1)
    assert f"  note: {SOURCE}: the data named here" in text


def test_label_row_is_found_after_a_split() -> None:
    write("x.csv", "a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)) + "99,5\n")
    parts = split(load('csv("x.csv", label = "y")'), (0.5, 0.5, 0.0), seed=3)
    part = next(p for p in parts.values() if 5 in p.y.tolist())
    fails(
        lambda: fit(part, (1,), 2),
        "x.csv:22:4",
        "label `5` in row 21 is outside the 2 classes the model outputs",
        "`x.csv` has 6 classes: end the model with `dense(6)`",
    )


def test_class_name_label_outside_the_classes() -> None:
    write("x.csv", "a,species\n1,setosa\n2,virginica\n3,versicolor\n")
    fails(
        lambda: fit(load('csv("x.csv", label = "species")'), (1,), 2),
        "x.csv:3:3",
        "label `virginica` (class 2) in row 2 is outside the 2 classes the model outputs",
        "`x.csv` has 3 classes: end the model with `dense(3)`",
    )


def test_one_output_takes_binary_labels() -> None:
    write("x.csv", "a,y\n1,0\n2,1\n")
    assert fit(load('csv("x.csv", label = "y")'), (1,), 1).y.tolist() == [0, 1]
    write("x.csv", "a,y\n1,0\n2,1\n3,2\n")
    fails(
        lambda: fit(load('csv("x.csv", label = "y")'), (1,), 1),
        "x.csv:4:3",
        "label `2` in row 3 is not 0 or 1, as a model with one output needs",
        "`x.csv` has 3 classes: end the model with `dense(3)` and train with `cross_entropy`",
    )


def test_negative_label() -> None:
    write("x.csv", "a,y\n1,0\n2,-1\n")
    fails(
        lambda: fit(load('csv("x.csv", label = "y")'), (1,), 3),
        "x.csv:3:3",
        "label `-1` in row 2 is outside the 3 classes the model outputs",
        "class labels run from 0 to 2",
    )


def test_builtin_label_outside_the_classes_points_at_the_source() -> None:
    fails(
        lambda: fit(builtin("iris"), (4,), 2),
        SOURCE,
        "label `virginica` (class 2) at example 100 is outside the 2 classes the model outputs",
        "`iris` has 3 classes: end the model with `dense(3)`",
    )


# ----------------------------------------------------------------------------- NPZ


def test_npz_round_trip() -> None:
    x = np.arange(24, dtype=np.float64).reshape(4, 3, 2)
    np.savez("d.npz", inputs=x, labels=np.array([2, 0, 1, 2]))
    t = load('npz("d.npz", x = "inputs", y = "labels")')
    assert np.array_equal(t.x, x.astype(np.float32)) and t.x.dtype == np.float32
    assert t.y.tolist() == [2, 0, 1, 2] and t.classes == 3 and t.class_names == ("0", "1", "2")


def test_npz_string_labels_and_one_hot_rows() -> None:
    np.savez("d.npz", x=np.zeros((3, 2)), y=np.array(["dog", "cat", "dog"]))
    t = load('npz("d.npz")')
    assert t.y.tolist() == [1, 0, 1] and t.class_names == ("cat", "dog")
    np.savez("d.npz", x=np.zeros((3, 2)), y=np.eye(3)[[2, 0, 1]])
    assert load('npz("d.npz")').y.tolist() == [2, 0, 1]


def test_npz_regression_targets() -> None:
    np.savez("d.npz", x=np.ones((5, 2)), y=np.arange(10.0).reshape(5, 2))
    t = load('npz("d.npz")', "regression")
    assert t.y.shape == (5, 2) and t.y.dtype == np.float32 and t.classes is None


def test_missing_npz() -> None:
    fails(
        lambda: load('npz("d.npz")'),
        SOURCE,
        "cannot read `d.npz`: No such file or directory",
        "the path is relative to the folder of the spec file",
        E_FILE,
    )


def test_missing_npz_array() -> None:
    np.savez("d.npz", inputs=np.zeros((2, 2)), y=np.zeros(2))
    fails(
        lambda: load('npz("d.npz")'),
        SOURCE,
        "`d.npz` has no array `x`",
        'arrays in it: `inputs`, `y`; write `npz("d.npz", x = "inputs")`',
    )
    fails(
        lambda: load('npz("d.npz", x = "inputs", y = "target")'),
        SOURCE,
        "`d.npz` has no array `target`",
        'arrays in it: `inputs`, `y`; write `npz("d.npz", y = "inputs")`',
    )


def test_nan_in_npz_names_example_and_feature() -> None:
    x = np.zeros((4, 3))
    x[2, 1] = np.nan
    np.savez("d.npz", x=x, y=np.zeros(4))
    text = fails(
        lambda: load('npz("d.npz")'),
        "d.npz:1:1",
        "array `x` in `d.npz` has NaN at example 2, feature 1",
        "fill in or drop the examples with missing values before training",
    )
    assert text.splitlines()[1] == f"  note: {SOURCE}: the data named here"  # no excerpt
    x = np.zeros((4, 2, 2))
    x[3, 1, 0] = np.inf
    np.savez("d.npz", x=x, y=np.zeros(4))
    fails(
        lambda: load('npz("d.npz")', "regression"),
        "d.npz:1:1",
        "array `x` in `d.npz` has an infinite value at example 3, position (1, 0)",
        "fill in or drop the examples with missing values before training",
    )


def test_npz_arrays_of_different_lengths() -> None:
    np.savez("d.npz", x=np.zeros((4, 2)), y=np.zeros(3))
    fails(
        lambda: load('npz("d.npz")'),
        "d.npz:1:1",
        "array `x` in `d.npz` has 4 examples but `y` has 3",
        "the first axis of both arrays indexes the examples",
    )


def test_npz_without_examples() -> None:
    np.savez("d.npz", x=np.zeros((0, 2)), y=np.zeros(0))
    fails(
        lambda: load('npz("d.npz")'),
        "d.npz:1:1",
        "`d.npz` holds no examples",
        "the first axis of both arrays indexes the examples",
    )


def test_npz_with_strings_for_inputs() -> None:
    np.savez("d.npz", x=np.array([["a", "b"]]), y=np.zeros(1))
    fails(
        lambda: load('npz("d.npz")'),
        "d.npz:1:1",
        "array `x` in `d.npz` holds `<U1` values, not numbers with one row per example",
        "save a numeric array whose first axis indexes the examples",
    )


def test_npz_real_valued_labels_under_classification() -> None:
    np.savez("d.npz", x=np.zeros((3, 2)), y=np.array([0.0, 0.5, 1.0]))
    fails(
        lambda: load('npz("d.npz")'),
        "d.npz:1:1",
        "array `y` in `d.npz` holds 0.5 at example 1, not a class index",
        "class labels are whole numbers from 0, or names",
    )


def test_npz_label_outside_the_classes() -> None:
    np.savez("d.npz", x=np.zeros((4, 2)), y=np.array([0, 1, 0, 5]))
    fails(
        lambda: fit(load('npz("d.npz")'), (2,), 2),
        "d.npz:1:1",
        "label `5` at example 3 is outside the 2 classes the model outputs",
        "`d.npz` has 6 classes: end the model with `dense(6)`",
    )


def test_npz_with_python_objects() -> None:
    np.savez("d.npz", x=np.array([[1, None]], dtype=object), y=np.zeros(1))
    fails(
        lambda: load('npz("d.npz")'),
        "d.npz:1:1",
        "cannot read array `x` in `d.npz`: Object arrays cannot be loaded when allow_pickle=False",
        "save plain numeric arrays with `np.savez`",
        E_FILE,
    )


@pytest.mark.parametrize("content", [b"", b"not an archive at all", b"PK\x03\x04 broken zip"])
def test_file_that_is_not_an_npz_archive(content: bytes) -> None:
    Path("d.npz").write_bytes(content)
    fails(
        lambda: load('npz("d.npz")'),
        "d.npz:1:1",
        "cannot read `d.npz`: not a NumPy .npz archive",
        "save the arrays with `np.savez(path, x = inputs, y = targets)`",
        E_FILE,
    )


# ----------------------------------------------------------------------------- images


def test_image_folder_round_trip() -> None:
    image("imgs/dog/1.png", value=255)
    image("imgs/cat/1.png", value=51)
    image("imgs/cat/2.png", value=0)
    write("imgs/cat/notes.txt", "not an image, ignored")
    t = load('images("imgs")')
    assert t.x.shape == (3, 4, 5, 1) and t.x.dtype == np.float32
    assert t.x[:, 0, 0, 0].tolist() == np.array([0.2, 0.0, 1.0], np.float32).tolist()
    assert t.y.tolist() == [0, 0, 1] and t.class_names == ("cat", "dog") and t.classes == 2


def test_images_resized_and_colour_wins() -> None:
    image("imgs/a/1.png", (6, 6), "RGB", value=255)
    image("imgs/b/1.png", (3, 9), "L", value=255)
    t = load('images("imgs", size = [4, 2])')
    assert t.x.shape == (2, 4, 2, 3)
    assert t.x[0, 0, 0].tolist() == [1.0, 0.0, 1.0] and t.x[1, 0, 0].tolist() == [1.0, 1.0, 1.0]


def test_missing_image_folder() -> None:
    fails(
        lambda: load('images("imgs")'),
        SOURCE,
        "cannot read `imgs`: no such folder",
        "the path is relative to the folder of the spec file",
        E_FILE,
    )


def test_image_folder_without_class_folders() -> None:
    image("imgs/1.png")
    fails(
        lambda: load('images("imgs")'),
        SOURCE,
        "`imgs` has no class folders",
        "put the images of each class in a subfolder named after it: `imgs/cat/1.png`",
    )


def test_empty_class_folder() -> None:
    image("imgs/cat/1.png")
    Path("imgs/dog").mkdir()
    fails(
        lambda: load('images("imgs")'),
        SOURCE,
        "class folder `imgs/dog` holds no images",
        "add .png or .jpg images to it, or remove it",
    )


def test_unreadable_image() -> None:
    image("imgs/cat/1.png")
    write("imgs/cat/2.png", "this is text")
    text = fails(
        lambda: load('images("imgs")'),
        "imgs/cat/2.png:1:1",
        "cannot read image `imgs/cat/2.png`: not an image Pillow can read",
        "replace or remove the file",
        E_FILE,
    )
    assert f"  note: {SOURCE}: the data named here" in text


def test_images_of_different_sizes() -> None:
    for name in ("a/1", "a/2", "b/1"):
        image(f"imgs/{name}.png", (4, 5))
    image("imgs/b/2.png", (5, 4))
    fails(
        lambda: load('images("imgs")'),
        SOURCE,
        "image `imgs/b/2.png` is 5x4 pixels but the others are 4x5",
        'give all images one size, or resize them: `images("imgs", size = [4, 5])`',
    )


# ----------------------------------------------------------------------------- split


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 150, 1797])
@pytest.mark.parametrize(
    "fractions", [(0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (0.5, 0.5, 0.0), (1.0, 0.0, 0.0), (1 / 3,) * 3]
)
def test_split_sizes(n: int, fractions: tuple[float, float, float]) -> None:
    t = Table(np.zeros((n, 1), np.float32), np.zeros(n, np.int32), "classification", 1, ("0",), "t")
    sizes = [len(p) for p in split(t, fractions, seed=0).values()]
    assert sum(sizes) == n
    for size, f in zip(sizes, fractions, strict=True):
        assert abs(size - f * n) < 1 and (f > 0 or size == 0)


def test_split_is_a_seeded_partition() -> None:
    t = builtin("iris")
    parts = split(t, (0.8, 0.1, 0.1), seed=7)
    assert list(parts) == ["train", "val", "test"] and [len(p) for p in parts.values()] == [
        120,
        15,
        15,
    ]
    seen = np.concatenate([[p.position(i) for i in range(len(p))] for p in parts.values()])
    assert sorted(seen.tolist()) == list(range(150))  # disjoint, and together the whole
    for p in parts.values():
        idx = [p.position(i) for i in range(len(p))]
        assert np.array_equal(p.x, t.x[idx]) and np.array_equal(p.y, t.y[idx])
        assert p.class_names == t.class_names and p.origin == t.origin
    again, other = split(t, (0.8, 0.1, 0.1), seed=7), split(t, (0.8, 0.1, 0.1), seed=8)
    assert all(np.array_equal(parts[k].x, again[k].x) for k in parts)
    assert not np.array_equal(parts["train"].x, other["train"].x)
    assert len(split(t, (0.8, 0.2, 0.0), seed=-1)["test"]) == 0


# ----------------------------------------------------------------------------- fit to the model


def test_fit_reshapes_examples_to_the_input() -> None:
    t = builtin("digits")
    fitted = fit(t, (8, 8, 1), 10)
    assert fitted.x.shape == (1797, 8, 8, 1) and np.array_equal(fitted.x.reshape(1797, 64), t.x)
    assert fitted.y is t.y
    assert fit(t, (64,), 10).x is t.x


def test_fit_gives_regression_targets_one_column_per_output() -> None:
    t = builtin("diabetes")
    assert fit(t, (10,), 1).y.shape == (442, 1)
    fails(
        lambda: fit(t, (10,), 3),
        INPUT,
        "`diabetes` has 1 target value per example but the model outputs 3",
        "end the model with `dense(1)`",
    )


def test_examples_of_the_wrong_shape() -> None:
    text = fails(
        lambda: fit(builtin("digits"), (10,), 10),
        INPUT,
        "`digits` examples have shape (64,) (64 values) but input `x` has shape (10,) (10 values)",
        "declare `input x: f32[64]`, or another shape of 64 values",
    )
    assert caret(text) == ("  input x: f32[10]", 3, 16)
    assert f"  note: {SOURCE}: the data named here" in text
    write("x.csv", "a,b,c,y\n1,2,3,0\n")
    fails(
        lambda: fit(load('csv("x.csv", label = "y")'), (2,), 3),
        INPUT,
        "`x.csv` examples have shape (3,) (3 values) but input `x` has shape (2,) (2 values)",
        "declare `input x: f32[3]`, or another shape of 3 values",
    )


# ----------------------------------------------------------------------------- predict inputs


def test_read_inputs_from_npy_and_csv() -> None:
    np.save("x.npy", np.arange(12.0).reshape(2, 6))
    x = read_inputs(Path("x.npy"), (2, 3, 1))
    assert x.shape == (2, 2, 3, 1) and x.dtype == np.float32
    np.save("one.npy", np.ones(4))
    assert read_inputs(Path("one.npy"), (4,)).shape == (1, 4)
    write("x.csv", "a,b\n1,2\n3,4\n")
    assert read_inputs(Path("x.csv"), (2,)).tolist() == [[1, 2], [3, 4]]


def test_bad_predict_inputs() -> None:
    write("x.txt", "1 2")
    fails(
        lambda: read_inputs(Path("x.txt"), (2,)),
        "x.txt:1:1",
        "cannot read `x.txt`: inputs must be a .npy or .csv file",
        "save the examples with `np.save`, or as a CSV file with a header row",
        E_FILE,
    )
    fails(
        lambda: read_inputs(Path("no.npy"), (2,)),
        "no.npy:1:1",
        "cannot read `no.npy`: No such file or directory",
        None,
        E_FILE,
    )
    np.save("x.npy", np.ones((3, 5)))
    fails(
        lambda: read_inputs(Path("x.npy"), (2,)),
        "x.npy:1:1",
        "`x.npy` holds examples of shape (5,) but the model takes (2,)",
        "give 2 values per example, one example per row",
    )
    np.save("x.npy", np.array([[1.0, math.nan]]))
    fails(
        lambda: read_inputs(Path("x.npy"), (2,)),
        "x.npy:1:1",
        "the array in `x.npy` has NaN at example 0, feature 1",
        "fill in or drop the examples with missing values before training",
    )
    write("x.csv", "a,b\n1,2\n3,?\n")
    text = fails(
        lambda: read_inputs(Path("x.csv"), (2,)),
        "x.csv:3:3",
        "value `?` in column `b` is not a number",
        "inputs must be numbers: fill in the value, or drop the row or the column",
    )
    assert caret(text) == ("3,?", 3, 1) and "note:" not in text


def test_digits_read_without_sklearn_equal_load_digits() -> None:
    from dnn.runtime.data.builtin import _builtin_arrays, _digits_file
    from sklearn.datasets import load_digits

    assert _digits_file() is not None
    x, y, names = _builtin_arrays("digits")
    ref = load_digits()
    np.testing.assert_array_equal(x, ref.data)
    np.testing.assert_array_equal(y, ref.target)
    assert names == tuple(str(k) for k in range(10))
