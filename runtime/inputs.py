"""What `dnn predict --input` reads (issue 17, point 4): arrays, tables, archives and images.

  .npy          one array of examples (`read_inputs`)
  .csv          numbers, with or without a header row (`read_inputs`)
  .npz          one array per input of the model, by the input's name (`image`, or `a` and
                `b` for a two-input model); `x`, the `npz` source's default, for a model with
                one input. Missing and unknown names are an error that lists both.
  image file    .png, .jpg, ... : one example, for a model whose input is an image [H, W, C]
  folder        every image in it (sorted by path; class subfolders are searched too, so a
                folder laid out for the `images` source works), one example each

Images are decoded as the `images` source decodes them for training (runtime/data/images.py):
grey or RGB (alpha dropped), resized bilinearly to the source's `size` when the spec gives one,
8 bits to [0, 1]. A grey image fed to a colour model gets three equal channels, a colour image
fed to a grey model its luminance (Pillow's `L`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import E_DATA, E_FILE, SpecError
from dnn.compiler.registry.layers import fmt_shape

from .data.arrays import _numbers, _read_npy, open_npz
from .data.csvrows import _read_csv_inputs
from .data.images import IMAGE_SUFFIXES, _read_image
from .data.table import _start, _Where


@dataclass(frozen=True)
class Wanted:
    """What the run's model takes: its inputs by name and shape, the raw example's shape (the
    inputs laid side by side when there are several), and the `images` source's `size`."""

    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    raw_shape: tuple[int, ...]
    size: tuple[int, int] | None = None

    @property
    def image(self) -> tuple[int, ...] | None:
        """[H, W, C] of a model with one image input (C of 1 or 3); None otherwise."""
        if len(self.inputs) != 1:
            return None
        shape = self.inputs[0][1]
        return shape if len(shape) == 3 and shape[-1] in (1, 3) else None


def read(path: Path, wanted: Wanted) -> tuple[np.ndarray, list[str] | None]:
    """The examples in `path` as one float array (N, *raw_shape), and the image files they
    came from (None when not images)."""
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in IMAGE_SUFFIXES:
        files = _image_paths(path)
        return _images(files, wanted), [str(f) for f in files]
    if suffix == ".npz":
        return _npz(path, wanted), None
    if suffix not in (".npy", ".csv"):
        raise _unknown(path)
    return read_inputs(path, wanted.raw_shape), None


def _unknown(path: Path) -> SpecError:
    where = _Where(_start(str(path)), {})
    return where.spec(
        E_FILE,
        f"cannot read `{path}`: inputs must be a .npy, .csv or .npz file, an image or a "
        "folder of images",
        "save the examples with `np.save`, `np.savez` (one array per input), or as a CSV file",
    )


# ------------------------------------------------------------------ .npz


def _npz(path: Path, wanted: Wanted) -> np.ndarray:
    shown = str(path)
    where = _Where(_start(shown), {})
    archive = open_npz(shown, where, "save the inputs with `np.savez(path, name=array)`")
    with archive:
        arrays = _by_name(archive, wanted, shown, where)
    parts = [_numbers(arrays[name], f"array `{name}`", shown, where) for name, _ in wanted.inputs]
    counts = {len(p) for p in parts}
    if len(counts) > 1:
        listed = ", ".join(
            f"`{n}` {len(p)}" for (n, _), p in zip(wanted.inputs, parts, strict=True)
        )
        hint = "give every input the same examples, in the same order"
        raise where.spec(E_DATA, f"the arrays of `{shown}` hold different counts: {listed}", hint)
    if len(parts) == 1:
        return _as_examples(parts[0], wanted.raw_shape, shown, where)
    flat = []
    for (name, shape), p in zip(wanted.inputs, parts, strict=True):
        flat.append(_as_examples(p, shape, f"{shown}: `{name}`", where).reshape(len(p), -1))
    return np.concatenate(flat, axis=1)


