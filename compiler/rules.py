"""Cross-checks between the model, the data section and the train section.

Each rule reads facts declared on registry entries — a loss's `task`, a metric's or an
augmentation's `needs`, a layer's input dtype, a normalizer's shape rule, an optimizer's
`traits`, a built-in data set's description — never a list of names. They are what makes
"`dnn check` accepts it" mean "`dnn train` trains it" (DESIGN §2.9): whatever can be known
without reading the data is refused here, at the spec line; the rest is checked by the same
facts when the data loads (runtime/data/transforms.py).

Entry point: `apply(model, data, train, train_written, diags) -> train`, the train section
with its task-dependent defaults (the metrics) filled in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .diagnostics import (
    E_COLUMN_INPUT,
    E_COLUMNS,
    E_DTYPE,
    E_MODEL,
    E_PRETRAIN,
    E_SECTION,
    E_SHAPE,
    E_VALUE,
    NO_SPAN,
    W_NO_DATA_FILE,
    W_NOT_STREAMED,
    Diagnostic,
    Diagnostics,
    Span,
)
from .ir import Config, Graph, Node
from .registry.core import TASKS, Args, Entry, Problem, did_you_mean
from .registry.data import AUGMENTATIONS, BUILTIN_DATA, DATASETS, NORMALIZERS
from .registry.layers import ACTIVATIONS, LAYERS, fmt_shape
from .registry.losses import LOSSES
from .registry.metrics import DEFAULT_METRICS, METRICS
from .registry.optimizers import OPTIMIZERS
from .values import Quantity, Ref, is_float_dtype

# ------------------------------------------------------------------ facts the runtime reads too


@dataclass(frozen=True)
class Head:
    """One model output as training sees it: its loss, weight in the total, task and width."""

    name: str
    loss: Ref
    weight: float
    task: str | None  # None: the loss is not valid for this output's width
    units: int
    node: Node


def heads(model: Graph, train: Config) -> tuple[Head, ...]:
    """The model's outputs with their losses: `loss = word` applies to every output, `loss =
    { a: cross_entropy, b: mse }` names one per output; `loss_weights` scales each (default 1).
    An output without a loss is left out (the rules report it)."""
    losses = train.loss
    named = dict(losses) if isinstance(losses, tuple) else {}
    weights = dict(train.loss_weights)
    out = []
    for name in model.outputs:
        ref = named.get(name) if named else losses
        if not isinstance(ref, Ref):
            continue
        node, entry = model.node(name), LOSSES.lookup(ref.name)
        units = math.prod(node.shape)
        task = entry.task.of(units) if entry is not None and entry.task is not None else None
        out.append(Head(name, ref, float(weights.get(name, 1.0)), task, units, node))
    return tuple(out)


def target_kind(task: str) -> str:
    """How a data source reads targets for `task`: `classification` labels or `regression`."""
    return "regression" if task == "regression" else "classification"


def example_shape(normalize: Ref, raw: tuple[int, ...]) -> tuple[int, ...]:
    """One example's shape after the normalizer, by its entry's shape rule.

    The model's input is this shape, in `dnn check` and in `dnn train` alike. Raises `Problem`
    (arg `n`) when the normalizer cannot apply to examples of shape `raw`.
    """
    entry = NORMALIZERS.lookup(normalize.name)
    if entry is None or entry.shape is None:
        return tuple(raw)
    return tuple(entry.shape(Args(normalize.args), tuple(raw)))


def builtin_meta(data: Config | None) -> dict[str, Any] | None:
    """The description of a built-in data set the data section names, if it names one."""
    source = data.source if data is not None else None
    if source is None or source.name != "builtin":
        return None
    return BUILTIN_DATA.get(str(source.arg("name")))


# ------------------------------------------------------------------ the rules


class _Ctx:
    """What every rule reads: the model, the sections, where to report."""

    def __init__(
        self,
        model: Graph,
        data: Config | None,
        train: Config,
        train_written: bool,
        diags: Diagnostics,
    ):
        self.model, self.data, self.train, self.diags = model, data, train, diags
        # A model file without data or train sections (a library of models) is not held to the
        # default loss: it says nothing about training yet.
        self.trains = train_written or data is not None
        self.heads = heads(model, train) if self.trains else ()
        self.multi = len(model.outputs) > 1
        # One output: its loss and task, read by the single-output rules below.
        one = self.heads[0] if len(self.heads) == 1 and not self.multi else None
        self.loss: Ref | None = one.loss if one else None
        self.task = one.task if one else None

    def add(self, code: str, message: str, span: Span, hint: str | None = None) -> None:
        self.diags.add(Diagnostic(code, message, span, hint))

    @property
    def out(self) -> Node:
        return self.model.node(self.model.outputs[0])


def _outputs(c: _Ctx) -> None:
    """Several outputs: a loss for each (and no other names), targets from an npz archive with
    one array per output, no target scaling."""
    if not c.trains:
        return
    named = dict(c.train.loss) if isinstance(c.train.loss, tuple) else {}
    for key in named:
        if key not in c.model.outputs:
            c.add(
                E_SECTION,
                f"`loss` names `{key}`, which is not an output of the model",
                c.train.span_of("loss"),
                did_you_mean(key, list(c.model.outputs))
                or "outputs: " + ", ".join(f"`{o}`" for o in c.model.outputs),
            )
    for name in c.model.outputs:
        if named and name not in named:
            c.add(
                E_SECTION,
                f"output `{name}` has no loss",
                c.model.node(name).span,
                f"add `{name}: mse` (or the loss it needs) to `loss = {{ ... }}`",
            )
    for key in dict(c.train.loss_weights):
        if key not in c.model.outputs:
            c.add(
                E_SECTION,
                f"`loss_weights` names `{key}`, which is not an output of the model",
                c.train.span_of("loss_weights"),
                did_you_mean(key, list(c.model.outputs)),
            )
    if c.multi and c.data is not None:
        _several_outputs_data(c)


def _several_outputs_data(c: _Ctx) -> None:
    """Where a model with several outputs finds a target for each: a built-in set with named
    targets, or a source whose entry reads one per output, named after it (`needs.outputs`)."""
    assert c.data is not None
    outputs = ", ".join(f"`{o}`" for o in c.model.outputs)
    source = c.data.source
    meta = builtin_meta(c.data)
    entry = DATASETS.lookup(source.name) if source is not None else None
    if meta is not None and "targets" in meta:
        _builtin_targets(c, meta)
    elif entry is not None and entry.needs.outputs is None:
        second = c.model.node(c.model.outputs[1])
        c.add(
            E_MODEL,
            f"the model has {len(c.model.outputs)} outputs, but "
            + (
                f"`{source.arg('name')}`"
                if source.name == "builtin"
                else f"{'an' if source.name[0] in 'aeiou' else 'a'} `{source.name}` source"
            )
            + " has one target per example",
            second.span,
            f"read the targets from an npz archive with one array per output ({outputs}) "
            "or a CSV file with a column per output, or keep one `output`",
        )
    elif entry is not None:
        arg = entry.needs.outputs
        default = next(a.default for a in entry.args if a.name == arg)
        if source.arg(arg) != default:
            c.add(
                E_SECTION,
                f'`{arg} = "{source.arg(arg)}"` names the target of a model with one output; '
                f"the {len(c.model.outputs)} outputs read the targets named after them "
                f"({outputs})",
                c.data.span_of("source"),
                f"leave `{arg}` out",
            )
    if c.data.targets.name != "none" and not any(h.task == "regression" for h in c.heads):
        c.add(
            E_SECTION,
            f"`targets = {c.data.targets}` scales real-valued targets, but no output of the "
            "model is trained with a regression loss",
            c.data.span_of("targets"),
            "leave `targets` out, or train a real-valued output with `mse`, `mae` or `huber`",
        )


def _builtin_targets(c: _Ctx, meta: dict[str, Any]) -> None:
    """A built-in set with named targets: one for each output, as many classes as its units."""
    assert c.data is not None
    names = [t for t, _ in meta["targets"]]
    for o in c.model.outputs:
        if o not in names:
            c.add(
                E_MODEL,
                f"output `{o}` has no target in `{c.data.source.arg('name')}`",
                c.model.node(o).span,
                "its targets: " + ", ".join(f"`{t}`" for t in names),
            )
    classes = dict(meta["targets"])
    for h in c.heads:
        k = classes.get(h.name)
        wrong = (
            k is not None
            and h.task is not None
            and (
                (h.task == "binary" and k != 2)
                or (h.task in ("multiclass", "multilabel") and h.units != k)
                or (h.task == "regression" and h.units != 1)  # the label as one number
            )
        )
        if wrong and h.task == "regression":
            c.add(
                E_SHAPE,
                f"output `{h.name}` has {h.units} units for `{h.loss.name}`, but its target "
                "is one class label per example",
                h.node.span,
                "classify with `cross_entropy`, or regress the label with `dense(1)`",
            )
        elif wrong:
            c.add(
                E_SHAPE,
                f"output `{h.name}` has {h.units} unit{'s' * (h.units != 1)} for "
                f"`{h.loss.name}`, but its target has {k} classes",
                h.node.span,
                f"end `{h.name}` with `dense({k})`"
                + (" and train it with `cross_entropy`" if h.task == "binary" else ""),
            )


def _loss_output(c: _Ctx) -> None:
    """Each output's loss must be valid for its width, and a class task needs a vector."""
    for h in c.heads:
        entry = LOSSES.lookup(h.loss.name)
        if entry is None or entry.task is None:
            continue
        if h.task is None:
            units = h.units
            other = "binary_cross_entropy" if units == 1 else "mse"
            c.add(
                E_SHAPE,
                f"`{h.loss.name}` is not valid for a model with {units} output "
                f"unit{'s' * (units != 1)}: {entry.task.refusal(units)}",
                h.node.span,
                f"end the model with `dense(2)` (two classes), or train with `{other}`"
                if units == 1
                else f"train with `{other}`",
            )
        elif h.task != "regression" and len(h.node.shape) != 1:
            pool = " (or `global_avgpool`)" if len(h.node.shape) == 3 else ""
            c.add(
                E_SHAPE,
                f"`{h.loss.name}` needs a model output of shape (classes,), got "
                f"{fmt_shape(h.node.shape)}",
                h.node.span,
                f"insert `flatten`{pool} before the last `dense`"
                if h.node.op == "dense"
                else f"end the model with `flatten`{pool} and `dense(classes)`",
            )


def _metrics(c: _Ctx) -> Config:
    """Each metric must read the targets of an output's task (with several outputs, it is
    reported for each output it fits); unwritten metrics follow the tasks."""
    tasks = [h.task for h in c.heads if h.task is not None]
    if not tasks or len(tasks) != len(c.model.outputs):
        return c.train
    if "metrics" not in c.train.written:
        words = dict.fromkeys(m for t in tasks for m in DEFAULT_METRICS[t])
        return _with_field(c.train, "metrics", tuple(Ref("metric", m) for m in words))
    for m in c.train.metrics:
        entry = METRICS.lookup(m.name)
        if entry is not None and not any(entry.needs.fits(t) for t in tasks):
            fitting = [e.name for e in METRICS if any(e.needs.fits(t) for t in tasks)]
            what = (
                f"the task of `{c.loss.name}` ({tasks[0]}: {TASKS[tasks[0]]})"
                if c.loss is not None
                else "the task of any output (" + ", ".join(sorted(set(tasks))) + ")"
            )
            c.add(
                E_SECTION,
                f"metric `{m.name}` does not fit {what}",
                c.train.span_of("metrics"),
                "use " + ", ".join(f"`{n}`" for n in fitting) + ", or leave `metrics` out "
                "for the task's defaults",
            )
    return c.train


def typed_table(data: Config | None) -> bool:
    """Whether the data is a CSV table whose columns the spec types (`data.columns`): the
    tabular stage then feeds each input its own columns, ids or real values."""
    return data is not None and bool(data.columns) and data.source.name == "csv"


def _columns(c: _Ctx) -> None:
    """`data.columns` types a CSV table's input columns, for a model with one output; a text
    column feeds an integer input of its own name, as long as the column's `length`."""
    if c.data is None or not c.data.columns:
        return
    span = c.data.span_of("columns")
    if c.data.source.name != "csv":
        c.add(
            E_COLUMNS,
            f"`columns` types a CSV table's columns, but the source is `{c.data.source.name}`",
            span,
            'read a CSV file (`source = csv("table.csv")`), or remove `columns`',
        )
        return
    if c.multi:
        c.add(
            E_COLUMNS,
            f"typed columns feed a model with one output, but this one has {len(c.model.outputs)}",
            span,
            "remove `columns`, or keep one output",
        )
        return
    header = _csv_header(c.data)
    label = str(c.data.source.arg("label"))
    for name, ref in c.data.columns:
        node = c.model.node(name) if name in c.model.inputs else None
        at = c.data.span_of(f"columns.{name}")
        at = span if at == NO_SPAN else at
        if header is not None and (name not in header or name == label):
            written = c.data.source.arg("path")
            c.add(
                E_COLUMNS,
                f"`{written}` has no column `{name}` to type"
                if name not in header
                else f"`{name}` is the label column of `{written}`; `columns` types the inputs",
                at,
                (
                    did_you_mean(name, [h for h in header if h != label])
                    or "its columns: " + ", ".join(f"`{h}`" for h in header[:8])
                )
                if name not in header
                else "leave it out of `columns`",
            )
            continue
        if ref.name == "text" and (node is None or is_float_dtype(node.dtype)):
            length = int(ref.arg("length"))
            c.add(
                E_COLUMN_INPUT,
                f"text column `{name}` gives {length} word ids per example, but the model has "
                f"no integer input `{name}` to take them",
                node.span if node is not None else at,
                f"declare `input {name}: i32[{length}]`",
            )
        elif (
            ref.name == "category"
            and node is not None
            and not is_float_dtype(node.dtype)
            and node.shape != (1,)
        ):
            c.add(
                E_COLUMN_INPUT,
                f"input `{name}` has shape {fmt_shape(node.shape)} but category column `{name}` "
                "gives one index per example",
                node.span,
                f"declare `input {name}: i32[1]` (or a real input for its one-hot vector)",
            )
        elif ref.name == "text" and node is not None and node.shape != (int(ref.arg("length")),):
            c.add(
                E_COLUMN_INPUT,
                f"input `{name}` has shape {fmt_shape(node.shape)} but text column `{name}` "
                f"gives {ref.arg('length')} word ids",
                node.span,
                f"declare `input {name}: i32[{ref.arg('length')}]`",
            )


def _csv_header(data: Config) -> list[str] | None:
    """The column names of the CSV a data section reads, from its first non-blank line (None
    where the file cannot be read: `_data_files` warns, `dnn train` reports it)."""
    import csv

    path = Path(data.span_of("source").path).parent / str(data.source.arg("path"))
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            for row in csv.reader(f):
                if any(cell.strip() for cell in row):
                    return [cell.strip() for cell in row]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def _input_dtypes(c: _Ctx) -> None:
    """One source feeds every input: they are all integer (token ids) or all real, and
    integer inputs are not normalized (a normalizer makes real numbers of the ids). A typed
    table feeds each input its own columns, so it may mix them (`typed_table`)."""
    if typed_table(c.data):
        return
    inputs = [c.model.node(i) for i in c.model.inputs]
    ints = [n for n in inputs if not is_float_dtype(n.dtype)]
    if ints and len(ints) != len(inputs) and c.trains:  # a model file alone may mix them
        real = next(n for n in inputs if is_float_dtype(n.dtype))
        c.add(
            E_DTYPE,
            f"input `{ints[0].name}` is {ints[0].dtype} but input `{real.name}` is "
            f"{real.dtype}: one data source feeds them both",
            ints[0].span,
            "type the CSV's columns (`columns = { "
            f"{ints[0].name}: category }}`) so each input reads its own"
            if c.data is not None and c.data.source.name == "csv"
            else "declare every input with the same kind of dtype, or train the two on "
            "separate models",
        )
    if ints and c.data is not None and c.data.normalize.name != "none":
        c.add(
            E_DTYPE,
            f"`{c.data.normalize.name}` makes real numbers of the examples, but input "
            f"`{ints[0].name}` takes integer ids ({ints[0].dtype})",
            _norm(c),
            "leave `normalize` out (token ids are not scaled), or declare the input as f32",
        )


