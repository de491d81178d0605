"""Where arrays live: one device, or a mesh of devices (`train { devices = 4, shard = data }`).

`shard = data`: every batch is split across the devices along its first axis; parameters and
optimizer state are replicated, and XLA's SPMD partitioner inserts the gradient all-reduce.
`shard = fsdp`: the batch is split the same way and each parameter (with its optimizer state) is
also split, along its largest axis that the device count divides (replicated when none does);
XLA gathers it where a layer needs it whole. The data set itself is replicated (it fits: that is
when a run keeps it on the device), so a batch is gathered by index on every device.

Multi-host runs (`dnn train --coordinator ...`) build the same mesh over every process's devices:
the flags imply `devices = all` where the spec does not set `devices` (runtime/cli_train.py), and
a count that leaves some process's devices out is refused at its line (Orbax cannot checkpoint
such a run, nor can its arrays be gathered across hosts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


@dataclass(frozen=True)
class Placement:
    mesh: Mesh | None
    mode: str  # "data" | "fsdp"

    @staticmethod
    def of(devices: Any, mode: str) -> Placement:
        """`devices`: "all" or a count (a ValueError names what is available)."""
        available = jax.devices()
        n = len(available) if str(devices) == "all" else int(devices)
        if n > len(available):
            raise ValueError(
                f"`devices = {n}` but this machine has {len(available)} "
                f"{available[0].platform.upper()} device{'s' * (len(available) != 1)}"
            )
        if jax.process_count() > 1 and n < len(available):
            # a mesh that leaves out some process's devices cannot be checkpointed or
            # gathered across hosts (Orbax: "Cannot serialize host local jax.Array")
            raise ValueError(
                f"`devices = {n}`, but a multi-host run trains on all {len(available)} "
                f"devices of its {jax.process_count()} processes"
            )
        if n <= 1:
            return Placement(None, mode)
        return Placement(Mesh(np.array(available[:n]), (AXIS,)), mode)

    @property
    def count(self) -> int:
        return 1 if self.mesh is None else int(self.mesh.devices.size)

    def replicated(self) -> Any:
        return None if self.mesh is None else NamedSharding(self.mesh, P())

    def batch(self, x: Any) -> Any:
        """Constrain a batch to be split along its first axis (when the count divides it)."""
        if self.mesh is None or x.shape[0] % self.count:
            return x
        spec = P(AXIS, *([None] * (x.ndim - 1)))
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))

    def state(self, shapes: Any) -> Any:
        """Shardings for a state tree (of ShapeDtypeStructs): replicated, or split (fsdp)."""
        if self.mesh is None:
            return None
        if self.mode != "fsdp":
            return jax.tree.map(lambda _: NamedSharding(self.mesh, P()), shapes)
        return jax.tree.map(self._split, shapes)

    def _split(self, leaf: Any) -> Any:
        assert self.mesh is not None
        shape = tuple(getattr(leaf, "shape", ()))
        axes = [a for a in range(len(shape)) if shape[a] % self.count == 0 and shape[a] > 1]
        if not axes:
            return NamedSharding(self.mesh, P())
        axis = max(axes, key=lambda a: shape[a])
        spec = [None] * len(shape)
        spec[axis] = AXIS
        return NamedSharding(self.mesh, P(*spec))

    def from_host(self, x: Any, whole: int | None = None) -> Any:
        """A batch read on this host as a step takes it. In a multi-host run: this process's
        share of a batch of `whole` rows, split over the devices, or (`whole` None) the whole
        batch, which every process read, replicated; else the host array as it is."""
        if self.mesh is None or jax.process_count() == 1:
            return x
        if whole is None:
            return self.put(x)
        spec = P(AXIS, *([None] * (np.ndim(x) - 1)))
        sharding = NamedSharding(self.mesh, spec)
        return jax.make_array_from_process_local_data(sharding, x, (whole, *np.shape(x)[1:]))

    def put(self, x: Any) -> Any:
        """Place a host array on the device(s): replicated over the mesh."""
        if self.mesh is None:
            return jax.device_put(x)
        sharding = NamedSharding(self.mesh, P())
        return jax.make_array_from_callback(np.shape(x), sharding, lambda idx: np.asarray(x)[idx])
