"""The contract every word keeps: what `dnn check` accepts trains, evaluates and predicts.

Generated from the registries (DESIGN §2.9 and §7, issue 14): for every entry of every kind
that `dnn train` reads, a minimal spec is built from the entry's `example` (or its bare name),
on tiny generated data of the kind the entry needs. When check accepts it, the word must
train (the evaluated loss changes with the weights: a loss that is constant in them is a
silent failure), evaluate and predict finite values, and the lowered model must hold the
parameter count check computed. The combinations an entry declares invalid (a loss's refused
output width, a metric of another task, an image augmentation on vectors, an integer-input
layer fed reals, a rate-dividing optimizer under a warm-up, PCA keeping more components than
there are features) must be refused by check. Adding a word that does not train fails here.

The runs go through the engine the `dnn train` loop drives (runtime/contract.py `exercise`),
without the run folder, which tests/test_train.py covers once for all words.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dnn.compiler.diagnostics import InternalError
from dnn.compiler.driver import value
from dnn.compiler.registry import REGISTRIES
from dnn.compiler.registry.core import Entry, Registry, implements, provides
from dnn.compiler.registry.data import BUILTIN_DATA
from dnn.compiler.rules import example_shape
from dnn.runtime import augment, metrics, pipeline, preprocess, tabular
from dnn.runtime.contract import exercise
from dnn.runtime.data import sources
from dnn.runtime.data.table import _Where
from PIL import Image

import dnn

# The kinds `dnn train` reads; sweep words (searches, distributions, objectives) and sections
# are checked by their own tests.
TRAINED = (
    "layer",
    "activation",
    "initializer",
    "regularizer",
    "constraint",
    "loss",
    "metric",
    "optimizer",
    "schedule",
    "clipper",
    "pretrainer",
    "dataset",
    "normalizer",
    "augmentation",
)
N = 24  # examples: 12 train (3 steps of 4), 6 val, 6 test
CLASSES = 3
FEATURES = 6
IMAGE = (6, 6, 1)


def use(entry: Entry) -> str:
    """How a spec writes the word: its example, or its bare name."""
    return entry.example or entry.name


def entries(*kinds: str) -> Iterator[tuple[str, Entry]]:
    for kind in kinds:
        for entry in REGISTRIES[kind]:
            yield kind, entry


# ------------------------------------------------------------------ minimal specs


@dataclass(frozen=True)
class Case:
    """A minimal spec around one word, and the data it reads."""

    model: str  # the model body, without the head
    input: str  # `f32[6]`
    task: str = "multiclass"  # the targets to generate
    units: int = CLASSES
    loss: str = "cross_entropy"
    data: str = 'npz("data.npz")'
    data_extra: str = ""
    train_extra: str = ""
    optimizer: str = "adam(lr = 0.01)"

    def text(self) -> str:
        head = f"  flatten\n  dense({self.units})"
        return f"""dnn 1
model m {{
  input x: {self.input}
{self.model}
{head}
}}
data {{
  source = {self.data}
  split = {{ train: 0.5, val: 0.25, test: 0.25 }}
{self.data_extra}
}}
train {{
  loss = {self.loss}
  epochs = 2
  batch_size = 4
  optimizer = {self.optimizer}
  seed = 3
{self.train_extra}
}}
"""


def dims(t: str) -> tuple[str, tuple[int, ...]]:
    dtype, _, rest = t.partition("[")
    return dtype, tuple(int(d) for d in rest.rstrip("]").split(","))


def write_data(case: Case, folder: Path) -> None:
    """The examples a case reads: ids for integer inputs, targets of the case's task."""
    rng = np.random.default_rng(0)
    dtype, shape = dims(case.input)
    raw = (FEATURES,) if "normalize" in case.data_extra else shape
    x = rng.integers(0, 5, (N, *raw)) if dtype == "i32" else rng.normal(size=(N, *raw))
    if case.task == "regression":
        y = rng.normal(size=(N, case.units))
    elif case.task == "binary":
        y = np.arange(N) % 2
    else:
        y = np.arange(N) % CLASSES
    np.savez(folder / "data.npz", x=x, y=y)
    cols = [f"f{i}" for i in range(FEATURES)]
    table = rng.normal(size=(N, FEATURES))
    lines = [",".join([*cols, "label"])]
    lines += [
        ",".join([*(f"{v:.4f}" for v in row), str(i % CLASSES)]) for i, row in enumerate(table)
    ]
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    _stream_data(case, folder, x, y, dict(zip(cols, table.T, strict=True)))
    for k in range(CLASSES):
        sub = folder / "images" / f"class{k}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(N // CLASSES):
            pixels = rng.integers(0, 256, IMAGE[:2]).astype(np.uint8)
            Image.fromarray(pixels, "L").save(sub / f"{i}.png")


