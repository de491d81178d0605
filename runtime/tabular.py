"""Typed table columns: the stage that turns a CSV table's cells into what the model reads.

A sample goes source → split → fitted → transforms → batches (runtime/data/). The source stage
(data/load.py, data/csvrows.py) reads the CSV's input cells as strings and the split stage cuts
them as any source's; for a typed table this module is the next two stages: it *fits* a
`Schema` on the train split only — a type per column (`data.columns`, or inferred), each
category's and text column's vocabulary, each number column's fill value, the normalizer's
statistics over the number columns — and *encodes* every split with it into one float32 row per
example, laid out input by input (`bind` says which columns feed which input). The schema is
saved with the run (`columns.json`, plain JSON) so `dnn eval`, `dnn predict` and `dnn export`
map cells exactly as training did; an unseen value is counted, never an error.

Inference, on the train split's cells (a column `data.columns` types is not inferred):
every present cell a finite number → `number`; at most two distinct values → `binary`; cells
of more than two words on average → `text`; otherwise `category`; no present cell → `ignore`.

Missing cells are empty or one of pandas' default missing markers (`MISSING`): a number takes
the train mean (and an is-missing feature where train had missing cells), a category its own
index 1, a binary 0 (and an is-missing feature likewise), a text no words.

Text is split into words by a regular expression (lower-cased runs of letters and digits)
rather than by a tokenizer library: the only well-kept one installable here (Hugging Face
`tokenizers`) pulls `huggingface_hub` and its network stack in, and for a word-level
vocabulary over table cells its `Whitespace` pre-tokenizer and `WordLevel` model amount to
this same split and count.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from dnn.compiler.diagnostics import (
    E_COLUMN_INPUT,
    E_COLUMNS,
    Diagnostic,
    Span,
    SpecError,
)
from dnn.compiler.registry.core import did_you_mean, provides
from dnn.compiler.registry.data import COLUMNS, NORMALIZERS
from dnn.compiler.values import Ref

from . import preprocess

# pandas' default `na_values` (pandas.read_csv), the markers spreadsheets and R write
MISSING = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
TRUE = frozenset({"true", "yes", "y", "t", "1", "on"})
OOV, MISSING_ID = 0, 1  # category indices: an unseen value, a missing cell; train values from 2
PAD, UNKNOWN = 0, 1  # text ids: padding, a word train never saw; train words from 2
_WORD = re.compile(r"\w+")
TEXT_WORDS = 2.0  # mean words per cell above which an untyped string column is text


@dataclass(frozen=True)
class Column:
    """One input column's type and what was fitted on the train split."""

    name: str
    type: str  # a COLUMNS entry
    vocab: tuple[str, ...] = ()  # category: values by index from 2; text: words from 2;
    # binary: (negative, positive), "" where train showed only one of them
    fill: float = 0.0  # number: the train mean a missing cell takes
    indicator: bool = False  # number, binary: an is-missing feature follows the value
    length: int = 0  # text: word ids per cell
    inferred: bool = True  # typed from the train split (False: `data.columns` gave the type)

    def width(self, integer: bool) -> int:
        """Values this column gives an input: an integer input reads ids, a real one floats."""
        if self.type == "category":
            return 1 if integer else 2 + len(self.vocab)
        if self.type == "text":
            return self.length
        if self.type == "ignore":
            return 0
        return 1 + int(self.indicator)

    def describe(self, integer: bool = False) -> str:
        """How `dnn data` and messages show the column: its type and encoding."""
        if self.type == "category":
            k = 2 + len(self.vocab)
            enc = "index" if integer else f"one-hot of {k}"
            return f"category, {len(self.vocab)} values + oov + missing ({enc})"
        if self.type == "text":
            return f"text, {len(self.vocab)} words, {self.length} ids"
        if self.type == "binary":
            neg, pos = self.vocab
            return f"binary, 1 = `{pos}`, 0 = `{neg}`" + (" + is-missing" if self.indicator else "")
        if self.type == "number":
            return f"number, fill {self.fill:.4g}" + (" + is-missing" if self.indicator else "")
        return "ignored"