def id_layers(model: Graph) -> list[tuple[Node, int, str]]:
    """The layers of integer ids fed by a model input: (node, the bound ids stay below, the
    input's name), from the entries' `needs.ids` fact (`embedding`'s `vocab`)."""
    out = []
    for node in model.nodes:
        entry = LAYERS.lookup(node.op)
        bound = entry.needs.ids if entry is not None else None
        fed = [i for i in node.inputs if i in model.inputs]
        if bound is not None and fed:
            out.append((node, int(node.arg(bound)), fed[0]))
    return out


def _token_ids(c: _Ctx) -> None:
    """A built-in set's token ids must have a row in each layer of ids they feed (an id past
    the table reads no row: the output is nan)."""
    meta = builtin_meta(c.data)
    vocab = meta.get("vocab") if meta is not None else None
    if vocab is None or c.data is None:
        return
    name = str(c.data.source.arg("name"))
    for node, bound, _ in id_layers(c.model):
        if bound < vocab:
            c.add(
                E_VALUE,
                f"`{name}` holds ids 0..{vocab - 1}, but `{node.op}` here has {bound} rows",
                node.span,
                f"give it a row per id: `{node.op}({vocab}, ...)`",
            )


def _data_input(c: _Ctx) -> None:
    """A built-in set's examples, after the normalizer, must fit the inputs (size and dtype)."""
    meta = builtin_meta(c.data)
    if c.data is None or meta is None:
        return
    name = str(c.data.source.arg("name"))
    try:
        shape = example_shape(c.data.normalize, tuple(meta["shape"]))
    except Problem as p:
        c.add(E_SECTION, p.message.replace("the examples", f"`{name}` examples"), _norm(c), p.hint)
        return
    after = f" after `{c.data.normalize}`" if shape != tuple(meta["shape"]) else ""
    inputs = [c.model.node(i) for i in c.model.inputs]
    for node in inputs:
        if is_float_dtype(node.dtype) != (meta.get("dtype", "float") == "float"):
            kind = "real numbers" if meta.get("dtype", "float") == "float" else "integers"
            c.add(
                E_DTYPE,
                f"`{name}` examples are {kind} but input `{node.name}` is {node.dtype}",
                node.span,
                f"declare `input {node.name}: "
                f"{'f32' if kind == 'real numbers' else 'i32'}{list(node.shape)}`",
            )
    sizes = [math.prod(n.shape) for n in inputs]
    if len(inputs) > 1 and sum(sizes) != math.prod(shape):
        c.add(
            E_SHAPE,
            f"the inputs take {' + '.join(map(str, sizes))} = {sum(sizes)} values "
            f"but `{name}` examples have {math.prod(shape)}{after}",
            inputs[0].span,
            "the features of one example are split across the inputs in the "
            "order they are declared: make their sizes add up",
        )
    elif len(inputs) == 1 and sizes[0] != math.prod(shape):
        inp = inputs[0]
        c.add(
            E_SHAPE,
            f"input `{inp.name}` has shape {fmt_shape(inp.shape)} ({sizes[0]} values) but "
            f"`{name}` examples have {fmt_shape(shape)}{after}",
            inp.span,
            f"declare `input {inp.name}: {inp.dtype}{list(shape)}` or a reshaping of it",
        )