def _stream_data(case: Case, folder: Path, x: Any, y: Any, columns: dict[str, Any]) -> None:
    """The files of the `npy`, `parquet` and `shards` words, only for a case that reads them."""
    if "npy(" in case.data:
        np.save(folder / "x.npy", x)
        np.save(folder / "y.npy", y)
    if "parquet(" in case.data:
        import pyarrow as pa
        import pyarrow.parquet as pq

        labels = np.arange(N) % CLASSES
        pq.write_table(pa.table({**columns, "label": labels}), folder / "data.parquet")
    if "shards(" in case.data:
        from dnn.compiler.diagnostics import Span
        from dnn.runtime.data import sources

        span = Span("spec.dnn", 1, 1, 1, 1)
        task = "regression" if case.task == "regression" else "classification"
        ref, _ = value('npz("data.npz")', "dataset")
        where = _Where(span, {}, span)
        examples = sources.open_examples(ref, task, folder, where, "fail")
        sources.write_shards(examples, folder / "shards")


def layer_cases(entry: Entry) -> Iterator[Case]:
    """Inputs a layer may take, in order: the first one check accepts is its case. A word of
    several inputs is applied to `(x, x)`, then, if it also takes one (`sequence_pool`, whose
    second input is a mask), chained."""
    word = use(entry)
    calls = [f"{word}(x, x)"] if entry.variadic_inputs else [word]
    if isinstance(entry.arity, tuple) and entry.arity[0] == 1:
        calls.append(word)
    for call in calls:
        if entry.int_input:
            yield Case(f"  {call}", "i32[6]")
            continue
        for shape in ("f32[6]", "f32[6, 4]", "f32[6, 6, 2]", "f32[4, 4, 4, 2]"):
            yield Case(f"  {call}", shape)


def cases(kind: str, entry: Entry) -> list[Case]:
    """The minimal specs of one word (a loss gets one per valid output width)."""
    word, dense = use(entry), "  dense(8)"
    if kind == "layer":
        return [first_accepted(layer_cases(entry), entry)]
    if kind == "activation":
        return [Case(f"{dense}\n  {word}", "f32[6]")]
    if kind in ("initializer", "regularizer", "constraint"):
        field = {"initializer": "init"}.get(kind, kind)
        return [Case(f"  dense(8, {field} = {word})", "f32[6]")]
    if kind == "loss":
        assert entry.task is not None
        return [
            Case(dense, "f32[6]", task, units, word)
            for units in (1, CLASSES)
            if (task := entry.task.of(units)) is not None
        ]
    if kind == "metric":
        real = entry.needs.fits("regression")
        loss, units, task = ("mse", 1, "regression") if real else ("cross_entropy", 3, "multiclass")
        return [Case(dense, "f32[6]", task, units, loss, train_extra=f"  metrics = [{word}]")]
    if kind == "optimizer":
        return [Case(dense, "f32[6]", optimizer=word)]
    if kind in ("schedule", "clipper"):
        field = {"clipper": "clip"}.get(kind, kind)
        return [Case(dense, "f32[6]", train_extra=f"  {field} = {word}")]
    if kind == "pretrainer":  # on every pretrainable layer, fed [0, 1] as it needs
        layers = " -> ".join(use(e) for e in REGISTRIES["layer"] if "pretrainable" in e.traits)
        return [
            Case(
                f"  {layers}",
                f"f32[{FEATURES}]",
                data_extra="  normalize = minmax",
                train_extra=f"  pretrain = {word}",
            )
        ]
    if kind == "dataset":
        return [dataset_case(entry)]
    if kind == "normalizer":
        ref, _ = value(word, "normalizer")
        shape = example_shape(ref, (FEATURES,))
        return [Case(dense, f"f32{list(shape)}", data_extra=f"  normalize = {word}")]
    if kind == "augmentation":
        return [
            Case(
                "  conv2d(2, kernel = 3)",
                f"f32{list(IMAGE)}",
                data_extra=f"  augment = [{word}]",
            )
        ]
    raise AssertionError(f"no minimal spec for kind {kind}")


