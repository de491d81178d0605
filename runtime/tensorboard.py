"""TensorBoard event files in the run folder (issue 17, point 5), written with tensorboardX.

Every `dnn train` writes `<run>/tensorboard/` when tensorboardX is installed (the `train`
extra brings it; no TensorFlow): `tensorboard --logdir runs` then shows every run.

  tensorboard/train/   epoch/<quantity> per epoch (loss, penalty, each metric), epoch/lr,
                       epoch/samples_per_s; the model summary and the spec as text;
                       with `dnn train --histograms`, one histogram per weight per epoch
  tensorboard/val/     epoch/<quantity> of the validation split, under the same tags, so
                       TensorBoard draws train and validation in one chart (as Keras does)
  tensorboard/         `train.health`'s per-layer checks (runtime/health.py), by step

The step of the epoch scalars is the epoch number. A resumed run purges what was written
after its checkpoint's epoch (TensorBoard's `purge_step`), so a chart has no duplicates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FOLDER = "tensorboard"
# Epoch-record keys that are not scalars of a split (the rest go to train/ or val/).
_NOT_SCALARS = ("epoch", "time")


def available() -> bool:
    """Whether tensorboardX can be imported (the `tensorboard` or `train` extra)."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return False
    return True


def writer(folder: Path, purge_step: int | None = None) -> Any:
    """A tensorboardX SummaryWriter on `folder`; None without tensorboardX."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder), purge_step=purge_step, flush_secs=10)


class Board:
    """The run's epoch scalars, its model summary and optional weight histograms.

    The writers open at the first epoch's record, not before: tensorboardX's import (0.4 s)
    runs on `dnn train`'s side thread while XLA compiles the first step.
    """

    def __init__(self, run: Path, start_epoch: int = 1, histograms: bool = False):
        self.root = run / FOLDER
        self.purge = start_epoch if start_epoch > 1 else None
        self.histograms = histograms
        self.texts: list[tuple[str, str]] = []
        self.train: Any = None
        self.val: Any = None
        self.opened = False

    def _open(self) -> bool:
        if not self.opened:
            self.opened = True
            self.train = writer(self.root / "train", self.purge)
            if self.train is not None:
                self.val = writer(self.root / "val", self.purge)
                for tag, body in self.texts:
                    self.train.add_text(tag, body, 0)
        return self.train is not None

    def text(self, tag: str, body: str) -> None:
        """A block of monospaced text (TensorBoard renders text as Markdown)."""
        self.texts.append((tag, "\n".join("    " + line for line in body.splitlines())))

    def epoch(self, record: dict[str, Any]) -> None:
        """One epoch record (a line of metrics.jsonl) as scalars at step = its epoch."""
        if not self._open():
            return
        step = int(record["epoch"])
        for key, value in record.items():
            if key in _NOT_SCALARS or not isinstance(value, int | float):
                continue
            if key.startswith("val_"):
                if self.val is None:  # only a run with a validation split has val/
                    self.val = writer(self.root / "val", self.purge)
                self.val.add_scalar(f"epoch/{key[4:]}", float(value), step)
            else:
                self.train.add_scalar(f"epoch/{key}", float(value), step)

    def weights(self, tree: dict[str, Any], epoch: int) -> None:
        """One histogram per weight array (`weights/<layer>/<name>`), when asked for."""
        if not self.histograms or not self._open():
            return
        import jax

        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            tag = "/".join(str(getattr(k, "key", k)) for k in path)
            values = np.asarray(jax.device_get(leaf), np.float32).reshape(-1)
            self.train.add_histogram(f"weights/{tag}", values, epoch)

    def close(self) -> None:
        for w in (self.train, self.val):
            if w is not None:
                w.close()
