"""`dnn export RUN --format stablehlo|onnx -o FILE`: a trained run as one inference program.

The program takes raw examples, as `dnn predict` reads them (`[batch, *raw_shape]`, the batch
dimension left symbolic), and returns what the model outputs in the data's units: the run's
`normalize` (its saved statistics), the reshape to the model's input and the run's target
scaling inverted on regression outputs are folded in, as `dnn predict` applies them; the final
weights (the best epoch's where early stopping restored it) are constants of the program. For
a classifier the outputs are the logits (`dnn predict --probabilities` takes their softmax).

- `stablehlo`: `jax.export` serialized (`Exported.serialize()`); any JAX program reloads it
  with `jax.export.deserialize(data).call(x)`, without dnn.
- `onnx`: converted by jax2onnx (docs/export.md says why that converter, and what it costs),
  input and output named after the model's, checked by onnxruntime when it is installed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from dnn.compiler.diagnostics import E_EXPORT, Diagnostic, SpecError
from dnn.compiler.ir import Program

from . import infer, pipeline, preprocess
from .data import transforms
from .train import TrainingError

FORMATS = ("stablehlo", "onnx")


@dataclass(frozen=True)
class Inference:
    """A run's inference function on raw examples, and what it takes and gives."""

    fn: Any  # raw [N, *raw_shape] -> outputs (a tuple with several outputs)
    raw_shape: tuple[int, ...]
    dtype: Any  # of the raw examples: float32, or int32 for token ids
    input_name: str
    output_names: tuple[str, ...]


def inference(program: Program, run: Path) -> Inference:
    """The run's model with its preprocessing folded in (see the module doc)."""
    assert program.model is not None and program.data is not None
    engine, st, transform, task = infer.loaded(program, run, "export")
    norm = program.data.normalize
    apply = preprocess._normalizer(norm).apply if norm.name != "none" else None
    if transform.schema is not None:  # a typed table: the rows come encoded, numbers scaled
        apply = None
    stats = {k: jnp.asarray(v, jnp.float32) for k, v in transform.stats.items()}
    shape = transforms.model_input_shape(program)
    dtype = transforms.input_dtype(program)
    params, state = st["params"], st["model_state"]
    targets = transform.targets

    def fn(raw: Any) -> Any:
        x = raw
        if apply is not None:
            flat = raw.reshape(raw.shape[0], math.prod(raw.shape[1:])).astype(jnp.float32)
            x = apply(norm, stats, flat)
        x = x.astype(dtype).reshape((raw.shape[0], *shape))
        forward = engine._map(
            lambda p, s: engine._forward(p, s, x, False, jax.random.key(0))[0], (0, 0)
        )
        out = forward(params, state)
        out = engine.combine(out) if engine.members > 1 else out
        if task == "regression":
            return targets.invert(out)
        if engine.blocks:
            return tuple(
                targets.invert(o, b.start) if b.task == "regression" else o
                for o, b in zip(out, engine.blocks, strict=True)
            )
        return out

    inputs = program.model.inputs
    return Inference(
        fn,
        tuple(transform.raw_shape),
        np.dtype(dtype) if not np.issubdtype(dtype, np.floating) else np.dtype(np.float32),
        inputs[0] if len(inputs) == 1 else "inputs",
        tuple(program.model.outputs),
    )


def to_stablehlo(inf: Inference) -> bytes:
    """`jax.export` of the inference function with a symbolic batch dimension, serialized."""
    from jax import export

    (batch,) = export.symbolic_shape("batch")
    arg = jax.ShapeDtypeStruct((batch, *inf.raw_shape), inf.dtype)
    exported = export.export(jax.jit(inf.fn))(arg)
    return bytes(exported.serialize())