def _reconstruct(c: _Ctx) -> None:
    """`reconstruct = true`: the model's one input is its target, so its one output must hold
    as many values, learned with a regression loss; nothing else scales or reads targets."""
    if c.data is None or not c.data.reconstruct:
        return
    span = c.data.span_of("reconstruct")
    if len(c.model.inputs) != 1 or c.multi:
        c.add(
            E_SECTION,
            f"`reconstruct = true` trains one output to give back one input, but the model has "
            f"{len(c.model.inputs)} input{'s' * (len(c.model.inputs) != 1)} and "
            f"{len(c.model.outputs)} output{'s' * c.multi}",
            span,
            "keep one `input` and one output, or leave `reconstruct` out",
        )
        return
    inp = c.model.node(c.model.inputs[0])
    if not is_float_dtype(inp.dtype):
        c.add(
            E_DTYPE,
            f"`reconstruct = true` regresses the input's values, but input `{inp.name}` holds "
            f"{inp.dtype} ids",
            inp.span,
            "reconstruct real-valued inputs (`f32`); token ids are classes, not values",
        )
    wanted, units = math.prod(inp.shape), math.prod(c.out.shape)
    if units != wanted:
        c.add(
            E_SHAPE,
            f"the model outputs {units} values, but `reconstruct = true` compares them with "
            f"the {wanted} values of input `{inp.name}`, shape {fmt_shape(inp.shape)}",
            c.out.span,
            f"end the model with `dense({wanted})`, or with layers giving back shape "
            f"{fmt_shape(inp.shape)}",
        )
    if c.task is not None and c.task != "regression":
        assert c.loss is not None
        c.add(
            E_SECTION,
            f"`reconstruct = true` learns real values (the inputs), but `{c.loss.name}` trains "
            f"a {c.task} task ({TASKS[c.task]})",
            c.train.span_of("loss"),
            "train with a regression loss such as `mse`, `mae` or `huber`",
        )
    norm = NORMALIZERS.lookup(c.data.normalize.name)
    if norm is not None and "invertible" not in norm.traits:
        fitting = [f"`{e.name}`" for e in NORMALIZERS if "invertible" in e.traits]
        c.add(
            E_SECTION,
            f"`reconstruct = true` learns the inputs as `normalize` scales them and gives them "
            f"back in the data's units, but `{c.data.normalize}` cannot be inverted value by "
            "value",
            _norm(c),
            f"use {', '.join(fitting[:-1])} or {fitting[-1]}",
        )
    if c.data.targets.name != "none":
        c.add(
            E_SECTION,
            f"`targets = {c.data.targets}` scales the source's targets, but `reconstruct = "
            "true` learns the inputs, already scaled by `normalize`",
            c.data.span_of("targets"),
            "leave `targets` out",
        )


