"""`dnn eval` and `dnn predict`: a trained run's weights and preprocessing, applied again.

The weights are the run's final ones: the best epoch's when early stopping restored them
(`result.json` says so), else the last checkpoint's. Inputs go through the normalizer with the
statistics saved from the run's train split, never statistics of the new data; so do the
targets (`data.targets`): `dnn eval`'s metrics and `dnn predict`'s outputs are in the data's
units, the model's outputs mapped back through the run's target statistics (a run saved
without them learned the targets as they are).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from dnn.compiler.ir import Program
from dnn.compiler.rules import target_kind

from . import checkpoint, pipeline, preprocess
from .data import transforms
from .data.table import Block, Table
from .train import Engine, TrainingError, batched, evaluate_split

PREDICT_BATCH = 1024


def _run_folder(run: Path) -> Path:
    if not checkpoint.exists(run / "checkpoints" / "last"):
        raise TrainingError(
            f"{run} is not a finished training run (no checkpoints/last in it)",
            "give the --out folder of a `dnn train` run",
        )
    return run


def restore(program: Program, run: Path, prepared: pipeline.Prepared) -> tuple[Engine, Any]:
    """An engine for the spec and the run's final weights."""
    _run_folder(run)
    _same_model(program, run)
    engine = Engine(program, prepared, program.train.ensemble)
    st = engine.init()
    result_path = run / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    restored = bool(result.get("restored_best"))
    slot = checkpoint.Slot(run / "checkpoints" / ("best" if restored else "last"))
    try:
        like = {"params": st["params"], "model_state": st["model_state"]}
        if restored:
            weights, _ = slot.restore(engine.to_disk(like), epoch=result.get("best_epoch"))
        else:
            full, _ = slot.restore(engine.to_disk(st))
            weights = {"params": full["params"], "model_state": full["model_state"]}
        weights = engine.from_disk(weights)
    except (ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainingError(
            f"the checkpoint in {run} does not fit this spec's model ({first})",
            f"evaluate with the spec the run was trained from: {run / 'spec.dnn'}",
        ) from None
    finally:
        slot.close()
    return engine, {**st, **weights}


def _same_model(program: Program, run: Path) -> None:
    """The run's saved spec must describe the same model as the one given."""
    from dnn.compiler.diagnostics import SpecError
    from dnn.compiler.driver import load

    saved_path = run / "spec.dnn"
    try:
        saved = load(str(saved_path))
    except SpecError:
        return  # an unreadable saved spec: the checkpoint itself will be the judge
    if saved.model != program.model:
        a, b = saved.model, program.model
        assert a is not None and b is not None
        raise TrainingError(
            f"the run in {run} trained `{a.name}` ({len(a.nodes)} layers, {a.params:,} params), "
            f"not this spec's `{b.name}` ({len(b.nodes)} layers, {b.params:,} params)",
            f"use the spec the run was trained from, or compare: dnn diff {saved_path} "
            f"{program.path}",
        )


def imported(program: Program, file: Path) -> tuple[Engine, Any, pipeline.Transform, str]:
    """The spec's model with a weight file's tensors and no training (`--weights`): the
    engine, the weights, the preprocessing and the task. The normalizer's statistics come from
    the spec's train split, as a run fitted on it would have them; a spec without data feeds
    inputs as they are."""
    from .fit import _from_file

    task = transforms.task_of(program)
    if program.data is not None:
        prepared = pipeline.prepare(program)
        transform = pipeline.Transform(
            prepared.stats,
            prepared.raw_shape,
            prepared.task,
            prepared.classes,
            prepared.class_names,
            prepared.targets,
            prepared.task not in ("regression", transforms.MULTI)
            and prepared.splits["train"].y.ndim == 2,
            prepared.blocks,
            prepared.schema,
        )
    else:
        units = transforms.outputs(program)
        classes = max(units, 2) if target_kind(task) == "classification" else None
        transform = pipeline.Transform({}, transforms.model_input_shape(program), task, classes, ())
        prepared = _placeholder(program, transform, task, str(file))
    engine = Engine(program, prepared, program.train.ensemble)
    st, _, _ = _from_file(program, engine.init(), engine, str(file))
    return engine, st, transform, task


def _placeholder(
    program: Program, transform: pipeline.Transform, task: str, origin: str
) -> pipeline.Prepared:
    """A one-example train split of the right shapes: what an engine is built from when the
    data itself is not at hand."""
    kind = target_kind(task)
    shape = transforms.model_input_shape(program)
    dummy = Table(
        x=np.zeros((1, *shape), transforms.input_dtype(program)),
        y=np.zeros((1,), np.int32 if kind == "classification" else np.float32),
        task=kind,
        classes=transform.classes,
        class_names=transform.class_names,
        origin=origin,
    )
    if transform.blocks:  # several outputs: one target column block each
        width = sum(b.width for b in transform.blocks)
        dummy = replace(dummy, y=np.zeros((1, width), np.float32), task="regression")
    return pipeline.Prepared(
        {"train": dummy},
        transform.stats,
        transform.raw_shape,
        task,
        transform.classes,
        transform.class_names,
        transform.targets,
        transform.blocks,
    )


def evaluate(
    program: Program, run: Path | None, split: str = "test", weights: Path | None = None
) -> dict[str, Any]:
    """Loss and metrics of a run's final weights (or a weight file's, with no training) on
    one split of the spec's data."""
    return evaluate_with_report(program, run, split, report=False, weights=weights)[0]


def evaluate_with_report(
    program: Program,
    run: Path | None,
    split: str = "test",
    report: bool = True,
    weights: Path | None = None,
) -> tuple[dict[str, Any], Any]:
    """The split's loss and metrics, and what `dnn eval` shows beside them (runtime/report.py):
    a `ClassReport` with the confusion matrix's PNG in `<run>/plots/` for a classifier, the
    residual plots' paths for a regression; None for a model with several outputs. With a
    weight file instead of a run (`--weights`), the spec's model with its tensors and no
    training, and no PNGs (there is no run folder to put them in)."""
    if weights is not None:
        if program.data is None:
            raise TrainingError("the spec has no data section to evaluate on", "add one")
        engine, st, _, _ = imported(program, weights)
        prepared = engine.prepared
        if prepared.size(split) == 0:
            raise TrainingError(f"the {split} split is empty", "choose another --split")
        metrics = _split_metrics(engine, st, prepared, split)
        if not report or engine.blocks:
            return metrics, None
        return metrics, _report(engine, st, prepared, split, None)
    assert run is not None
    transform = pipeline.load_transform(_run_folder(run))
    transform.check(program, run)
    prepared = pipeline.prepare(program, transform.stats, transform.targets, transform.schema)
    if prepared.size(split) == 0:
        raise TrainingError(f"the {split} split is empty", "choose another --split")
    engine, st = restore(program, run, prepared)
    metrics = _split_metrics(engine, st, prepared, split)
    if not report or engine.blocks:
        return metrics, None
    return metrics, _report(engine, st, prepared, split, run / "plots")


def _split_metrics(engine: Engine, st: Any, prepared: pipeline.Prepared, split: str) -> Any:
    if prepared.streamed:  # read from the source batch by batch, as the run trained
        return evaluate_split(engine, st, prepared.streamed[split])
    t = prepared.splits[split]
    return evaluate_split(engine, st, batched(jnp.asarray(t.x), jnp.asarray(t.y)))


def _outputs(
    engine: Engine, st: Any, prepared: pipeline.Prepared, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """The model's outputs on a split and the split's targets, as the model learns them."""
    if not prepared.streamed:
        t = prepared.splits[split]
        return _forward_all(engine, st, np.asarray(t.x)), np.asarray(t.y)
    forward, outs, ys = _forwarder(engine, st), [], []
    for x, y, mask in prepared.streamed[split].in_order(PREDICT_BATCH):
        outs.append(np.asarray(forward(jnp.asarray(x)))[mask])
        ys.append(y[mask])
    return np.concatenate(outs), np.concatenate(ys)


def _report(
    engine: Engine, st: Any, prepared: pipeline.Prepared, split: str, plots: Path | None
) -> Any:
    """The report; its PNGs in `plots` (none when None)."""
    from . import report

    out, target = _outputs(engine, st, prepared, split)
    if prepared.task == "regression":  # in the data's units, as the metrics are
        y = prepared.targets.invert(np.asarray(target, np.float64))
        out = prepared.targets.invert(np.asarray(out, np.float64))
        if plots is None:
            return []
        path = plots / f"residuals_{split}.png"
        return [report.plot_residuals(y, out.reshape(y.shape), path, split)]
    pred = report.decisions(out, prepared.task)
    y = target
    if y.ndim == 2:  # multi-hot rows: one yes/no decision per label
        names = prepared.class_names or tuple(str(i) for i in range(y.shape[1]))
        return report.labels_report(y, pred.reshape(y.shape), names)
    k = 2 if prepared.task == "binary" else int(prepared.classes or out.shape[-1])
    names = prepared.class_names if len(prepared.class_names) == k else ()
    found = report.classes_report(y, pred, names or tuple(str(i) for i in range(k)))
    if plots is None:
        return found
    path = report.plot_confusion(found, plots / f"confusion_{split}.png", f"{split} split")
    return replace(found, plots=[path])


def loaded(
    program: Program, run: Path, origin: str = "inputs"
) -> tuple[Engine, Any, pipeline.Transform, str]:
    """A run's model ready for new inputs, without its data: the engine, the final weights,
    the saved preprocessing and the task (what `dnn predict` and `dnn export` start from)."""
    transform = pipeline.load_transform(_run_folder(run))
    transform.check(program, run)
    task = transforms.task_of(program)  # the run's model: `restore` checks it is the same
    prepared = _placeholder(program, transform, task, origin)
    engine, st = restore(program, run, prepared)
    return engine, st, transform, task


def predict(
    program: Program,
    run: Path | None,
    inputs: Path,
    output: Path,
    probabilities: bool = False,
    weights: Path | None = None,
    unseen: dict[str, tuple[int, tuple[str, ...]]] | None = None,
) -> np.ndarray:
    """Outputs of a run's model (or of the spec's with a weight file's tensors) for the
    examples in `inputs` (.npy, .csv, .npz by input name, an image or a folder of images:
    runtime/inputs.py); written to `output` (a CSV made from images names each row's file).

    A run trained on a typed table reads a CSV of its columns; the cells its vocabularies do
    not know (they take the out-of-vocabulary bucket) are counted per column into `unseen`.
    """
    if weights is not None:
        engine, st, saved, task = imported(program, weights)
    else:
        assert run is not None
        saved = pipeline.load_transform(_run_folder(run))  # the inputs are read before compiling
        saved.check(program, run)
    files: list[str] | None = None
    if saved.schema is not None:
        encoded = pipeline.encode_cells(program, saved, inputs)
        ready, raw = encoded.x, None
        if unseen is not None:
            unseen.update(encoded.unseen)
    else:
        raw, files = read_inputs(program, inputs, saved.raw_shape)
    if weights is None:
        assert run is not None
        engine, st, transform, task = loaded(program, run, str(inputs))
    else:
        transform = saved
    if raw is None:
        x = ready
    elif program.data is not None:
        x = transform(program, raw)
    else:  # a spec without data (`--weights`): the inputs as they are
        shape = transforms.model_input_shape(program)
        x = raw.astype(transforms.input_dtype(program)).reshape((raw.shape[0], *shape))
    out = _forward_all(engine, st, x)
    if task == "regression":  # in the data's units, computed in float64
        out = transform.targets.invert(out.astype(np.float64)).astype(out.dtype)
    elif engine.blocks:
        out = tuple(
            _untarget(o, b, transform.targets) for o, b in zip(out, engine.blocks, strict=True)
        )
    _write(output, out, engine, transform.class_names, probabilities, transform.multi_hot)
    if files is not None and output.suffix == ".csv":
        _name_rows(output, files)
    return out


def read_inputs(
    program: Program, path: Path, raw_shape: tuple[int, ...]
) -> tuple[np.ndarray, list[str] | None]:
    """`dnn predict`'s examples, and the image files they came from (None: not images)."""
    from . import inputs

    data = program.data
    size = None
    if data is not None and data.source is not None and data.source.name == "images":
        given = data.source.arg("size")
        size = (int(given[0]), int(given[1])) if given is not None else None
    wanted = inputs.Wanted(tuple(transforms.input_sizes(program)), tuple(raw_shape), size)
    return inputs.read(path, wanted)


def _name_rows(path: Path, files: list[str]) -> None:
    """Put each row's image file first in a CSV of predictions."""
    lines = path.read_text().splitlines()
    rows = [f"file,{lines[0]}"] + [
        f"{_csv_cell(f)},{line}" for f, line in zip(files, lines[1:], strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _untarget(out: np.ndarray, block: Block, targets: preprocess.Targets) -> np.ndarray:
    """One output of several in the data's units (a regression output's, in float64)."""
    if block.task != "regression":
        return out
    return targets.invert(np.asarray(out, np.float64), block.start).astype(out.dtype)


def _forwarder(engine: Engine, st: Any) -> Any:
    """The model's outputs for a batch (eval mode; an ensemble's combined), jitted."""

    @jax.jit
    def forward(batch: Any) -> Any:
        fwd = engine._map(
            lambda p, s: engine._forward(p, s, batch, False, jax.random.key(0))[0], (0, 0)
        )
        out = fwd(st["params"], st["model_state"])
        return engine.combine(out) if engine.members > 1 else out

    return forward


def _forward_all(engine: Engine, st: Any, x: np.ndarray) -> np.ndarray:
    forward = _forwarder(engine, st)
    parts = [
        jax.tree.map(np.asarray, forward(jnp.asarray(x[i : i + PREDICT_BATCH])))
        for i in range(0, len(x), PREDICT_BATCH)
    ]
    if parts and isinstance(parts[0], tuple):  # several outputs: one array each
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]
    return np.concatenate(parts) if parts else np.zeros((0,))


def _write(
    path: Path,
    out: np.ndarray,
    engine: Engine,
    names: tuple[str, ...],
    probabilities: bool,
    multi_hot: bool = False,
) -> None:
    if engine.blocks:
        _write_outputs(path, out, engine, probabilities)
        return
    if multi_hot:  # one yes/no decision per unit, as the run's targets were
        _write_decisions(path, np.asarray(jax.nn.sigmoid(out)), names, probabilities)
        return
    classify = engine.prepared.task != "regression"
    if classify:
        if engine.prepared.task == "multilabel":  # one yes/no decision per unit
            probs = np.asarray(jax.nn.sigmoid(out))
        elif engine.binary:
            p1 = jax.nn.sigmoid(out.reshape(-1))
            probs = np.stack([1 - np.asarray(p1), np.asarray(p1)], axis=1)
        else:
            probs = np.asarray(jax.nn.softmax(out, axis=-1))
        labels = probs.argmax(axis=1)
    if path.suffix == ".npy":
        np.save(path, probs if classify and probabilities else labels if classify else out)
        return
    if path.suffix != ".csv":
        raise TrainingError(
            f"cannot write predictions to `{path.name}`", "use an output ending in .npy or .csv"
        )
    with path.open("w") as f:
        if classify:
            label_names = names or tuple(str(i) for i in range(probs.shape[1]))
            f.write(",".join(["label", *(f"p_{n}" for n in label_names)]) + "\n")
            for lab, row in zip(labels, probs, strict=True):
                f.write(",".join([label_names[lab], *(f"{v:.6g}" for v in row)]) + "\n")
        else:
            flat = out.reshape(len(out), -1)
            f.write(
                ",".join(f"y{i}" if flat.shape[1] > 1 else "y" for i in range(flat.shape[1])) + "\n"
            )
            for row in flat:
                f.write(",".join(f"{v:.6g}" for v in row) + "\n")


def _write_decisions(
    path: Path, probs: np.ndarray, names: tuple[str, ...], probs_out: bool
) -> None:
    """Multi-label predictions: `[p > 0.5]` per unit (.npy: (N, C) 0/1, or the probabilities
    with `--probabilities`; .csv: a 0/1 column and a probability column per label)."""
    decisions = (probs > 0.5).astype(np.int32)
    if path.suffix == ".npy":
        np.save(path, probs if probs_out else decisions)
        return
    if path.suffix != ".csv":
        raise TrainingError(
            f"cannot write predictions to `{path.name}`", "use an output ending in .npy or .csv"
        )
    labels = names or tuple(str(i) for i in range(probs.shape[1]))
    with path.open("w") as f:
        f.write(",".join([*labels, *(f"p_{n}" for n in labels)]) + "\n")
        for d, p in zip(decisions, probs, strict=True):
            f.write(",".join([*(str(v) for v in d), *(f"{v:.6g}" for v in p)]) + "\n")


def _write_outputs(path: Path, outs: Any, engine: Engine, probabilities: bool) -> None:
    """A model with several outputs: an .npz archive with one array per output, named after
    it (class labels, 0/1 rows for multi-hot outputs, values for regression; probabilities
    with `--probabilities`)."""
    if path.suffix != ".npz":
        raise TrainingError(
            f"cannot write the {len(outs)} outputs' predictions to `{path.name}`",
            "use an output ending in .npz (one array per output)",
        )
    arrays = {}
    for out, b in zip(outs, engine.blocks, strict=True):
        probs = _probabilities(np.asarray(out), b.task)
        if b.task == "regression":
            arrays[b.name] = np.asarray(out)
        elif probabilities:
            arrays[b.name] = probs
        elif b.width > 1 or b.task == "binary":
            arrays[b.name] = (probs > 0.5).astype(np.int32)
        else:
            arrays[b.name] = probs.argmax(axis=1)
    np.savez(path, **arrays)


def _probabilities(out: np.ndarray, task: str) -> np.ndarray:
    if task in ("binary", "multilabel"):
        return np.asarray(jax.nn.sigmoid(out))
    return np.asarray(jax.nn.softmax(out, axis=-1)) if task != "regression" else out
