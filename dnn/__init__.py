"""dnn: a declarative language for deep neural networks, compiled to Flax modules and Optax chains.

The public API (importing it does not import JAX):

    program = dnn.load("examples/mnist_cnn.dnn", overrides=["width=128"])
    print(program.summary())
    text = dnn.format(open("spec.dnn").read())

Lowering to Optax imports JAX on first use:

    tx = dnn.optimizer("adam(lr = 1e-3, amsgrad = true)")       # optax.GradientTransformation
    lr = dnn.schedule("cosine(decay_steps = 1000)", lr=0.1)      # step (0 = first) -> rate
    tx = program.build_optimizer(steps_per_epoch=100)            # the train section's chain

Training on arrays (imports JAX):

    model = dnn.fit(program, x, y, validation=(xv, yv))          # a Model
    model.predict(x); model.evaluate(x, y); model.save("runs/m"); dnn.load_run("runs/m")
"""

from __future__ import annotations

from dnn.compiler.diagnostics import Diagnostic, InternalError, Span, SpecError
from dnn.compiler.driver import clipper, load, loads, optimizer, schedule
from dnn.compiler.format import format_text as format
from dnn.compiler.ir import Config, Graph, Node, Program
from dnn.compiler.summary import Summary


def train(program: Program, out: object = None, **options: object) -> dict:
    """Train a checked spec (see `Program.fit`); returns the contents of result.json."""
    return program.fit(out, **options)


def fit(program: Program, x: object, y: object, **options: object) -> object:
    """Train `program` on arrays; returns a `Model` (`.predict`, `.evaluate`, `.save`).
    See dnn.runtime.api (imports JAX)."""
    from dnn.runtime.api import fit as fit_arrays

    return fit_arrays(program, x, y, **options)  # type: ignore[arg-type]


def load_run(folder: object) -> object:
    """A trained run folder as a `Model` (see dnn.runtime.api)."""
    from dnn.runtime.api import load_run as load

    return load(folder)  # type: ignore[arg-type]


__all__ = [
    "Config",
    "Diagnostic",
    "Graph",
    "InternalError",
    "Node",
    "Program",
    "Span",
    "SpecError",
    "Summary",
    "clipper",
    "fit",
    "format",
    "load",
    "load_run",
    "loads",
    "optimizer",
    "schedule",
    "train",
]
__version__ = "0.1.0"