def _data_targets(c: _Ctx) -> None:
    """A built-in set's targets must be what the loss's task reads, as many as the outputs."""
    meta = builtin_meta(c.data)
    if c.data is None or meta is None or c.task is None or c.data.reconstruct:
        return
    name, classes, units = (
        str(c.data.source.arg("name")),
        meta.get("classes"),
        math.prod(c.out.shape),
    )
    assert c.loss is not None
    loss = c.loss.name
    if classes is None and c.task == "regression" and units != 1:  # one real value each
        c.add(
            E_SHAPE,
            f"`{name}` has 1 target value per example but the model outputs {units}",
            c.out.span,
            "end the model with `dense(1)`",
        )
    elif len(c.out.shape) != 1:
        return
    elif classes is None and c.task != "regression":
        c.add(
            E_SECTION,
            f"`{loss}` needs class labels, but `{name}` has real-valued targets",
            c.train.span_of("loss"),
            "train with a regression loss such as `mse`, `mae` or `huber`",
        )
    elif classes is not None and c.task == "regression" and units != 1:
        c.add(
            E_SHAPE,
            f"`{name}` has one class label per example but the model outputs {units} values "
            f"for `{loss}` to compare with it",
            c.out.span,
            f"classify with `cross_entropy` and `dense({classes})`, or regress the label with "
            "`dense(1)`",
        )
    elif classes is not None and c.task == "binary" and classes != 2:
        c.add(
            E_SHAPE,
            f"one output unit makes a binary classifier, but `{name}` has {classes} classes",
            c.out.span,
            f"end the model with `dense({classes})` and train with `cross_entropy`",
        )
    elif classes is not None and c.task in ("multiclass", "multilabel") and units != classes:
        c.add(
            E_SHAPE,
            f"the model outputs {units} values but `{name}` has {classes} classes",
            c.out.span,
            f"end the model with `dense({classes})`",
        )


