"""torchvision's ResNet-18, ResNet-50, MobileNetV2 and DenseNet-121 with random weights, read
into the zoo's specs by `init_from` (runtime/weights.py): dnn's logits against PyTorch's on the
same input (issue 16). The numbers go in docs/transfer.md.

    .venv/bin/python bench/pretrained.py [resnet18 resnet50 mobilenet_v2 densenet121]

PyTorch is not a dependency of dnn: the PyTorch side (bench/torch_side.py) runs in its own
environment, `$TORCH_PYTHON` or one this script makes once under ~/.cache/dnn-bench/torch
(`pip install torch torchvision safetensors numpy`; the registry's CPU build is enough).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPECS = {
    "resnet18": ROOT / "examples" / "resnet18.dnn",
    "resnet50": ROOT / "examples" / "zoo" / "resnet50.dnn",
    "mobilenet_v2": ROOT / "examples" / "zoo" / "mobilenet_v2.dnn",
    "densenet121": ROOT / "examples" / "zoo" / "densenet121.dnn",
}


def torch_python() -> str:
    given = os.environ.get("TORCH_PYTHON")
    if given:
        return given
    env = Path.home() / ".cache" / "dnn-bench" / "torch"
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "torch",
                "torchvision",
                "safetensors",
                "numpy",
            ],
            check=True,
        )
    return str(python)


def compare(name: str, folder: Path) -> dict[str, float]:
    from dnn.compiler.driver import load
    from dnn.compiler.lower_flax import lower_model
    from dnn.runtime import weights

    file = folder / f"{name}.safetensors"
    program = load(str(SPECS[name]), [f'train.init_from="{file}"'])
    assert program.model is not None
    model = lower_model(program.model, program.train.init)
    z = np.load(folder / f"{name}.npz")
    x = z["x"]
    variables = jax.jit(model.init)({"params": jax.random.key(0)}, x[:1])
    state = {k: v for k, v in variables.items() if k != "params"}
    t0 = time.perf_counter()
    params, state, notes, loaded = weights.load_file(
        program, jax.device_get(variables["params"]), jax.device_get(state), str(file)
    )
    load_s = time.perf_counter() - t0
    y = np.asarray(
        jax.jit(lambda v, x: model.apply(v, x, train=False))({"params": params, **state}, x)
    )
    # the way back: perturbed weights (as fine-tuning leaves them) written in PyTorch's layout
    # under the file's names; bench/torch_side.py --check loads them strictly and compares
    rng = np.random.default_rng(0)
    moved = jax.tree.map(lambda a: a * (1 + 0.01 * rng.standard_normal(a.shape)), params)
    names = weights.file_names(program)
    back = weights.to_torch(program, moved, state, names)
    weights.write(folder / f"{name}.back.safetensors", back, {"format": "pt"})
    y_back = np.asarray(
        jax.jit(lambda v, x: model.apply(v, x, train=False))({"params": moved, **state}, x)
    )
    np.savez(folder / f"{name}.back.npz", x=x, y=y_back)
    diff = float(np.abs(y - z["y"]).max())
    scale = float(np.abs(z["y"]).max())
    return {
        "layers": len(loaded),
        "max_abs": diff,
        "max_logit": scale,
        "load_s": load_s,
        "same_top1": bool((y.argmax(1) == z["y"].argmax(1)).all()),
    }


def main(names: list[str]) -> None:
    python = torch_python()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            subprocess.run([python, str(ROOT / "bench" / "torch_side.py"), name, tmp], check=True)
            r = compare(name, Path(tmp))
            subprocess.run(
                [python, str(ROOT / "bench" / "torch_side.py"), "--check", name, tmp], check=True
            )
            print(
                f"{name}: {r['layers']} layers loaded in {r['load_s']:.2f} s; max |dnn - torch| "
                f"= {r['max_abs']:.2e} (largest logit {r['max_logit']:.2f}, relative "
                f"{r['max_abs'] / r['max_logit']:.1e}); same top-1: "
                f"{r['same_top1']}"
            )


if __name__ == "__main__":
    main(sys.argv[1:] or list(SPECS))