def _by_name(archive: Any, wanted: Wanted, shown: str, where: _Where) -> dict[str, np.ndarray]:
    """The archive's arrays by input name; `x` stands for the only input of a model."""
    names = [n for n, _ in wanted.inputs]
    have = list(archive.files)
    if len(names) == 1 and names[0] not in have and have == ["x"]:
        return {names[0]: archive["x"]}
    missing = [n for n in names if n not in have]
    extra = [k for k in have if k not in names]
    if missing or extra:
        said = []
        if missing:
            said.append("no array " + ", ".join(f"`{n}`" for n in missing))
        if extra:
            said.append("arrays the model does not take: " + ", ".join(f"`{k}`" for k in extra))
        want = ", ".join(f"`{n}` {fmt_shape(s)}" for n, s in wanted.inputs)
        message = f"`{shown}` does not match the model's inputs: {'; '.join(said)}"
        hint = f"the model's inputs are {want}: save one array per input, by its name"
        raise where.spec(E_DATA, message, hint)
    return {n: archive[n] for n in names}


# ------------------------------------------------------------------ images


def _image_paths(path: Path) -> list[Path]:
    where = _Where(_start(str(path)), {})
    if not path.exists():
        raise where.spec(E_FILE, f"cannot read `{path}`: no such file or folder")
    if not path.is_dir():
        return [path]
    files = sorted(
        f
        for f in path.rglob("*")
        if f.suffix.lower() in IMAGE_SUFFIXES
        and f.is_file()
        and not any(part.startswith(".") for part in f.relative_to(path).parts)
    )
    if not files:
        hint = "put .png or .jpg images in it (or in subfolders)"
        raise where.spec(E_DATA, f"`{path}` holds no images", hint)
    return files


def _images(files: list[Path], wanted: Wanted) -> np.ndarray:
    shape = wanted.image
    where = _Where(_start(str(files[0])), {})
    if shape is None or math.prod(shape) != math.prod(wanted.raw_shape):
        took = " and ".join(f"`{n}` {fmt_shape(s)}" for n, s in wanted.inputs)
        message = f"the run's model takes {took}, not an image"
        hint = "images are read for a model with one input of shape [height, width, channels]"
        raise where.spec(E_DATA, message, hint)
    x = np.stack([_image(f, shape, wanted.size) for f in files]).astype(np.float32) / 255.0
    return x.reshape((len(files), *wanted.raw_shape))  # 8 bits per channel, as in training


def _image(path: Path, shape: tuple[int, ...], size: tuple[int, int] | None) -> np.ndarray:
    """One image's pixels as uint8 [H, W, C], decoded by the `images` source's reader."""
    h, w, c = shape
    where = _Where(_start(str(path)), {})
    pixels = _read_image(path, size, where, "L" if c == 1 else "RGB")
    if pixels.shape[:2] != (h, w):
        message = (
            f"image `{path}` is {pixels.shape[0]}x{pixels.shape[1]} pixels but the model "
            f"takes {h}x{w}"
        )
        hint = f"resize the images to {h}x{w}, or train with `images(..., size = [{h}, {w}])`"
        raise where.spec(E_DATA, message, hint)
    return pixels.reshape(h, w, c)


# ----------------------------------------------------------------------------- arrays and tables


def read_inputs(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Examples for `dnn predict`: a .npy array, or a CSV with a header row (all inputs).

    Returns float32 (N, *shape); a single example of exactly `shape` becomes a batch of one.
    """
    shown = str(path)
    where = _Where(_start(shown), {})
    reader = _INPUT_READERS.get(Path(shown).suffix.lower())
    if reader is None:
        raise where.spec(
            E_FILE,
            f"cannot read `{shown}`: inputs must be a .npy or .csv file",
            "save the examples with `np.save`, or as a CSV file with a header row",
        )
    return _as_examples(reader(shown, where), tuple(shape), shown, where)


_INPUT_READERS: dict[str, Callable[[str, _Where], np.ndarray]] = {
    ".npy": _read_npy,
    ".csv": _read_csv_inputs,
}


def _as_examples(x: np.ndarray, shape: tuple[int, ...], shown: str, where: _Where) -> np.ndarray:
    if x.shape[1:] == shape:
        return x
    if x.shape == shape:
        return x[None]
    if math.prod(x.shape[1:]) == math.prod(shape):
        return x.reshape((len(x), *shape))
    raise where.spec(
        E_DATA,
        f"`{shown}` holds examples of shape {fmt_shape(x.shape[1:])} but the model takes "
        f"{fmt_shape(shape)}",
        f"give {math.prod(shape)} values per example, one example per row",
    )
