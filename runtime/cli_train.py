"""The commands that run JAX: `dnn train`, `dnn eval`, `dnn predict`.

Errors a user can fix never end in a traceback: spec and data problems are rendered like
compiler errors (path:line:col, the line, a caret, a hint); training problems (a non-finite
loss, a bad --resume) as `file: error: ...` with a hint. Exit status 1 for both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from dnn.compiler.diagnostics import (
    W_MEMORY,
    W_NOTHING_TRAINS,
    W_SWEEP_NOT_RUN,
    Diagnostic,
    Span,
    SpecError,
    to_dict,
)

EXIT_OK, EXIT_FAIL = 0, 1
HEALTH_EVERY = 50  # `dnn train --health`


def _load(args: argparse.Namespace, extra: list[str] | None = None) -> Any:
    from dnn.compiler.driver import load

    return load(args.file, [*args.set, *(extra or [])])


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command; render the errors a user can act on instead of raising them."""

    def run(args: argparse.Namespace) -> int:
        from . import cli
        from .train import TrainingError

        try:
            return fn(args)
        except SpecError as e:
            cli._report(e, "text")
            return EXIT_FAIL
        except TrainingError as e:
            print(f"{e.file or args.file}: error: {e}", file=sys.stderr)
            if e.hint:
                print(f"  hint: {e.hint}", file=sys.stderr)
            return EXIT_FAIL
        except OSError as e:
            name = e.filename or args.file
            print(f"{name}: error: {e.strerror or e}", file=sys.stderr)
            return EXIT_FAIL

    return run


def start_distributed(args: argparse.Namespace) -> None:
    """Join a multi-host run before JAX does anything (`--coordinator`, or `--distributed` to
    let JAX read the cluster's environment: SLURM, Open MPI, Kubernetes, Cloud TPU)."""
    if not (args.coordinator or args.distributed):
        return
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU all-reduce across hosts
    if args.coordinator:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    else:
        jax.distributed.initialize()


def every_device(args: argparse.Namespace, program: Any, extra: list[str]) -> Any:
    """In a multi-host run, a spec that does not say `devices` trains on every process's
    devices (`devices = all`: one data-parallel mesh); one that says another count is refused
    at its line when the run is placed (runtime/placement.py)."""
    import jax

    if jax.process_count() == 1 or "devices" in program.train.written:
        return program
    if jax.process_index() == 0:
        print(
            f"multi-host: {jax.process_count()} processes train as one on all "
            f"{jax.device_count()} devices (`devices = all`)",
            file=sys.stderr,
        )
    return _load(args, [*extra, "train.devices=all"])


def _warn_before_training(program: Any) -> None:
    """The spec's warnings, and that a `sweep` section is not run, once (process 0).

    W0804 (nothing trains) is left to the run, which reads it from the weights it builds, and
    W0805 (memory past a fixed bound) to the run's check against the device's own memory.
    """
    import jax

    from . import cli

    if jax.process_index() != 0:
        return
    shown = [d for d in program.warnings if d.code not in (W_NOTHING_TRAINS, W_MEMORY)]
    if program.sweep is not None:
        shown.append(sweep_not_run(program))
    cli._warn(shown, program.sources)


def sweep_not_run(program: Any) -> Diagnostic:
    """`dnn train` on a spec with a `sweep` section: what it trains, and that it searches not."""
    from dnn.compiler import ast

    section = next(
        i for i in program.module.items if isinstance(i, ast.Section) and i.name == "sweep"
    )
    s = section.span
    example = ".".join(program.sweep_axes[0].path) if program.sweep_axes else "NAME"
    return Diagnostic(
        W_SWEEP_NOT_RUN,
        "`dnn train` trains the base point (the spec's own values); "
        "it does not run the `sweep` search",
        Span(s.path, s.line, s.col, s.line, s.col + len("sweep")),
        f"run the search with `dnn sweep`; train one of its points with `--set {example}=VALUE`",
        severity="warning",
    )


