"""Training and inference on arrays (issue 17, point 4): `dnn.fit`, `Model`, `dnn.load_run`.

    model = dnn.fit(program, x, y, validation=(xv, yv))   # NumPy or JAX arrays
    model.predict(x)             # outputs in the data's units (a classifier's logits)
    model.evaluate(x, y)         # the spec's loss and metrics
    model.save("runs/mine")      # a normal run folder: `dnn eval`, `dnn runs`, `dnn export`
    model = dnn.load_run("runs/mine")

The arrays take the path every data source takes: they are written to NumPy archives (`.npz`,
no pickle) and read by the `npz` source, so the checks, the normalizer fitted on the train
arrays, the integer inputs and the several outputs behave exactly as with files. Several inputs
are a dict by input name (flattened and laid side by side in the model's input order, as the
spec's data would be); several outputs a dict by output name. The spec's data section, if it
has one, keeps its `normalize`, `targets` and `augment`; its source and split are replaced.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.driver import load, loads
from dnn.compiler.ir import Program

from . import rundir
from .train import TrainingError

Arrays = Any  # an array, or a dict of arrays by input / output name


def _inputs(program: Program, x: Arrays) -> np.ndarray:
    """One array of examples: the array, or the named inputs flattened side by side."""
    assert program.model is not None
    names = program.model.inputs
    if not isinstance(x, dict):
        return np.asarray(x)
    missing = [n for n in names if n not in x]
    extra = [k for k in x if k not in names]
    if missing or extra:
        raise TrainingError(
            f"the inputs are {', '.join(f'`{n}`' for n in names)}; got "
            f"{', '.join(f'`{k}`' for k in x)}",
            "give one array per input of the model, by its name",
        )
    parts = [np.asarray(x[n]) for n in names]
    n = len(parts[0])
    return np.concatenate([p.reshape(n, math.prod(p.shape[1:])) for p in parts], axis=1)


def _archive(program: Program, folder: Path, name: str, x: Arrays, y: Arrays) -> Path:
    assert program.model is not None
    path = folder / f"{name}.npz"
    arrays = {"x": _inputs(program, x)}
    if isinstance(y, dict):
        arrays.update({k: np.asarray(v) for k, v in y.items()})
    else:
        arrays["y"] = np.asarray(y)
    np.savez(path, **arrays)
    return path


def _with_arrays(
    program: Program, train: Path, val: Path | None, test: Path | None, normalize: str | None
) -> Program:
    """The spec with its source (and val / test) read from these archives."""
    sets = [f'data.source=npz("{train}")']
    if normalize is not None:
        sets.append(f"data.normalize={normalize}")
    sets.append(f'data.val=npz("{val}")' if val is not None else "data.val=none")
    sets.append(f'data.test=npz("{test}")' if test is not None else "data.test=none")
    sets.append("data.split={train: 1.0}")
    return loads(rundir.spec_text(program), program.path, sets)


@dataclass
class Model:
    """A trained run: its spec, its folder and the result of its training."""

    program: Program
    run: Path
    result: dict[str, Any] = field(default_factory=dict)
    _inference: Any = field(default=None, repr=False)

    def predict(self, x: Arrays, batch: int = 1024) -> Any:
        """The model's outputs for raw examples (as the data holds them: the run's normalize
        is applied), in the data's units; a dict by output name for several outputs."""
        import jax

        from .export import inference

        if self._inference is None:
            inf = inference(self.program, self.run)
            self._inference = (inf, jax.jit(inf.fn))
        inf, fn = self._inference
        raw = _inputs(self.program, x).astype(inf.dtype)
        raw = raw.reshape((len(raw), *inf.raw_shape))
        parts = [
            jax.tree.map(np.asarray, fn(raw[i : i + batch])) for i in range(0, len(raw), batch)
        ]
        if isinstance(parts[0], tuple):
            joined = [np.concatenate(p) for p in zip(*parts, strict=True)]
            return dict(zip(inf.output_names, joined, strict=True))
        return np.concatenate(parts)

    def evaluate(self, x: Arrays, y: Arrays) -> dict[str, float]:
        """The spec's loss and metrics on these examples, with the run's preprocessing."""
        from .infer import evaluate

        with tempfile.TemporaryDirectory(prefix="dnn-eval-") as tmp:
            path = _archive(self.program, Path(tmp), "eval", x, y)
            program = _with_arrays(self.program, path, None, path, None)
            out = evaluate(program, self.run, "test")
        return {k: v for k, v in out.items() if k != "members"}

    def save(self, folder: str | Path) -> Path:
        """A copy of the run folder at `folder` (which must not exist)."""
        target = Path(folder)
        if target.exists():
            raise FileExistsError(f"{target} exists: save to a new folder")
        shutil.copytree(self.run, target)
        return target


def fit(
    program: Program,
    x: Arrays,
    y: Arrays,
    *,
    validation: tuple[Arrays, Arrays] | None = None,
    test: tuple[Arrays, Arrays] | None = None,
    out: str | Path | None = None,
    normalize: str | None = None,
    quiet: bool = True,
    **options: Any,
) -> Model:
    """Train `program` on arrays (see the module doc); `out`: the run folder (default: a new
    folder under runs/); `normalize`: a normalizer as the data section writes it
    (`"standardize"`, `"pca(n = 20)"`), for a spec without a data section; other options as
    `dnn.train` takes them."""
    from .fit import train
    from .train import run_dir_default

    with tempfile.TemporaryDirectory(prefix="dnn-fit-") as tmp:
        folder = Path(tmp)
        train_path = _archive(program, folder, "train", x, y)
        val = _archive(program, folder, "val", *validation) if validation else None
        tst = _archive(program, folder, "test", *test) if test else None
        spec = _with_arrays(program, train_path, val, tst, normalize)
        run = Path(out) if out is not None else run_dir_default(program)
        result = train(spec, run, quiet=quiet, mode="quiet" if quiet else None, **options)
    return Model(spec, run, result)


def load_run(folder: str | Path) -> Model:
    """A trained run folder as a `Model` (its own spec.dnn, its final weights)."""
    run = Path(folder)
    if not (run / "spec.dnn").is_file():
        raise TrainingError(f"{run} is not a run folder: it holds no spec.dnn")
    result_path = run / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    return Model(load(str(run / "spec.dnn")), run, result)