@dataclass(frozen=True)
class Schema:
    """A table's fitted columns (file order, label left out) and the label column's name."""

    label: str
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def numbers(self) -> list[str]:
        return [c.name for c in self.columns if c.type == "number"]

    def to_json(self) -> str:
        return json.dumps(
            {"label": self.label, "columns": [asdict(c) for c in self.columns]}, indent=2
        )

    @staticmethod
    def from_json(text: str) -> Schema:
        raw = json.loads(text)
        cols = tuple(Column(**{**c, "vocab": tuple(c["vocab"])}) for c in raw["columns"])
        return Schema(raw["label"], cols)


SCHEMA_FILE = "columns.json"


def save(schema: Schema, folder: Path, unseen: Mapping[str, Any] | None = None) -> None:
    """`columns.json`: the schema, and per split the cells its vocabularies did not know."""
    doc = json.loads(schema.to_json())
    doc["unseen"] = {
        split: {c: {"count": n, "values": list(v)} for c, (n, v) in sorted(cols.items())}
        for split, cols in (unseen or {}).items()
    }
    (folder / SCHEMA_FILE).write_text(json.dumps(doc, indent=2) + "\n")


def load(folder: Path) -> Schema | None:
    path = folder / SCHEMA_FILE
    return Schema.from_json(path.read_text()) if path.exists() else None


# ----------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cells:
    """One column's cells in one split, and how to point at cell `i` of them in the file."""

    name: str
    values: np.ndarray  # (N,) of str
    at: Callable[[int, str, str, str], SpecError]  # (i, code, message, hint) -> the error

    def missing(self) -> np.ndarray:
        return np.array([v.strip() in MISSING for v in self.values], bool)


class _Sum:
    """A sum of floats that does not depend on how its values were cut into chunks: each
    `CHUNK` values in the order given summed exactly (`math.fsum`), then those sums, so a
    table read whole and one streamed give the same fill bit for bit."""

    CHUNK = 4096

    def __init__(self) -> None:
        self.parts: list[float] = []
        self.pending: list[float] = []

    def add(self, v: float) -> None:
        self.pending.append(v)
        if len(self.pending) == self.CHUNK:
            self.parts.append(math.fsum(self.pending))
            self.pending = []

    def result(self) -> float:
        return math.fsum([*self.parts, math.fsum(self.pending)])


@dataclass
class Facts:
    """What the passes over a table's train cells saw of one column: what inference and the
    column types' `fit` read. The first pass (`observe`, cells in file order) counts cells and
    present ones, whether every present one parses as a number, the first that is no finite
    number (`bad`), the exact sum of the finite ones, the first three distinct present values
    (each with where it was first met) and the words. The second (`count`, any order) counts
    the values of a category column and the words of a text column: the vocabularies.

    Where a cell was met is a key `at(key, code, message, hint)` turns into an error at that
    cell of the file: a row of the train split in memory, a source row when streamed."""

    name: str
    at: Callable[[Any, str, str, str], SpecError] = field(repr=False)
    cells: int = 0
    present: int = 0
    parses: bool = True
    bad: tuple[Any, str] | None = None
    total: _Sum = field(default_factory=_Sum, repr=False)
    distinct: dict[str, Any] = field(default_factory=dict)
    words: int = 0
    values: Counter[str] = field(default_factory=Counter, repr=False)
    vocabulary: Counter[str] = field(default_factory=Counter, repr=False)

    def observe(self, cells: Any, keys: Any) -> None:
        """The first pass over some of the column's train cells, in file order."""
        for v, key in zip(cells, keys, strict=True):
            self.cells += 1
            s = v.strip()
            if s in MISSING:
                continue
            self.present += 1
            self.words += len(_WORD.findall(s.lower()))
            if len(self.distinct) < 3 and s not in self.distinct:
                self.distinct[s] = key
            try:
                f = float(s)
            except ValueError:
                self.parses = False
                self.bad = self.bad or (key, v)
                continue
            if math.isfinite(f):
                self.total.add(f)
            elif self.bad is None:
                self.bad = (key, v)

    def count(self, kind: str, cells: Any) -> None:
        """The second pass: the vocabulary a category or text column needs."""
        if kind == "category":
            self.values.update(s for v in cells if (s := v.strip()) not in MISSING)
        elif kind == "text":
            self.vocabulary.update(w for v in cells if v.strip() not in MISSING for w in words(v))