def cmd_train(args: argparse.Namespace) -> int:
    from .fit import train

    start_distributed(args)
    extra = [f"train.epochs={args.epochs}"] if args.epochs else []
    program = _load(args, extra)
    if args.coordinator or args.distributed:
        program = every_device(args, program, extra)
    _warn_before_training(program)
    result = train(
        program,
        args.out,
        resume=args.resume,
        stop_after=args.stop_after,
        stop_after_steps=args.stop_after_steps,
        quiet=args.quiet,
        checkpoint_every=args.checkpoint_every,
        argv=sys.argv,
        health_every=HEALTH_EVERY if args.health else None,
        histograms=args.histograms,
    )
    folder = args.out or "the run folder"
    if not result.get("finished", True):
        where = f"epoch {result['stopped_after']}"
        if "step" in result:  # a streamed run, in mid-epoch
            where = f"step {result['step']} (in epoch {result['stopped_after'] + 1})"
        print(f"stopped after {where}; continue with --resume --out {folder}")
        return EXIT_OK
    print(summary_line(result))
    if result.get("skipped"):
        counts = ", ".join(f"{n} in {split}" for split, n in result["skipped"].items())
        print(f"skipped examples (data.on_error = skip): {counts}; see skipped.json")
    print(f"run folder: {result['run']}")
    if not args.quiet:
        print(next_commands(Path(result["run"]), _executable()))
    return EXIT_OK


def _executable() -> str:
    """`dnn`, or the path it was called by when that is not the one on PATH (`.venv/bin/dnn`
    under `make train`), so the printed lines run as they are."""
    import shutil

    called = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("dnn")
    if called.name != "dnn" or called.parent == Path():
        return "dnn"
    found = shutil.which("dnn")
    return "dnn" if found and Path(found).resolve() == called.resolve() else str(called)


def next_commands(run: Path, dnn: str = "dnn") -> str:
    """What to try on a finished run, with its folder filled in: `dnn predict` reads a CSV of
    the table's columns for a run trained on a typed table, and writes an .npz for a model
    with several outputs."""
    inputs = "x.csv" if (run / "columns.json").exists() else "x.npy"
    try:
        several = bool(json.loads((run / "preprocess.json").read_text()).get("outputs"))
    except (OSError, ValueError):
        several = False
    outputs = "y.npz" if several else "y.csv"
    rows = [
        (f"{dnn} eval --run {run}", "test metrics, per-class report, confusion matrix"),
        (
            f"{dnn} predict --run {run} --input {inputs} --output {outputs}",
            "apply it to new inputs",
        ),
        (f"{dnn} runs {run.parent}", "this run beside the others"),
        (f"{dnn} export {run} --format onnx -o model.onnx", "for ONNX Runtime (or stablehlo)"),
        (f"tensorboard --logdir {run / 'tensorboard'}", "curves (pip install tensorboard)"),
    ]
    width = max(len(c) for c, _ in rows)
    return "next:\n" + "\n".join(f"  {c:<{width}}  # {why}" for c, why in rows)


