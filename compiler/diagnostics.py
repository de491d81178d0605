"""Positions, diagnostics and their rendering: every user-facing error is data with a place."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# ---- stable diagnostic codes (explained in docs/errors.md, generated from CODES) ----
E_SYNTAX = "E0101"
E_UNEXPECTED_EOF = "E0102"
E_BAD_CHAR = "E0103"
E_BAD_UNIT = "E0104"
E_VERSION = "E0105"
E_UNKNOWN_NAME = "E0201"
E_UNKNOWN_LAYER = "E0202"
E_UNKNOWN_SECTION = "E0203"
E_UNKNOWN_FIELD = "E0204"
E_UNKNOWN_ENTRY = "E0205"
E_DUPLICATE = "E0206"
E_UNKNOWN_ARG = "E0301"
E_DUPLICATE_ARG = "E0302"
E_MISSING_ARG = "E0303"
E_TOO_MANY_ARGS = "E0304"
E_TYPE = "E0305"
E_VALUE = "E0306"
E_NOT_A_LAYER = "E0307"
E_NOT_STATIC = "E0308"
E_EVAL = "E0309"
E_SHAPE = "E0401"
E_RANK = "E0402"
E_MERGE = "E0403"
E_DTYPE = "E0404"
E_NO_INPUT = "E0405"
E_IMPORT_MISSING = "E0501"
E_IMPORT_CYCLE = "E0502"
E_IMPORT_CONTENT = "E0503"
E_OVERRIDE = "E0504"
E_MODEL = "E0601"
E_SECTION = "E0602"
E_TOO_LARGE = "E0603"
E_MEMORY = "E0604"
E_NONFINITE = "E0605"
E_PRETRAIN = "E0606"
E_EXPORT = "E0607"
E_TOO_SLOW = "E0608"
E_VMAP = "E0609"
E_PBT = "E0610"
E_UNFREEZE_WHEN = "E0611"
E_UNFREEZE_WHAT = "E0612"
E_EMIT = "E0615"
E_FILE = "E0701"
E_DATA = "E0702"
E_WEIGHTS = "E0703"
E_COLUMNS = "E0705"
E_COLUMN_INPUT = "E0706"
E_STREAM = "E0707"
E_SHARDS = "E0708"
W_UNUSED = "W0801"
W_NO_MODEL = "W0802"
W_SWEEP_NOT_RUN = "W0803"
W_NOTHING_TRAINS = "W0804"
W_MEMORY = "W0805"
W_NO_DATA_FILE = "W0806"
W_INIT = "W0807"
W_HEALTH = "W0808"
W_NO_VERSION = "W0809"
W_NOT_STREAMED = "W0810"

CODES: Mapping[str, str] = {
    E_SYNTAX: "syntax error: a token where the grammar expects something else",
    E_UNEXPECTED_EOF: "the file ends inside a construct (an unclosed bracket or block)",
    E_BAD_CHAR: "a character that cannot start any token",
    E_BAD_UNIT: "a quantity with an unknown unit (units are `steps` and `epochs`)",
    E_VERSION: "an unsupported language version in the `dnn N` line",
    E_UNKNOWN_NAME: "a name that is not a param, block argument, value or registry word",
    E_UNKNOWN_LAYER: "a call to a layer or block that does not exist",
    E_UNKNOWN_SECTION: "a top-level section other than `data`, `train`, `sweep`",
    E_UNKNOWN_FIELD: "a field a section does not have",
    E_UNKNOWN_ENTRY: "a word that is not in the registry its argument expects",
    E_DUPLICATE: "a param, block, model, value, field or import defined twice",
    E_UNKNOWN_ARG: "a keyword argument the callee does not take",
    E_DUPLICATE_ARG: "an argument given twice",
    E_MISSING_ARG: "a required argument not given",
    E_TOO_MANY_ARGS: "more positional arguments than the callee takes",
    E_TYPE: "an argument of the wrong type",
    E_VALUE: "an argument of the right type but out of range",
    E_NOT_A_LAYER: "a value used where a layer or tensor is expected, or the reverse",
    E_NOT_STATIC: "a tensor used where a compile-time value is expected",
    E_EVAL: "a compile-time expression that cannot be evaluated (division by zero, bad operand)",
    E_SHAPE: "a layer whose input shape does not fit",
    E_RANK: "a layer given an input of the wrong rank",
    E_MERGE: "`add`/`concat`-style merge of incompatible shapes",
    E_DTYPE: "a layer given an input of the wrong dtype",
    E_NO_INPUT: "a layer with no input: nothing before it in the chain",
    E_IMPORT_MISSING: "an imported file that cannot be read",
    E_IMPORT_CYCLE: "files that import each other",
    E_IMPORT_CONTENT: "an imported file that defines something other than blocks and params",
    E_OVERRIDE: "a `--set` override that names nothing or does not parse",
    E_MODEL: "a problem with the model as a whole (no input, several models, no output)",
    E_SECTION: "a section whose fields do not fit together",
    E_TOO_LARGE: "a model that expands to more than 100,000 layers (see docs/performance.md)",
    E_MEMORY: "a run whose memory estimate exceeds the device's memory: refused before allocating "
    "(docs/memory.md)",
    E_NONFINITE: "training stopped on a non-finite loss: the layer (or the loss, or the "
    "optimizer's update) where the first nan or inf appeared, found by replaying the run",
    E_PRETRAIN: "`train.pretrain` that cannot apply: no layer to pretrain, bernoulli visible "
    "units of an `rbm` fed values outside [0, 1] (known from the spec, or found on the train "
    "split before pretraining), an ensemble, a multi-host run, or pretraining that diverged",
    E_EXPORT: "a trained run that cannot be exported as asked: a layer the ONNX converter "
    "cannot convert (named at its line), or a converted model whose outputs differ from dnn's",
    E_TOO_SLOW: "`dnn lsp`: a spec whose check ran past the editor's time limit (a huge `repeat`, "
    "say); the editor stops there, `dnn check` checks the whole spec",
    E_UNFREEZE_WHEN: "`train.unfreeze` at a time training never reaches (at or after its last "
    "epoch or step, or at 0), or written without a unit (`5 epochs`, `300 steps`)",
    E_UNFREEZE_WHAT: "`train.unfreeze` with nothing to release: no `freeze` in the train section",
    E_EMIT: "`dnn compile --emit python`: a layer or setting the emitted script does not write "
    "out yet (named at its spec line; docs/emit.md lists what it covers)",
    E_VMAP: "`dnn sweep --vmap`: trials that cannot train as one vmapped program (a swept value "
    "that changes the model, the data or a train field other than the optimizer's and schedule's "
    "numbers and the seed; a lowering that branches on a swept number; a run with per-run state)",
    E_PBT: "`method = best_ball` (population-based training) over a value it cannot explore: "
    "anything but the optimizer's and schedule's numbers and `train.seed`, or a run it cannot "
    "train as one population (see E0609); or a sweep it cannot continue (--resume, --parallel)",
    E_FILE: "a file that cannot be read: missing, unreadable, or a spec that is not UTF-8 text",
    E_DATA: "data whose contents do not fit the spec (NaN, bad label, wrong shape, empty)",
    E_WEIGHTS: "a weight file (`init_from`, `--weights`) that cannot be used: missing, pickled "
    "(`.pth`, `.pt`: convert to safetensors), a layer it has no tensors for, tensors no layer "
    "takes, or a module whose shapes do not fit the layer it is mapped to",
    E_COLUMNS: "`data.columns` that does not fit the table: a column it names is not in the CSV, "
    "a source that is not a CSV, a cell that does not fit the column's type, or a normalizer "
    "that mixes features of a typed table",
    E_COLUMN_INPUT: "a typed table's columns that do not fit the model's inputs: an input named "
    "after a column of another width, a text column with no integer input of its own, a column "
    "no input reads",
    E_STREAM: "a source that cannot be read one example at a time (streamed) as it is stored: "
    "a compressed .npz member, a typed table; store it otherwise or set `data.stream = false`",
    E_SHARDS: "ArrayRecord shards that do not hold what their `dnn-shards.json` describes: a "
    "record that is no NPZ of `x` and `y`, of another shape or dtype, a shard it does not list "
    "or with another record count",
    W_UNUSED: "a value that is computed but never reaches an output",
    W_NO_MODEL: "a spec with no model that is not a block library: `dnn train` refuses it",
    W_SWEEP_NOT_RUN: "`dnn train` on a spec with a `sweep` section trains the spec's own values",
    W_NOTHING_TRAINS: "a run that changes no weight: every layer with weights frozen, or none",
    W_MEMORY: "a model whose memory estimate exceeds 80 GiB per device, more than most single "
    "accelerators hold (docs/memory.md)",
    W_NO_DATA_FILE: "a data file or folder the spec names that does not exist (yet): `dnn train` "
    "would stop at it",
    W_INIT: "`dnn init-check`: a layer whose outputs vanish or explode, whose units are dead or "
    "saturated, or whose gradients vanish or explode at initialization",
    W_HEALTH: "`train.health`: a failure mode the lectures teach (vanishing or exploding gradients, dead "
    "or saturated units, an update ratio far from 1e-3) seen in a run's health checks",
    W_NO_VERSION: "a spec without its `dnn N` line: read as language version 1 (`dnn upgrade "
    "FILE --write` adds the line)",
    W_NOT_STREAMED: "a `data` field that does not act on how the spec reads its data: `workers` or "
    "`cache` of a source other than an image folder in a spec with `stream = false` (they apply "
    "to streamed reading only), `on_error = skip` for a model with several outputs on a built-in "
    "set",
}


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file; lines and columns are 1-based, `end_col` is exclusive."""

    path: str
    line: int
    col: int
    end_line: int
    end_col: int

    def to(self, other: Span) -> Span:
        """The span from the start of `self` to the end of `other`."""
        return Span(self.path, self.line, self.col, other.end_line, other.end_col)


