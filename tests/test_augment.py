"""Augmentations (`runtime/augment.py`) against independent float64 NumPy references.

Each augmentation's random choices are drawn with a fixed key, converted to NumPy, and its
deterministic `apply` is compared with a NumPy version of the registry formula (`dnn help
rotate` ...), written here without JAX: explicit loops and slices, and for rotate and zoom a
bilinear interpolation written from the formula. Hand-worked cases pin the conventions
(rotation direction, pixel centres), statistical checks the draws, and the rest what the train
step relies on: jit, shape and dtype, per-example and per-augmentation independence.
Everything runs with `jax_numpy_rank_promotion = "raise"`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dnn.compiler.driver import value
from dnn.compiler.registry.data import AUGMENTATIONS
from dnn.compiler.values import Ref
from dnn.runtime import augment

TOL = {"rtol": 1e-5, "atol": 1e-5}  # float32 JAX against a float64 reference
SHAPE = (6, 5, 3)  # not square, so a swapped row and column axis shows


@pytest.fixture(autouse=True)
def strict_ranks() -> Iterator[None]:
    with jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture(autouse=True, scope="module")
def quick_compiles() -> Iterator[None]:
    # The arrays are tiny, so XLA's compile time is most of this file's run time; its
    # optimizations change nothing here but rounding, and skipping them saves about 40%.
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


def aug(text: str) -> Ref:
    """An augmentation written as in a spec, through the real front end."""
    return value(text, "augmentation")[0]


def images(batch: int = 8, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype(np.float32)


@functools.cache
def jitted(text: str, shape: tuple[int, ...]) -> augment.Augmentation:
    """`bind(aug(text), shape)` with both parts jitted, compiled once per test session."""
    draw, apply = augment.bind(aug(text), shape)
    return augment.Augmentation(jax.jit(draw, static_argnums=(1, 2)), jax.jit(apply))


def drawn(text: str, batch: int, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> dict:
    """The random choices of `text` for a batch, as NumPy arrays."""
    params = jitted(text, shape).draw(jax.random.key(seed), batch, shape)
    return jax.tree.map(np.asarray, params)


def applied(text: str, x: np.ndarray, params: dict) -> np.ndarray:
    apply = jitted(text, x.shape[1:]).apply
    return np.asarray(apply(jnp.asarray(x), jax.tree.map(jnp.asarray, params)))


# ------------------------------------------------------------------ NumPy references


def np_random_crop(x: np.ndarray, p: dict, a: dict) -> np.ndarray:
    pad, (h, w) = a["padding"], x.shape[1:3]
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return np.stack([padded[b, i : i + h, j : j + w] for b, (i, j) in enumerate(p["offset"])])


def np_random_flip(x: np.ndarray, p: dict, a: dict) -> np.ndarray:
    mirror = (lambda im: im[:, ::-1]) if str(a["direction"]) == "horizontal" else np.flipud
    return np.stack([mirror(im) if f else im for im, f in zip(x, p["flip"], strict=True)])


def bilinear(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`img` (H, W, C) at fractional (rows, cols): weights (1 - |dr|)(1 - |dc|) over the four
    nearest pixels, pixels outside the image being 0."""
    h, w = img.shape[:2]
    out = np.zeros((*rows.shape, img.shape[2]))
    for r in (np.floor(rows), np.floor(rows) + 1):
        for c in (np.floor(cols), np.floor(cols) + 1):
            weight = (1 - np.abs(rows - r)) * (1 - np.abs(cols - c))
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            ri, ci = np.clip(r, 0, h - 1).astype(int), np.clip(c, 0, w - 1).astype(int)
            out += np.where(ok, weight, 0.0)[..., None] * img[ri, ci]
    return out


