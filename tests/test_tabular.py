"""Typed table columns (runtime/tabular.py): types, vocabularies, missing cells and unseen values
against hand-worked examples; the errors they raise; a run trained on a table of strings that
`dnn eval`, `dnn predict` (counting unseen values) and `dnn export` read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dnn.compiler.diagnostics import SpecError
from dnn.runtime import pipeline, tabular
from dnn.runtime.cli import main

import dnn

# A train table and a test table with what train never saw: `Atlantis`, `unknown`, `zebra`.
TRAIN = """island,size,sex,notes,id,y
Biscoe,1.0,male,a big bird,1,0
Dream,NA,female,a small bird,2,1
Biscoe,3.0,,big big bird,3,0
Torgersen,6.0,male,small,4,1
NA,2.0,female,a bird,5,0
"""
TEST = """island,size,sex,notes,id,y
Atlantis,5.0,male,a zebra bird,6,1
Dream,,NA,,7,0
"""


def spec(model: str, columns: str = "", extra: str = "") -> str:
    written = f"  columns = {{ {columns} }}\n" if columns else ""
    return f"""dnn 1
model m {{
{model}
}}
data {{
  source = csv("train.csv", label = "y")
  test = csv("test.csv", label = "y")
  split = {{ train: 1.0 }}
  normalize = standardize
{written}{extra}}}
train {{
  epochs = 1
  batch_size = 4
  seed = 0
}}
"""


ONE_HOT = "  input x: f32[12]\n  dense(2)"  # island 5 + size 2 + sex 2 + id 1 + ... (below)
TYPED = "island: category, notes: text(length = 4), id: ignore"


@pytest.fixture()
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.csv").write_text(TRAIN)
    (tmp_path / "test.csv").write_text(TEST)
    return tmp_path


def prepared(folder: Path, text: str) -> pipeline.Prepared:
    (folder / "spec.dnn").write_text(text)
    return pipeline.prepare(dnn.load("spec.dnn"))


def test_the_mapping_equals_a_hand_worked_example(folder: Path) -> None:
    model = (
        "  input island: i32[1]\n  input notes: i32[4]\n  input x: f32[4]\n"
        "  a = embedding(5, 2)(island) -> flatten\n  b = embedding(8, 2)(notes) -> flatten\n"
        "  output dense(2)(concat(a, b, x))"
    )
    p = prepared(folder, spec(model, TYPED))
    cols = {c.name: c for c in p.schema.columns}
    # category: Biscoe twice ranks first, then Dream and Torgersen in sorted order; ids from 2
    assert cols["island"].vocab == ("Biscoe", "Dream", "Torgersen")
    # text: bird 4, big 3 (one cell says it twice), a 3 -> `a` before `big` in sorted order
    assert cols["notes"].vocab == ("bird", "a", "big", "small")
    assert cols["size"].type == "number" and cols["size"].indicator
    assert cols["size"].fill == pytest.approx(3.0)  # mean of 1, 3, 6, 2
    assert cols["sex"].type == "binary" and cols["sex"].vocab == ("female", "male")
    assert cols["id"].type == "ignore"
    sd = np.sqrt(14 / 5)  # standardize over 1, 3 (the fill), 3, 6, 2: mean 3, population std
    size = (np.array([1.0, 3.0, 3.0, 6.0, 2.0]) - 3.0) / sd
    want_train = np.array(
        [
            # island | notes ids (a=3 big=4 bird=2 small=5) | size, missing | sex, missing
            [2, 3, 4, 2, 0, size[0], 0, 1, 0],
            [3, 3, 5, 2, 0, size[1], 1, 0, 0],
            [2, 4, 4, 2, 0, size[2], 0, 0, 1],
            [4, 5, 0, 0, 0, size[3], 0, 1, 0],
            [1, 3, 2, 0, 0, size[4], 0, 0, 0],
        ]
    )
    train = p.splits["train"]  # the split's rows in its shuffled order
    np.testing.assert_allclose(train.x, want_train[train.index], rtol=1e-6, atol=1e-6)
    want_test = np.array(
        [
            [0, 3, 1, 2, 0, (5.0 - 3.0) / sd, 0, 1, 0],  # Atlantis: oov 0; zebra: unknown 1
            [3, 0, 0, 0, 0, 0.0, 1, 0, 1],  # missing size: the fill, scaled to 0
        ]
    )
    np.testing.assert_allclose(p.splits["test"].x, want_test, rtol=1e-6, atol=1e-6)
    assert p.unseen == {"test": {"island": (1, ("Atlantis",)), "notes": (1, ("a zebra bird",))}}


def test_a_real_input_reads_categories_one_hot(folder: Path) -> None:
    p = prepared(folder, spec("  input x: f32[9]\n  dense(2)", "id: ignore, notes: ignore"))
    x = p.splits["train"].x[np.argsort(p.splits["train"].index)]  # in file order
    first = x[0]  # Biscoe: one-hot over oov, missing, Biscoe, Dream, Torgersen
    np.testing.assert_array_equal(first[:5], [0, 0, 1, 0, 0])
    assert first[7:].tolist() == [1, 0]  # sex male, not missing
    np.testing.assert_array_equal(p.splits["test"].x[0][:5], [1, 0, 0, 0, 0])  # Atlantis: oov
    np.testing.assert_array_equal(x[4][:5], [0, 1, 0, 0, 0])  # NA: missing


def test_types_are_inferred_from_the_train_cells() -> None:
    def infer(*values: str) -> str:
        facts = tabular.Facts("c", lambda *a: None)  # type: ignore[arg-type, return-value]
        facts.observe(values, range(len(values)))
        return tabular.infer(facts)

    assert infer("1", "2.5", "NA", "") == "number"
    assert infer("1", "inf") == "number"  # refused at the `inf` cell when encoded
    assert infer("yes", "no", "NA") == "binary"
    assert infer("a", "b", "c") == "category"
    assert infer("one two three", "four five six", "x") == "text"
    assert infer("NA", "") == "ignore"


def test_the_schema_survives_its_json(folder: Path) -> None:
    p = prepared(folder, spec("  input x: f32[9]\n  dense(2)", "id: ignore, notes: ignore"))
    assert p.schema is not None
    assert tabular.Schema.from_json(p.schema.to_json()) == p.schema


def refused(folder: Path, text: str) -> str:
    (folder / "spec.dnn").write_text(text)
    with pytest.raises(SpecError) as info:
        pipeline.prepare(dnn.load("spec.dnn"))
    return str(info.value)


def test_a_column_the_table_lacks(folder: Path) -> None:
    text = refused(folder, spec("  input x: f32[9]\n  dense(2)", "islnd: category"))
    assert text.splitlines()[:3] == [
        "spec.dnn:11:15: error[E0705]: `train.csv` has no column `islnd` to type",
        "11 |   columns = { islnd: category }",
        "   |               ^^^^^^^^^^^^^^^",
    ]
    assert "hint: did you mean `island`?" in text


def test_a_number_column_with_a_word_points_at_the_cell(folder: Path) -> None:
    text = refused(folder, spec("  input x: f32[9]\n  dense(2)", "island: number"))
    first = text.splitlines()[0]
    assert (
        first
        == "train.csv:2:1: error[E0705]: value `Biscoe` in number column `island` is not a number"
    )
    assert "hint: fill in the value, or type the column: `columns = { island: category }`" in text


def test_a_binary_column_with_three_values(folder: Path) -> None:
    text = refused(folder, spec("  input x: f32[9]\n  dense(2)", "island: binary"))
    assert text.splitlines()[0] == (
        "train.csv:5:1: error[E0705]: binary column `island` has a third value `Torgersen` "
        "(besides `Biscoe` and `Dream`)"
    )


def test_an_input_of_the_wrong_width(folder: Path) -> None:
    text = refused(
        folder,
        spec(
            "  input island: f32[3]\n  input x: f32[4]\n  output dense(2)(concat(island, x))",
            TYPED.replace(", notes: text(length = 4)", ", notes: ignore"),
        ),
    )
    assert text.splitlines()[0] == (
        "spec.dnn:3:3: error[E0706]: input `island` takes 3 values but column `island` "
        "(category, 3 values + oov + missing (one-hot of 5)) gives 5"
    )
    assert "hint: declare `input island: f32[5]`" in text


def test_the_remaining_columns_must_fill_the_other_input(folder: Path) -> None:
    text = refused(folder, spec("  input x: f32[7]\n  dense(2)", "id: ignore, notes: ignore"))
    assert (
        "error[E0706]: input `x` takes 7 values but the table's columns give 9 "
        "(`island` 5, `size` 2, `sex` 2)" in text
    )
    assert "hint: declare `input x: f32[9]`" in text


def test_a_text_column_needs_an_integer_input_of_its_own() -> None:
    with pytest.raises(SpecError) as info:
        dnn.loads(spec("  input x: f32[9]\n  dense(2)", "notes: text(length = 4)"), "spec.dnn")
    text = str(info.value)
    assert (
        "error[E0706]: text column `notes` gives 4 word ids per example, but the model has no "
        "integer input `notes` to take them" in text
    )
    assert "hint: declare `input notes: i32[4]`" in text


def test_columns_need_a_csv_source() -> None:
    text = spec("  input x: f32[4]\n  dense(3)", "a: category").replace(
        'csv("train.csv", label = "y")', 'builtin("iris")'
    )
    with pytest.raises(SpecError) as info:
        dnn.loads(text.replace('  test = csv("test.csv", label = "y")\n', ""), "spec.dnn")
    assert (
        "error[E0705]: `columns` types a CSV table's columns, but the source is `builtin`"
        in str(info.value)
    )


def test_a_whole_feature_normalizer_is_refused_on_a_typed_table(folder: Path) -> None:
    text = spec("  input x: f32[9]\n  dense(2)", "id: ignore, notes: ignore")
    text = refused(folder, text.replace("normalize = standardize", "normalize = pca(n = 2)"))
    assert (
        "error[E0705]: `pca(n = 2)` mixes every feature, but `train.csv` is a typed table" in text
    )


# ------------------------------------------------------------------ a run end to end

EMBED = (
    "  input island: i32[1]\n  input notes: i32[4]\n  input x: f32[4]\n"
    "  a = embedding(5, 2)(island) -> flatten\n  b = embedding(8, 2)(notes) -> flatten\n"
    "  output dense(2)(concat(a, b, x))"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained for one epoch on the string table (shared by the tests below)."""
    folder = tmp_path_factory.mktemp("tabular")
    (folder / "train.csv").write_text(TRAIN)
    (folder / "test.csv").write_text(TEST)
    (folder / "spec.dnn").write_text(spec(EMBED, TYPED))
    assert main(["train", str(folder / "spec.dnn"), "--out", str(folder / "run")]) == 0
    return folder