def _augment(c: _Ctx) -> None:
    """Image augmentations need one image input, [height, width, channels], unflattened."""
    if c.data is None:
        return
    images = [a for a in c.data.augment if _needs_image(a)]
    if not images:
        return
    shapes = [c.model.node(i).shape for i in c.model.inputs]
    entry = NORMALIZERS.lookup(c.data.normalize.name)
    flattening = entry is not None and entry.shape is not None
    if len(shapes) != 1 or len(shapes[0]) != 3 or flattening:
        why = (
            f"`{c.data.normalize.name}` turns each example into a vector"
            if flattening
            else f"the model's input is {', '.join(fmt_shape(s) for s in shapes)}"
        )
        c.add(
            E_SECTION,
            f"`{images[0].name}` transforms images [height, width, channels], but {why}",
            c.data.span_of("augment"),
            "declare the input as an image, e.g. `input x: f32[8, 8, 1]`, or use "
            "`noise(std)`, which takes any input",
        )


def _needs_image(ref: Ref) -> bool:
    entry = AUGMENTATIONS.lookup(ref.name)
    return entry is not None and entry.needs.input == "image"


def _rate_divides(c: _Ctx) -> None:
    """An optimizer that divides by the learning rate cannot start a warm-up from 0."""
    opt, sched = c.train.optimizer, c.train.schedule
    entry = OPTIMIZERS.lookup(opt.name) if opt is not None else None
    if entry is None or "rate_divides" not in entry.traits or sched is None:
        return
    warmup = dict(sched.args).get("warmup")
    amount = warmup.value if isinstance(warmup, Quantity) else warmup
    if amount:
        c.add(
            E_SECTION,
            f"`{opt.name}` divides by the learning rate, and the warm-up of `{sched.name}` "
            "starts it at 0",
            c.train.span_of("schedule"),
            f"drop the warm-up (`{sched.name}(..., warmup = 0)`), or choose another optimizer",
        )


