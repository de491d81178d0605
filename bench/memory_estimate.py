"""The static memory estimate (compiler/memory.py) against what XLA's compiled train step needs.

Run by hand: `python bench/memory_estimate.py [spec ...] [--set k=v ...]` (default: the examples
on built-in data). For each spec it builds the `dnn train` engine, compiles its train step
(one batch, `Engine.step`) and its whole-epoch program (`Engine.scan_epoch`), and reads XLA's
`compiled.memory_analysis()`: argument, output, aliased (donated) and temporary bytes. The
measured device total of a step is arguments + outputs - aliased + temporaries, plus the
validation and test splits that stay on the device beside it. Prints one line per spec and
program, then a JSON line. Nothing is trained.

`--recurrent` measures what one recurrent layer keeps: for `lstm`, `gru` and `simple_rnn` over
a grid of steps T and units u (batch 32, one feature, sgd), XLA's temporaries of the train step
per unit, step and example in float32 values (the slope that the `keeps` fact of the layers'
registry entries models as 6 gates + 1), beside the estimate's gradients + activations.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
DEFAULT = ["digits_cnn", "digits_mlp", "sequence_lstm", "resnet_small", "densenet_small"]


def measure(path: str, overrides: list[str]) -> list[dict[str, Any]]:
    import jax
    from dnn.compiler.driver import load
    from dnn.compiler.memory import estimate
    from dnn.runtime import pipeline
    from dnn.runtime.train import Engine, device_data

    program = load(path, overrides)
    assert program.model is not None
    prepared = pipeline.prepare(program)
    engine = Engine(program, prepared, program.train.ensemble)
    data = device_data(prepared, engine.place)
    x, y = data["train"]
    others = sum(a.nbytes + b.nbytes for k, (a, b) in data.items() if k != "train")
    loaded = sum(t.x.nbytes + t.y.nbytes for t in prepared.splits.values() if len(t.y))
    est = estimate(
        program.model, program.train, program.data, data_bytes=loaded, devices=engine.place.count
    )
    st, acc = engine.init(), engine.train_acc()
    full, tail = engine.order(1, int(x.shape[0]))
    programs = {"step": engine.step.lower(st, acc, x, y, full, 0)}
    if engine.full:
        programs["epoch"] = engine.scan_epoch.lower(st, acc, x, y, full, tail)
    rows = []
    for name, lowered in programs.items():
        ma = lowered.compile().memory_analysis()
        arg, out = ma.argument_size_in_bytes, ma.output_size_in_bytes
        alias, temp = ma.alias_size_in_bytes, ma.temp_size_in_bytes
        measured = arg + out - alias + temp + others
        rows.append(
            {
                "spec": Path(path).stem,
                "program": name,
                "backend": jax.default_backend(),
                "estimate": est.total,
                "estimate_parts": {
                    p: est.part(p)
                    for p in ("weights", "optimizer", "gradients", "activations", "data")
                },
                "xla": {"arguments": arg, "outputs": out, "aliased": alias, "temp": temp},
                "measured": measured,
                "ratio": est.total / measured,
                "temp_vs_grads_activations": (est.gradients + est.activations) / max(temp, 1),
            }
        )
    return rows


RECURRENT_SPEC = """dnn 1
model m {{
  input s: f32[{steps}, 1]
  {layer}({units})
  dense(2)
}}
data {{
  source = npz("seq.npz")
}}
train {{
  batch_size = {batch}
  optimizer = sgd(lr = 0.1)
}}
"""


def recurrent(folder: Path, batch: int = 32) -> list[dict[str, Any]]:
    import numpy as np
    from dnn.compiler.driver import loads
    from dnn.compiler.memory import estimate
    from dnn.runtime import pipeline
    from dnn.runtime.train import Engine, device_data

    rows = []
    for layer in ("lstm", "gru", "simple_rnn"):
        for steps, units in ((10, 16), (20, 16), (20, 32), (40, 32)):
            rng = np.random.default_rng(0)
            x = rng.normal(size=(256, steps, 1)).astype(np.float32)
            np.savez(folder / "seq.npz", x=x, y=rng.integers(0, 2, 256))
            src = RECURRENT_SPEC.format(steps=steps, layer=layer, units=units, batch=batch)
            program = loads(src, str(folder / "seq.dnn"))
            assert program.model is not None
            engine = Engine(program, pipeline.prepare(program), 1)
            xs, ys = device_data(engine.prepared, engine.place)["train"]
            st, acc = engine.init(), engine.train_acc()
            full, _ = engine.order(1, int(xs.shape[0]))
            temp = engine.step.lower(st, acc, xs, ys, full, 0).compile().memory_analysis()
            est = estimate(program.model, program.train, program.data)
            per = temp.temp_size_in_bytes / (batch * steps * units * 4)
            rows.append(
                {
                    "layer": layer,
                    "steps": steps,
                    "units": units,
                    "temp": temp.temp_size_in_bytes,
                    "estimate_gradients_activations": est.gradients + est.activations,
                    "values_per_unit_step": per,
                }
            )
            print(
                f"{layer:10s} T={steps:2d} u={units:2d}: XLA temp {temp.temp_size_in_bytes:9d} B "
                f"= {per:5.2f} values per unit, step and example; estimate gradients + "
                f"activations {est.gradients + est.activations:9d} B",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="*")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--recurrent", action="store_true", help="one recurrent layer, a grid")
    args = ap.parse_args(argv)
    if args.recurrent:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(recurrent(Path(tmp))))
        return 0
    specs = args.specs or [str(ROOT / "examples" / f"{s}.dnn") for s in DEFAULT]
    rows = []
    for spec in specs:
        for r in measure(spec, args.set):
            rows.append(r)
            print(
                f"{r['spec']:16s} {r['program']:5s} {r['backend']}: estimate "
                f"{r['estimate'] / 2**20:8.2f} MB, measured {r['measured'] / 2**20:8.2f} MB "
                f"(temp {r['xla']['temp'] / 2**20:.2f} MB), ratio {r['ratio']:.2f}; "
                f"gradients+activations / temp {r['temp_vs_grads_activations']:.2f}",
                flush=True,
            )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