def to_onnx(inf: Inference, program: Program | None = None) -> bytes:
    """The inference function as an ONNX model (jax2onnx), inputs and outputs named."""
    import logging

    # jax2onnx logs a traceback for each example plugin whose optional package (equinox,
    # dm_pix) is absent, and onnx_ir notes untyped shape values: neither concerns the user
    for name in ("jax2onnx", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from jax2onnx import to_onnx as convert
    except ImportError:
        raise TrainingError(
            "ONNX export needs jax2onnx and onnx",
            "install them: make export-deps (see docs/export.md), or export --format stablehlo",
        ) from None
    try:
        model = convert(
            inf.fn,
            [jax.ShapeDtypeStruct(("batch", *inf.raw_shape), inf.dtype)],  # type: ignore[arg-type]
            input_names=[inf.input_name],
            output_names=list(inf.output_names),
        )
    except Exception as e:  # noqa: BLE001 - any failure inside the converter is a refusal
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        node = _failing_node(e)
        if node is None or program is None:
            raise TrainingError(
                f"jax2onnx cannot convert this model: {first}",
                "export --format stablehlo instead (every model converts), or report the layer",
            ) from None
        raise SpecError(
            [
                Diagnostic(
                    E_EXPORT,
                    f"jax2onnx cannot convert `{node.name}` ({node.op}): {first}",
                    node.span,
                    "export --format stablehlo instead (every model converts), or a model "
                    "without this layer",
                )
            ],
            program.sources,
        ) from None
    return bytes(model.SerializeToString())


def _failing_node(e: BaseException) -> Any:
    """The model's layer being lowered when the converter raised, read off the traceback: the
    innermost frame of lower_flax's graph walk, which holds the IR node it applies."""
    found = None
    tb = e.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        node = frame.f_locals.get("node")
        if frame.f_code.co_filename.endswith("lower_flax.py") and hasattr(node, "span"):
            found = node
        tb = tb.tb_next
    return found


def onnx_difference(model: bytes, inf: Inference, x: np.ndarray) -> float:
    """The largest |onnxruntime - JAX| over the outputs for the examples `x`, relative to the
    largest |JAX output| (at least 1)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its shape-merging notes are not ours
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})
    want = inf.fn(jnp.asarray(x))
    want = want if isinstance(want, tuple) else (want,)
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        w = np.asarray(w)
        scale = max(1.0, float(np.abs(w).max(initial=0.0)))
        worst = max(worst, float(np.abs(np.asarray(g) - w).max(initial=0.0)) / scale)
    return worst


def examples_for_check(inf: Inference, n: int = 64) -> np.ndarray:
    """Inputs to compare the two runtimes on: standard normal values (token ids: zeros)."""
    if np.issubdtype(inf.dtype, np.integer):
        return np.zeros((n, *inf.raw_shape), inf.dtype)
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, *inf.raw_shape)).astype(np.float32)


def export(program: Program, run: Path, fmt: str, out: Path) -> tuple[Inference, float | None]:
    """Write the run's inference program to `out` in format `fmt` (one of FORMATS); for ONNX,
    also the difference onnxruntime finds against JAX on 64 examples (None: not installed)."""
    inf = inference(program, run)
    data = to_stablehlo(inf) if fmt == "stablehlo" else to_onnx(inf, program)
    difference = None
    if fmt == "onnx":
        try:
            difference = onnx_difference(data, inf, examples_for_check(inf))
        except ImportError:
            pass
        if difference is not None and difference > CHECK_TOLERANCE:
            raise TrainingError(
                f"the ONNX model's outputs differ from dnn's by {difference:.2e} (relative) on "
                "64 examples in onnxruntime: the conversion is wrong",
                "export --format stablehlo instead, and report the model",
            )
    out.write_bytes(data)
    if program.data is not None and infer.pipeline.load_transform(run).schema is not None:
        columns_file(out).write_text(_columns_json(program, run))
    return inf, difference


def columns_file(out: Path) -> Path:
    """Where the export of a run trained on a typed table writes its columns: beside it."""
    return out.with_name(out.name + ".columns.json")


def _columns_json(program: Program, run: Path) -> str:
    """A typed table's encoding for programs that call the export: the columns as the run
    fitted them, which input reads which, and the normalizer's statistics over the number
    columns (in `numbers` order); the program takes the rows `dnn predict` encodes."""
    import json

    from . import tabular

    assert program.data is not None
    transform = pipeline.load_transform(run)
    assert transform.schema is not None
    slots = tabular.bind(
        transform.schema,
        transforms.table_inputs(program),
        program.sources,
        program.data.span_of("source"),
    )
    doc = {
        **json.loads(transform.schema.to_json()),
        "inputs": [dataclasses.asdict(s) for s in slots],
        "normalize": str(program.data.normalize),
        "numbers": transform.schema.numbers(),
        "statistics": {k: np.asarray(v).tolist() for k, v in transform.stats.items()},
    }
    return json.dumps(doc, indent=2) + "\n"


CHECK_TOLERANCE = 1e-4  # relative, float32: the tests hold the examples to 1e-5
