"""Data augmentation (`augment = [...]`): random transforms of training batches, in JAX.

`build(refs, shape)` returns `augment(key, x)`, which applies the augmentations in order to a
batch `x` of shape (B, *shape) inside the jitted train step. Each augmentation is two functions,
recorded as its word's implementation (`provides`, read by `AUGMENTATIONS.implementation`):
`draw(ref, key, batch, shape) -> params` makes every random choice for the batch (one row per
example, so each example gets its own), and `apply(ref, x, params)` is a deterministic function
of the batch and those choices, testable against NumPy. `bind(ref, shape)` gives the pair with
`ref` bound: `draw(key, batch, shape)` and `apply(x, params)`.

Augmentation i of the list draws with `jax.random.fold_in(key, i)`, so the augmentations are
independent of each other and adding one at the end leaves the earlier ones' draws unchanged.
The formulas are those of the registry entries (`compiler/registry/data.py`, `dnn help
rotate`). Image augmentations take (height, width, channels) examples; `noise` takes any shape.

Geometry conventions (rotate, zoom): pixel (i, j) is the point (i, j), row i counted downwards,
so the centre of an H x W image is ((H - 1) / 2, (W - 1) / 2). Output pixel p takes the value of
the input at the source point q (the inverse transform of p), interpolated bilinearly between
the four nearest pixels, pixels outside the image counting as 0 (`map_coordinates`, order 1,
mode "constant"): uncovered pixels are 0 and the border fades over one pixel. A positive angle
rotates counter-clockwise as displayed (row 0 at the top), as `np.rot90` does: rotating by 90
degrees gives `np.rot90(x, 1, axes=(0, 1))`. A zoom factor s > 1 magnifies (the image is
cropped), s < 1 shrinks it (zero border): q = c + (p - c) / s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from dnn.compiler.registry.core import provides
from dnn.compiler.registry.data import AUGMENTATIONS
from dnn.compiler.values import Ref
from jax.scipy.ndimage import map_coordinates

Array = Any  # jax.Array; a NumPy array is accepted by `apply` too
Params = dict[str, Array]
Shape = tuple[int, ...]


class Augmentation(NamedTuple):
    """The random part (`draw`) and the deterministic part (`apply`) of an augmentation."""

    draw: Callable[..., Params]
    apply: Callable[..., Array]


def _uniform(key: Array, shape: Shape, lo: float, hi: float) -> Array:
    return jax.random.uniform(key, shape, jnp.float32, lo, hi)


def _per_example(v: Array, rank: int) -> Array:
    """A (B,) array shaped (B, 1, ..., 1) to scale a batch of the given rank."""
    return v.reshape(v.shape[0], *(1,) * (rank - 1))


# ----------------------------------------------------------------------------- random_crop


def _draw_random_crop(ref: Ref, key: Array, batch: int, shape: Shape) -> Params:
    """Window offsets (i, j) ~ U{0 .. 2 padding} per example."""
    return {"offset": jax.random.randint(key, (batch, 2), 0, 2 * ref.arg("padding") + 1)}


def _random_crop(ref: Ref, x: Array, params: Params) -> Array:
    p = ref.arg("padding")
    h, w, c = x.shape[1:]

    def crop(img: Array, offset: Array) -> Array:
        return jax.lax.dynamic_slice(img, (offset[0], offset[1], 0), (h, w, c))

    padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    return jax.vmap(crop)(padded, params["offset"])


provides("augmentation", "random_crop", Augmentation(_draw_random_crop, _random_crop))


# ----------------------------------------------------------------------------- random_flip


def _draw_random_flip(ref: Ref, key: Array, batch: int, shape: Shape) -> Params:
    """Whether each example is mirrored, with probability 1/2."""
    return {"flip": jax.random.bernoulli(key, 0.5, (batch,))}


def _random_flip(ref: Ref, x: Array, params: Params) -> Array:
    axis = {"horizontal": 2, "vertical": 1}[str(ref.arg("direction"))]
    return jnp.where(_per_example(params["flip"], x.ndim), jnp.flip(x, axis), x)


provides("augmentation", "random_flip", Augmentation(_draw_random_flip, _random_flip))


# ----------------------------------------------------------------------------- rotate and zoom


def _centred(h: int, w: int) -> tuple[Array, Array]:
    """Each pixel's (row, column) relative to the image centre, as two (H, W) arrays."""
    y, x = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2, jnp.arange(w) - (w - 1) / 2, indexing="ij")
    return y, x


def _sample(img: Array, dy: Array, dx: Array) -> Array:
    """`img` (H, W, C) at the points centre + (dy, dx): bilinear, zero outside the image."""
    h, w = img.shape[:2]
    rows, cols = dy + (h - 1) / 2, dx + (w - 1) / 2

    def channel(v: Array) -> Array:
        return map_coordinates(v, [rows, cols], order=1, mode="constant", cval=0.0)

    return jax.vmap(channel, in_axes=2, out_axes=2)(img)


def _rotate_one(img: Array, degrees: Array) -> Array:
    y, x = _centred(*img.shape[:2])
    a = jnp.deg2rad(degrees)
    # Source of output (y, x): the point rotated by -a (counter-clockwise as displayed for a > 0).
    return _sample(img, jnp.cos(a) * y + jnp.sin(a) * x, jnp.cos(a) * x - jnp.sin(a) * y)


def _draw_rotate(ref: Ref, key: Array, batch: int, shape: Shape) -> Params:
    """Angles a ~ U(-max_degrees, max_degrees), in degrees."""
    m = ref.arg("max_degrees")
    return {"degrees": _uniform(key, (batch,), -m, m)}


