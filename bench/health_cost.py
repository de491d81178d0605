"""What `train.health` costs (issue 21, point 1: target <= 5% of the step time on the digits CNN).

    python bench/health_cost.py [SPEC] [--every 50] [--epochs 6]

Builds the `dnn train` engine of the spec twice, health off and health every k steps, compiles
both, then times whole epochs of each alternately (the machine is shared: alternating keeps
drift out of the ratio) and prints the medians and their ratio, then a JSON line. Nothing is
written; the run folder is not involved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="?", default=str(ROOT / "examples" / "digits_cnn.dnn"))
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args(argv)

    import jax
    from dnn.compiler.driver import load
    from dnn.runtime import pipeline
    from dnn.runtime.fit import _one_epoch
    from dnn.runtime.progress import Display
    from dnn.runtime.train import Engine, device_data

    program = load(args.spec)
    prepared = pipeline.prepare(program)
    engines = {
        "off": Engine(program, prepared, 1, 0),
        "on": Engine(program, prepared, 1, args.every),
    }
    x, y = device_data(prepared, engines["off"].place)["train"]
    states = {k: e.init() for k, e in engines.items()}
    times: dict[str, list[float]] = {"off": [], "on": []}
    with Display(args.epochs + 1, engines["off"].steps_per_epoch, "quiet") as display:
        for epoch in range(1, args.epochs + 2):
            for k, engine in engines.items():
                t0 = time.perf_counter()
                states[k], acc = _one_epoch(engine, states[k], epoch, x, y, display)
                jax.block_until_ready(acc)
                if epoch > 1:  # the first epoch compiles
                    times[k].append(time.perf_counter() - t0)
    off, on = (statistics.median(times[k]) for k in ("off", "on"))
    steps = engines["off"].steps_per_epoch
    print(
        f"{Path(args.spec).stem}: {steps} steps per epoch, health every {args.every} steps; "
        f"median epoch {off * 1e3:.1f} ms off, {on * 1e3:.1f} ms on: ratio {on / off:.3f} "
        f"({jax.default_backend()}, {args.epochs} epochs each, alternating)"
    )
    print(
        json.dumps(
            {
                "spec": Path(args.spec).stem,
                "every": args.every,
                "off_s": times["off"],
                "on_s": times["on"],
                "ratio": on / off,
                "backend": jax.default_backend(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