def dataset_case(entry: Entry) -> Case:
    word, dense = use(entry), "  dense(8)"
    if entry.name == "builtin":
        meta = BUILTIN_DATA["iris"]
        return Case(dense, f"f32{list(meta['shape'])}", data=word)
    if entry.name in ("csv", "parquet"):
        return Case(dense, f"f32[{FEATURES}]", data=word)
    if entry.name == "images":
        return Case("  conv2d(2, kernel = 3)", f"f32[{IMAGE[0]}, {IMAGE[1]}, 1]", data=word)
    return Case(dense, "f32[6]", data=word)


def first_accepted(candidates: Iterator[Case], entry: Entry) -> Case:
    for case in candidates:
        try:
            dnn.loads(case.text(), "spec.dnn")
            return case
        except dnn.SpecError:
            continue
    raise AssertionError(f"no minimal spec of `{use(entry)}` passes `dnn check`")


def trained_ids() -> list[tuple[str, str, int]]:
    out = []
    for kind, entry in entries(*TRAINED):
        n = (
            len([u for u in (1, CLASSES) if entry.task and entry.task.of(u)])
            if kind == "loss"
            else 1
        )
        out += [(kind, entry.name, i) for i in range(n)]
    return out


# ------------------------------------------------------------------ the contract


@pytest.mark.parametrize(
    ("kind", "name", "i"), trained_ids(), ids=lambda v: str(v) if not isinstance(v, int) else ""
)
def test_a_checked_word_trains_evaluates_and_predicts(
    kind: str, name: str, i: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    case = cases(kind, REGISTRIES[kind].lookup(name))[i]
    write_data(case, tmp_path)
    (tmp_path / "spec.dnn").write_text(case.text())
    done = exercise(dnn.load(str(tmp_path / "spec.dnn")))
    assert done.problems() == [], done


# Train-section fields that change the compiled step, each with a minimal use: the section
# entry's fields are no registry words, so they are listed here.
TRAIN_FIELDS = {
    # a weight file (written by the test from the spec's own layers, `fc` for `dense`): mapped
    # by `init_map` and by name, the head left fresh by `init_skip`
    "init_from": Case(
        "  dense(8)\n  batchnorm",
        "f32[6]",
        train_extra='  init_from = "w.safetensors"\n  init_map = { "fc": "dense" }\n'
        '  init_skip = ["dense_1"]',
    ),
    "unfreeze": Case(  # phase 2 in the second of the two epochs, a frozen batchnorm released
        "  dense(8)\n  batchnorm",
        "f32[6]",
        train_extra='  freeze = ["dense", "batchnorm"]\n  unfreeze = { after: 1 epochs, lr_factor: 0.5 }',
    ),
}


# Data-section fields that change how a run reads its examples.
DATA_FIELDS = {
    # every split read batch by batch through Grain (runtime/data/batches.py)
    "stream": Case("  dense(8)\n  batchnorm", "f32[6]", data_extra="  stream = true"),
    # bad examples left out of their batches (none here: the words' own tests make some)
    "on_error": Case("  dense(8)", "f32[6]", data_extra="  stream = true\n  on_error = skip"),
    # a Grain worker process reads the batches
    "workers": Case("  dense(8)", "f32[6]", data_extra="  stream = true\n  workers = 1"),
    # a typed table (its columns typed: cells kept as strings), fitted and encoded streamed
    "columns": Case(
        "  dense(8)",
        "f32[5]",
        data='csv("data.csv")',
        data_extra="  columns = { f0: ignore, f1: number }\n  stream = true",
    ),
    # decoded rows kept on disk and read back (a CSV's: npz is not cached)
    "cache": Case(
        "  dense(8)", "f32[6]", data='csv("data.csv")', data_extra="  stream = true\n  cache = true"
    ),
}
FIELDS = {**TRAIN_FIELDS, **{f"data.{k}": v for k, v in DATA_FIELDS.items()}}


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_a_checked_train_field_trains_evaluates_and_predicts(
    field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    case = FIELDS[field]
    write_data(case, tmp_path)
    (tmp_path / "spec.dnn").write_text(case.text())
    program = dnn.load(str(tmp_path / "spec.dnn"))
    section, _, name = field.rpartition(".")
    assert name in (program.data if section == "data" else program.train).written
    if section == "data":
        assert pipeline.prepare(program).streamed  # it does stream
    if program.train.init_from:
        _weight_file(program, tmp_path / str(program.train.init_from))
    done = exercise(program)
    assert done.problems() == [], done


def _weight_file(program: Any, path: Path) -> None:
    """A PyTorch-layout file of random weights for the spec's layers but the skipped head."""
    import jax
    from dnn.runtime import weights

    params, state = weights.spec_shapes(program)
    rng = np.random.default_rng(0)
    draw = lambda t: jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), t)  # noqa: E731
    params, state = draw(params), draw(state)
    state["batch_stats"]["batchnorm"]["var"] = np.abs(state["batch_stats"]["batchnorm"]["var"])
    tensors = weights.to_torch(program, params, state, {"dense": "fc"})
    weights.write(path, {k: v for k, v in tensors.items() if not k.startswith("dense_1.")}, {})


