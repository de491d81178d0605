"""`dnn train` refuses a run whose memory estimate exceeds the device's memory, before
allocating anything (issue 14, class 9; the estimate is compiler/memory.py's).

The limit, per device: what XLA's allocator reports free (`memory_stats()`: `bytes_limit -
bytes_in_use`, on GPUs and TPUs); on a CPU, which reports nothing, the machine's available RAM
(`MemAvailable` in /proc/meminfo, else `os.sysconf`), shared by this process's devices of the run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
from dnn.compiler.diagnostics import SpecError
from dnn.compiler.ir import Program
from dnn.compiler.memory import estimate, refusal


def check_fits(program: Program, prepared: Any) -> None:
    """Raise a SpecError at the largest layer's line when the run cannot fit its devices."""
    assert program.model is not None
    devices = jax.devices()
    wanted = program.train.devices
    n = len(devices) if str(wanted) == "all" else int(wanted)
    if n > len(devices):
        return  # the engine refuses the count itself (runtime/placement.py)
    data = sum(t.x.nbytes + t.y.nbytes for t in prepared.splits.values() if len(t.y))
    est = estimate(program.model, program.train, program.data, data_bytes=data, devices=n)
    found = available(devices[:n])
    if found is not None and est.total > found[0]:
        raise SpecError([refusal(est, *found)], program.sources)


def available(devices: Sequence[Any]) -> tuple[int, str] | None:
    """(bytes free per device, where that number comes from), or None when unknown."""
    stats = [_stats(d) for d in devices]
    if stats and all(s and "bytes_limit" in s for s in stats):
        free = [int(s["bytes_limit"]) - int(s.get("bytes_in_use", 0)) for s in stats]
        i = free.index(min(free))
        return free[i], f"free on {devices[i]} (its allocator's limit)"
    local = [d for d in devices if d.process_index == jax.process_index()]
    ram = host_available()
    if ram is None or not local:
        return None
    share = f", shared by {len(local)} CPU devices" if len(local) > 1 else ""
    return ram // len(local), f"of RAM available on this machine{share}"


def host_available() -> int | None:
    """The machine's available RAM in bytes (Linux's MemAvailable; else free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _stats(device: Any) -> dict[str, Any] | None:
    try:
        return device.memory_stats()  # type: ignore[no-any-return]
    except Exception:  # some backends raise instead of returning None
        return None