def test_the_run_keeps_its_columns(run: Path) -> None:
    saved = json.loads((run / "run" / "columns.json").read_text())
    assert [c["name"] for c in saved["columns"]] == ["island", "size", "sex", "notes", "id"]
    assert saved["columns"][0]["vocab"] == ["Biscoe", "Dream", "Torgersen"]
    assert saved["unseen"] == {
        "test": {
            "island": {"count": 1, "values": ["Atlantis"]},
            "notes": {"count": 1, "values": ["a zebra bird"]},
        }
    }


def test_predict_counts_the_unseen_values(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run / "new.csv").write_text(
        "island,size,sex,notes,id\nAtlantis,2,male,bird,9\nMu,1,female,x,8\nDream,1,x,bird,7\n"
    )
    args = ["predict", str(run / "spec.dnn"), "--run", str(run / "run")]
    assert main([*args, "--input", str(run / "new.csv"), "--output", str(run / "p.npy")]) == 0
    err = capsys.readouterr().err
    assert (
        "4 cells unseen in training took the out-of-vocabulary bucket: island: 2 (`Atlantis`, "
        "`Mu`); notes: 1 (`x`); sex: 1 (`x`)" in err
    )
    assert np.load(run / "p.npy").shape == (3,)


def test_predict_equals_eval_on_the_test_table(run: Path) -> None:
    """`dnn predict` on the test CSV gives the probabilities whose cross-entropy `dnn eval`
    reports: the same columns, vocabularies and statistics on both paths."""
    from dnn.runtime.infer import evaluate, predict

    program = dnn.load(str(run / "spec.dnn"))
    probs = predict(program, run / "run", run / "test.csv", run / "p.npy", probabilities=True)
    probs = np.load(run / "p.npy").astype(np.float64)
    y = np.array([1, 0])
    loss = -np.mean(np.log(probs[np.arange(2), y]))
    assert evaluate(program, run / "run", "test")["loss"] == pytest.approx(loss, rel=1e-4)