@pytest.mark.parametrize("name", sorted(BUILTIN_DATA))
def test_every_builtin_set_feeds_the_model_check_accepts(name: str) -> None:
    """Each set's description (shape, classes, dtype) is what check reads: a model built from
    it checks, and the loaded data fits that model."""
    meta = BUILTIN_DATA[name]
    ints = meta.get("dtype") == "int"
    layers = f"  embedding({meta.get('vocab', 0)}, 2)" if ints else "  dense(4)"
    regression = meta["classes"] is None
    case = Case(
        layers,
        f"{'i32' if ints else 'f32'}{list(meta['shape'])}",
        units=1 if regression else meta["classes"],
        loss="mse" if regression else "cross_entropy",
        data=f'builtin("{name}")',
    )
    program = dnn.loads(case.text(), "spec.dnn")
    prepared = pipeline.prepare(program)
    dtype = np.int32 if ints else np.float32
    assert all(t.x.dtype == dtype for t in prepared.splits.values())
    assert prepared.size("train") + prepared.size("val") + prepared.size("test") == meta["samples"]


# ------------------------------------------------------------------ what entries declare invalid


def refused(text: str, code: str, message: str) -> None:
    with pytest.raises(dnn.SpecError) as info:
        dnn.loads(text, "spec.dnn")
    found = [(d.code, d.message) for d in info.value.diagnostics]
    assert any(c == code and message in m for c, m in found), found


@pytest.mark.parametrize("name", REGISTRIES["loss"].names())
def test_a_loss_is_refused_for_the_output_widths_it_declares_invalid(name: str) -> None:
    entry = REGISTRIES["loss"].lookup(name)
    for units in (1, CLASSES):
        if entry.task.of(units) is None:
            case = Case("  dense(8)", "f32[6]", units=units, loss=name)
            refused(case.text(), "E0401", f"`{name}` is not valid for a model with {units}")


@pytest.mark.parametrize("name", REGISTRIES["metric"].names())
def test_a_metric_is_refused_for_the_tasks_it_does_not_read(name: str) -> None:
    entry = REGISTRIES["metric"].lookup(name)
    for loss, units, task in (("mse", 1, "regression"), ("cross_entropy", 3, "multiclass")):
        if not entry.needs.fits(task):
            case = Case("  dense(8)", "f32[6]", units=units, loss=loss)
            text = case.text().replace("  seed = 3", f"  seed = 3\n  metrics = [{name}]")
            refused(text, "E0602", f"metric `{name}` does not fit the task")


@pytest.mark.parametrize("name", REGISTRIES["augmentation"].names())
def test_an_image_augmentation_is_refused_on_vectors(name: str) -> None:
    entry = REGISTRIES["augmentation"].lookup(name)
    case = Case("  dense(8)", "f32[6]", data_extra=f"  augment = [{use(entry)}]")
    if entry.needs.input == "image":
        refused(case.text(), "E0602", "transforms images")
    else:
        dnn.loads(case.text(), "spec.dnn")


def test_layers_refuse_the_input_dtype_they_do_not_take() -> None:
    for _, entry in entries("layer"):
        if entry.int_input:
            refused(Case(f"  {use(entry)}", "f32[6]").text(), "E0404", "")
    refused(Case("  dense(4)", "i32[6]").text(), "E0404", "")


@pytest.mark.parametrize("name", REGISTRIES["optimizer"].names())
def test_a_rate_dividing_optimizer_is_refused_under_a_warmup(name: str) -> None:
    entry = REGISTRIES["optimizer"].lookup(name)
    extra = (
        f"  optimizer = {use(entry)}\n  schedule = cosine(decay_steps = 9 steps, warmup = 2 steps)"
    )
    text = Case("  dense(8)", "f32[6]").text().replace("  optimizer = adam(lr = 0.01)\n", "")
    text = text.replace("  seed = 3", "  seed = 3\n" + extra)
    if "rate_divides" in entry.traits:
        refused(text, "E0602", "divides by the learning rate")
    else:
        dnn.loads(text, "spec.dnn")


