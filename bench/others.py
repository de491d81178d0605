"""Other frameworks beside dnn: the benchmark models in PyTorch (eager, CPU) and Keras 3 (JAX).

`python bench/others.py [--quick] [--models mlp,cnn28,resnet] [--repeats N] [--epochs N]
[--no-memory] [--ops] [--json FILE]`

Issue 7's side-by-side comparison. For each benchmark model (bench/specs/*.dnn) it trains, in
this one process, with the sides' epochs interleaved (order reversed every epoch and every
repeat, so that load from other processes on a shared machine hits them alike):

- (a) the compiled spec through dnn, driven as `dnn train` drives it (bench/overhead.py's `Dnn`);
- (b) the hand-written Flax + Optax reference (bench/handwritten.py, overhead.py's `Handwritten`);
- (c) PyTorch eager on the CPU, as a PyTorch user writes it: the split as tensors in memory, NCHW,
  `torch.randperm` each epoch, batches gathered by index, `model.train()`,
  `zero_grad` / `backward` / `step` with `torch.optim.Adam`, the loss and the number correct
  accumulated as tensors (no `.item()` per step), PyTorch's default thread count (one per
  core); the same with 1 thread (on a small shared machine PyTorch's OpenMP threads stall
  waiting for each other when another process takes a core); and (c') the same in the
  channels_last memory format for the two convnets;
- (d) Keras 3 with the JAX backend: a `keras.Sequential` (functional for the ResNet) model,
  `compile(Adam(1e-3), SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])`, one
  `model.fit(x, y, batch_size, epochs=1, shuffle=True, verbose=0)` per epoch with Keras's
  defaults (`jit_compile="auto"`, i.e. XLA; `steps_per_execution=1`).

All four have the same architectures, glorot-uniform kernels and zero biases, BatchNorm with
momentum 0.99 in the Flax/Keras convention (0.01 in PyTorch's) and eps 1e-5, Adam with rate
1e-3 (and eps 1e-8, Optax's and PyTorch's; Keras's default is 1e-7), the same batch sizes, the
same standardized data and split sizes (bench/handwritten.py's `load`), a fresh shuffle every
epoch and the last partial batch dropped (Keras has no `drop_last` for arrays: each epoch it is
given a random `steps * batch` examples of the split, which it then shuffles). Two known
differences of no cost: PyTorch pads the stride-2 3x3 convolution by 1 on each side where SAME
pads 0 before and 1 after, and flattens NCHW maps in channel-major order.

Measured per side, medians over repeats (each repeat builds, initializes and trains from
scratch: a first epoch, then `--epochs` steady epochs):

- init: parameter and optimizer-state creation (JAX sides: trace + compile + run);
- first-epoch extra: the first epoch's wall time minus the median steady epoch's, i.e. trace
  and compile for the JAX sides, first-call costs (allocator, oneDNN primitives) for PyTorch;
- steady samples/s: training steps only (shuffle, gather, forward, backward, update, metric
  accumulation), one epoch timed at a time with its results ready; median [min–max] over
  repeats x epochs, and its ratio to (b);
- train accuracy: the last epoch's running accuracy, median over repeats (a check that every
  side learns, not a benchmark);
- peak RSS: `ru_maxrss` of a separate process per side that imports only its framework, loads
  the data and trains 2 epochs (not with `--quick` or `--no-memory`); importing a framework
  counts (a CUDA build of torch takes ~500 MB at import, even on the CPU).

`--ops`: the PyTorch counterparts of bench/ops.py's rows (3x3 convolution 128x14x14x32 -> 64
forward, forward + gradient, gradient of kernel or input only; 2x2 max-pool on 128x28x28x32
forward + gradient; one whole cnn28 Adam train step at batch 128), NCHW (default threads and
1 thread) and channels_last,
next to JAX's `jit per call` column of bench/ops.py measured in the same process, interleaved;
milliseconds per iteration, medians. `--quick`: the MLP only, 3 repeats, 10 epochs, no extra
processes, about a minute.

PyTorch and Keras are optional extras (`pip install torch keras` into the environment); a side
whose framework is missing is reported as skipped. Keras is imported with KERAS_BACKEND=jax,
set here. Prints markdown tables with `uptime`'s load averages, and a last line of JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import make_digits28, median, print_json_last, run_child

os.environ["KERAS_BACKEND"] = "jax"  # side (d) is Keras on JAX, whatever the shell says

# steady epochs per repeat: bench/overhead.py's EPOCHS, but 4 for cnn28, whose per-step PyTorch
# sides (2 threads) stall now and then on a shared machine: more epochs, steadier medians
STEADY_EPOCHS = {"mlp": 20, "resnet": 6, "cnn28": 4}
CONVNETS = ("cnn28", "resnet")


# ------------------------------------------------------------------ the task every side trains


@dataclass(frozen=True)
class Task:
    """One model's train split (NHWC float32, int32 labels, as bench/handwritten.py loads it)
    and its training settings, in numpy only, so that a child process needs no JAX."""

    name: str
    x: np.ndarray
    y: np.ndarray
    batch: int
    lr: float
    seed: int

    @property
    def steps(self) -> int:
        return len(self.y) // self.batch  # drop_last

    @staticmethod
    def of(name: str) -> Task:
        from handwritten import CONFIGS, load

        cfg = CONFIGS[name]
        x, y = load(name)["train"]
        return Task(name, x, y, cfg.batch, cfg.lr, cfg.seed)

    def save(self, path: Path) -> None:
        np.savez(path, x=self.x, y=self.y, batch=self.batch, lr=self.lr, seed=self.seed)

    @staticmethod
    def read(name: str, path: Path) -> Task:
        with np.load(path) as z:
            return Task(name, z["x"], z["y"], int(z["batch"]), float(z["lr"]), int(z["seed"]))


# ------------------------------------------------------------------ (c) PyTorch eager


def _torch_mlp(nn: Any) -> Any:
    return nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )


def _torch_cnn28(nn: Any) -> Any:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 10),
    )


def _torch_resnet(nn: Any) -> Any:
    import torch

    def norm(c: int) -> Any:
        return nn.BatchNorm2d(c, eps=1e-5, momentum=0.01)  # = Flax's momentum 0.99

    class Basic(nn.Module):
        def __init__(self, cin: int, c: int, stride: int):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False), norm(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), norm(c)
            self.skip = nn.Identity()
            if stride != 1 or cin != c:
                self.skip = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), norm(c))

        def forward(self, x: Any) -> Any:
            h = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(h)) + self.skip(x))

    layers = [nn.Conv2d(1, 16, 3, padding=1, bias=False), norm(16), nn.ReLU()]
    for cin, c, stride in ((16, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1)):
        layers.append(Basic(cin, c, stride))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


TORCH_MODELS: dict[str, Callable[[Any], Any]] = {
    "mlp": _torch_mlp,
    "cnn28": _torch_cnn28,
    "resnet": _torch_resnet,
}


def torch_model(name: str, channels_last: bool = False) -> Any:
    """The PyTorch twin of bench/handwritten.py's model: glorot (xavier) uniform kernels, zero
    biases (PyTorch's defaults are kaiming-uniform kernels and uniform biases)."""
    import torch
    from torch import nn

    model = TORCH_MODELS[name](nn)
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model.to(memory_format=torch.channels_last) if channels_last else model


class TorchSide:
    """(c) PyTorch eager on the CPU, written as a PyTorch user writes it; `threads` (for the
    epoch only, then restored) where not PyTorch's default (one per core)."""

    def __init__(self, task: Task, channels_last: bool = False, threads: int | None = None):
        import torch

        self.task, self.channels_last, self.threads = task, channels_last, threads
        x = torch.from_numpy(task.x)
        if x.ndim == 4:
            x = x.permute(0, 3, 1, 2)  # NHWC -> NCHW, PyTorch's layout
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.x, self.y = x.contiguous(memory_format=fmt), torch.from_numpy(task.y).long()
        self.samples = task.steps * task.batch

    def build(self) -> None:
        """Nothing to trace or compile in eager mode."""

    def init(self) -> Any:
        import torch

        torch.manual_seed(self.task.seed)
        model = torch_model(self.task.name, self.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=self.task.lr)
        return model, opt, torch.Generator().manual_seed(self.task.seed)

    def epoch(self, st: Any, epoch: int) -> tuple[Any, Any]:
        import torch

        default = torch.get_num_threads()
        torch.set_num_threads(self.threads or default)
        try:
            return self._epoch(st)
        finally:
            torch.set_num_threads(default)

    def _epoch(self, st: Any) -> tuple[Any, Any]:
        import torch
        import torch.nn.functional as F

        model, opt, gen = st
        b = self.task.batch
        model.train()
        order = torch.randperm(len(self.y), generator=gen)[: self.samples].view(-1, b)
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
        for idx in order:
            xb, yb = self.x[idx], self.y[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * b
            correct += (logits.argmax(1) == yb).sum()
        return st, {"loss": loss_sum, "correct": correct}

    def accuracy(self, acc: Any) -> float:
        return float(acc["correct"]) / self.samples


# ------------------------------------------------------------------ (d) Keras 3 on JAX


def _keras_mlp(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((64,)),
            L.Dense(256, activation="relu"),
            L.Dense(128, activation="relu"),
            L.Dense(10),
        ]
    )


def _keras_cnn28(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(32, 3, padding="same", activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, padding="same", activation="relu"),
            L.MaxPooling2D(2),
            L.Flatten(),
            L.Dense(10),
        ]
    )