def summary_line(result: dict[str, Any]) -> str:
    parts = []
    for split in ("train", "val", "test"):
        if split in result:
            shown = {k: v for k, v in result[split].items() if k != "members"}
            parts.append(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    head = (
        f"{result['model']}: {result['epochs_run']} epochs in {result['wall_time_s']:.1f} s "
        f"({result['samples_per_s']:,.0f} samples/s)"
    )
    return "\n".join([head, *(f"  {p}" for p in parts)])


def _load_for_run(args: argparse.Namespace) -> Any:
    """FILE, or without it the spec the run was trained from: the run folder's self-contained
    copy (messages point into it), its data paths read from where the spec was trained (the
    run's env.yaml: `cwd` and `spec`), so relative file sources resolve as they did."""
    from dnn.compiler.driver import load

    from .train import TrainingError

    if getattr(args, "weights", None) and getattr(args, "run", None):
        raise TrainingError("give --run or --weights, not both", "--weights runs a weight file")
    if getattr(args, "weights", None) and args.file is None:
        raise TrainingError(
            "--weights needs the spec the weights are for",
            f"dnn {args.command} SPEC --weights {args.weights} ...",
        )
    if args.file is not None:
        return _load(args)
    if not args.run:
        raise TrainingError(
            "give the run folder (--run DIR) or a weight file (--weights FILE)", None
        )
    run = Path(args.run)
    saved = run / "spec.dnn"
    args.file = str(run)  # what error messages name
    if not saved.is_file():
        hint = (
            "export a run folder made by `dnn train`"
            if args.command == "export"
            else f"give the spec file too: `dnn {args.command} SPEC --run DIR`"
        )
        raise TrainingError("not a run folder: it holds no spec.dnn", hint)
    args.file = str(saved)
    program = load(str(saved), args.set)
    env = run / "env.yaml"
    meta = yaml.safe_load(env.read_text()) if env.is_file() else None
    if isinstance(meta, dict) and meta.get("spec") and meta.get("cwd"):
        first = Path(str(meta["cwd"])) / str(meta["spec"])  # `spec` may be absolute
        if first.parent.is_dir():
            program = dataclasses.replace(program, path=str(first))
    return program


def cmd_eval(args: argparse.Namespace) -> int:
    from .infer import evaluate_with_report

    program = _load_for_run(args)
    run = Path(args.run) if args.run else None
    weights = Path(args.weights) if args.weights else None
    metrics, report = evaluate_with_report(program, run, args.split, weights=weights)
    plots = report if isinstance(report, list) else getattr(report, "plots", [])
    if args.format == "json":  # the plots' paths relative to the run folder
        extra: dict[str, Any] = {}
        if report is not None:
            shown = report.to_dict() if not isinstance(report, list) else {}
            where = [str(p.relative_to(args.run)) for p in plots] if args.run else []
            extra["report"] = shown | {"plots": where}
        print(json.dumps({args.split: metrics, **extra}, indent=2))
        return EXIT_OK
    shown = {k: v for k, v in metrics.items() if k != "members"}
    print(f"{args.split}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    if report is not None and not isinstance(report, list):
        print()
        print(report.text())
    for path in plots:
        print(f"{path}: {'confusion matrix' if 'confusion' in path.name else 'residual plots'}")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from .infer import predict

    program = _load_for_run(args)
    unseen: dict[str, tuple[int, tuple[str, ...]]] = {}
    run = Path(args.run) if args.run else None
    weights = Path(args.weights) if args.weights else None
    x, y = Path(args.input), Path(args.output)
    out = predict(program, run, x, y, args.probabilities, weights, unseen)
    n = len(out[0]) if isinstance(out, tuple) else len(out)  # several outputs: one array each
    print(f"{args.output}: {n} predictions", file=sys.stderr)
    if unseen:
        from .tabular import unseen_report

        total = sum(k for k, _ in unseen.values())
        print(
            f"{total} cell{'s' * (total != 1)} unseen in training took the out-of-vocabulary "
            f"bucket: {unseen_report(unseen)}",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_data(args: argparse.Namespace) -> int:
    from . import data_report

    program = _load(args)
    if program.data is None or program.model is None:
        from .train import TrainingError

        raise TrainingError("the spec has no data section and model", "add a `data { ... }`")
    if args.write_shards:
        n, files, skipped = data_report.write_shards(
            program, Path(args.write_shards), args.per_shard
        )
        left = f", {skipped} skipped (on_error = skip)" if skipped else ""
        print(f"{args.write_shards}: {n} examples in {files} shards{left}", file=sys.stderr)
        return EXIT_OK
    r = data_report.report(program)
    if args.format == "json":
        print(json.dumps(r.to_json(), indent=2))
    else:
        print(data_report.render(r))
    if args.output:
        n = data_report.grid(program, Path(args.output))
        what = f"{n} augmented training images" if n else "nothing: the inputs are not images"
        print(f"{args.output}: {what}", file=sys.stderr)
    return EXIT_OK


def cmd_init_check(args: argparse.Namespace) -> int:
    from . import cli
    from .init_check import init_check

    program = _load(args)
    if program.model is None:
        print(f"{args.file}: error: nothing to check: the spec has no model", file=sys.stderr)
        return EXIT_FAIL
    report = init_check(program, args.batch, args.noise)
    findings = report.findings()
    if args.format == "json":
        found = [to_dict(d) for d in findings]
        print(json.dumps(report.to_dict() | {"findings": found}, indent=2))
    else:
        print(report.table())
        cli._warn(findings, program.sources)
        n = len(findings)
        print(f"{n} finding{'s' * (n != 1)}" if n else "no findings", file=sys.stderr)
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    from .compile_report import compile_report

    program = _load(args)
    if program.model is None:
        print(f"{args.file}: error: nothing to compile: the spec has no model", file=sys.stderr)
        return EXIT_FAIL
    if args.emit:
        return _emit(program, args)
    report = compile_report(program)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.text())
    if not report.equal:
        print(
            f"{args.file}: internal error: the lowered module's parameter counts differ from "
            "the summary's (a word's parameter rule disagrees with its lowering); please report "
            "it with this spec",
            file=sys.stderr,
        )
        return EXIT_FAIL
    return EXIT_OK


def _emit(program: Any, args: argparse.Namespace) -> int:
    """`dnn compile FILE --emit python -o FILE.py`: the standalone training script."""
    from .emit_python import write

    if not args.output:
        print("dnn compile: error: --emit python needs -o FILE.py", file=sys.stderr)
        return 2
    out = Path(args.output)
    text = write(program, out)
    print(f"{out}: {len(text.splitlines())} lines; run it with `python {out}`", file=sys.stderr)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    args.file = None  # the run's own spec
    program = _load_for_run(args)
    out = Path(args.output)
    if args.format == "safetensors":
        from .weights import export_run

        tensors = export_run(program, Path(args.run), args.layout, out)
        n = sum(math.prod(v.shape) for v in tensors.values())
        print(f"{out}: {len(tensors)} tensors, {n:,} values, {args.layout} layout", file=sys.stderr)
        return EXIT_OK
    inf, difference = export(program, Path(args.run), args.format, out)
    shape = ", ".join(["batch", *map(str, inf.raw_shape)])
    print(
        f"{out}: {args.format}, input `{inf.input_name}` [{shape}] {np_name(inf.dtype)} -> "
        + ", ".join(f"`{o}`" for o in inf.output_names),
        file=sys.stderr,
    )
    from .export import columns_file
    from .pipeline import load_transform

    if load_transform(Path(args.run)).schema is not None:
        print(
            f"  the input is a typed table's encoded rows: {columns_file(out)} holds the "
            "columns, vocabularies and statistics that encode them (docs/data.md)",
            file=sys.stderr,
        )
    if difference is not None:
        print(
            f"  checked in onnxruntime: outputs within {difference:.1e} (relative) of dnn's "
            "on 64 examples",
            file=sys.stderr,
        )
    return EXIT_OK


def np_name(dtype: Any) -> str:
    return {"float32": "f32", "int32": "i32"}.get(str(dtype), str(dtype))


def cmd_runs(args: argparse.Namespace) -> int:
    from . import runs

    if args.what and args.what[0] == "compare":
        if len(args.what) != 3:
            print("usage: dnn runs compare RUN_A RUN_B [-o plot.png]", file=sys.stderr)
            return 2
        a, b = Path(args.what[1]), Path(args.what[2])
        for f in (a, b):
            if not (f / "hparams.yaml").exists():
                print(f"{f}: error: not a run folder (no hparams.yaml)", file=sys.stderr)
                return EXIT_FAIL
        if args.output:
            names = runs.plot_compare(a, b, Path(args.output))
            print(f"{args.output}: {', '.join(names)} of {a.name} and {b.name}", file=sys.stderr)
        from .cli import main

        code = main(["diff", str(a / "spec.dnn"), str(b / "spec.dnn")])
        return EXIT_OK if code in (0, 1) else code
    root = Path(args.what[0]) if args.what else Path("runs")
    if len(args.what) > 1 or not root.is_dir():
        print(f"{root}: error: no such folder of runs", file=sys.stderr)
        return EXIT_FAIL
    found = runs.find(root)
    if not found:
        print(f"{root}: no runs", file=sys.stderr)
        return EXIT_OK
    from rich.console import Console

    Console().print(runs.table(found))
    return EXIT_OK


WEIGHTS_HELP = (
    "instead of a run: the spec's model with this weight file's tensors (.safetensors, mapped "
    "as `init_from` maps them) and no training"
)


def register(
    command: Callable[..., argparse.ArgumentParser], overrides: Callable[..., None]
) -> None:
    """Add the commands to the `dnn` parser (see cli._parser)."""
    c = command("train", _guard(cmd_train), "train a spec on its data; write a run folder")
    c.add_argument("file", metavar="FILE")
    overrides(c)
    c.add_argument("--out", metavar="DIR", help="run folder (default: runs/<spec>-<time>)")
    c.add_argument("--resume", action="store_true", help="continue the run in --out")
    c.add_argument("--epochs", type=int, metavar="N", help="train for N epochs (train.epochs)")
    c.add_argument(
        "--stop-after",
        type=int,
        metavar="K",
        help="stop after epoch K as if interrupted (continue later with --resume)",
    )
    c.add_argument(
        "--stop-after-steps",
        type=int,
        metavar="K",
        help="stop after step K of the run, in mid-epoch, saving where the data was (streamed "
        "data only: `data.stream`); continue later with --resume",
    )
    c.add_argument("--quiet", action="store_true", help="print only the final metrics")
    c.add_argument(
        "--health",
        action="store_true",
        help=f"per-layer health checks every {HEALTH_EVERY} steps, unless `train.health` says",
    )
    c.add_argument(
        "--histograms",
        action="store_true",
        help="TensorBoard histograms of every weight once per epoch (<run>/tensorboard)",
    )
    c.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="multi-host: address of process 0 (with --num-processes and --process-id)",
    )
    c.add_argument("--num-processes", type=int, metavar="N", help="multi-host: process count")
    c.add_argument("--process-id", type=int, metavar="I", help="multi-host: this process")
    c.add_argument(
        "--distributed",
        action="store_true",
        help="multi-host: read the cluster's environment (SLURM, MPI, TPU) for the above",
    )
    c.add_argument(
        "--checkpoint-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="write the resumable checkpoint at most this often (and always at the end)",
    )

    c = command("data", _guard(cmd_data), "show what a spec's data section resolves to")
    c.add_argument("file", metavar="FILE")
    overrides(c)
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.add_argument(
        "-o", "--output", metavar="PNG", help="draw a grid of augmented training images here"
    )
    c.add_argument(
        "--write-shards",
        metavar="DIR",
        help='write the source\'s examples to ArrayRecord shards in DIR, for `shards("DIR/*.array_record")`',
    )
    c.add_argument("--per-shard", type=int, default=10_000, metavar="N", help="records per shard")

    c = command("eval", _guard(cmd_eval), "evaluate a trained run on a split of the spec's data")
    c.add_argument("file", metavar="FILE", nargs="?", help="default: the run's own spec.dnn")
    overrides(c)
    c.add_argument("--run", metavar="DIR", help="the run folder")
    c.add_argument("--weights", metavar="FILE", help=WEIGHTS_HELP)
    c.add_argument("--split", choices=("train", "val", "test"), default="test")
    c.add_argument("--format", choices=("text", "json"), default="text")

    c = command(
        "runs",
        cmd_runs,
        "list runs (`dnn runs [DIR]`) or compare two (`dnn runs compare A B -o plot.png`)",
    )
    c.add_argument("what", nargs="*", metavar="ARG", help="DIR, or: compare RUN_A RUN_B")
    c.add_argument("-o", "--output", metavar="PNG", help="with compare: overlay the curves here")

    c = command(
        "init-check",
        _guard(cmd_init_check),
        "one batch through the initialized model: per-layer activation and gradient statistics",
    )
    c.add_argument("file", metavar="FILE")
    overrides(c)
    c.add_argument("--batch", type=int, default=256, metavar="N", help="examples (default 256)")
    c.add_argument(
        "--noise", action="store_true", help="unit-variance inputs instead of the spec's data"
    )
    c.add_argument("--format", choices=("text", "json"), default="text")

    c = command(
        "compile",
        _guard(cmd_compile),
        "lower the spec and compile its train step without training: parameter counts, compile "
        "time, FLOPs and peak memory per step",
    )
    c.add_argument("file", metavar="FILE")
    overrides(c)
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.add_argument(
        "--emit",
        choices=("python",),
        help="write a standalone Flax + Optax training script instead (with -o; docs/emit.md)",
    )
    c.add_argument("-o", "--output", metavar="FILE", help="where --emit writes the script")

    c = command(
        "export",
        _guard(cmd_export),
        "a trained run as one inference program with its preprocessing: StableHLO or ONNX",
    )
    c.add_argument("run", metavar="RUN", help="the run folder")
    c.add_argument("--format", choices=("stablehlo", "onnx", "safetensors"), required=True)
    c.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write it")
    c.add_argument(
        "--layout",
        choices=("torch", "flax"),
        default="torch",
        help="safetensors: PyTorch's names and layouts (loads with strict=True), or Flax's",
    )
    overrides(c)

    c = command("predict", _guard(cmd_predict), "apply a trained run to new inputs")
    c.add_argument("file", metavar="FILE", nargs="?", help="default: the run's own spec.dnn")
    overrides(c)
    c.add_argument("--run", metavar="DIR", help="the run folder")
    c.add_argument("--weights", metavar="FILE", help=WEIGHTS_HELP)
    c.add_argument(
        "--input",
        required=True,
        metavar="X",
        help="inputs: .npy, .csv, .npz (an array per input name), an image or a folder of images",
    )
    c.add_argument(
        "--output",
        required=True,
        metavar="Y",
        help="predictions: .npy or .csv (.npz for several outputs)",
    )
    c.add_argument(
        "--probabilities",
        action="store_true",
        help="write class probabilities to .npy instead of class indices",
    )
