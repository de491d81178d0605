"""Where the time of one training process goes: `dnn train` vs the hand-written script.

`python bench/phases.py [--model mlp] [--epochs 1] [--repeats 5] [--cache off|warm]`

Runs, alternating, `repeats` fresh processes of each side and prints the median seconds of
each phase side by side, with the whole process's wall time on this process's clock:

- dnn: a child (`--child dnn`) that does what the `dnn` command does for `dnn train SPEC
  --epochs N --out DIR --quiet` (`dnn.runtime.cli.main`), with timers wrapped around the steps
  of `dnn.runtime.fit.train` (spec, data, run folder, lowering, device data, init, epochs,
  validation, checkpoints, plots, final evaluation). A jitted function's first call is timed to
  its result, so its trace + compile is charged to it; later steps run unsynchronized as usual.
- hand-written: `bench/handwritten.py MODEL --phases`, which times its own phases.

Both record JAX's compile events (`jax.monitoring`: jaxpr trace, MLIR lowering, XLA backend
compile) per process. `--cache off` (default) disables dnn's persistent XLA cache; `--cache
warm` gives both sides a cache directory filled by a first run. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import BENCH, SPECS, listen_compiles, median, print_json_last, process_age, run_child

# ------------------------------------------------------------------ the dnn child


class Clock:
    """Inclusive seconds per phase, and JAX's compile events."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = defaultdict(float)
        self.events, self.counts = listen_compiles()

    def wrap(
        self, owner: Any, attr: str, name: str, block: bool = True, once: bool = False
    ) -> None:
        """Replace `owner.attr` by a timed version (its JAX results waited for when `block`)."""
        import jax

        f = getattr(owner, attr)
        calls = [0]

        def timed(*a: Any, **k: Any) -> Any:
            calls[0] += 1
            if once and calls[0] > 1:
                return f(*a, **k)
            t = time.perf_counter()
            out = f(*a, **k)
            if block:
                jax.block_until_ready(out)
            self.phases[name] += time.perf_counter() - t
            return out

        setattr(owner, attr, timed)


def dnn_child(model: str, epochs: int, out: str) -> None:
    clock = Clock()
    started = process_age()
    t = time.perf_counter()
    from dnn.runtime import cli

    t1 = time.perf_counter()
    from dnn.runtime import checkpoint, fit, pipeline, rundir
    from dnn.runtime import train as train_mod

    t2 = time.perf_counter()
    clock.phases["start (interpreter)"] = started
    clock.phases["import dnn CLI"] = t1 - t
    clock.phases["import jax, flax, optax (dnn.runtime.fit)"] = t2 - t1
    _instrument(clock, fit, pipeline, rundir, checkpoint, train_mod)
    cli.main(
        ["train", str(SPECS / f"{model}.dnn"), "--epochs", str(epochs), "--out", out, "--quiet"]
    )
    clock.phases["total (process age)"] = process_age()
    print(json.dumps({"phases": clock.phases, "jax_events": clock.events, "counts": clock.counts}))
    cli.quick_exit(0)  # as the `dnn` executable ends