def _keras_resnet(keras: Any) -> Any:
    L = keras.layers

    def conv(c: int, k: int, stride: int = 1, padding: str = "same") -> Any:
        return L.Conv2D(c, k, stride, padding=padding, use_bias=False)

    def norm() -> Any:
        return L.BatchNormalization(momentum=0.99, epsilon=1e-5)  # Keras's eps default is 1e-3

    def basic(x: Any, c: int, stride: int) -> Any:
        h = L.ReLU()(norm()(conv(c, 3, stride)(x)))
        h = norm()(conv(c, 3)(h))
        skip = x
        if stride != 1 or x.shape[-1] != c:
            skip = norm()(conv(c, 1, stride, "valid")(x))
        return L.ReLU()(L.Add()([h, skip]))

    inputs = keras.Input((8, 8, 1))
    x = L.ReLU()(norm()(conv(16, 3)(inputs)))
    for c, stride in ((16, 1), (16, 1), (32, 2), (32, 1)):
        x = basic(x, c, stride)
    return keras.Model(inputs, L.Dense(10)(L.GlobalAveragePooling2D()(x)))


KERAS_MODELS: dict[str, Callable[[Any], Any]] = {
    "mlp": _keras_mlp,
    "cnn28": _keras_cnn28,
    "resnet": _keras_resnet,
}