def _targets(c: _Ctx) -> None:
    """`data.targets` scales real-valued targets: it needs a regression loss and a normalizer
    that maps each output unit on its own and can be inverted (the `invertible` trait)."""
    if c.data is None or c.data.targets.name == "none" or c.data.reconstruct:
        return
    ref, span = c.data.targets, c.data.span_of("targets")
    entry = NORMALIZERS.lookup(ref.name)
    if entry is not None and "invertible" not in entry.traits:
        fitting = [f"`{e.name}`" for e in NORMALIZERS if "invertible" in e.traits]
        fitting.remove("`none`")
        c.add(
            E_SECTION,
            f"`{ref.name}` cannot scale targets: it is not an invertible map of each output "
            "unit on its own, so predictions could not be mapped back",
            span,
            f"use {', '.join(fitting[:-1])} or {fitting[-1]}",
        )
    elif c.task is not None and c.task != "regression":
        c.add(
            E_SECTION,
            f"`targets = {ref}` scales real-valued targets, but `{c.loss.name if c.loss else ''}` trains "
            f"a {c.task} task ({TASKS[c.task]})",
            span,
            "leave `targets` out, or train with a regression loss such as `mse`, `mae` or `huber`",
        )


def _data_files(c: _Ctx) -> None:
    """A file or folder a data source names should exist: a warning, not an error, so a spec
    can be checked and reviewed where its data is not (`dnn train` stops at it, at this line)."""
    if c.data is None:
        return
    for name in ("source", "val", "test"):
        ref = getattr(c.data, name)
        entry = DATASETS.lookup(ref.name) if ref is not None else None
        if entry is None or entry.needs.file is None:
            continue
        span = c.data.span_of(name)
        written = str(ref.arg(entry.needs.file))
        if not (Path(span.path).parent / written).exists():
            c.diags.add(
                Diagnostic(
                    W_NO_DATA_FILE,
                    f"`{written}` does not exist: `dnn train` would stop here",
                    span,
                    "the path is relative to the folder of the spec file",
                    severity="warning",
                )
            )


