"""The PyTorch side of bench/pretrained.py, run in an environment with torch and torchvision:
a torchvision classification model built with `weights=None` and a fixed seed (random
weights, random non-trivial batch-norm statistics, eval mode), its weights as `.safetensors`,
one input batch and its logits (`.npz`: `x` channels-last as dnn takes it, `y`).

    python bench/torch_side.py resnet18 OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file


def model(name: str) -> torch.nn.Module:
    # the classification builders are plain Python: no compiled torchvision operator is needed
    from torchvision import models

    return getattr(models, name)(weights=None)


def main(name: str, out: Path) -> None:
    torch.manual_seed(0)
    m = model(name)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) * 0.5 + 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
    m.eval()
    x = torch.randn(2, 3, 224, 224, generator=g)
    with torch.no_grad():
        y = m(x).numpy()
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in m.state_dict().items()}, str(out / f"{name}.safetensors")
    )
    np.savez(out / f"{name}.npz", x=x.permute(0, 2, 3, 1).numpy(), y=y)
    print(f"{name}: {sum(p.numel() for p in m.parameters()):,} parameters, logits {y.shape}")


def check(name: str, out: Path) -> None:
    """The weights dnn wrote back (`NAME.back.safetensors`) load into the same torchvision
    model with `strict=True` and give the logits dnn gave (`NAME.back.npz`)."""
    from safetensors.torch import load_file

    m = model(name)
    m.load_state_dict(load_file(str(out / f"{name}.back.safetensors")), strict=True)
    m.eval()
    z = np.load(out / f"{name}.back.npz")
    with torch.no_grad():
        y = m(torch.from_numpy(z["x"]).permute(0, 3, 1, 2)).numpy()
    print(f"{name}: loaded strictly; max |torch - dnn| = {np.abs(y - z['y']).max():.2e}")


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        check(sys.argv[2], Path(sys.argv[3]))
    else:
        main(sys.argv[1], Path(sys.argv[2]))