def _instrument(
    clock: Clock, fit: Any, pipeline: Any, rundir: Any, checkpoint: Any, tm: Any
) -> None:
    import dnn.compiler.driver as driver

    clock.wrap(driver, "load", "parse + check spec", block=False)
    clock.wrap(fit, "enable_compile_cache", "enable XLA cache", block=False)
    clock.wrap(pipeline, "prepare", "data (load, split, normalize)", block=False)
    clock.wrap(fit, "_claim", "run folder (spec, hparams, env.yaml)", block=False)
    clock.wrap(pipeline, "save", "run folder (preprocess stats)", block=False)
    clock.wrap(fit, "device_data", "data to device")
    clock.wrap(fit, "_one_epoch", "epochs: train steps")
    clock.wrap(fit, "bad_step", "epochs: non-finite check (read-back)")
    clock.wrap(fit, "_record", "epochs: train metrics + validation")
    clock.wrap(fit.Loop, "save", "Orbax: save checkpoints", block=False)
    clock.wrap(rundir, "write_history", "metrics.jsonl", block=False)
    clock.wrap(rundir, "plot_history", "plots (matplotlib; side thread, overlapped)", block=False)
    clock.wrap(fit, "_wait", "waiting for the side thread (plots)", block=False)
    clock.wrap(fit.Loop, "close", "Orbax: close", block=False)
    clock.wrap(fit, "_result", "final evaluation (train, val, test)")
    clock.wrap(rundir, "write_json", "result.json", block=False)
    engine_cls = fit.Engine

    def engine(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        e = engine_cls(*a, **k)
        clock.phases["lower model + optimizer (Engine)"] += time.perf_counter() - t
        clock.wrap(e, "init", "init (jitted)")
        for attr in ("step", "scan_epoch"):
            if hasattr(e, attr):
                clock.wrap(e, attr, "  of which: first step (trace + compile)", once=True)
        clock.wrap(e, "evaluate", "  of which: first evaluate (trace + compile)", once=True)
        return e

    fit.Engine = engine


# ------------------------------------------------------------------ the parent


def run(model: str, epochs: int, repeats: int, cache: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="dnn-phases-"))
    me = [sys.executable, str(Path(__file__).resolve())]
    hand = [
        sys.executable,
        str(BENCH / "handwritten.py"),
        model,
        "--epochs",
        str(epochs),
        "--phases",
    ]
    dnn_env = {"DNN_CACHE_DIR": "off"}
    if cache == "warm":
        hand += ["--cache", str(tmp / "xla-hand")]
        dnn_env = {"DNN_CACHE_DIR": str(tmp / "xla-dnn")}

    def side(label: str, r: int) -> tuple[list[str], dict[str, str]]:
        if label == "dnn train":
            return [
                *me,
                "--child",
                "dnn",
                "--model",
                model,
                "--epochs",
                str(epochs),
                "--out",
                str(tmp / f"run{r}"),
            ], dnn_env
        return hand, {}

    labels = ["hand-written", "dnn train"]
    if cache == "warm":
        for label in labels:
            run_child(*side(label, -1))
    found: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for r in range(repeats):
        for label in labels if r % 2 == 0 else labels[::-1]:
            child = run_child(*side(label, r))
            rec = json.loads(child.stdout.strip().splitlines()[-1])
            rec["wall"], rec["peak_mb"] = child.wall_s, child.peak_rss_mb
            found[label].append(rec)
        print(f"  repeat {r + 1}", file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return found


def report(found: dict[str, list[dict[str, Any]]]) -> str:
    rows = ["| side | phase | median s |", "|---|---|---:|"]
    for label, recs in found.items():
        names = list(dict.fromkeys(k for r in recs for k in r["phases"]))
        for name in names:
            rows.append(
                f"| {label} | {name} | {median([r['phases'].get(name, 0.0) for r in recs]):.3f} |"
            )
        for ev in (
            "jaxpr_trace_duration",
            "jaxpr_to_mlir_module_duration",
            "backend_compile_duration",
        ):
            vals = [r.get("jax_events", {}).get(ev, 0.0) for r in recs]
            n = median([r.get("counts", {}).get(ev, 0) for r in recs])
            rows.append(
                f"| {label} | JAX {ev.removesuffix('_duration')} ({n:.0f} programs) | {median(vals):.3f} |"
            )
        rest = [r["wall"] - sum(v for k, v in r["phases"].items() if _top(k)) for r in recs]
        rows.append(f"| {label} | rest: glue, interpreter exit | {median(rest):.3f} |")
        rows.append(
            f"| {label} | **wall, parent's clock** | **{median([r['wall'] for r in recs]):.3f}** |"
        )
        rows.append(f"| {label} | peak RSS (MB) | {median([r['peak_mb'] for r in recs]):.0f} |")
    return "\n".join(rows)


def _top(phase: str) -> bool:
    """A phase no other contains: wall minus their sum is glue and interpreter exit."""
    return not phase.startswith("  of which") and not phase.startswith("total")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache", choices=("off", "warm"), default="off")
    ap.add_argument("--child", choices=("dnn",), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        dnn_child(args.model, args.epochs, args.out)
        return
    found = run(args.model, args.epochs, args.repeats, args.cache)
    print(report(found))
    walls = {k: median([r["wall"] for r in v]) for k, v in found.items()}
    print_json_last(
        {
            "model": args.model,
            "epochs": args.epochs,
            "cache": args.cache,
            "dnn_wall_s": round(walls["dnn train"], 3),
            "handwritten_wall_s": round(walls["hand-written"], 3),
            "ratio": round(walls["dnn train"] / walls["hand-written"], 3),
        }
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
