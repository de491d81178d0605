"""What the user sees while a run trains: a rich progress bar on a terminal, plain lines otherwise.

On a terminal: one bar per epoch with the running loss, throughput and ETA, then one line per
epoch with its metrics. Not a terminal (CI logs, pipes): one line per epoch. `--quiet`: nothing
but errors (the caller prints the final result).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

SHOWN = ("loss", "penalty", "accuracy", "mse", "mae", "r2", "f1", "precision", "recall")


def fmt_metrics(record: dict[str, Any], prefix: str = "") -> str:
    parts = []
    for k, v in record.items():
        if isinstance(v, float) and not k.endswith(("time", "_s")) and k != "lr":
            parts.append(f"{prefix}{k} {v:.4f}")
    return "  ".join(parts)


class Display:
    """Progress of a run. `mode`: 'bar' (terminal), 'lines' or 'quiet'."""

    def __init__(self, epochs: int, steps: int, mode: str, stream: TextIO | None = None):
        self.epochs, self.steps, self.mode = epochs, steps, mode
        self.stream = stream or sys.stderr
        self.progress: Any = None
        self.task: Any = None
        self.epoch, self.epoch_t0 = 1, time.perf_counter()
        self.t0 = time.perf_counter()
        self.compiled = False  # the first epoch in a process waits on XLA compiling the step

    @staticmethod
    def choose(quiet: bool, stream: TextIO | None = None) -> str:
        if quiet:
            return "quiet"
        s = stream or sys.stderr
        return "bar" if getattr(s, "isatty", lambda: False)() else "lines"

    def __enter__(self) -> Display:
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        """One bar for the whole run (its ETA is the run's), labelled with the epoch."""
        self.epoch, self.epoch_t0 = epoch, time.perf_counter()
        if self.progress is None:
            return
        done = (epoch - 1) * self.steps
        if self.task is None:
            self.task = self.progress.add_task(
                "train", total=self.epochs * self.steps, completed=done, epoch="", info="", speed=""
            )
            self.progress.reset(self.task, total=self.epochs * self.steps, completed=done)
        info = {} if self.compiled else {"info": "compiling the training step..."}
        self.progress.update(self.task, completed=done, epoch=f"{epoch}/{self.epochs}", **info)

    def step(self, done: int, samples: int, loss: float | None = None) -> None:
        """`done` steps of the current epoch are dispatched (a scanned epoch reports once)."""
        self.compiled = True
        if self.progress is None:
            return
        dt = max(time.perf_counter() - self.epoch_t0, 1e-9)
        info = f"loss {loss:.4f}" if loss is not None else ""
        self.progress.update(
            self.task,
            completed=(self.epoch - 1) * self.steps + done,
            info=info,
            speed=f"{samples / dt:,.0f} samples/s",
        )

    def end_epoch(self, record: dict[str, Any]) -> None:
        self.compiled = True
        if self.mode == "quiet":
            return
        waited = (
            f", {record['data_wait_s']:.1f} s waiting for data" if "data_wait_s" in record else ""
        )
        line = (
            f"epoch {record['epoch']}/{self.epochs}  {fmt_metrics(record)}"
            f"  ({record['time']:.1f} s, {record['samples_per_s']:,.0f} samples/s{waited})"
        )
        if self.progress is not None:
            # the bar shows the last finished epoch's loss and speed until a step of the next
            # reports (an epoch shorter than BAR_EVERY_S, or a scanned one, never does)
            self.progress.update(
                self.task,
                completed=record["epoch"] * self.steps,
                info=f"loss {record['loss']:.4f}" if "loss" in record else "",
                speed=f"{record['samples_per_s']:,.0f} samples/s",
            )
            self.progress.console.print(line, highlight=False)
        else:
            print(line, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if self.mode == "quiet":
            return
        if self.progress is not None:
            self.progress.console.print(text, highlight=False)
        else:
            print(text, file=self.stream, flush=True)