NO_SPAN = Span("<unknown>", 1, 1, 1, 1)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One message about a spec, pinned to a span."""

    code: str
    message: str
    span: Span
    hint: str | None = None
    severity: Literal["error", "warning"] = "error"
    notes: tuple[tuple[str, Span], ...] = ()


class InternalError(Exception):
    """A bug in dnn itself, never a user mistake."""

    def __init__(self, message: str):
        super().__init__(
            f"internal error (a bug in dnn): {message}\n"
            "please report it with the .dnn file and the command you ran"
        )


class DiagnosticError(Exception):
    """Raised inside a pass to abandon one construct; the pass records it and carries on."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def error(
    code: str, message: str, span: Span, hint: str | None = None, **kw: object
) -> DiagnosticError:
    """Build a `DiagnosticError` to raise."""
    return DiagnosticError(Diagnostic(code, message, span, hint, **kw))  # type: ignore[arg-type]


@dataclass(slots=True)
class Diagnostics:
    """A collector that passes add to; the driver raises one `SpecError` at the end."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, d: Diagnostic) -> None:
        if d.code and d not in self.items:  # an empty code marks an already-reported cause
            self.items.append(d)

    def extend(self, ds: Iterable[Diagnostic]) -> None:
        for d in ds:
            self.add(d)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]


class SpecError(Exception):
    """A spec has errors; carries the diagnostics and the source texts to render them."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None):
        self.diagnostics = tuple(sorted(diagnostics, key=_order))
        self.sources = dict(sources or {})
        super().__init__(render_all(self.diagnostics, self.sources, color=False))

    def __reduce__(self) -> tuple[type[SpecError], tuple[Any, ...]]:
        """Pickled whole, so an error raised in a worker process (Grain's) keeps its
        diagnostics: the default would rebuild it from the rendered text alone."""
        return (SpecError, (self.diagnostics, self.sources))