def test_export_writes_the_columns_beside_the_program(run: Path) -> None:
    assert (
        main(["export", str(run / "run"), "--format", "stablehlo", "-o", str(run / "m.hlo")]) == 0
    )
    doc = json.loads((run / "m.hlo.columns.json").read_text())
    assert doc["numbers"] == ["size"] and set(doc["statistics"]) == {"mean", "std"}
    assert [s["input"] for s in doc["inputs"]] == ["island", "notes", "x"]


def test_an_untyped_table_of_strings_is_typed_by_inference(folder: Path) -> None:
    """No `columns`: the string cells make the CSV a typed table, `notes` (2.4 words a cell)
    is inferred text, and text needs an integer input of its own."""
    text = refused(folder, spec("  input x: f32[10]\n  dense(2)"))
    assert text.splitlines()[0] == (
        "spec.dnn:3:3: error[E0706]: text column `notes` needs an integer input of its own"
    )
    assert "hint: add `input notes: i32[16]`" in text


# ------------------------------------------------------------------ dnn data


def test_dnn_data_describes_a_typed_table(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "spec.dnn").write_text(spec(EMBED, TYPED))
    assert main(["data", "spec.dnn"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "splits: train 5, val 0, test 2"
    assert out[3] == "examples: raw [9], model input float32 (island [1], notes [4], x [4])"
    assert out[5:10] == [
        "  island: category, 3 values + oov + missing (index) (given) -> island [1]",
        "  size: number, fill 3 + is-missing (inferred) -> x [2]",
        "  sex: binary, 1 = `male`, 0 = `female` + is-missing (inferred) -> x [2]",
        "  notes: text, 4 words, 4 ids (given) -> notes [4]",
        "  id: ignored (given) (not read)",
    ]
    assert (
        "unseen in test (out-of-vocabulary bucket): island: 1 (Atlantis); notes: 1 (a zebra bird)"
        in out
    )
    assert "classes in train: 0 3 (60%), 1 2 (40%)" in out  # y = 0, 1, 0, 1, 0
    sd = np.sqrt(14 / 5)
    assert f"  std [1]: min {sd:.4g}, mean {sd:.4g}, max {sd:.4g}" in out
    rates = out[-1].replace(",", "").split()
    assert rates[0] == "throughput:" and float(rates[2]) > 0 and float(rates[8]) > 0


def test_dnn_data_draws_augmented_images(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    for k, name in enumerate(("cat", "dog")):
        (folder / "img" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (6, 6), 40 * (k + i)).save(folder / "img" / name / f"{i}.png")
    text = spec("  input x: f32[6, 6, 1]\n  flatten\n  dense(2)").replace(
        'csv("train.csv", label = "y")', 'images("img")'
    )
    text = text.replace('  test = csv("test.csv", label = "y")\n', "")
    text = text.replace("normalize = standardize", "augment = [random_flip, noise(0.1)]")
    (folder / "spec.dnn").write_text(text)
    assert main(["data", "spec.dnn", "-o", "grid.png"]) == 0
    assert "grid.png: 6 augmented training images" in capsys.readouterr().err
    with Image.open(folder / "grid.png") as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_a_numeric_csv_with_missing_cells_is_a_typed_table(folder: Path) -> None:
    """`nan` and empty cells were errors while every CSV cell had to be a number; they are
    missing values now, filled by the stated rule (the mean, and an is-missing feature)."""
    (folder / "train.csv").write_text("a,b,y\n1,2,0\n3,nan,1\n5,,0\n")
    (folder / "test.csv").write_text("a,b,y\n1,inf,1\n")
    text = spec("  input x: f32[3]\n  dense(2)").replace("normalize = standardize", "")
    p = prepared(folder, text.replace('  test = csv("test.csv", label = "y")\n', ""))
    x = p.splits["train"].x[np.argsort(p.splits["train"].index)]
    np.testing.assert_array_equal(x, [[1, 2, 0], [3, 2, 1], [5, 2, 1]])
    refused_text = refused(folder, text)
    assert refused_text.splitlines()[0] == (
        "test.csv:2:3: error[E0705]: value `inf` in number column `b` is not a finite number"
    )


def test_an_embedding_smaller_than_the_vocabulary(folder: Path) -> None:
    """The hint sizes the table from the input's ids (5: three values, oov, missing), not
    from the largest value of the whole row."""
    text = refused(folder, spec(EMBED.replace("embedding(5, 2)", "embedding(3, 2)"), TYPED))
    assert "but `embedding` here has rows for ids 0..2" in text.splitlines()[0]
    assert "hint: give it a row per id: `embedding(5, ...)`" in text