def _stream_only(c: _Ctx) -> None:
    """A field that does not act on how this spec reads its data: one that acts only while a
    split is streamed, in a spec that reads its data whole (`stream = false`), and `on_error =
    skip` for a model with several outputs on a built-in set, whose targets are read whole
    with no example left out: a warning at the field, saying what happens instead."""
    data = c.data
    if data is None:
        return
    found = []
    several = c.multi and data.source.name == "builtin"  # an npz's or a CSV's rows are skipped
    if "on_error" in data.written and str(data.on_error) == "skip" and several:
        found.append(
            (
                "on_error",
                "`on_error = skip` leaves no example out for a model with several outputs, "
                "whose targets are read whole: the first bad example stops the run",
                "leave the field out",
            )
        )
    whole, hint = [], "set `stream = true`, or leave the field out"
    if data.stream is False and "workers" in data.written:
        whole.append(("workers", "the data is read by this process"))
    if data.stream is False and data.cache is True and data.source.name != "images":
        whole.append(("cache", f"`{data.source.name}` is read whole, decoded once per run"))
    for name, instead in whole:
        message = (
            f"`{name}` applies to streamed reading, but `stream = false` reads the data "
            f"whole: {instead}"
        )
        found.append((name, message, hint))
    for name, message, fix in found:
        c.diags.add(
            Diagnostic(W_NOT_STREAMED, message, data.span_of(name), fix, severity="warning")
        )


def pretrained_layers(model: Graph) -> list[tuple[Node, Entry]]:
    """The layers `train.pretrain` trains, in network order: the `pretrainable` entries'."""
    out = []
    for node in model.nodes:
        entry = LAYERS.lookup(node.op) if node.kind == "layer" else None
        if entry is not None and "pretrainable" in entry.traits:
            out.append((node, entry))
    return out


def needs_unit_interval(node: Node, entry: Entry) -> bool:
    """Whether pretraining needs this layer's inputs in [0, 1] (`needs.unit_interval`: an
    `rbm` with bernoulli visible units)."""
    cond = entry.needs.unit_interval
    return cond is not None and str(node.arg(cond[0])) == cond[1]