def _rotate(ref: Ref, x: Array, params: Params) -> Array:
    return jax.vmap(_rotate_one)(x, params["degrees"]).astype(x.dtype)


provides("augmentation", "rotate", Augmentation(_draw_rotate, _rotate))


def _zoom_one(img: Array, factor: Array) -> Array:
    y, x = _centred(*img.shape[:2])
    return _sample(img, y / factor, x / factor)


def _draw_zoom(ref: Ref, key: Array, batch: int, shape: Shape) -> Params:
    """Scale factors s ~ U(1 - max_factor, 1 + max_factor)."""
    m = ref.arg("max_factor")
    return {"factor": _uniform(key, (batch,), 1 - m, 1 + m)}


def _zoom(ref: Ref, x: Array, params: Params) -> Array:
    return jax.vmap(_zoom_one)(x, params["factor"]).astype(x.dtype)


provides("augmentation", "zoom", Augmentation(_draw_zoom, _zoom))


# ----------------------------------------------------------------------------- colour and noise


def _draw_color_shift(ref: Ref, key: Array, batch: int, shape: Shape) -> Params:
    """Offsets d ~ U(-max_delta, max_delta) per example and channel, shape (B, C)."""
    m = ref.arg("max_delta")
    return {"delta": _uniform(key, (batch, shape[-1]), -m, m)}


def _color_shift(ref: Ref, x: Array, params: Params) -> Array:
    delta = params["delta"]
    return (x + delta.reshape(delta.shape[0], 1, 1, delta.shape[1])).astype(x.dtype)


provides("augmentation", "color_shift", Augmentation(_draw_color_shift, _color_shift))


def _draw_noise(ref: Ref, key: Array, batch: int, shape: Shape) -> Params:
    """Gaussian noise e ~ N(0, std^2), one value per input element."""
    return {"noise": ref.arg("std") * jax.random.normal(key, (batch, *shape), jnp.float32)}


def _noise(ref: Ref, x: Array, params: Params) -> Array:
    return (x + params["noise"]).astype(x.dtype)


provides("augmentation", "noise", Augmentation(_draw_noise, _noise))


def _draw_contrast(ref: Ref, key: Array, batch: int, shape: Shape) -> Params:
    """Contrast factors f ~ U(1 - max_factor, 1 + max_factor), one per example."""
    m = ref.arg("max_factor")
    return {"factor": _uniform(key, (batch,), 1 - m, 1 + m)}


def _contrast(ref: Ref, x: Array, params: Params) -> Array:
    # One factor per image, each channel about its own mean (as tf.image.adjust_contrast).
    mean = x.mean(axis=(1, 2), keepdims=True)
    return ((x - mean) * _per_example(params["factor"], x.ndim) + mean).astype(x.dtype)


provides("augmentation", "contrast", Augmentation(_draw_contrast, _contrast))


# ----------------------------------------------------------------------------- cutout


def _draw_cutout(ref: Ref, key: Array, batch: int, shape: Shape) -> Params:
    """Square centres (i, j), uniform over the pixels of the image."""
    return {"centre": jax.random.randint(key, (batch, 2), 0, jnp.array([shape[:2]]))}


def _band(n: int, start: Array, size: int) -> Array:
    """(B, n): True at indices start .. start + size - 1 of each example (none past 0 or n)."""
    k = jnp.arange(n)[None, :]
    return (k >= start[:, None]) & (k < start[:, None] + size)


def _cutout(ref: Ref, x: Array, params: Params) -> Array:
    # Rows i - size // 2 ... i - size // 2 + size - 1: exactly `size` rows, as DeVries & Taylor's
    # code for even sizes; an odd size is centred exactly. Clipped by the image borders.
    size = ref.arg("size")
    start = params["centre"] - size // 2
    rows, cols = _band(x.shape[1], start[:, 0], size), _band(x.shape[2], start[:, 1], size)
    square = rows[:, :, None, None] & cols[:, None, :, None]
    return jnp.where(square, jnp.zeros((), x.dtype), x)


provides("augmentation", "cutout", Augmentation(_draw_cutout, _cutout))


# ----------------------------------------------------------------------------- entry points


def _check_shape(ref: Ref, shape: Shape) -> None:
    entry = AUGMENTATIONS.lookup(ref.name)
    if entry is not None and entry.needs.input == "image" and len(shape) != 3:
        raise ValueError(
            f"augmentation `{ref}` needs image inputs [height, width, channels], but an example "
            f"has shape [{', '.join(map(str, shape))}]; remove it or use `noise`, which takes "
            "any input"
        )


def bind(ref: Ref, shape: Shape) -> Augmentation:
    """Augmentation `ref` for examples of `shape`: `draw(key, batch, shape)`, `apply(x, params)`."""
    _check_shape(ref, tuple(shape))
    parts: Augmentation = AUGMENTATIONS.implementation(ref.name)
    return Augmentation(functools.partial(parts.draw, ref), functools.partial(parts.apply, ref))


def build(refs: tuple[Ref, ...], shape: Shape) -> Callable[[Array, Array], Array]:
    """`augment(key, x)`: the augmentations `refs` in order, on batches x of shape (B, *shape)."""
    shape = tuple(shape)
    steps = tuple(bind(ref, shape) for ref in refs)

    def augment(key: Array, x: Array) -> Array:
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"augment expects batches of shape (B, *{shape}), got {x.shape}")
        for i, step in enumerate(steps):
            x = step.apply(x, step.draw(jax.random.fold_in(key, i), x.shape[0], shape))
        return x

    return augment