def warp(img: np.ndarray, source: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Output pixel p = img at centre + source(p - centre), p = (row, col) stacked on axis 0."""
    h, w = img.shape[:2]
    centre = np.array([(h - 1) / 2, (w - 1) / 2])[:, None, None]
    q = centre + source(np.indices((h, w)).astype(np.float64) - centre)
    return bilinear(img.astype(np.float64), q[0], q[1])


def np_rotate(x: np.ndarray, p: dict, a: dict) -> np.ndarray:
    def one(img: np.ndarray, degrees: float) -> np.ndarray:
        t = math.radians(degrees)
        inverse = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
        return warp(img, lambda d: np.einsum("ij,jhw->ihw", inverse, d))

    return np.stack([one(im, d) for im, d in zip(x, p["degrees"], strict=True)])


def np_zoom(x: np.ndarray, p: dict, a: dict) -> np.ndarray:
    return np.stack([warp(im, lambda d, s=s: d / s) for im, s in zip(x, p["factor"], strict=True)])


def np_color_shift(x: np.ndarray, p: dict, a: dict) -> np.ndarray:
    out = x.astype(np.float64)
    for b in range(len(x)):
        for c in range(x.shape[3]):
            out[b, :, :, c] += p["delta"][b, c]
    return out


def np_noise(x: np.ndarray, p: dict, a: dict) -> np.ndarray:
    return x.astype(np.float64) + p["noise"]


def np_cutout(x: np.ndarray, p: dict, a: dict) -> np.ndarray:
    out, size = x.astype(np.float64), a["size"]
    for b, (i, j) in enumerate(p["centre"]):
        top, left = i - size // 2, j - size // 2
        out[b, max(top, 0) : max(top + size, 0), max(left, 0) : max(left + size, 0), :] = 0
    return out


def np_contrast(x: np.ndarray, p: dict, a: dict) -> np.ndarray:
    out = x.astype(np.float64)
    for b, f in enumerate(p["factor"]):
        for c in range(x.shape[3]):
            m = out[b, :, :, c].mean()
            out[b, :, :, c] = (out[b, :, :, c] - m) * f + m
    return out


REFERENCE = {
    "random_crop": np_random_crop,
    "random_flip": np_random_flip,
    "rotate": np_rotate,
    "zoom": np_zoom,
    "color_shift": np_color_shift,
    "noise": np_noise,
    "cutout": np_cutout,
    "contrast": np_contrast,
}

CASES = [
    "random_crop(padding = 2)",
    "random_crop(padding = 0)",
    "random_flip(horizontal)",
    "random_flip(vertical)",
    "rotate(max_degrees = 40)",
    "rotate(max_degrees = 180)",
    "zoom(max_factor = 0.5)",
    "color_shift(max_delta = 0.3)",
    "noise(std = 0.2)",
    "cutout(size = 2)",
    "cutout(size = 3)",
    "contrast(max_factor = 0.5)",
]


def test_every_augmentation_has_an_implementation_and_a_reference() -> None:
    names = [e.name for e in AUGMENTATIONS]
    assert AUGMENTATIONS.implementation_gaps() == ([], [])
    assert sorted(names) == sorted(REFERENCE)
    assert {aug(t).name for t in CASES} == set(names)


@pytest.mark.parametrize("text", CASES)
def test_apply_matches_reference(text: str) -> None:
    ref, x = aug(text), images()
    params = drawn(text, len(x))
    want = REFERENCE[ref.name](x, params, dict(ref.args))
    np.testing.assert_allclose(applied(text, x, params), want, **TOL)


def test_noise_takes_any_shape_and_has_the_requested_std() -> None:
    x = images(1000, (3, 4))
    params = drawn("noise(std = 0.3)", 1000, (3, 4))
    e = params["noise"]
    assert e.shape == (1000, 3, 4) and abs(e.mean()) < 0.01 and abs(e.std() - 0.3) < 0.01
    np.testing.assert_allclose(applied("noise(std = 0.3)", x, params), x + e, **TOL)


# ------------------------------------------------------------------ hand-worked cases


@pytest.mark.parametrize("size", [4, 5])
@pytest.mark.parametrize("degrees, k", [(90, 1), (-90, -1), (180, 2), (0, 0)])
def test_rotate_by_right_angles_is_rot90(size: int, degrees: float, k: int) -> None:
    # Positive angles turn counter-clockwise as displayed (row 0 on top), like np.rot90.
    x = images(2, (size, size, 2))
    got = applied("rotate", x, {"degrees": np.full(2, degrees, np.float32)})
    np.testing.assert_allclose(got, np.rot90(x, k, axes=(1, 2)), atol=1e-5)


def test_rotate_keeps_the_centre_pixel_and_zeroes_uncovered_corners() -> None:
    # A 7 x 7 corner is 3 sqrt(2) from the centre: turned 45 degrees, it samples 1.24 rows out.
    x = np.ones((1, 7, 7, 1), np.float32)
    got = applied("rotate", x, {"degrees": np.array([45.0], np.float32)})[0, :, :, 0]
    assert got[3, 3] == pytest.approx(1.0)
    assert got[0, 0] == got[0, 6] == got[6, 0] == got[6, 6] == 0.0


def test_zoom_by_one_is_identity() -> None:
    x = images()
    got = applied("zoom", x, {"factor": np.ones(len(x), np.float32)})
    np.testing.assert_allclose(got, x, atol=1e-6)


def test_zoom_in_stays_covered_zoom_out_leaves_a_zero_border() -> None:
    x = np.ones((2, 5, 5, 1), np.float32)
    got = applied("zoom", x, {"factor": np.array([2.0, 0.5], np.float32)})[:, :, :, 0]
    np.testing.assert_allclose(got[0], 1.0, atol=1e-6)  # magnified: every source inside
    assert got[1, 2, 2] == pytest.approx(1.0) and got[1, 0, 0] == 0.0


def test_crop_at_offset_padding_is_identity() -> None:
    x = images()
    got = applied("random_crop(padding = 3)", x, {"offset": np.full((len(x), 2), 3, np.int32)})
    np.testing.assert_array_equal(got, x)


def test_crop_at_offset_zero_shifts_in_zeros() -> None:
    x = images(1)
    got = applied("random_crop(padding = 1)", x, {"offset": np.zeros((1, 2), np.int32)})
    assert np.all(got[0, 0] == 0) and np.all(got[0, :, 0] == 0)
    np.testing.assert_array_equal(got[0, 1:, 1:], x[0, :-1, :-1])


@pytest.mark.parametrize(
    "size, centre, zeroed",
    [
        (3, (2, 2), [(r, c) for r in (1, 2, 3) for c in (1, 2, 3)]),
        (2, (0, 0), [(0, 0)]),  # rows and columns -1 .. 0, clipped at the border
        (4, (5, 4), [(r, c) for r in (3, 4, 5) for c in (2, 3, 4)]),
    ],
)
def test_cutout_square(size: int, centre: tuple[int, int], zeroed: list) -> None:
    x = np.ones((1, *SHAPE), np.float32)
    got = applied(f"cutout(size = {size})", x, {"centre": np.array([centre], np.int32)})
    assert sorted(zip(*np.nonzero(got[0, :, :, 0] == 0), strict=True)) == zeroed
    assert np.all(got[0, :, :, 0] == got[0, :, :, 2])  # all channels


def test_contrast_keeps_channel_means() -> None:
    x = images()
    got = applied("contrast", x, {"factor": np.linspace(0.5, 1.5, len(x), dtype=np.float32)})
    np.testing.assert_allclose(got.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1e-5)
    same = applied("contrast", x, {"factor": np.ones(len(x), np.float32)})
    np.testing.assert_allclose(same, x, atol=1e-6)


# ------------------------------------------------------------------ the draws


def test_flip_rate_is_one_half() -> None:
    assert abs(drawn("flip", 4000)["flip"].mean() - 0.5) < 0.03


def test_crop_offsets_are_uniform_over_0_to_2p() -> None:
    offsets = drawn("random_crop(padding = 2)", 2000)["offset"]
    for axis in (0, 1):
        freq = np.bincount(offsets[:, axis], minlength=5) / len(offsets)
        assert len(freq) == 5 and np.all(np.abs(freq - 0.2) < 0.04)


def test_cutout_centres_cover_the_image() -> None:
    centres = drawn("cutout", 2000)["centre"]
    assert set(centres[:, 0]) == set(range(SHAPE[0]))
    assert set(centres[:, 1]) == set(range(SHAPE[1]))


@pytest.mark.parametrize(
    "text, key, lo, hi",
    [
        ("rotate(max_degrees = 30)", "degrees", -30, 30),
        ("zoom(max_factor = 0.2)", "factor", 0.8, 1.2),
        ("color_shift(max_delta = 0.1)", "delta", -0.1, 0.1),
        ("contrast(max_factor = 0.4)", "factor", 0.6, 1.4),
    ],
)
def test_uniform_draws_span_their_range(text: str, key: str, lo: float, hi: float) -> None:
    v = drawn(text, 1000)[key]
    assert lo <= v.min() < lo + 0.05 * (hi - lo) and hi - 0.05 * (hi - lo) < v.max() <= hi


def test_color_shift_draws_one_offset_per_image_and_channel() -> None:
    delta = drawn("color_shift", 8)["delta"]
    assert delta.shape == (8, SHAPE[2]) and len(np.unique(delta)) == delta.size


def test_augmentations_in_a_list_draw_independently() -> None:
    x = jnp.zeros((1000, 3, 4))
    twice = augment.build((aug("noise(std = 0.5)"), aug("noise(std = 0.5)")), (3, 4))
    std = float(np.asarray(twice(jax.random.key(0), x)).std())
    assert abs(std - 0.5 * math.sqrt(2)) < 0.02  # the same draw twice would give 1.0
    flips = augment.build((aug("flip"), aug("flip")), SHAPE)
    x = jnp.asarray(images(64))
    assert not np.array_equal(flips(jax.random.key(0), x), x)  # not undone by the same draw


# ------------------------------------------------------------------ what the train step needs


@pytest.mark.parametrize("text", CASES)
def test_jitted_build_keeps_shape_and_dtype_and_is_deterministic(text: str) -> None:
    f = jax.jit(augment.build((aug(text),), SHAPE))
    x = jnp.asarray(images(16))
    a = f(jax.random.key(1), x)
    assert a.shape == x.shape and a.dtype == jnp.float32
    np.testing.assert_array_equal(a, f(jax.random.key(1), x))
    if text.endswith("(padding = 0)"):
        return  # a single window: nothing random
    assert not np.array_equal(a, f(jax.random.key(2), x))
    # Each example its own draw: sixteen copies of one image do not come out all the same.
    same = f(jax.random.key(1), jnp.repeat(x[:1], 16, axis=0))
    assert len({np.asarray(o).tobytes() for o in same}) > 1


def test_build_applies_the_list_in_order_each_with_its_own_key() -> None:
    refs = (
        aug("random_crop(padding = 2)"),
        aug("rotate"),
        aug("cutout(size = 3)"),
        aug("contrast"),
    )
    x, key = jnp.asarray(images()), jax.random.key(5)

    def by_hand(key: jax.Array, x: jax.Array) -> jax.Array:
        for i, ref in enumerate(refs):
            draw, apply = augment.bind(ref, SHAPE)
            x = apply(x, draw(jax.random.fold_in(key, i), len(x), SHAPE))
        return x

    want = jax.jit(by_hand)(key, x)
    np.testing.assert_array_equal(jax.jit(augment.build(refs, SHAPE))(key, x), want)


@pytest.mark.parametrize("shape", [SHAPE, (7,), (3, 4)])
def test_no_augmentation_is_identity(shape: tuple[int, ...]) -> None:
    x = jnp.asarray(images(3, shape))
    np.testing.assert_array_equal(augment.build((), shape)(jax.random.key(0), x), x)


@pytest.mark.parametrize(
    "alias, name",
    [
        ("crop", "random_crop"),
        ("flip", "random_flip(horizontal)"),
        ("random_rotation", "rotate"),
        ("random_zoom", "zoom"),
        ("brightness", "color_shift"),
        ("gaussian_noise", "noise"),
        ("random_contrast", "contrast"),
    ],
)
def test_aliases_are_the_same_augmentation(alias: str, name: str) -> None:
    # The front end resolves aliases, so `build` sees the same Ref and draws the same way.
    assert aug(alias) == aug(name)


@pytest.mark.parametrize("text", ["random_crop", "flip", "rotate", "zoom", "cutout", "contrast"])
def test_image_augmentation_on_non_image_input_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"needs image inputs \[height, width, channels\].*\[64\]"):
        augment.build((aug(text),), (64,))


def test_batch_of_the_wrong_shape_is_an_error() -> None:
    with pytest.raises(ValueError, match="batches of shape"):
        augment.build((aug("noise"),), (4,))(jax.random.key(0), jnp.zeros((2, 5)))
