"""Registries: one table per kind, one entry per word of the language.

Validation, `dnn help`, the generated reference, shape inference and lowering all read the
same `Entry`. Nothing here imports JAX: a word's implementation (its lowering, or its runtime
function) is tagged `@implements(kind, name)`, or recorded `provides(kind, name, value)` where it
is not one function, in the module its kind names (`Registry.implemented_in`), which is imported
only when an implementation is first asked for (DESIGN §7).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from ..diagnostics import E_UNKNOWN_ENTRY, InternalError, Span, error


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class Problem(Exception):
    """Raised by shape/params/validate rules: a user mistake, positioned by the caller.

    `arg` names the argument at fault (the diagnostic points at it when it was written).
    """

    def __init__(
        self, message: str, hint: str | None = None, arg: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.message, self.hint, self.arg, self.code = message, hint, arg, code


@dataclass(frozen=True, slots=True)
class SameAs:
    """A default that copies another argument (pooling's `stride` defaults to its window)."""

    arg: str

    def __repr__(self) -> str:
        return f"same as `{self.arg}`"


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument of an entry: name, type, default, unit and a one-line doc."""

    name: str
    type: Any  # an ArgType from .types
    default: Any = REQUIRED
    doc: str = ""
    unit: str | None = None
    variadic: bool = False  # takes all remaining positional arguments as a list
    kw_only: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def arg(name: str, type: Any, default: Any = REQUIRED, doc: str = "", **kw: Any) -> Arg:
    """Declare an argument."""
    return Arg(name, type, default, doc, **kw)


@dataclass(frozen=True, slots=True)
class Args:
    """Bound arguments of one use of an entry, in registry order, defaults filled."""

    items: tuple[tuple[str, Any], ...]

    def __getattr__(self, name: str) -> Any:
        for k, v in object.__getattribute__(self, "items"):
            if k == name:
                return v
        raise AttributeError(name)

    def asdict(self) -> dict[str, Any]:
        return dict(self.items)


# The tasks a loss can imply, and the targets each reads (DESIGN §7: facts on the entry).
TASKS: dict[str, str] = {
    "regression": "real-valued targets, as many per example as the model has output units",
    "binary": "one output unit; 0/1 targets (a class label of a two-class set)",
    "multiclass": "one unit per class; integer class labels or one-hot rows",
    "multilabel": "one unit per label, each a yes/no decision; multi-hot 0/1 rows, or class "
    "labels (read as one-hot rows)",
}


@dataclass(frozen=True, slots=True)
class Task:
    """The task a loss implies, by the width of the model's output.

    `one` is the task when the output has one unit, `several` when it has more; None means
    the loss is not valid for that width, and `refuse_one` / `refuse_several` say why.
    """

    one: str | None
    several: str | None
    refuse_one: str = ""
    refuse_several: str = ""

    def __post_init__(self) -> None:
        for t in (self.one, self.several):
            if t is not None and t not in TASKS:
                raise InternalError(f"unknown task {t!r}")

    def of(self, units: int) -> str | None:
        """The task for a model output of `units` values, or None when it is not valid."""
        return self.one if units == 1 else self.several

    def refusal(self, units: int) -> str:
        return self.refuse_one if units == 1 else self.refuse_several


@dataclass(frozen=True, slots=True)
class Needs:
    """What a word needs at run time, evaluated by the checker against the model and data.

    `dtype`: the input tensors it takes (`float`, `int` or `any`). `tasks`: the tasks whose
    targets it can read (metrics: accuracy reads class labels, r2 real values); empty means
    any. `input`: `image` for words that need one image input [height, width, channels].
    `file`: for a data source, the argument naming the file or folder it reads.
    `ids`: for a layer of integer ids, the argument bounding them (0 <= id < its value).
    `outputs`: for a data source that can feed a model with several outputs (one target each,
    named after the output), the argument naming a one-output model's target, unused then.
    `unit_interval`: for a pretrainable layer, `(argument, value)`: when the argument has that
    value (an `rbm`'s `visible = bernoulli`), pretraining needs the layer's inputs in [0, 1].
    """

    dtype: str = "float"
    tasks: tuple[str, ...] = ()
    input: str = "any"
    file: str | None = None  # data sources: the argument that names a file or folder
    ids: str | None = None  # layers of integer ids: the argument they must stay below
    outputs: str | None = None  # data sources: the one-output target argument (see above)
    unit_interval: tuple[str, str] | None = None  # pretraining needs inputs in [0, 1] (above)

    def __post_init__(self) -> None:
        if self.dtype not in ("float", "int", "any") or self.input not in ("any", "image"):
            raise InternalError(f"bad needs {self!r}")
        for t in self.tasks:
            if t not in TASKS:
                raise InternalError(f"unknown task {t!r}")

    def fits(self, task: str) -> bool:
        return not self.tasks or task in self.tasks


CLASS_TASKS = ("binary", "multiclass", "multilabel")

# Traits an entry may declare, read by the checker and the lowering instead of name lists.
TRAITS: dict[str, str] = {
    "rate_divides": "the learning rate is in a denominator: a schedule that reaches 0 (a "
    "warm-up from 0) is refused",
    "invertible": "maps each feature on its own by an invertible affine map, x' = (x - shift) / "
    "scale: it can also normalize regression targets (`data.targets`), and the model's outputs "
    "are mapped back to the data's units",
    "pointwise": "an activation whose y_i depends on x_i alone, with a slope f'(x_i) per unit: "
    "`dnn init-check` counts the units whose slope is 0 for a whole batch (dead)",
    "saturating": "a bounded activation whose slope vanishes at both ends (sigmoid, tanh): "
    "`dnn init-check` counts the values where the slope is below 1/20 of its slope at 0",
    "pretrainable": "a layer whose weights `train.pretrain` learns before step 0, greedily, one "
    "layer at a time in network order (`rbm` under `cd`)",
    "unit_range": "its values lie in [0, 1]: a layer's or activation's outputs always, a "
    "normalizer's on the train split, a data source's examples as loaded",
    "rearranges": "a layer that moves or copies its input's values without changing them in "
    "evaluation (flatten, reshape, dropout): its outputs' range is its input's",
}


@dataclass(frozen=True, slots=True)
class Slots:
    """How many parameter-sized arrays an optimizer keeps (its moments, traces, sums).

    `base` always, plus `n` for each `(argument, n)` in `when` whose value is set (true or
    non-zero): `sgd` keeps a momentum trace only when `momentum` > 0, `adam` a third slot with
    `amsgrad`. The memory estimate (compiler/memory.py) reads it; a test compares it with the
    state Optax allocates.
    """

    base: int
    when: tuple[tuple[str, int], ...] = ()

    def count(self, args: Mapping[str, Any]) -> int:
        """The slots kept for these argument values."""
        return self.base + sum(n for name, n in self.when if args.get(name))

    def describe(self, args: Mapping[str, Any]) -> str:
        """`2 parameter-sized arrays` (and the rule, when arguments change it)."""
        n = self.count(args)
        text = f"{n} parameter-sized array{'s' * (n != 1)}"
        if self.when:
            rule = ", ".join(f"+{k} with `{name}` set" for name, k in self.when)
            text += f" with the defaults ({self.base}, {rule})"
        return text


@dataclass(frozen=True, slots=True)
class Entry:
    """A word of the language.

    shape(args, x) -> output shape; x is the input shape, or a tuple of shapes when
    `arity` is not 1. params(args, x) -> trainable parameter count; state(args, x) ->
    non-trainable count (running statistics). validate(args) checks argument combinations.
    """

    kind: str
    name: str
    args: tuple[Arg, ...] = ()
    doc: str = ""
    formula: str | None = None
    aliases: tuple[str, ...] = ()
    shape: Callable[..., tuple[int, ...]] | None = None
    params: Callable[..., int] | None = None
    state: Callable[..., int] | None = None
    validate: Callable[[Args], None] | None = None
    arity: int | tuple[int, int | None] = 1
    int_input: bool = False  # takes integer tensors (embedding) instead of floats
    lower: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    needs: Needs = Needs()
    task: Task | None = None  # losses: the task implied by the output's width
    example: str | None = None  # a minimal valid use, for the contract test and `dnn help`
    traits: frozenset[str] = frozenset()  # e.g. `rate_divides`: the rate is in a denominator
    slots: Slots | None = None  # optimizers: the parameter-sized arrays their state keeps
    # layers: values per example a training step keeps for this layer, keeps(args, x, y) with
    # x, y the input and output shapes; None: its output (compiler/memory.py, docs/memory.md)
    keeps: Callable[..., int] | None = None
    # the word's names in other libraries (`ConvTranspose2d`, `Conv2DTranspose`): not accepted,
    # but an unknown name equal to one (ignoring case and `_`) gets a hint at this word
    known_as: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.traits <= TRAITS.keys():
            raise InternalError(f"{self.kind} `{self.name}`: unknown traits {set(self.traits)}")

    def get_arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)

    @property
    def variadic_inputs(self) -> bool:
        return self.arity != 1


class Registry:
    """A table of entries of one kind, with aliases and did-you-mean lookup."""

    def __init__(self, kind: str, title: str, doc: str = "", implemented_in: str | None = None):
        self.kind, self.title, self.doc = kind, title, doc
        # the module whose import tags this kind's implementations (`@implements`, `provides`);
        # None for kinds whose words are not implemented through the table
        self.implemented_in = implemented_in
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, **kw: Any) -> Entry:
        """Declare an entry; refuses a name or alias that is already taken."""
        entry = Entry(self.kind, name, **kw)
        for n in (name, *entry.aliases):
            if n in self._entries or n in self._aliases:
                raise InternalError(f"{self.kind} `{n}` declared twice")
        self._entries[name] = entry
        for a in entry.aliases:
            self._aliases[a] = name
        return entry

    def derive(self, name: str, base: Entry, **changes: Any) -> Entry:
        """Declare a variant of `base` (optax's `nadam = partial(adam, nesterov=True)`)."""
        fields = {
            k: getattr(base, k) for k in Entry.__dataclass_fields__ if k not in ("kind", "name")
        }
        fields["aliases"] = ()
        fields.update(changes)
        return self.add(name, **fields)

    def lookup(self, name: str) -> Entry | None:
        canonical = self._aliases.get(name, name)
        return self._entries.get(canonical)

    def get(self, name: str, span: Span, what: str | None = None) -> Entry:
        """The entry called `name`, or raise an unknown-name diagnostic with a did-you-mean."""
        entry = self.lookup(name)
        if entry is None:
            raise error(
                E_UNKNOWN_ENTRY, f"unknown {what or self.kind} `{name}`", span, self.suggest(name)
            )
        return entry

    def suggest(self, name: str, extra: tuple[str, ...] = ()) -> str | None:
        """`did you mean ...?`: the word another library calls `name`, else close matches over
        names and aliases."""
        return self.known(name) or did_you_mean(name, [*self.names(), *self._aliases, *extra])

    def known(self, name: str) -> str | None:
        """`did you mean `upsample`? (dnn's name for `UpSampling2D`)` when `name` is an entry's
        name in another library (`known_as`), compared without case and underscores."""
        key = _folded(name)
        for e in self._entries.values():
            for other in e.known_as:
                if _folded(other) == key:
                    return f"did you mean `{e.name}`? (dnn's name for `{other}`)"
        return None

    def names(self) -> list[str]:
        return list(self._entries)

    def aliases_of(self, name: str) -> tuple[str, ...]:
        return self._entries[name].aliases

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __contains__(self, name: str) -> bool:
        return self.lookup(name) is not None

    def __len__(self) -> int:
        return len(self._entries)

    def implementation(self, name: str) -> Any:
        """What implements the word `name` (an alias names its entry's): the function tagged
        `@implements`, or the value recorded by `provides`, from the kind's implementing module,
        imported on first use."""
        entry = self.lookup(name)
        found = _IMPLEMENTATIONS.get((self.kind, entry.name)) if entry else None
        if found is None:
            self._load()
            found = _IMPLEMENTATIONS.get((self.kind, entry.name)) if entry else None
        if found is None:
            raise InternalError(f"{self.kind} `{name}` has no implementation")
        return found

    def implementation_gaps(self) -> tuple[list[str], list[str]]:
        """(entries without an implementation, implementations without an entry)."""
        self._load()
        tagged = {name for kind, name in _IMPLEMENTATIONS if kind == self.kind}
        return [n for n in self._entries if n not in tagged], sorted(tagged - self._entries.keys())

    def _load(self) -> None:
        if self.implemented_in is None:
            raise InternalError(f"{self.kind}s name no implementing module")
        importlib.import_module(self.implemented_in)


def _folded(name: str) -> str:
    return name.lower().replace("_", "")


def did_you_mean(name: str, candidates: list[str] | tuple[str, ...]) -> str | None:
    """A did-you-mean hint from close matches among `candidates`.

    A candidate equal to `name` but for case and underscores is the one meant: other libraries'
    class names (`RMSNorm`, `BatchNorm`, `Conv2d`) are too short or too capitalized for
    difflib's ratio alone. Candidates that differ only so (`batchnorm` and its alias
    `batch_norm`) are offered once, as the first of them (an entry's name precedes its aliases).
    """
    first: dict[str, str] = {}
    for c in candidates:
        first.setdefault(_fold(c), c)
    if _fold(name) in first:
        return f"did you mean `{first[_fold(name)]}`?"
    found = difflib.get_close_matches(name, list(candidates), n=max(len(first), 1), cutoff=0.6)
    close = list(dict.fromkeys(first[_fold(c)] for c in found))[:3]
    if not close:
        return None
    if len(close) == 1:
        return f"did you mean `{close[0]}`?"
    return "did you mean " + ", ".join(f"`{c}`" for c in close[:-1]) + f" or `{close[-1]}`?"


def _fold(name: str) -> str:
    return name.replace("_", "").lower()


# Every registry, in the order `dnn help` and the reference list them. Kind modules add theirs.
REGISTRIES: dict[str, Registry] = {}


def registry(kind: str, title: str, doc: str = "", implemented_in: str | None = None) -> Registry:
    """Create and record the registry for `kind`; `implemented_in`: the module (an import
    path) whose `@implements(kind, ...)` functions implement its words."""
    if kind in REGISTRIES:
        raise InternalError(f"registry `{kind}` created twice")
    REGISTRIES[kind] = Registry(kind, title, doc, implemented_in)
    return REGISTRIES[kind]


# ------------------------------------------------------------------ implementations

# (kind, name) -> what implements that word: a function tagged `@implements`, or a value
# recorded by `provides`; filled as the implementing modules are imported. Read through
# `Registry.implementation`.
_IMPLEMENTATIONS: dict[tuple[str, str], object] = {}

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def implements(kind: str, name: str, *more_names: str) -> Callable[[F], F]:
    """Tag `fn` as the implementation of the word `name` of `kind` (and of `more_names`, its
    variants: `conv1d`, `conv2d` and `conv3d` share one lowering). Records it only; a name
    claimed twice is refused at import."""

    def tag(fn: F) -> F:
        return provides(kind, name, fn, *more_names)

    return tag


def provides(kind: str, name: str, value: T, *more_names: str) -> T:
    """Record `value` as the implementation of the word `name` of `kind` (and of `more_names`),
    for a word implemented by more than one function: a named tuple of its parts, such as a
    normalizer's `fit` and `apply`. Returns `value`; a name claimed twice is refused."""
    for n in (name, *more_names):
        old = _IMPLEMENTATIONS.get((kind, n))
        if old is not None and _origin(old) != _origin(value):  # a reload re-tags the same
            raise InternalError(f"{kind} `{n}` implemented twice: {_origin(old)}, {_origin(value)}")
        _IMPLEMENTATIONS[(kind, n)] = value
    return value


def _origin(impl: object) -> str:
    """Where `impl` comes from: a function's qualified name, a tuple's parts' (a reload gives
    the same), any other value's repr."""
    if isinstance(impl, tuple):
        return f"{type(impl).__qualname__}({', '.join(map(_origin, impl))})"
    if callable(impl):
        return f"{getattr(impl, '__module__', '?')}.{getattr(impl, '__qualname__', repr(impl))}"
    return repr(impl)


def implementation(kind: str, name: str) -> Any:
    """What implements the word `name` of `kind` (`Registry.implementation`)."""
    return REGISTRIES[kind].implementation(name)


__all__ = [
    "CLASS_TASKS",
    "REQUIRED",
    "TASKS",
    "TRAITS",
    "Arg",
    "Needs",
    "Task",
    "Args",
    "Entry",
    "Problem",
    "Registry",
    "SameAs",
    "Slots",
    "arg",
    "did_you_mean",
    "implementation",
    "implements",
    "provides",
    "registry",
    "REGISTRIES",
    "replace",
]
