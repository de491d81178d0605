"""The abstract syntax tree: frozen dataclasses named after grammar rules, spans kept out of `==`.

Comments are fields (they compare); spans and blank-line hints are not (`compare=False`), so
`parse(fmt(x)) == parse(x)` is a plain `==`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import NO_SPAN, Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class IntLit:
    value: int
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FloatLit:
    value: float
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StringLit:
    value: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BoolLit:
    value: bool
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NoneLit:
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Name:
    id: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Quantity:
    """`200 steps`, `10 epochs`."""

    value: int | float
    unit: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Pair:
    key: str
    value: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Record:
    """`{ train: 0.8, val: 0.2 }`."""

    pairs: tuple[Pair, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Arg:
    """A call argument; `name` is None for a positional one."""

    name: str | None
    value: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True, eq=False)
class Call:
    """`dense(128, init = he_normal)`, and `conv_bn(32)(x)` as a call of a call.

    Equality ignores the order of keyword arguments (it carries no meaning, and `fmt` puts
    them in registry order), so `parse(fmt(x)) == parse(x)` holds.
    """

    func: Expr
    args: tuple[Arg, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def _key(self) -> tuple[object, ...]:
        pos = tuple(a for a in self.args if a.name is None)
        kws = tuple(
            sorted((a for a in self.args if a.name is not None), key=lambda a: a.name or "")
        )
        return (self.func, pos, kws)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Call) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True, slots=True)
class Attr:
    """`in.channels`."""

    value: Expr
    attr: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Subscript:
    """`f32[28, 28, 1]`, `x.shape[0]`."""

    value: Expr
    index: tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BinOp:
    """Arithmetic, comparison and `and`/`or`; `op` is the operator as written."""

    op: str
    left: Expr
    right: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class UnaryOp:
    """`-x`, `+x`, `not x`."""

    op: str
    operand: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Cond:
    """`a if cond else b`: evaluated at compile time, only the chosen branch is built."""

    then: Expr
    test: Expr
    orelse: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Chain:
    """`conv2d(32, 3) -> batchnorm -> relu`."""

    items: tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Expr = (
    IntLit
    | FloatLit
    | StringLit
    | BoolLit
    | NoneLit
    | Name
    | Quantity
    | ListLit
    | Record
    | Call
    | Attr
    | Subscript
    | BinOp
    | UnaryOp
    | Cond
    | Chain
)

# ---------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class InputDecl:
    """`input image: f32[28, 28, 1]`."""

    name: str
    type: Expr
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Assign:
    """`h = conv_bn(c)(in)`: names a value (and the layer that makes it)."""

    name: str
    value: Expr
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Output:
    """`output dense(4)(h)`, or `output logits = dense(10)`."""

    name: str | None
    value: Expr
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ExprStmt:
    """A sequential line: a layer applied to the current value."""

    value: Expr
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Body:
    """The statements between `{` and `}`, and the comments that belong to the braces."""

    stmts: tuple[Stmt, ...]
    open_comment: str | None = None
    end_comments: tuple[str, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Repeat:
    """`repeat 3 { ... }` or `repeat i in 0..4 { ... }` (`var`, `start` set)."""

    count: Expr
    body: Body
    var: str | None = None
    start: Expr | None = None
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


Stmt = InputDecl | Assign | Output | ExprStmt | Repeat

# ---------------------------------------------------------------- top-level items


@dataclass(frozen=True, slots=True)
class Version:
    """`dnn 1`."""

    number: int
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ImportStmt:
    """`import "blocks/resnet.dnn"`, resolved relative to the importing file."""

    path: str
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ParamDef:
    """`param width = 64`: a named constant, overridable with `--set width=128`."""

    name: str
    value: Expr
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BlockParam:
    name: str
    default: Expr | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BlockInput:
    """A named tensor input of a block: `deep` in `block up(c)(deep, skip) { ... }`."""

    name: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BlockDef:
    """`block conv_bn(c, k = 3) { ... }`, expanded at compile time where it is used.

    `inputs` names the block's tensors (`block up(c)(deep, skip)`); empty, the block takes one
    tensor, called `in`.
    """

    name: str
    params: tuple[BlockParam, ...]
    body: Body
    inputs: tuple[BlockInput, ...] = ()
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ModelDef:
    name: str
    body: Body
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Field:
    """`optimizer = adam(lr = 1e-3)`; `path` is dotted in `sweep` (`train.optimizer.lr`)."""

    path: tuple[str, ...]
    value: Expr
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Section:
    """`data { ... }`, `train { ... }`, `sweep { ... }`."""

    name: str
    fields: tuple[Field, ...]
    open_comment: str | None = None
    end_comments: tuple[str, ...] = ()
    comments: tuple[str, ...] = ()
    trailing: str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


Item = Version | ImportStmt | ParamDef | BlockDef | ModelDef | Section


@dataclass(frozen=True, slots=True)
class Module:
    """One parsed `.dnn` file."""

    items: tuple[Item, ...]
    end_comments: tuple[str, ...] = ()
    path: str = field(default="<string>", compare=False)
