"""XLA's CPU kernels in GFLOP/s: matrix products and the cnn28 convolutions, per XLA flag set.

`python bench/kernels.py [--repeats 15] [--flags "" "--xla_cpu_use_xnnpack=true" ...]`

Each flag set runs in its own child process (XLA reads XLA_FLAGS once). Per kernel: median
seconds of a jitted call on float32 data, and GFLOP/s = 2 * multiply-adds / time. With PyTorch
installed (`pip install torch`), the same kernels through `torch.mm` / `conv2d` are measured in
one more child for comparison. Shapes: the cnn28 benchmark model's (bench/specs/cnn28.dnn,
batch 128): conv 3x3 28x28x1 -> 32 and 14x14x32 -> 64 (SAME), and the 9-tap im2col matrix
product of the second (25,088 x 288 @ 288 x 64) and of its kernel gradient
(288 x 25,088 @ 25,088 x 64); and, in JAX only, each convolution's forward written as matrix
products: im2col (the 9 shifted views concatenated, one dot) and 9 shifted dots summed. The
last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

B = 128
CONVS = ((28, 1, 32), (14, 32, 64))  # height = width, input channels, output channels
DOTS = ((25088, 288, 64), (288, 25088, 64))
DEFAULT_FLAGS = (
    "",
    "--xla_cpu_use_xnnpack=true",
    "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_max_isa=AVX512",
)


def _median_ms(f: Callable[[], Any], repeats: int) -> float:
    f()
    f()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def _flops_conv(h: int, cin: int, cout: int) -> float:
    return 2.0 * B * h * h * cout * 9 * cin


def jax_child(repeats: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for m, k, n in DOTS:
        a = jnp.asarray(rng.normal(size=(m, k)), jnp.float32)
        b = jnp.asarray(rng.normal(size=(k, n)), jnp.float32)
        f = jax.jit(jnp.dot)
        ms = _median_ms(lambda f=f, a=a, b=b: jax.block_until_ready(f(a, b)), repeats)
        out[f"dot {m}x{k}@{k}x{n}"] = 2.0 * m * k * n / ms / 1e6
    for h, cin, cout in CONVS:
        x = jnp.asarray(rng.normal(size=(B, h, h, cin)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(3, 3, cin, cout)) * 0.1, jnp.float32)

        def conv(w: Any, x: Any) -> Any:
            dims = ("NHWC", "HWIO", "NHWC")
            return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)

        fwd = jax.jit(conv)
        grad_w = jax.jit(jax.grad(lambda w, x: jnp.sum(conv(w, x) ** 2)))
        ms = _median_ms(lambda w=w, x=x, f=fwd: jax.block_until_ready(f(w, x)), repeats)
        out[f"conv {h}x{h}x{cin}->{cout} forward"] = _flops_conv(h, cin, cout) / ms / 1e6
        ms = _median_ms(lambda w=w, x=x, g=grad_w: jax.block_until_ready(g(w, x)), repeats)
        out[f"conv {h}x{h}x{cin}->{cout} forward + kernel gradient"] = (
            2 * _flops_conv(h, cin, cout) / ms / 1e6
        )
        for name, f in (("as im2col + one dot", _im2col), ("as 9 shifted dots", _shifted)):
            jf = jax.jit(f)
            ms = _median_ms(lambda w=w, x=x, f=jf: jax.block_until_ready(f(w, x)), repeats)
            out[f"conv {h}x{h}x{cin}->{cout} forward {name}"] = _flops_conv(h, cin, cout) / ms / 1e6
    return out


def _padded_taps(x: Any) -> list[Any]:
    """The 9 shifted views of x a SAME 3x3 convolution multiplies by its 9 kernel taps."""
    import jax.numpy as jnp

    h = x.shape[1]
    p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return [p[:, dy : dy + h, dx : dx + h, :] for dy in range(3) for dx in range(3)]


def _im2col(w: Any, x: Any) -> Any:
    import jax.numpy as jnp

    b, h, _, cin = x.shape
    cols = jnp.concatenate(_padded_taps(x), axis=-1).reshape(-1, 9 * cin)
    return (cols @ w.reshape(9 * cin, -1)).reshape(b, h, h, -1)


def _shifted(w: Any, x: Any) -> Any:
    import jax.numpy as jnp

    taps = _padded_taps(x)
    return sum(jnp.einsum("bhwc,co->bhwo", t, w[k // 3, k % 3]) for k, t in enumerate(taps))


def torch_child(repeats: int) -> dict[str, float]:
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for m, k, n in DOTS:
        a = torch.tensor(rng.normal(size=(m, k)), dtype=torch.float32)
        b = torch.tensor(rng.normal(size=(k, n)), dtype=torch.float32)
        ms = _median_ms(lambda a=a, b=b: torch.mm(a, b), repeats)
        out[f"dot {m}x{k}@{k}x{n}"] = 2.0 * m * k * n / ms / 1e6
    for h, cin, cout in CONVS:
        x = torch.tensor(rng.normal(size=(B, cin, h, h)), dtype=torch.float32)
        w = torch.tensor(rng.normal(size=(cout, cin, 3, 3)) * 0.1, dtype=torch.float32)
        w.requires_grad_(True)

        def fwd(x: Any = x, w: Any = w) -> None:
            with torch.no_grad():
                torch.nn.functional.conv2d(x, w, padding=1)

        def grad_w(x: Any = x, w: Any = w) -> None:
            (torch.nn.functional.conv2d(x, w, padding=1) ** 2).sum().backward()

        ms = _median_ms(fwd, repeats)
        out[f"conv {h}x{h}x{cin}->{cout} forward"] = _flops_conv(h, cin, cout) / ms / 1e6
        ms = _median_ms(grad_w, repeats)
        out[f"conv {h}x{h}x{cin}->{cout} forward + kernel gradient"] = (
            2 * _flops_conv(h, cin, cout) / ms / 1e6
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--flags", nargs="*", default=list(DEFAULT_FLAGS))
    ap.add_argument("--child", choices=("jax", "torch"))
    args = ap.parse_args()
    if args.child:
        run = jax_child if args.child == "jax" else torch_child
        print(json.dumps(run(args.repeats)))
        return
    columns: dict[str, dict[str, float]] = {}
    jobs = [("jax", f) for f in args.flags]
    try:
        import importlib.util

        if importlib.util.find_spec("torch") is not None:
            jobs.append(("torch", ""))
    except ImportError:
        pass
    for kind, flags in jobs:
        env = {**os.environ, "XLA_FLAGS": flags}
        cmd = [sys.executable, __file__, "--child", kind, "--repeats", str(args.repeats)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        name = "PyTorch" if kind == "torch" else f"XLA `{flags or 'default'}`"
        if done.returncode != 0:
            print(f"{name}: failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        columns[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {name} done", file=sys.stderr, flush=True)
    rows = list(next(iter(columns.values()))) if columns else []
    print("| kernel (GFLOP/s) | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for r in rows:
        cells = " | ".join(f"{columns[c].get(r, float('nan')):.0f}" for c in columns)
        print(f"| {r} | {cells} |")
    print(f"load average: {os.getloadavg()}")
    sys.stdout.flush()
    print(json.dumps(columns))


if __name__ == "__main__":
    main()