def _order(d: Diagnostic) -> tuple[str, int, int]:
    return (d.span.path, d.span.line, d.span.col)


# ---- rendering: pure functions of the diagnostic and the source text ----


def render(d: Diagnostic, sources: Mapping[str, str], color: bool = False) -> str:
    """Render like a compiler: `path:line:col: error[CODE]: message`, source line, caret, hint."""
    s = d.span
    bold, red, cyan, reset = ("\x1b[1m", "\x1b[31m", "\x1b[36m", "\x1b[0m") if color else ("",) * 4
    sev = f"{red}{d.severity}{reset}" if d.severity == "error" else d.severity
    out = [f"{bold}{s.path}:{s.line}:{s.col}:{reset} {sev}[{d.code}]: {d.message}"]
    out += _excerpt(s, sources, cyan, reset)
    for note, nspan in d.notes:
        out.append(f"  note: {nspan.path}:{nspan.line}:{nspan.col}: {note}")
    if d.hint:
        out.append(f"  {cyan}hint{reset}: {d.hint}")
    return "\n".join(out)


def _excerpt(s: Span, sources: Mapping[str, str], cyan: str, reset: str) -> list[str]:
    text = sources.get(s.path)
    if text is None:
        return []
    lines = text.splitlines()
    if not 1 <= s.line <= len(lines):
        return []
    src = lines[s.line - 1].expandtabs(1)
    width = max(1, (s.end_col - s.col) if s.end_line == s.line else len(src) - s.col + 1)
    gutter = " " * len(str(s.line))
    return [
        f"{cyan}{s.line} |{reset} {src}",
        f"{cyan}{gutter} |{reset} {' ' * (s.col - 1)}{'^' * width}",
    ]


def render_all(ds: Iterable[Diagnostic], sources: Mapping[str, str], color: bool = False) -> str:
    """Render several diagnostics, one blank line apart."""
    return "\n\n".join(render(d, sources, color) for d in ds)


def to_json(ds: Iterable[Diagnostic]) -> str:
    """Diagnostics as JSON for editors: file, line, col, end, severity, code, message, hint."""
    return json.dumps({"diagnostics": [to_dict(d) for d in ds]}, indent=2)


def to_dict(d: Diagnostic) -> dict[str, object]:
    """One diagnostic as a JSON-ready dict."""
    s = d.span
    return {
        "file": s.path,
        "line": s.line,
        "col": s.col,
        "end_line": s.end_line,
        "end_col": s.end_col,
        "severity": d.severity,
        "code": d.code,
        "message": d.message,
        "hint": d.hint,
    }
