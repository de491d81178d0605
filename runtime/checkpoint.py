"""Checkpoints with Orbax: the last epoch (to resume) and the best epoch (to restore).

`checkpoints/last/<epoch>/` holds the whole training state (parameters, running statistics,
optimizer state, step counter) and a JSON record of the loop (history, early-stopping and
plateau state); `checkpoints/best/<epoch>/` the weights of the best epoch so far. Orbax writes
each checkpoint to a temporary folder and renames it when complete, so a process killed while
saving leaves the previous checkpoint intact; only the newest complete one is kept.

Orbax is imported when a checkpoint is first saved or read, not with this module: `dnn
train` imports it on a side thread while XLA compiles (runtime/fit.py), which takes its
0.25 s import off a short run's critical path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax


def orbax() -> Any:
    import orbax.checkpoint as ocp

    return ocp


class Slot:
    """One series of checkpoints (`last` or `best`), keeping the newest."""

    def __init__(self, folder: Path, keep: int = 1):
        self.folder = folder.resolve()
        self.keep = keep
        self._manager: Any = None

    @property
    def manager(self) -> Any:
        """Orbax's manager of the folder, made on first use."""
        if self._manager is None:
            ocp = orbax()
            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, enable_async_checkpointing=False, create=True
            )
            self._manager = ocp.CheckpointManager(self.folder, options=options)
        return self._manager

    def save(self, epoch: int, tree: Any, meta: dict[str, Any]) -> None:
        """Write `epoch` (replacing a checkpoint of that epoch left by an interrupted run)."""
        ocp = orbax()
        if epoch in self.steps():
            self.manager.delete(epoch)
        self.manager.save(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self.manager.wait_until_finished()

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def steps(self) -> list[int]:
        return sorted(int(s) for s in self.manager.all_steps())

    def drop_after(self, epoch: int) -> None:
        """Delete checkpoints newer than `epoch` (written just before a run was killed)."""
        for step in self.steps():
            if step > epoch:
                self.manager.delete(step)

    def restore(self, like: Any, epoch: int | None = None) -> tuple[Any, dict[str, Any]]:
        """The tree (shaped like `like`) and the JSON record of `epoch` (default: the newest)."""
        ocp = orbax()
        epoch = self.latest() if epoch is None else epoch
        if epoch is None:
            raise FileNotFoundError(f"no checkpoint in {self.manager.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = self.manager.restore(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return out.state, dict(out.meta)

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()


def exists(folder: Path) -> bool:
    """Whether `folder` holds a complete checkpoint."""
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())
