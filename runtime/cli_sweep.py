"""The search commands: `dnn lr-find` (the learning-rate range test) and `dnn sweep` (the
spec's `sweep` section on Optuna). Errors go through `cli_train._guard`: spec problems at the
spec line, run problems as `file: error: ...` with a hint; exit 1."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAIL = 0, 1


def cmd_lr_find(args: argparse.Namespace) -> int:
    from dnn.compiler.check import nothing_to_train
    from dnn.compiler.diagnostics import SpecError
    from dnn.compiler.driver import load

    from . import lr_find
    from .train import TrainingError

    if not 0 < args.start < args.end:
        print(f"dnn lr-find: error: need 0 < --start < --end (got {args.start:g}, {args.end:g})")
        return 2
    program = load(args.file, lr_find.overrides(args.set))
    if program.model is None:
        raise SpecError([nothing_to_train(program.module)], program.sources)
    test = lr_find.range_test(program, args.start, args.end, args.steps)
    s = test.suggestion()
    out = Path(args.output or f"{Path(args.file).stem}.lr-find.png")
    lr_find.plot(test, out, f"{program.model.name}: learning-rate range test")
    if args.format == "json":
        print(json.dumps(test.to_dict() | {"plot": str(out)}, indent=2))
    else:
        print(_lr_find_text(args, test, s, out))
    if s is None:
        raise TrainingError(
            f"the range test stopped after {len(test.lrs)} steps ({test.stopped}), "
            "too few to suggest a rate",
            "start lower (`--start 1e-9`) or take more steps (`--steps 300`)",
        )
    if args.write:
        rate = s.steepest if args.use == "steepest" else s.minimum_10
        _write_rate(args.file, float(f"{rate:.2g}"))
    return EXIT_OK


def _lr_find_text(args: argparse.Namespace, test: Any, s: Any, out: Path) -> str:
    end = f"stopped at step {len(test.lrs)}: {test.stopped}" if test.stopped else "every step"
    lines = [
        f"{args.file}: {len(test.lrs)} of {test.planned} steps, rate {args.start:g} .. "
        f"{args.end:g} ({end})"
    ]
    if s is not None:
        lines += [
            f"  steepest descent  {s.steepest:.2e}",
            f"  minimum / 10      {s.minimum_10:.2e}   (minimum at {s.minimum:.2e})",
        ]
    lines.append(f"plot: {out}")
    return "\n".join(lines)


def _write_rate(path: str, rate: float) -> None:
    """Put `rate` into the spec's optimizer (`train.optimizer.lr`), formatted by `dnn fmt`."""
    from dnn.compiler.driver import rewrite
    from dnn.compiler.resolve import read_file
    from dnn.compiler.values import fmt_number

    text = read_file(path)
    new = rewrite(text, path, [f"train.optimizer.lr={fmt_number(rate)}"])
    tmp = f"{path}.dnn-lr-find.tmp"
    Path(tmp).write_text(new)
    os.replace(tmp, path)
    print(f"{path}: train.optimizer.lr = {fmt_number(rate)}", file=sys.stderr)


