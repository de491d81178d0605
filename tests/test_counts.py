"""Parameter counts and shapes against published figures and the lecture material."""

from __future__ import annotations

from pathlib import Path

from conftest import assert_summary
from dnn.compiler.driver import load

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = Path(__file__).parent.parent / "examples"


def test_lecture_dense_stack() -> None:
    # Lecture: Input (10, 5) → Dense 100 → Dense 20 → Dense 1: 600, 2,020, 21; total 2,641.
    src = "model m {\n  input x: f32[10, 5]\n  dense(100)\n  dense(20)\n  dense(1)\n}\n"
    assert_summary(src, 2641, shapes=[(10, 100), (10, 20), (10, 1)], per_layer=[600, 2020, 21])


def test_lecture_two_inputs() -> None:
    # Lecture: inputs (16,) and (32,) → Dense 8 each → concatenate → Dense 4: 136, 264, 68 = 468.
    src = (FIXTURES / "lecture_two_tower.dnn").read_text()
    program = load(str(FIXTURES / "lecture_two_tower.dnn"))
    counts = {n.name: n.params for n in program.model.nodes if n.params}
    assert sorted(counts.values()) == [68, 136, 264]
    assert_summary(src, 468)


def test_lecture_conv_5x5_100_maps() -> None:
    # Lecture: a 5x5 conv with 100 feature maps over a 200x200x1 image: 2,600 params with biases.
    src = "model m {\n  input x: f32[200, 200, 1]\n  conv2d(100, kernel = 5)\n}\n"
    assert_summary(src, 2600, shapes=[(196, 196, 100)])


def test_resnet18_matches_torchvision() -> None:
    # torchvision.models.resnet18: 11,689,512 trainable parameters; batch norm adds 2 × 4,800
    # running statistics (mean, var) that Keras also counts as non-trainable.
    program = load(str(EXAMPLES / "resnet18.dnn"))
    assert program.model.trainable == 11_689_512
    assert program.model.non_trainable == 9_600
    assert program.model.node(program.model.outputs[0]).shape == (1000,)


def test_resnet34_is_resnet18_with_other_depths() -> None:
    # torchvision.models.resnet34: 21,797,672 trainable parameters; stages of 3, 4, 6, 3 blocks.
    program = load(str(EXAMPLES / "resnet18.dnn"), ["depths=[3, 4, 6, 3]"])
    assert program.model.trainable == 21_797_672


VGG16 = """
block stage(c, n) {
  repeat n { conv2d(c, kernel = 3, padding = same) -> relu }
  maxpool(2)
}

model vgg16 {
  input x: f32[224, 224, 3]
  stage(64, 2)
  stage(128, 2)
  stage(256, 3)
  stage(512, 3)
  stage(512, 3)
  flatten
  dense(4096) -> relu
  dense(4096) -> relu
  dense(1000)
}
"""


def test_vgg16_matches_published_count() -> None:
    # Simonyan & Zisserman (2015), as keras.applications.VGG16: 138,357,544 parameters.
    assert_summary(VGG16, 138_357_544)


def test_lenet5_classic_count() -> None:
    # LeNet-5 (LeCun 1998) in its common modern form: 61,706 parameters.
    src = """model lenet5 {
  input x: f32[32, 32, 1]
  conv2d(6, kernel = 5) -> tanh
  avgpool(2)
  conv2d(16, kernel = 5) -> tanh
  avgpool(2)
  flatten
  dense(120) -> tanh
  dense(84) -> tanh
  dense(10)
}
"""
    assert_summary(src, 61_706)


def test_recurrent_counts_follow_keras() -> None:
    # Keras: LSTM 4u(f+u+1), GRU (reset_after) 3u(f+u+2), SimpleRNN u(f+u+1); bidirectional ×2.
    src = """model m {
  input x: f32[20, 3]
  simple_rnn(4, return_sequences = true)
  lstm(5, return_sequences = true)
  gru(6, bidirectional = true)
}
"""
    assert_summary(src, 4 * 8 + 4 * 5 * 10 + 2 * 3 * 6 * 13, shapes=[(20, 4), (20, 5), (12,)])


def test_depthwise_and_dilated_conv() -> None:
    src = """model m {
  input x: f32[32, 32, 16]
  conv2d(16, kernel = 3, groups = 16, padding = same)
  conv2d(8, kernel = 3, dilation = 2, stride = 2, padding = 1)
}
"""
    # depthwise: 3·3·1·16 + 16 = 160; dilated: effective 5, out floor((32 + 2 - 5) / 2) + 1 = 15
    assert_summary(src, 160 + 3 * 3 * 16 * 8 + 8, shapes=[(32, 32, 16), (15, 15, 8)])


def test_batchnorm_state_is_non_trainable() -> None:
    src = "model m {\n  input x: f32[4, 4, 8]\n  batchnorm\n  layernorm\n  prelu\n}\n"
    program = __import__("dnn").loads(src)
    assert (program.model.trainable, program.model.non_trainable) == (16 + 16 + 8, 16)


def test_every_example_checks() -> None:
    paths = sorted(EXAMPLES.glob("*.dnn"))
    assert len(paths) >= 7
    for p in paths:
        assert load(str(p)).model is not None, p