def _pretrain(c: _Ctx) -> None:
    """`pretrain` needs a layer to pretrain and one run of one member; a layer whose
    pretraining needs inputs in [0, 1] must not be fed values known to fall outside."""
    ref = c.train.pretrain
    if ref is None:
        return
    span = c.train.span_of("pretrain")
    layers = pretrained_layers(c.model)
    if not layers:
        words = [e.name for e in LAYERS if "pretrainable" in e.traits]
        c.add(
            E_PRETRAIN,
            f"`pretrain = {ref.name}(...)` has no layer to pretrain: the model has no "
            + " or ".join(f"`{w}`" for w in words),
            span,
            f"write the hidden layers as `{words[0]}(units)`, or remove `pretrain`",
        )
    if c.train.ensemble > 1:
        c.add(
            E_PRETRAIN,
            f"`pretrain` does not support `ensemble = {c.train.ensemble}`: pretraining runs "
            "once, for one set of weights",
            span,
            "remove `ensemble`, or train the members as separate runs with their own `seed`",
        )
    for node, entry in layers:
        if needs_unit_interval(node, entry):
            _unit_interval(c, node)


def _unit_interval(c: _Ctx, node: Node) -> None:
    """Refuse a layer fed values the spec says fall outside [0, 1]: its input traced back
    through layers that only rearrange values to a model input whose data (a built-in set's
    range, the normalizer) is known. What the spec cannot tell, the runtime checks."""
    if not fed_by_data(c.model, node) or c.data is None:
        return
    why = _outside_unit_interval(c.data)
    if why is None:
        return
    arg = f"{node.arg('units')}, " if "units" in dict(node.args) else ""
    c.add(
        E_PRETRAIN,
        f"`{node.op}` with {node.arg('visible')} visible units takes inputs in [0, 1], but {why}",
        node.span,
        "add `normalize = minmax` to the data section (each feature to [0, 1]), or use "
        f"`{node.op}({arg}visible = gaussian)` for standardized inputs",
    )


def fed_by_data(model: Graph, node: Node) -> bool:
    """Whether `node`'s input is a model input's values, through layers that only rearrange
    them (flatten, reshape, dropout: the `rearranges` trait)."""
    src = model.node(node.inputs[0])
    while src.kind == "layer" and "rearranges" in _traits(src) and src.inputs:
        src = model.node(src.inputs[0])
    return src.op == "input"


def _outside_unit_interval(data: Config) -> str | None:
    """Why the examples after `normalize` are known to fall outside [0, 1]; None when they lie
    inside or nothing is known."""
    norm = data.normalize
    entry = NORMALIZERS.lookup(norm.name)
    if entry is None or "unit_range" in entry.traits:
        return None
    if norm.name != "none":
        return f"`normalize = {norm}` gives values of either sign"
    meta = builtin_meta(data)
    lo, hi = meta.get("range", (0.0, 1.0)) if meta is not None else (0.0, 1.0)
    if lo >= 0.0 and hi <= 1.0:
        return None
    name = data.source.arg("name")
    return f"`{name}` examples range from {lo:g} to {hi:g} (`normalize = none`)"


def _traits(node: Node) -> frozenset[str]:
    entry = (LAYERS if node.kind == "layer" else ACTIVATIONS).lookup(node.op)
    return entry.traits if entry is not None else frozenset()


def _norm(c: _Ctx) -> Span:
    assert c.data is not None
    return c.data.span_of("normalize")


def _with_field(config: Config, name: str, value: Any) -> Config:
    return replace(config, fields=tuple((k, value if k == name else v) for k, v in config.fields))


# The rules, in order; the first two may leave later ones nothing to say.
CHECKS: tuple[Callable[[_Ctx], None], ...] = (
    _outputs,
    _loss_output,
    _columns,
    _input_dtypes,
    _token_ids,
    _data_input,
    _reconstruct,
    _data_targets,
    _augment,
    _rate_divides,
    _data_files,
    _stream_only,
    _targets,
    _pretrain,
)


def apply(
    model: Graph, data: Config | None, train: Config, train_written: bool, diags: Diagnostics
) -> Config:
    """Run every cross-check; return `train` with the task's default metrics filled in."""
    c = _Ctx(model, data, train, train_written, diags)
    for rule in CHECKS:
        rule(c)
    return _metrics(c)