def cmd_sweep(args: argparse.Namespace) -> int:
    from dnn.compiler.check import nothing_to_train
    from dnn.compiler.diagnostics import SpecError
    from dnn.compiler.driver import load

    from . import sweep
    from .train import TrainingError

    optuna = sweep.optuna_module()
    program = load(args.file, args.set)
    if program.sweep is None:
        raise TrainingError(
            "the spec has no `sweep` section: nothing to search",
            "add one, e.g. `sweep { train.optimizer.lr = loguniform(1e-4, 1e-2) }`",
        )
    if program.model is None:
        raise SpecError([nothing_to_train(program.module)], program.sources)
    axes = sweep.axes_of(program)
    sweep.check_values(args.file, args.set, axes)
    pbt = program.sweep.method.name == "best_ball"
    keys: tuple[tuple[str, str], ...] = ()
    if pbt:
        sweep.check_pbt(args.file, args.set, program, axes)
        if args.resume or args.parallel > 1 or args.storage:
            raise TrainingError(
                "a `best_ball` sweep runs its population in one process, from the start",
                "leave out --resume, --parallel and --storage",
            )
    elif args.vmap > 1:
        keys = sweep.check_vmap(args.file, args.set, program, axes)
    metric, direction = sweep.objective_of(program)
    total = sweep.trial_budget(program, axes, args.trials)
    sweep.sampler(optuna, program, axes)  # a method not run yet: said before anything is written
    ahead = None
    if args.vmap > 1 and not pbt:  # the group's program compiles while the study opens
        from .sweep_vmap import compile_ahead, prepare_data

        k = min(args.vmap, total)
        ahead = (k, compile_ahead(program, keys, k, prepare_data(program), _most_lanes(args)))
    else:
        _warm_report_imports([a.name for a in axes])
    folder = Path(args.out or f"sweeps/{Path(args.file).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    fresh = not args.resume and not args.storage
    if fresh and folder.is_dir() and any(folder.iterdir()):
        raise TrainingError(
            f"{folder} is not empty",
            "continue the sweep in it with --resume, or give another --out",
        )
    folder.mkdir(parents=True, exist_ok=True)
    url = sweep.storage_url(folder, args.storage)
    name = args.study or Path(args.file).stem
    study = sweep.open_study(optuna, url, name, direction, None, args.resume)
    # one process starting a sweep draws from `train.seed` alone (reproducible); a resumed or
    # shared one mixes in its process id and the trials done
    salt = () if fresh and not args.worker else (os.getpid(), sweep.done(optuna, study))
    study.sampler = sweep.sampler(optuna, program, axes, salt)
    study.pruner = sweep.pruner(optuna, program)
    digest = sweep.spec_digest(program)
    if study.user_attrs.get("spec", digest) != digest:
        raise TrainingError(
            f"the spec differs from the one the study `{name}` in {url} was started with",
            "start a new sweep with another --out (or --study)",
        )
    study.set_user_attr("spec", digest)
    run = sweep.Sweep(args.file, folder, list(args.set), program, axes, total, metric, direction)
    if not args.worker:
        method = program.sweep.method.name
        pruner = program.sweep.pruner.name
        print(
            f"{args.file}: {method} search, {total} trials, {direction} {metric} over "
            + ", ".join(a.name for a in axes)
            + (f", {pruner} pruner" if pruner != "none" else "")
            + f"; {sweep.done(optuna, study)} done; study in {url}",
            file=sys.stderr,
        )
    workers = _start_workers(args, folder, url, name, total)
    if pbt:
        from .sweep_pbt import run_pbt

        run_pbt(run, study, optuna)
    elif args.vmap > 1:  # the report's imports warmed once the group trains (XLA's time)
        warm = None if args.worker else lambda: _warm_report_imports([a.name for a in axes])
        sweep.run_vmapped(run, study, optuna, args.vmap, keys, ahead, warm, _most_lanes(args))
    else:
        run.run(study, optuna)
    for w in workers:
        w.wait()
    if args.worker:
        return EXIT_OK
    return _report(args, run, study, optuna)


def _warm_report_imports(names: list[str]) -> None:
    """Import what the report draws with (Optuna's importance, drawn for two or more searched
    values, brings scikit-learn: about 1 s of CPU) on a side thread, while the main one waits
    on XLA; as `dnn train` warms Orbax."""
    import threading

    from .sweep_report import ranks_importance

    def warm() -> None:
        import matplotlib

        matplotlib.use("Agg")
        if ranks_importance(names):
            import optuna.importance  # noqa: F401
        import optuna.visualization.matplotlib  # noqa: F401

    threading.Thread(target=warm, daemon=True, name="dnn-warm-imports").start()


def type_lanes(text: str) -> int:
    """`--lanes L`: a positive whole number."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"`{text}` is not a positive whole number of lanes")
    return n


def _most_lanes(args: argparse.Namespace) -> int:
    """`--lanes`, or the cores shared among `--parallel`'s processes (each trains its groups
    in lanes on threads: runtime/sweep_vmap.py)."""
    from .sweep_vmap import cores

    return args.lanes or max(1, cores() // max(1, args.parallel))


def _start_workers(
    args: argparse.Namespace, folder: Path, url: str, name: str, total: int
) -> list[Any]:
    """`--parallel K`: K - 1 more processes on the same study (as `--resume --storage` from
    another shell or machine would be)."""
    import subprocess

    cmd = [sys.executable, "-m", "dnn.runtime.cli", "sweep", args.file, "--resume", "--worker"]
    cmd += ["--out", str(folder), "--storage", url, "--study", name, "--trials", str(total)]
    cmd += ["--vmap", str(args.vmap), "--lanes", str(_most_lanes(args))]
    for s in args.set:
        cmd += ["--set", s]
    return [subprocess.Popen(cmd) for _ in range(max(0, args.parallel - 1))]


def _report(args: argparse.Namespace, run: Any, study: Any, optuna: Any) -> int:
    from rich.console import Console

    from . import sweep_report as report

    names = [a.name for a in run.axes]
    table = report.rows(study, names)
    csv = report.write_csv(table, names, run.folder / "results.csv")
    Console(stderr=False).print(report.rich_table(table, names, run.metric, run.direction))
    plot = report.plot_objective(
        table, run.metric, run.direction, run.folder / "plots" / "objective.png"
    )
    more = report.plot_search(study, names, run.metric, run.folder / "plots")
    best = report.ranked(table, run.direction)[0] if table else None
    print(f"results: {csv}\nplot: {plot}")
    for path in more:
        print(f"plot: {path}")
    if best is None or best["state"] != "complete":
        print(f"{args.file}: no trial finished; nothing is best", file=sys.stderr)
        return EXIT_FAIL
    from . import sweep

    settings = [sweep.setting(n, best[n]) for n in names]
    note = (
        f"dnn sweep: trial {best['trial']} of {len(table)} is the best, "
        f"{run.metric} {best['objective']:.4g} ({best['run']})"
    )
    path = run.folder / "best.dnn"
    path.write_text(report.best_text(args.file, list(args.set), settings, note))
    print(f"best: trial {best['trial']}, {run.metric} {best['objective']:.4f}: {path}")
    return EXIT_OK


def register(
    command: Callable[..., argparse.ArgumentParser],
    overrides: Callable[..., None],
    guard: Callable[..., Any],
) -> None:
    """Add `lr-find` and `sweep` to the `dnn` parser (see cli._parser)."""
    from . import lr_find

    c = command(
        "lr-find",
        guard(cmd_lr_find),
        "learning-rate range test: train with an exponentially growing rate, suggest one",
    )
    c.add_argument("file", metavar="FILE")
    overrides(c)
    c.add_argument("--steps", type=int, default=lr_find.STEPS, metavar="N", help="most steps")
    c.add_argument("--start", type=float, default=lr_find.START, metavar="LR", help="first rate")
    c.add_argument("--end", type=float, default=lr_find.END, metavar="LR", help="last rate")
    c.add_argument(
        "-o", "--output", metavar="PNG", help="the plot (default: FILE's stem.lr-find.png)"
    )
    c.add_argument(
        "--write",
        action="store_true",
        help="write the suggestion into the spec's optimizer (`train.optimizer.lr`, via dnn fmt)",
    )
    c.add_argument(
        "--use",
        choices=("steepest", "minimum"),
        default="steepest",
        help="which suggestion --write takes: steepest descent (default) or minimum / 10",
    )
    c.add_argument("--format", choices=("text", "json"), default="text")

    c = command(
        "sweep",
        guard(cmd_sweep),
        "run the spec's `sweep` section (grid, random, bayes, best_ball) on Optuna; a folder of trials",
    )
    c.add_argument("file", metavar="FILE")
    overrides(c)
    c.add_argument("--trials", type=int, metavar="N", help="number of trials (default: the spec's)")
    c.add_argument("--out", metavar="DIR", help="sweep folder (default: sweeps/<spec>-<time>)")
    c.add_argument("--resume", action="store_true", help="continue the sweep in --out")
    c.add_argument(
        "--parallel", type=int, default=1, metavar="K", help="K processes on the study at once"
    )
    c.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL shared by several processes or machines (default: "
        "sqlite:///DIR/study.db)",
    )
    c.add_argument("--study", metavar="NAME", help="the study's name (default: the spec's stem)")
    c.add_argument(
        "--vmap",
        type=int,
        default=1,
        metavar="K",
        help="train K trials at a time as one vmapped program (values that change no shape: "
        "the optimizer's and schedule's numbers, the seed)",
    )
    c.add_argument(
        "--lanes",
        type=type_lanes,
        default=0,
        metavar="L",
        help="with --vmap on a CPU: train a group in at most L programs side by side on "
        "threads, 2 or more trials each (default: the cores, shared among --parallel's "
        "processes; 1: one program, whose numbers do not depend on the machine's cores)",
    )
    c.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