@pytest.mark.parametrize("name", REGISTRIES["normalizer"].names())
def test_a_normalizer_is_refused_where_its_shape_rule_cannot_apply(name: str) -> None:
    entry = REGISTRIES["normalizer"].lookup(name)
    if entry.shape is None:  # keeps the example's shape: applies to any input
        return
    extra = f"  normalize = {name}(n = 65)"
    text = Case("  dense(8)", "f32[65]", data='builtin("digits")', units=10, data_extra=extra)
    refused(text.text(), "E0602", "`n = 65` components, but `digits` examples have 64 features")


# ------------------------------------------------------------------ every entry is whole


@pytest.mark.parametrize(("kind", "name"), [(k, e.name) for k, e in entries(*REGISTRIES)])
def test_every_entry_is_documented_and_its_example_binds(kind: str, name: str) -> None:
    entry = REGISTRIES[kind].lookup(name)
    assert entry.doc, f"{kind} `{name}` has no doc"
    if kind in ("section",):
        return
    assert entry.formula, f"{kind} `{name}` has no formula"
    required = [a.name for a in entry.args if a.required]
    assert entry.example or not required, f"{kind} `{name}` needs an example ({required})"
    if kind not in ("layer", "activation"):  # those bind in a model: see the training test
        ref, _ = value(use(entry), kind)
        assert ref.name == entry.name


# The kinds whose implementations are tagged `@implements(kind, name)`, or recorded
# `provides(kind, name, value)`, in the module their registry names (DESIGN §7): the functions
# of the compiler-side kinds, the named tuples of parts of the runtime ones.
TAGGED = (
    "layer",
    "activation",
    "initializer",
    "regularizer",
    "constraint",
    "loss",
    "optimizer",
    "schedule",
    "clipper",
    "pretrainer",
    "pruner",
)
PROVIDED = {
    "metric": metrics.Metric,
    "normalizer": preprocess.Normalizer,
    "augmentation": augment.Augmentation,
    "dataset": sources.Source,
    "column": tabular.ColumnType,
}


def test_the_implemented_kinds_name_their_module() -> None:
    named = {k for k, reg in REGISTRIES.items() if reg.implemented_in is not None}
    assert named == set(TAGGED) | set(PROVIDED)
    assert not set(TRAINED) - named


@pytest.mark.parametrize("kind", [*TAGGED, *PROVIDED])
def test_every_entry_has_an_implementation(kind: str) -> None:
    missing, unclaimed = REGISTRIES[kind].implementation_gaps()
    assert not missing, f"{kind}s without an implementation: {missing}"
    assert not unclaimed, f"{kind} implementations without an entry: {unclaimed}"
    for entry in REGISTRIES[kind]:
        found = REGISTRIES[kind].implementation(entry.name)
        if kind in PROVIDED:
            assert isinstance(found, PROVIDED[kind]), f"{kind} `{entry.name}`: {found!r}"
        else:
            assert callable(found)
        for alias in entry.aliases:  # an alias is implemented by its entry's implementation
            assert REGISTRIES[kind].implementation(alias) is found


def test_a_gap_between_entries_and_implementations_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a throwaway kind: an entry without an implementation, and an implementation without
    an entry, are both reported; the implementing module is imported on first use."""
    module = "dnn_contract_toy_impl"
    (tmp_path / f"{module}.py").write_text(
        "from dnn.compiler.registry.core import implements\n"
        "@implements('toy_contract', 'both', 'twin')\n"
        "def both(x):\n    return x + 1\n"
        "@implements('toy_contract', 'orphan')\n"
        "def orphan(x):\n    return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    toy = Registry("toy_contract", "toys", implemented_in=module)
    for name in ("both", "twin", "bare"):
        toy.add(name, doc="a toy")
    assert module not in sys.modules
    assert toy.implementation("twin")(1) == 2  # imports the module
    assert module in sys.modules
    assert toy.implementation_gaps() == (["bare"], ["orphan"])
    with pytest.raises(InternalError, match="`bare` has no implementation"):
        toy.implementation("bare")
    with pytest.raises(InternalError, match="implemented twice"):
        implements("toy_contract", "both")(lambda x: x)
    with pytest.raises(InternalError, match="implemented twice"):
        provides("toy_contract", "orphan", (lambda x: x, "a part"))
    with pytest.raises(InternalError, match="no implementing module"):
        Registry("toy_untagged", "toys").implementation_gaps()
