"""The IR: an immutable graph of layer nodes plus the resolved data/train/sweep configuration.

This is the contract between the front end and everything after it. Nodes hold resolved
values only (arguments in registry order, defaults filled), their inputs, output shape,
parameter counts and the span they came from. Nothing downstream reads the AST again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import NO_SPAN, Diagnostic, InternalError, Span


@dataclass(frozen=True, slots=True)
class Node:
    """One layer use (or a model input) with everything known about it statically."""

    name: str  # unique in the graph; block instances make a path: "res_1/conv2d"
    op: str  # the registry word, or "input"
    kind: str  # "input" | "layer" | "activation"
    args: tuple[tuple[str, Any], ...]
    inputs: tuple[str, ...]
    shape: tuple[int, ...]  # without the batch axis
    dtype: str
    params: int  # trainable
    state: int = 0  # non-trainable (running statistics)
    scope: tuple[str, ...] = ()  # enclosing block instances, outermost first
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    # arguments the spec wrote (the rest are registry defaults); model-wide defaults such as
    # `train.init` apply to the others. Not compared: writing a default changes nothing else.
    written: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.params < 0 or self.state < 0 or any(d < 1 for d in self.shape):
            raise InternalError(f"node {self.name}: negative count or empty axis {self.shape}")

    def arg(self, name: str) -> Any:
        return dict(self.args)[name]

    @property
    def total_params(self) -> int:
        return self.params + self.state


@dataclass(frozen=True, slots=True)
class Graph:
    """A model: its nodes in topological order, its inputs and outputs by node name."""

    name: str
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    # the block each instance expands, by instance path: ("u2", "up"), ("u2/double_conv", ...)
    blocks: tuple[tuple[str, str], ...] = ()
    # where each block instance was called, by instance path: ("u2", Span of `up(32)(b, d2)`)
    sites: tuple[tuple[str, Span], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for n in self.nodes:
            if n.name in seen or any(i not in seen for i in n.inputs):
                raise InternalError(f"graph {self.name}: node {n.name} out of order or repeated")
            seen.add(n.name)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @property
    def params(self) -> int:
        return sum(n.total_params for n in self.nodes)

    @property
    def trainable(self) -> int:
        return sum(n.params for n in self.nodes)

    @property
    def non_trainable(self) -> int:
        return sum(n.state for n in self.nodes)


@dataclass(frozen=True, slots=True)
class Config:
    """A section with every field resolved, in schema order, defaults filled."""

    name: str
    fields: tuple[tuple[str, Any], ...]
    written: tuple[str, ...] = ()  # fields the spec wrote (the rest are defaults)
    spans: tuple[tuple[str, Span], ...] = field(default=(), compare=False, repr=False)

    def __getattr__(self, name: str) -> Any:
        for k, v in object.__getattribute__(self, "fields"):
            if k == name:
                return v
        raise AttributeError(name)

    def span_of(self, name: str) -> Span:
        return dict(self.spans).get(name, NO_SPAN)


@dataclass(frozen=True, slots=True)
class SweepAxis:
    """One searched hyperparameter: a param name or `section.field[.arg]` and its distribution."""

    path: tuple[str, ...]
    distribution: Any  # a values.Ref into the distribution registry
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Program:
    """A checked spec: params, the model graph, and the data/train/sweep configuration."""

    path: str
    version: int
    params: tuple[tuple[str, Any], ...]
    model: Graph | None
    train: Config
    data: Config | None = None
    sweep: Config | None = None
    sweep_axes: tuple[SweepAxis, ...] = ()
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    module: Any = field(default=None, compare=False, repr=False)  # the resolved ast.Module
    warnings: tuple[Diagnostic, ...] = field(default=(), compare=False, repr=False)

    def build_optimizer(self, steps_per_epoch: int | None = None) -> Any:
        """The Optax chain of the `train` section: clipping, optimizer, schedule (imports JAX)."""
        from .lower_optax import lower_train

        return lower_train(self, steps_per_epoch)

    def fit(self, out: Any = None, **options: Any) -> dict[str, Any]:
        """Train on the spec's data, write the run folder `out`, return `result.json`'s contents.

        Options as `dnn train`: resume, stop_after, quiet, checkpoint_every (imports JAX).
        (`program.train` is the train section, so the method is `fit`; `dnn.train` also works.)
        """
        from dnn.runtime.fit import train

        return train(self, out, **options)

    def summary(self) -> Any:
        """The Keras-like table of layers, shapes and parameter counts."""
        from .summary import summarize

        return summarize(self)