class KerasSide:
    """(d) Keras 3 with the JAX backend: compile once, `fit` one epoch at a time."""

    label = "(d) Keras 3, JAX backend"

    def __init__(self, task: Task):
        importlib.import_module("keras")  # here, not in the timed `init` (~2 s)
        self.task = task
        self.samples = task.steps * task.batch

    def build(self) -> None:
        """Keras traces and compiles its train step in the first `fit`."""

    def init(self) -> Any:
        import keras

        keras.utils.set_random_seed(self.task.seed)
        model = KERAS_MODELS[self.task.name](keras)
        model.compile(
            optimizer=keras.optimizers.Adam(self.task.lr, epsilon=1e-8),  # Optax's eps
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model

    def epoch(self, model: Any, epoch: int) -> tuple[Any, Any]:
        # drop_last: a fresh random `steps * batch` of the split each epoch (fit would
        # otherwise end each epoch on a partial batch, compiled once more)
        rng = np.random.default_rng([self.task.seed, epoch])
        keep = rng.permutation(len(self.task.y))[: self.samples]
        x, y, b = self.task.x[keep], self.task.y[keep], self.task.batch
        history = model.fit(x, y, batch_size=b, epochs=1, shuffle=True, verbose=0)
        return model, history.history

    def accuracy(self, acc: Any) -> float:
        return float(acc["accuracy"][-1])


# ------------------------------------------------------------------ the sides, one interface


class Recorded:
    """A side with bench/overhead.py's interface (build, init, epoch, samples) that keeps the
    accumulators of its last epoch, to read its train accuracy."""

    def __init__(self, side: Any, label: str, accuracy: Callable[[Any], float], note: str = ""):
        self.side, self.label, self._accuracy, self.note = side, label, accuracy, note
        self.last: Any = None

    def build(self) -> None:
        self.side.build()
        self.samples = self.side.samples

    def init(self) -> Any:
        return self.side.init()

    def epoch(self, st: Any, epoch: int) -> tuple[Any, Any]:
        st, self.last = self.side.epoch(st, epoch)
        return st, self.last

    def accuracy(self) -> float:
        return self._accuracy(self.last)


def _dnn(name: str, task: Task) -> Recorded:
    from overhead import Dnn

    side = Dnn(name, "auto")

    def accuracy(acc: Any) -> float:
        from dnn.runtime.train import train_report

        return float(train_report(side.engine, acc).get("accuracy", float("nan")))

    return Recorded(side, "(a) dnn", accuracy)


def _handwritten(name: str, task: Task) -> Recorded:
    from overhead import Handwritten

    side = Handwritten(name)
    return Recorded(
        side, "(b) hand-written Flax + Optax", lambda acc: float(acc["correct"]) / side.samples
    )


def _torch(channels_last: bool, threads: int | None, note: str) -> Callable[[str, Task], Any]:
    def make(name: str, task: Task) -> Recorded:
        side = TorchSide(task, channels_last, threads)
        return Recorded(side, "", side.accuracy, note)

    return make


def _keras(name: str, task: Task) -> Recorded:
    side = KerasSide(task)
    return Recorded(side, "", side.accuracy, "fit per epoch, XLA")


@dataclass(frozen=True)
class Kind:
    label: str
    make: Callable[[str, Task], Recorded]
    needs: str  # the module it imports
    models: tuple[str, ...] = ("mlp", "cnn28", "resnet")


# (b) first: the reference every ratio is taken to. PyTorch's default is one OpenMP thread per
# core; on a 2-core machine that another process shares, its threads wait on each other (an
# MLP epoch measured 18 ms with 1 thread, 25 ms to 3.5 s with 2), hence the 1-thread row.
KINDS = {
    "hand": Kind("(b) hand-written Flax + Optax", _handwritten, "flax"),
    "dnn": Kind("(a) dnn", _dnn, "dnn"),
    "torch": Kind("(c) PyTorch eager", _torch(False, None, "eager, NCHW"), "torch"),
    "torch_1": Kind(
        "(c) PyTorch eager, 1 thread", _torch(False, 1, "eager, NCHW, 1 thread"), "torch"
    ),
    "torch_cl": Kind(
        "(c') PyTorch eager, channels_last",
        _torch(True, None, "eager, channels_last"),
        "torch",
        CONVNETS,
    ),
    "keras": Kind("(d) Keras 3, JAX backend", _keras, "keras"),
}
ROWS = ("dnn", "hand", "torch", "torch_1", "torch_cl", "keras")  # table order


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def make_sides(name: str, task: Task) -> tuple[dict[str, Recorded], dict[str, str]]:
    """The sides this environment can run for `name`, by kind, and why the others are not."""
    sides, skipped = {}, {}
    for kind, k in KINDS.items():
        if name not in k.models:
            continue
        if not installed(k.needs):
            skipped[kind] = f"skipped: {k.needs} not installed"
            continue
        sides[kind] = k.make(name, task)
        sides[kind].label = k.label
    return sides, skipped


# ------------------------------------------------------------------ in-process measurements


def in_process(name: str, repeats: int, epochs: int) -> dict[str, Any]:
    """overhead.py's `one_repeat` over every side: init, first epoch, then `epochs` steady
    epochs interleaved; the train accuracy of each repeat's last epoch."""
    from overhead import Stats, one_repeat

    task = Task.of(name)
    sides, skipped = make_sides(name, task)
    order = list(sides)
    stats = [Stats(sides[k].label) for k in order]  # labels set by make_sides
    accs: dict[str, list[float]] = {k: [] for k in order}
    for r in range(repeats):
        one_repeat([sides[k] for k in order], stats, epochs, flip=r % 2 == 1)
        for k in order:
            accs[k].append(sides[k].accuracy())
        print(f"  {name} repeat {r + 1}/{repeats}  {loadavg()}", file=sys.stderr, flush=True)
    if "dnn" in sides:
        scanned = getattr(sides["dnn"].side, "scanned", False)
        sides["dnn"].note = "scanned epoch" if scanned else "per-step loop"
    if "hand" in sides:
        sides["hand"].note = "per-step loop"
    rows = {}
    for k, s in zip(order, stats, strict=True):
        rows[k] = {**s.__dict__, "label": sides[k].label, "note": sides[k].note}
        rows[k]["train_accuracy"] = accs[k]
    return {
        "model": name,
        "samples_per_epoch": task.steps * task.batch,
        "sides": rows,
        "skipped": skipped,
    }


# ------------------------------------------------------------------ one side per process


def child(kind: str, name: str, data: Path, epochs: int) -> None:
    """`--child`: train one side alone (imports only its framework) and print its accuracy."""
    task = Task.read(name, data)
    side = KINDS[kind].make(name, task)
    side.build()
    st = side.init()
    for e in range(1, epochs + 1):
        st, acc = side.epoch(st, e)
    print(json.dumps({"accuracy": side.accuracy()}))


def memory(name: str, kinds: list[str], epochs: int = 2) -> dict[str, dict[str, float]]:
    """Peak RSS and wall time of a process per side: start, imports, data, init, `epochs`."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="dnn-others-") as tmp:
        data = Path(tmp) / f"{name}.npz"
        Task.of(name).save(data)
        for kind in kinds:
            cmd = [sys.executable, __file__, "--child", kind, "--models", name, "--data", str(data)]
            got = run_child([*cmd, "--epochs", str(epochs)], {"DNN_CACHE_DIR": "off"})
            acc = json.loads(got.stdout.strip().splitlines()[-1])["accuracy"]
            out[kind] = {"peak_rss_mb": got.peak_rss_mb, "wall_s": got.wall_s, "accuracy": acc}
            print(f"  {name} process: {kind} {got.peak_rss_mb:.0f} MB", file=sys.stderr)
    return out


# ------------------------------------------------------------------ report


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def _spread(xs: list[float]) -> str:
    return f"{median(xs):,.0f} [{min(xs):,.0f}–{max(xs):,.0f}]"


def model_table(res: dict[str, Any], mem: dict[str, dict[str, float]]) -> str:
    sides, ref = res["sides"], res["sides"].get("hand")
    ref_sps = median(ref["samples_per_s"]) if ref else float("nan")
    rows = [
        f"### {res['model']} ({res['samples_per_epoch']} samples per epoch)",
        "",
        "| side | loop | init (s) | first-epoch extra (s) | steady samples/s, median [min–max] "
        "| ratio to (b) | train acc | peak RSS, own process (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in sorted(sides, key=ROWS.index):
        s = sides[kind]
        sps = median(s["samples_per_s"])
        rss = mem.get(kind, {}).get("peak_rss_mb")
        rows.append(
            f"| {s['label']} | {s['note']} | {median(s['init_s']):.2f} "
            f"| {median(s['first_extra_s']):.2f} | {_spread(s['samples_per_s'])} "
            f"| {sps / ref_sps:.2f}x | {median(s['train_accuracy']):.3f} "
            f"| {'–' if rss is None else f'{rss:.0f}'} |"
        )
    for kind, why in res["skipped"].items():
        rows.append(f"| {KINDS[kind].label} | {why} | | | | | | |")
    return "\n".join(rows)


def summary(res: dict[str, Any], mem: dict[str, dict[str, float]]) -> dict[str, Any]:
    sides = res["sides"]
    ref = median(sides["hand"]["samples_per_s"]) if "hand" in sides else float("nan")
    out: dict[str, Any] = {}
    for kind, s in sides.items():
        sps = median(s["samples_per_s"])
        out[kind] = {
            "samples_per_s": round(sps, 1),
            "ratio_to_handwritten": round(sps / ref, 3),
            "first_epoch_extra_s": round(median(s["first_extra_s"]), 3),
            "train_accuracy": round(median(s["train_accuracy"]), 4),
            **({"peak_rss_mb": round(mem[kind]["peak_rss_mb"])} if kind in mem else {}),
        }
    return {**out, **{k: why for k, why in res["skipped"].items()}}


def run_models(args: argparse.Namespace) -> dict[str, Any]:
    models = ["mlp"] if args.quick else args.models.split(",")
    repeats = args.repeats or 3
    make_digits28()
    print(f"# dnn vs hand-written vs PyTorch vs Keras\n\n{loadavg()} (start)\n", flush=True)
    results, record = [], {}
    for name in models:
        epochs = args.epochs or (10 if args.quick else STEADY_EPOCHS[name])
        res = in_process(name, repeats, epochs)
        res["steady_epochs_per_repeat"] = epochs
        mem = {} if args.quick or args.no_memory else memory(name, list(res["sides"]))
        res["processes"] = mem
        note = f"{epochs} steady epochs x {repeats} repeats; {loadavg()}"
        print(f"{model_table(res, mem)}\n\n{note}\n", flush=True)
        results.append(res)
        record[name] = summary(res, mem)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return record


# ------------------------------------------------------------------ --ops: op by op


def torch_ops(channels_last: bool) -> dict[str, tuple[Any, Callable[[Any], Any]]]:
    """PyTorch iterations of bench/ops.py's cases, keyed by its row labels: `(carry, update)`;
    each iteration feeds its result back into its input, as there."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(128, 32, 14, 14).contiguous(memory_format=fmt)
    w = (torch.randn(64, 32, 3, 3) * 0.1).contiguous(memory_format=fmt)
    ct = torch.randn(128, 64, 14, 14).contiguous(memory_format=fmt)

    def fwd(c: Any) -> Any:
        with torch.no_grad():
            return c[0] - 1e-3 * F.conv2d(c[0], c[1], padding=1).mean(1, keepdim=True), c[1]

    def grad(wrt: tuple[bool, bool]) -> Callable[[Any], Any]:
        def update(c: Any) -> Any:
            xw = [t.detach().requires_grad_(g) for t, g in zip(c, wrt, strict=True)]
            loss = (F.conv2d(xw[0], xw[1], padding=1) * ct).sum()
            gs = iter(torch.autograd.grad(loss, [t for t, g in zip(xw, wrt, strict=True) if g]))
            with torch.no_grad():
                return tuple(t - 1e-3 * next(gs) if g else t for t, g in zip(xw, wrt, strict=True))

        return update

    return {
        "conv 3x3 forward": ((x, w), fwd),
        "conv 3x3 forward + grad (input, kernel)": ((x, w), grad((True, True))),
        "conv 3x3 grad kernel only": ((x, w), grad((False, True))),
        "conv 3x3 grad input only": ((x, w), grad((True, False))),
        **_torch_pool_and_step(channels_last),
    }


def _torch_pool_and_step(channels_last: bool) -> dict[str, tuple[Any, Callable[[Any], Any]]]:
    import torch
    import torch.nn.functional as F

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(128, 32, 28, 28).contiguous(memory_format=fmt)
    ct = torch.randn(128, 32, 14, 14).contiguous(memory_format=fmt)

    def pool(c: Any) -> Any:
        xg = c[0].detach().requires_grad_()
        (g,) = torch.autograd.grad((F.max_pool2d(xg, 2) * ct).sum(), [xg])
        with torch.no_grad():
            return (xg - 1e-3 * g,)

    task = Task.of("cnn28")
    xb = torch.from_numpy(task.x[:128]).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    yb = torch.from_numpy(task.y[:128]).long()
    model = torch_model("cnn28", channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(c: Any) -> Any:
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        return c

    return {
        "max-pool 2x2 forward + grad, flax.linen.max_pool": ((x,), pool),
        "cnn28 train step (batch 128), flax.linen.max_pool": ((), step),
    }


def jax_ops(labels: list[str]) -> dict[str, tuple[Any, Callable[[Any], Any]]]:
    """bench/ops.py's cases with those labels, as its `jit per call` way runs them (one
    `jax.jit` of the iteration, called from Python)."""
    import jax
    import ops

    key = jax.random.key(0)
    cases = {**ops.conv_cases(key), **ops.pool_cases(key), **ops.step_cases(key)}
    out = {}
    for label in labels:
        if label in cases:
            carry, update = cases[label]
            out[label] = (carry, jax.jit(update))
    return out


def time_ops(
    impls: dict[str, tuple[Any, Callable[[Any], Any]]], iters: int, repeats: int
) -> dict[str, float]:
    """Milliseconds per iteration of each implementation, median over `repeats`, the
    implementations interleaved (order reversed every repeat) after one warm-up iteration;
    results are ready at the end of each repeat (`jax.block_until_ready`, a no-op for PyTorch,
    which runs on the CPU synchronously)."""
    import jax

    times: dict[str, list[float]] = {k: [] for k in impls}
    for carry, update in impls.values():
        jax.block_until_ready(update(carry))
    for r in range(repeats):
        for k in list(impls)[:: -1 if r % 2 else 1]:
            c, update = impls[k]
            t = time.perf_counter()
            for _ in range(iters):
                c = update(c)
            jax.block_until_ready(c)
            times[k].append((time.perf_counter() - t) / iters * 1e3)
    return {k: median(v) for k, v in times.items()}


OP_ROWS = {  # our row: bench/ops.py's label (the same in both tables, to join them)
    "conv 3x3 128x14x14x32 -> 64, forward": "conv 3x3 forward",
    "conv 3x3, forward + grad (input, kernel)": "conv 3x3 forward + grad (input, kernel)",
    "conv 3x3, grad kernel only": "conv 3x3 grad kernel only",
    "conv 3x3, grad input only": "conv 3x3 grad input only",
    "max-pool 2x2 on 128x28x28x32, forward + grad": "max-pool 2x2 forward + grad, flax.linen.max_pool",
    "cnn28 train step (batch 128, Adam)": "cnn28 train step (batch 128), flax.linen.max_pool",
}


OP_COLUMNS = {
    "jax": "JAX jit per call (bench/ops.py)",
    "torch": "PyTorch NCHW",
    "torch_1": "PyTorch NCHW, 1 thread",
    "torch_cl": "PyTorch channels_last",
}


def one_thread(update: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`update` run with PyTorch on 1 thread, its default restored after."""
    import torch

    def run(c: Any) -> Any:
        default = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return update(c)
        finally:
            torch.set_num_threads(default)

    return run


def op_impls() -> dict[str, dict[str, tuple[Any, Callable[[Any], Any]]]]:
    """By column of OP_COLUMNS: bench/ops.py's label -> (carry, update)."""
    out = {"jax": jax_ops(list(OP_ROWS.values()))}
    if installed("torch"):
        out["torch"], out["torch_cl"] = torch_ops(False), torch_ops(True)
        out["torch_1"] = {k: (c, one_thread(u)) for k, (c, u) in torch_ops(False).items()}
    return out


def _cell(v: float, unit: str) -> str:
    return "–" if v != v else f"{v:.2f}{unit}"  # NaN: a side not measured


def run_ops(args: argparse.Namespace) -> dict[str, Any]:
    repeats, iters = args.repeats or 10, 4
    print(f"# op by op: ms per iteration, medians of {repeats} x {iters} iterations\n")
    print(f"{loadavg()} (start)\n")
    torch_cols = [c for c in OP_COLUMNS if c != "jax"]
    heads = [*OP_COLUMNS.values(), *(f"{OP_COLUMNS[c]} / JAX" for c in torch_cols)]
    print("| op | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(heads))
    impls = op_impls()
    results = {}
    for row, label in OP_ROWS.items():
        here = {col: cases[label] for col, cases in impls.items() if label in cases}
        r = time_ops(
            dict(sorted(here.items(), key=lambda kv: list(OP_COLUMNS).index(kv[0]))), iters, repeats
        )
        results[row] = r
        ms = [r.get(c, float("nan")) for c in OP_COLUMNS]
        ratios = [r.get(c, float("nan")) / ms[0] for c in torch_cols]
        cells = [_cell(v, "") for v in ms] + [_cell(v, "x") for v in ratios]
        print(f"| {row} | " + " | ".join(cells) + " |", flush=True)
    skipped = "" if "torch" in impls else "; PyTorch skipped: not installed"
    print(f"\n{loadavg()} (end){skipped}")
    return {"ms_per_iteration": results}


# ------------------------------------------------------------------ the script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the MLP only, no processes, ~1 min")
    ap.add_argument("--models", default="mlp,cnn28,resnet")
    ap.add_argument("--repeats", type=int, help="repeats (default 3; with --ops 10)")
    ap.add_argument("--epochs", type=int, help="steady epochs per repeat (default per model)")
    ap.add_argument("--no-memory", action="store_true", help="no process per side (peak RSS)")
    ap.add_argument("--ops", action="store_true", help="op by op against bench/ops.py instead")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    ap.add_argument("--child", choices=sorted(KINDS), help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.models, args.data, args.epochs or 2)
    from common import machine

    record = run_ops(args) if args.ops else run_models(args)
    if args.ops and args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    print_json_last({**record, "load_average": os.getloadavg(), "machine": machine()})


if __name__ == "__main__":
    main()
