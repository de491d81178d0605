"""The model zoo (examples/zoo/, issue 15 point 6): well-known architectures written in the
language, each with its published trainable parameter count, matched exactly by the static
check, and lowered: `jax.eval_shape` of the Flax init (no compute, no allocation) builds the
same parameters, layer by layer. The zoo is ImageNet- and GPT-sized: checked, never trained
(tests/test_smoke_train.py and bench/examples.py read examples/*.dnn only).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import pytest
from dnn.compiler.lower_flax import lower_model
from dnn.compiler.values import DTYPES
from test_lower_flax import counts

import dnn

ZOO = Path(__file__).parent.parent / "examples" / "zoo"


def conv(k: int, c_in: int, c_out: int, bias: bool = True) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def trainable(name: str, *overrides: str) -> int:
    return dnn.load(str(ZOO / f"{name}.dnn"), list(overrides)).model.trainable


@pytest.mark.parametrize(
    ("name", "overrides", "published"),
    [
        ("resnet50", (), 25_557_032),  # torchvision resnet50
        ("resnet50", ("depths=[3, 4, 23, 3]",), 44_549_160),  # torchvision resnet101
        ("resnet50", ("depths=[3, 8, 36, 3]",), 60_192_808),  # torchvision resnet152
        ("mobilenet_v2", (), 3_504_872),  # torchvision mobilenet_v2 (width 1.0)
        ("densenet121", (), 7_978_856),  # torchvision densenet121
        ("vit_b16", (), 86_567_656),  # timm vit_base_patch16_224
    ],
    ids=["resnet50", "resnet101", "resnet152", "mobilenet_v2", "densenet121", "vit_b16"],
)
def test_published_counts(name: str, overrides: tuple[str, ...], published: int) -> None:
    assert trainable(name, *overrides) == published


def test_batchnorm_running_statistics_are_not_trainable() -> None:
    # two running statistics (mean, variance) per batch-normalized channel: torchvision's
    # buffers, not its parameters
    program = dnn.load(str(ZOO / "resnet50.dnn"))
    bn = sum(n.shape[-1] for n in program.model.nodes if n.op == "batchnorm")
    assert program.model.non_trainable == 2 * bn == 53_120


def test_unet_is_the_paper_s_count_by_hand() -> None:
    """Ronneberger et al. 2015, figure 1, one input channel and two classes, unpadded 3x3
    convolutions with biases, no batch norm: 31,030,658.

    encoder: two 3x3 convolutions per level, 1 → 64 → 64, 64 → 128 → 128, ..., 512 → 1024 →
    1024: 18,842,048. decoder, per level o = 512, 256, 128, 64: a 2x2 up-convolution 2o → o,
    then 3x3 convolutions 2o (the skip and the up-convolved map) → o → o: 12,188,480.
    head: a 1x1 convolution 64 → 2: 130.
    """
    levels = [(1, 64), (64, 128), (128, 256), (256, 512), (512, 1024)]
    encoder = sum(conv(3, i, o) + conv(3, o, o) for i, o in levels)
    decoder = sum(
        conv(2, 2 * o, o) + conv(3, 2 * o, o) + conv(3, o, o) for o in (512, 256, 128, 64)
    )
    head = conv(1, 64, 2)
    assert (encoder, decoder, head) == (18_842_048, 12_188_480, 130)
    program = dnn.load(str(ZOO / "unet.dnn"))
    assert program.model.trainable == encoder + decoder + head == 31_030_658
    assert program.model.node(program.model.outputs[0]).shape == (388, 388, 2)  # as figure 1


def test_gpt2_small_is_the_sum_of_its_parts() -> None:
    """GPT-2 small (Radford et al. 2019; Hugging Face `gpt2`): 124,439,808 parameters.

    token table wte 50,257 x 768 = 38,597,376; positions wpe 1,024 x 768 = 786,432;
    each of 12 blocks 7,087,872: ln_1 2 x 768 = 1,536, attention c_attn 768 x 2,304 + 2,304 =
    1,771,776 (our q, k, v: 3 x (768 x 768 + 768)) and c_proj 768 x 768 + 768 = 590,592,
    ln_2 1,536, MLP c_fc 768 x 3,072 + 3,072 = 2,362,368 and c_proj 3,072 x 768 + 768 =
    2,360,064; ln_f 1,536; the head is wte, transposed (tied, no bias): 0 more.
    38,597,376 + 786,432 + 12 x 7,087,872 + 1,536 = 124,439,808.
    """
    v, t, d, ff = 50_257, 1_024, 768, 3_072
    ln = 2 * d
    attention = dense(d, 3 * d) + dense(d, d)
    block = ln + attention + ln + dense(d, ff) + dense(ff, d)
    assert (attention, block) == (2_362_368, 7_087_872)
    total = v * d + t * d + 12 * block + ln
    assert total == 124_439_808
    program = dnn.load(str(ZOO / "gpt2.dnn"))
    assert program.model.trainable == total
    head = program.model.node(program.model.outputs[0])
    assert (head.op, head.params, head.shape) == ("dense", 0, (t, v))
    assert head.arg("tie").node == "tok"


@pytest.mark.parametrize("path", sorted(ZOO.glob("*.dnn")), ids=lambda p: p.stem)
def test_lowers_to_the_parameters_checked(path: Path) -> None:
    """`jax.eval_shape` of the Flax init: each layer's built parameters are its static count
    (1-3 s a model on one CPU core)."""
    g = dnn.load(str(path)).model
    model = lower_model(g)
    x = {
        n.name: jax.ShapeDtypeStruct((1, *n.shape), DTYPES[n.dtype])
        for n in g.nodes
        if n.op == "input"
    }
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    assert counts(variables) == {n.name: n.total_params for n in g.nodes if n.total_params}
    assert sum(math.prod(a.shape) for a in jax.tree.leaves(variables["params"])) == g.trainable