def _number(v: str) -> float | None:
    try:
        f = float(v)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _parses(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _ranked(counts: Counter[str], cap: int | None = None) -> tuple[str, ...]:
    """Most frequent first, ties in sorted order (so the vocabulary does not depend on row order)."""
    ranked = sorted(counts, key=lambda v: (-counts[v], v))
    return tuple(ranked[:cap] if cap is not None else ranked)


def words(text: str) -> list[str]:
    """A text cell's words: lower-cased runs of letters and digits."""
    return _WORD.findall(text.lower())


def infer(facts: Facts) -> str:
    """A column's type from what the first pass saw of its train cells (the module doc's rule)."""
    if not facts.present:
        return "ignore"
    if facts.parses:  # `inf` too: a number column, refused at that cell
        return "number"
    if len(facts.distinct) <= 2:
        return "binary"
    if facts.words / facts.present > TEXT_WORDS:
        return "text"
    return "category"


# ----------------------------------------------------------------------------- column types


class ColumnType(NamedTuple):
    """A column type word's implementation: `fit` a `Column` from the train split's `Facts`
    (the `Ref` holds the word's arguments; a bad cell raises at it), `encode` cells into
    (N, width) values and an (N,) mask of cells the vocabulary does not know."""

    fit: Callable[[Ref, Facts], Column]
    encode: Callable[[Column, Cells, bool], tuple[np.ndarray, np.ndarray]]


def _fit_number(ref: Ref, facts: Facts) -> Column:
    if facts.bad is not None:
        key, v = facts.bad
        problem = "is not a finite number" if _parses(v) else "is not a number"
        hint = f"fill in the value, or type the column: `columns = {{ {facts.name}: category }}`"
        message = f"value `{v.strip()}` in number column `{facts.name}` {problem}"
        raise facts.at(key, E_COLUMNS, message, hint)
    fill = facts.total.result() / facts.present if facts.present else 0.0
    return Column(facts.name, "number", fill=fill, indicator=facts.present < facts.cells)


def _number_values(cells: Cells, miss: np.ndarray) -> np.ndarray:
    out = np.zeros(len(cells.values), np.float64)
    for i, v in enumerate(cells.values):
        if miss[i]:
            continue
        f = _number(v)
        if f is None:
            problem = "is not a finite number" if _parses(v) else "is not a number"
            hint = (
                f"fill in the value, or type the column: `columns = {{ {cells.name}: category }}`"
            )
            raise cells.at(
                i,
                E_COLUMNS,
                f"value `{v.strip()}` in number column `{cells.name}` {problem}",
                hint,
            )
        out[i] = f
    return out


def _encode_number(col: Column, cells: Cells, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    """The raw value (a missing cell: the fill), then the is-missing feature; the caller
    normalizes the values."""
    miss = cells.missing()
    values = np.where(miss, col.fill, _number_values(cells, miss))
    parts = [values[:, None]] + ([miss[:, None].astype(np.float64)] if col.indicator else [])
    return np.concatenate(parts, axis=1), np.zeros(len(miss), bool)


def _fit_category(ref: Ref, facts: Facts) -> Column:
    return Column(facts.name, "category", vocab=_ranked(facts.values))


def _category_ids(col: Column, cells: Cells) -> tuple[np.ndarray, np.ndarray]:
    index = {v: i + 2 for i, v in enumerate(col.vocab)}
    ids = np.array(
        [MISSING_ID if v.strip() in MISSING else index.get(v.strip(), OOV) for v in cells.values],
        np.int64,
    )
    return ids, ids == OOV


def _encode_category(col: Column, cells: Cells, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    ids, unseen = _category_ids(col, cells)
    if integer:
        return ids[:, None].astype(np.float64), unseen
    return np.eye(2 + len(col.vocab))[ids], unseen


def _fit_binary(ref: Ref, facts: Facts) -> Column:
    seen = list(facts.distinct)
    if len(seen) > 2:  # the third distinct value met in file order
        first, second = sorted(seen[:2])
        message = f"binary column `{facts.name}` has a third value `{seen[2]}` (besides `{first}` and `{second}`)"
        hint = f"type it `category`: `columns = {{ {facts.name}: category }}`"
        raise facts.at(facts.distinct[seen[2]], E_COLUMNS, message, hint)
    seen.sort()
    truthy = [v for v in seen if v.lower() in TRUE]
    pos = truthy[0] if truthy else seen[-1] if len(seen) == 2 else ""
    neg = next((v for v in seen if v != pos), "")
    return Column(facts.name, "binary", vocab=(neg, pos), indicator=facts.present < facts.cells)


def _encode_binary(col: Column, cells: Cells, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    miss = cells.missing()
    v = np.array([c.strip() for c in cells.values], object)
    neg, pos = col.vocab
    ones = (v == pos) & (pos != "")
    unseen = ~miss & ~ones & ~((v == neg) & (neg != ""))
    parts = [ones[:, None].astype(np.float64)] + (
        [miss[:, None].astype(np.float64)] if col.indicator else []
    )
    return np.concatenate(parts, axis=1), unseen


def _fit_text(ref: Ref, facts: Facts) -> Column:
    vocab = _ranked(facts.vocabulary, ref.arg("max_words"))
    return Column(facts.name, "text", vocab=vocab, length=int(ref.arg("length")))


def _encode_text(col: Column, cells: Cells, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    """Word ids padded with 0 to the column's length; a cell with a word train never saw is
    counted as unseen (the word takes id 1)."""
    index = {w: i + 2 for i, w in enumerate(col.vocab)}
    out = np.full((len(cells.values), col.length), PAD, np.float64)
    unseen = np.zeros(len(cells.values), bool)
    for i, v in enumerate(cells.values):
        if v.strip() in MISSING:
            continue
        ids = [index.get(w, UNKNOWN) for w in words(v)][: col.length]
        out[i, : len(ids)] = ids
        unseen[i] = UNKNOWN in ids
    return out, unseen


def _fit_ignore(ref: Ref, facts: Facts) -> Column:
    return Column(facts.name, "ignore")


def _encode_ignore(col: Column, cells: Cells, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((len(cells.values), 0)), np.zeros(len(cells.values), bool)


provides("column", "number", ColumnType(_fit_number, _encode_number))
provides("column", "category", ColumnType(_fit_category, _encode_category))
provides("column", "binary", ColumnType(_fit_binary, _encode_binary))
provides("column", "text", ColumnType(_fit_text, _encode_text))
provides("column", "ignore", ColumnType(_fit_ignore, _encode_ignore))


def _kind(name: str) -> ColumnType:
    found: ColumnType = COLUMNS.implementation(name)
    return found


def default_ref(name: str) -> Ref:
    """A column type word with its default arguments (an inferred column's)."""
    entry = COLUMNS.lookup(name)
    assert entry is not None
    return Ref("column", entry.name, tuple((a.name, a.default) for a in entry.args))


# ----------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class Raw:
    """A split of a CSV table as cells: `cells` (N, C) strings in `names` order, and where
    each came from (`at`: (row in the split, column index, code, message, hint) -> error)."""

    names: tuple[str, ...]
    cells: np.ndarray
    at: Callable[[int, int, str, str, str], SpecError] = field(repr=False)

    def column(self, j: int) -> Cells:
        return Cells(
            self.names[j], self.cells[:, j], lambda i, code, m, h: self.at(i, j, code, m, h)
        )


class Fit:
    """A table's schema fitted in two passes over its train split's cells, given a chunk at a
    time (in memory the whole split is one chunk; streamed, the rows read from the file):
    `observe` every chunk in file order, then `types`, then `count` every chunk (any order),
    then `schema`. `at(key, j, code, message, hint)`: the error at column `j` of the cell met
    as `key`."""

    def __init__(
        self,
        names: tuple[str, ...],
        label: str,
        types: Mapping[str, Ref],
        at: Callable[[Any, int, str, str, str], SpecError],
    ) -> None:
        self.names, self.label, self.given = names, label, types
        self.facts = [
            Facts(n, lambda key, code, m, h, j=j: at(key, j, code, m, h))
            for j, n in enumerate(names)
        ]
        self.refs: list[Ref] = []

    def observe(self, cells: np.ndarray, keys: Any) -> None:
        for j, facts in enumerate(self.facts):
            facts.observe(cells[:, j], keys)

    def types(self) -> list[Ref]:
        """Each column's type (given, else inferred); a bad cell the first pass met raises
        here, before a second pass over the data."""
        self.refs = [self.given.get(f.name, None) or default_ref(infer(f)) for f in self.facts]
        for ref, facts in zip(self.refs, self.facts, strict=True):
            _kind(ref.name).fit(ref, facts)  # the vocabularies are still empty: checks only
        return self.refs

    def counts(self) -> bool:
        """Whether the second pass counts anything (a category or text column)."""
        return any(r.name in ("category", "text") for r in self.refs)

    def count(self, cells: np.ndarray) -> None:
        for j, (ref, facts) in enumerate(zip(self.refs, self.facts, strict=True)):
            facts.count(ref.name, cells[:, j])

    def schema(self) -> Schema:
        cols = [
            replace(_kind(ref.name).fit(ref, facts), inferred=facts.name not in self.given)
            for ref, facts in zip(self.refs, self.facts, strict=True)
        ]
        return Schema(self.label, tuple(cols))


def fit(raw: Raw, label: str, types: Mapping[str, Ref]) -> Schema:
    """The schema of a table, fitted on its train split `raw` in file order (types from
    `data.columns` where given, else inferred)."""
    fitting = Fit(raw.names, label, types, raw.at)
    fitting.observe(raw.cells, range(len(raw.cells)))
    fitting.types()
    fitting.count(raw.cells)
    return fitting.schema()


def fit_numbers(schema: Schema, normalize: Ref, raw: Raw) -> preprocess.Stats:
    """The normalizer's statistics over the train split's number columns (missing cells at
    their fill, as they are encoded)."""
    values = _number_matrix(schema, raw)
    if not values.shape[1] or normalize.name == "none":
        return {}
    return preprocess.fit(normalize, values)


def _number_encodings(schema: Schema, raw: Raw) -> dict[str, np.ndarray]:
    """Each number column's value (a missing cell at its fill) and is-missing feature, unscaled."""
    return {
        c.name: _encode_number(c, raw.column(raw.names.index(c.name)), False)[0]
        for c in schema.columns
        if c.type == "number"
    }


def number_rows(schema: Schema, raw: Raw) -> np.ndarray:
    """The number columns' values of some rows, side by side, missing cells at their fill:
    what the normalizer is fitted on (float64, (N, number columns))."""
    return _number_matrix(schema, raw)


def _number_matrix(
    schema: Schema, raw: Raw, plain: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """The number columns' values, side by side (the normalizer's input)."""
    plain = plain if plain is not None else _number_encodings(schema, raw)
    cols = [plain[name][:, 0] for name in schema.numbers()]
    return np.stack(cols, axis=1) if cols else np.zeros((len(raw.cells), 0))


def elementwise(normalize: Ref) -> bool:
    """Whether a normalizer scales each feature on its own (the invertible ones), as a table's
    number columns need: PCA and whitening would mix them with one-hot and id features."""
    entry = NORMALIZERS.lookup(normalize.name)
    return entry is not None and "invertible" in entry.traits


# ----------------------------------------------------------------------------- bind


@dataclass(frozen=True)
class Slot:
    """One model input and the columns it reads, in order (`own`: it is named after its
    column and reads it alone)."""

    input: str
    integer: bool
    size: int
    columns: tuple[str, ...]
    own: bool


@dataclass(frozen=True)
class Input:
    """What binding needs of a model input."""

    name: str
    integer: bool
    shape: tuple[int, ...]
    span: Span

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def _dtype(integer: bool, width: int) -> str:
    return f"{'i32' if integer else 'f32'}[{width}]"


def bind(
    schema: Schema, inputs: list[Input], sources: Mapping[str, str], span: Span
) -> tuple[Slot, ...]:
    """Which columns feed which input. An input named after a column reads that column alone
    (a category's index for an integer input, its one-hot for a real one; a text column's
    ids); the other columns, in file order, feed the other inputs end to end as real values.
    `span`: where to report a column no input reads (the `columns` field or the source)."""

    def fail(message: str, at: Span, hint: str) -> SpecError:
        return SpecError([Diagnostic(E_COLUMN_INPUT, message, at, hint)], sources)

    slots, rest = {}, [c for c in schema.columns if c.type != "ignore"]
    for inp in inputs:
        col = schema.column(inp.name)
        if col is None or col.type == "ignore":
            continue
        _check_own(col, inp, fail)
        slots[inp.name] = Slot(inp.name, inp.integer, inp.size, (col.name,), True)
        rest.remove(col)
    others = [i for i in inputs if i.name not in slots]
    if rest and not others:
        names = ", ".join(f"`{c.name}`" for c in rest)
        hint = f"name an input after it, or leave it out: `columns = {{ {rest[0].name}: ignore }}`"
        raise fail(
            f"column{'s' * (len(rest) > 1)} {names} feed{'s' * (len(rest) == 1)} no input",
            span,
            hint,
        )
    for c in rest:
        if c.type == "text":
            message = f"text column `{c.name}` needs an integer input of its own"
            raise fail(message, others[0].span, f"add `input {c.name}: i32[{c.length}]`")
    for inp in others:
        if inp.integer:
            hint = f"declare `input {inp.name}: f32{list(inp.shape)}`, or name it after a category or text column"
            raise fail(
                f"integer input `{inp.name}` reads no category or text column of its own",
                inp.span,
                hint,
            )
    width = sum(c.width(False) for c in rest)
    size = sum(i.size for i in others)
    if others and width != size:
        parts = ", ".join(f"`{c.name}` {c.width(False)}" for c in rest)
        message = (
            f"input{'s' * (len(others) > 1)} {', '.join(f'`{i.name}`' for i in others)} "
            f"take{'s' * (len(others) == 1)} {size} values but the table's columns give {width} ({parts or 'none'})"
        )
        hint = (
            f"declare `input {others[0].name}: f32[{width}]`"
            if len(others) == 1
            else f"give the inputs {width} values in all"
        )
        raise fail(message, others[0].span, hint)
    names = tuple(c.name for c in rest)
    for inp in others:
        slots[inp.name] = Slot(inp.name, False, inp.size, names, False)
    return tuple(slots[i.name] for i in inputs)


def _check_own(col: Column, inp: Input, fail: Callable[[str, Span, str], SpecError]) -> None:
    if col.type == "text" and not inp.integer:
        raise fail(
            f"text column `{col.name}` gives word ids, but input `{inp.name}` is real",
            inp.span,
            f"declare `input {inp.name}: {_dtype(True, col.length)}`",
        )
    if inp.integer and col.type not in ("category", "text"):
        raise fail(
            f"{col.type} column `{col.name}` gives real values, but input `{inp.name}` takes integer ids",
            inp.span,
            f"declare `input {inp.name}: {_dtype(False, col.width(False))}`",
        )
    width = col.width(inp.integer)
    if width != inp.size:
        message = f"input `{inp.name}` takes {inp.size} values but column `{col.name}` ({col.describe(inp.integer)}) gives {width}"
        raise fail(message, inp.span, f"declare `input {inp.name}: {_dtype(inp.integer, width)}`")


# ----------------------------------------------------------------------------- encode


@dataclass(frozen=True)
class Encoded:
    """A split encoded: float32 rows (ids exact), and per column the cells the vocabulary did
    not know: a mask over the rows (`masks`), and their count with the first few values
    (`unseen`)."""

    x: np.ndarray
    unseen: dict[str, tuple[int, tuple[str, ...]]]
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


class Unseen:
    """The cells a split's vocabularies did not know, per column: how many, and the first
    three distinct values in file order. `add` a batch at a time (with the rows' positions
    in the file); a row met again (a streamed split read every epoch) is counted once."""

    SHOWN = 3

    def __init__(self, rows: int) -> None:
        self._met = np.zeros((rows + 7) // 8, np.uint8)  # one bit per row of the source
        self._counts: Counter[str] = Counter()
        self._first: dict[str, dict[str, int]] = {}  # column -> value -> its first row seen
        self._lock = threading.Lock()
        self.met = 0  # rows counted (a batch's rows are distinct)

    def add(self, rows: np.ndarray, raw: Raw, masks: Mapping[str, np.ndarray]) -> None:
        rows = np.asarray(rows, np.int64)
        with self._lock:
            byte, bit = rows >> 3, (rows & 7).astype(np.uint8)
            new = (self._met[byte] >> bit) & 1 == 0
            self.met += int(new.sum())
            np.bitwise_or.at(self._met, byte[new], np.left_shift(1, bit[new]).astype(np.uint8))
            for name, mask in masks.items():
                hit = np.flatnonzero(mask & new)
                if not len(hit):
                    continue
                self._counts[name] += len(hit)
                first = self._first.setdefault(name, {})
                j = raw.names.index(name)
                for k in hit[np.argsort(rows[hit], kind="stable")]:
                    v, r = raw.cells[k, j].strip(), int(rows[k])
                    if v in first:
                        first[v] = min(first[v], r)
                        continue
                    first[v] = r
                    if len(first) > self.SHOWN:  # keep the three met earliest in the file
                        del first[max(first, key=first.__getitem__)]

    def report(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        return {
            name: (n, tuple(sorted(self._first[name], key=self._first[name].__getitem__)))
            for name, n in sorted(self._counts.items())
        }


def encode(
    schema: Schema,
    slots: tuple[Slot, ...],
    normalize: Ref,
    stats: preprocess.Stats,
    raw: Raw,
    rows: np.ndarray | None = None,
) -> Encoded:
    """Every example's features, input by input in `slots` order (what `model_inputs` cuts).
    `rows`: the examples' positions in the file (None: in file order), for `unseen`."""
    blocks: dict[tuple[str, bool], np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    plain = _number_encodings(schema, raw)  # parsed once, scaled below
    numbers = _scaled_numbers(schema, normalize, stats, raw, plain)
    for slot in slots:
        for name in slot.columns:
            col = schema.column(name)
            assert col is not None
            j = raw.names.index(name)
            if col.type == "number":  # the scaled value, then its is-missing feature
                values = np.concatenate([numbers[name][:, None], plain[name][:, 1:]], axis=1)
                mask = np.zeros(len(raw.cells), bool)
            else:
                values, mask = _kind(col.type).encode(col, raw.column(j), slot.integer)
            blocks[(name, slot.integer)] = values
            if mask.any():
                masks[name] = mask
    n = len(raw.cells)
    pieces = []
    for slot in slots:
        row = [blocks[(c, slot.integer)] for c in slot.columns]
        pieces.append(np.concatenate(row, axis=1) if row else np.zeros((n, 0)))
    x = _cut(slots, pieces, n)
    positions = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    tally = Unseen(int(positions.max()) + 1 if n else 0)
    tally.add(positions, raw, masks)
    return Encoded(x.astype(np.float32), tally.report(), masks)


def _cut(slots: tuple[Slot, ...], pieces: list[np.ndarray], n: int) -> np.ndarray:
    """Lay the inputs end to end; the inputs that share the remaining columns take
    consecutive parts of them, in input order."""
    shared = next((p for s, p in zip(slots, pieces, strict=True) if not s.own), np.zeros((n, 0)))
    out, start = [], 0
    for slot, piece in zip(slots, pieces, strict=True):
        if slot.own:
            out.append(piece)
        else:
            out.append(shared[:, start : start + slot.size])
            start += slot.size
    return np.concatenate(out, axis=1) if out else np.zeros((n, 0))


def _scaled_numbers(
    schema: Schema, normalize: Ref, stats: preprocess.Stats, raw: Raw, plain: dict[str, Any]
) -> dict[str, np.ndarray]:
    values = _number_matrix(schema, raw, plain)
    if values.shape[1] and normalize.name != "none":
        values = preprocess.apply(normalize, stats, values).astype(np.float64)
    return {name: values[:, k] for k, name in enumerate(schema.numbers())}


def unseen_report(unseen: Mapping[str, tuple[int, tuple[str, ...]]]) -> str:
    """`island: 2 (`Dream2`)`, one column per part: what `dnn predict` prints."""
    return "; ".join(
        f"{name}: {n} ({', '.join(f'`{v}`' for v in shown)})"
        for name, (n, shown) in sorted(unseen.items())
    )


def check_types(
    types: Mapping[str, Ref],
    names: tuple[str, ...],
    label: str,
    span: Callable[[str], Span],
    sources: Mapping[str, str],
    shown: str,
) -> None:
    """Every column `data.columns` types is an input column of the table (`span(name)`: where
    the spec types it)."""
    for name in types:
        if name in names:
            continue
        if name == label:
            message = f"`{name}` is the label column of `{shown}`; `columns` types the inputs"
            hint = "leave it out of `columns`"
        else:
            message = f"`{shown}` has no column `{name}` to type"
            hint = (
                did_you_mean(name, list(names))
                or f"its columns: {', '.join(f'`{n}`' for n in names[:8])}"
            )
        raise SpecError([Diagnostic(E_COLUMNS, message, span(name), hint)], sources)


def missing_column(names: tuple[str, ...], schema: Schema) -> str | None:
    """The first column the schema reads that a table lacks."""
    return next(
        (c.name for c in schema.columns if c.type != "ignore" and c.name not in names), None
    )
