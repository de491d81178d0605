"""The `images` source streamed: one file decoded (and resized) per example.

Part of the sources stage (runtime/data/sources.py, which says what every source gives).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import E_DATA, E_FILE, Span
from dnn.compiler.values import Ref

from .examples import Examples, Opts, _Bad
from .table import _PATH_HINT, Table, _resolve, _start, _Where, listed


class ImageExamples(Examples):
    """Files of an image folder (one subfolder per class), decoded when read."""

    def __init__(
        self,
        root: str,
        files: list[tuple[int, str]],
        size: tuple[int, int],
        colour: bool,
        resize: bool,
        names: tuple[str, ...],
        task: str,
        broken: dict[int, str],
        opts: Opts,
    ) -> None:
        super().__init__(opts)
        self._files, self._size, self._resize, self._broken = files, size, resize, broken
        self.origin, self.task = root, task
        self.shape = (*size, 3 if colour else 1)
        self.dtype = np.dtype(np.float32)
        self.classes = len(names) if task == "classification" else None
        self.class_names = names if task == "classification" else ()

    def __len__(self) -> int:
        return len(self._files)

    def align(self, names: tuple[str, ...]) -> None:
        """Number the classes as the train source does (`names`): a separate `val` or `test`
        folder may hold fewer class folders; one the train data lacks is an error."""
        index = {n: k for k, n in enumerate(names)}
        lacking = next((n for n in self.class_names if n not in index), None)
        if lacking is not None:
            raise self._where.spec(
                E_DATA,
                f"class folder `{lacking}` of `{self.origin}` is not a class of the train data",
                f"its classes: {listed(names)}",
            )
        own = self.class_names
        self._files = [(index[own[k]], name) for k, name in self._files]
        self.classes, self.class_names = len(names), tuple(names)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        pixels, y = self._load(i)
        return self._finish(pixels), y

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The image's 8-bit pixels, (H, W) grey or (H, W, 3), and its label."""
        k, name = self._files[i]
        path = os.path.join(self.origin, name)
        if i in self._broken:
            raise _image_bad(name, path, self._broken[i])
        pixels = _decode_image(name, path, self._size if self._resize else None)
        if pixels.shape[:2] != self._size:
            h, w = self._size
            message = f"image `{path}` is {pixels.shape[0]}x{pixels.shape[1]} pixels but the others are {h}x{w}"
            raise _Bad(name, message, _start(path), "give all images one size")
        if self.shape[2] == 3 and pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        y = np.float32(k) if self.task == "regression" else np.int32(k)
        return pixels, y

    def _finish(self, pixels: np.ndarray) -> np.ndarray:
        x = pixels.astype(np.float32) / 255.0  # as the in-memory loader: 8 bits per channel
        return x if x.ndim == 3 else x[..., None]

    raw_dtype = np.dtype(np.uint8)

    def finish_batch(self, pixels: np.ndarray) -> np.ndarray:
        """`_finish` on a whole batch at once (the same float32 operations, element by element)."""
        x = pixels.astype(np.float32) / 255.0
        return x if x.ndim == 4 else x[..., None]

    def files(self) -> list[str]:
        return [os.path.join(self.origin, name) for _, name in self._files]

    def _place(self, i: int) -> tuple[str, Span, str | None]:
        name = self._files[i][1]
        return name, _start(os.path.join(self.origin, name)), None


try:  # the `stream` extra's PNG decoder, for streamed image folders
    import pyspng as _spng
except ImportError:  # pragma: no cover - Pillow alone
    _spng = None

_PNG = b"\x89PNG\r\n\x1a\n"


def _plain_png(data: bytes) -> bool:
    """A PNG of 8-bit grey or RGB pixels without a transparent colour (`tRNS`): one whose
    stored pixels are what Pillow's `convert("L" / "RGB")` gives."""
    if len(data) < 33 or not data.startswith(_PNG) or data[12:16] != b"IHDR":
        return False
    if data[24] != 8 or data[25] not in (0, 2):  # bit depth, colour type: grey or RGB
        return False
    at = 8
    while at + 8 <= len(data):  # the chunks before the pixels
        length, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        if kind == b"IDAT":
            return True
        if kind == b"tRNS":
            return False
        at += 12 + length
    return False


def _image_bad(name: str, path: str, reason: str) -> _Bad:
    message = f"cannot read image `{path}`: {reason}"
    return _Bad(name, message, _start(path), "replace or remove the file", None, E_FILE)


def _decode_image(name: str, path: str, size: tuple[int, int] | None) -> np.ndarray:
    """Pixels as the in-memory loader reads them (`_read_image`, below): a plain PNG (8-bit
    grey or RGB) not to be resized through libspng where `pyspng` is installed (the `stream`
    extra; about twice Pillow's speed, and PNG is lossless: the same pixels), anything else,
    or a file it cannot read, through Pillow."""
    from PIL import Image, UnidentifiedImageError

    if size is None and _spng is not None:
        try:
            with open(path, "rb") as f:
                data = f.read()
            if _plain_png(data):
                return np.ascontiguousarray(_spng.load(data))
        except Exception:  # noqa: BLE001 - whatever it is, Pillow reads it or names why not
            pass
    try:
        with Image.open(path) as opened:
            im = opened.convert("L" if opened.mode in _GRAY_MODES else "RGB")
        if size is not None:
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(im)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        reason = "not an image Pillow can read" if isinstance(e, UnidentifiedImageError) else e
        raise _image_bad(name, path, str(reason)) from None


def _scan_image(path: Path) -> tuple[str, tuple[int, int]] | str:
    """An image's mode and (height, width) from its header, or why it cannot be opened."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode, (im.size[1], im.size[0])
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return "not an image Pillow can read" if isinstance(e, UnidentifiedImageError) else str(e)


def _open_images(ref: Ref, task: str, base: Path, opts: Opts) -> Examples:
    shown, where = _resolve(base, ref.arg("dir")), opts.where
    folders = _class_folders(shown, where)
    files = [(k, f) for k, folder in enumerate(folders) for f in _image_files(folder, where)]
    heads = [_scan_image(f) for _, f in files]  # headers only: no pixels decoded here
    broken = {i: h for i, h in enumerate(heads) if isinstance(h, str)}
    if broken and opts.on_error == "fail":
        i = min(broken)
        message = f"cannot read image `{files[i][1]}`: {broken[i]}"
        at = _start(str(files[i][1]))
        raise where.file(E_FILE, message, at, "replace or remove the file")
    good = [h for h in heads if not isinstance(h, str)]
    colour = any(mode not in _GRAY_MODES for mode, _ in good)
    size = ref.arg("size")
    if size is None:
        sizes = [s for _, s in good]
        _check_sizes(
            ref.arg("dir"),
            [f for i, (_, f) in enumerate(files) if i not in broken],
            [np.broadcast_to(np.uint8(0), s) for s in sizes],  # shapes only, no memory
            where,
        )
        size = Counter(sizes).most_common(1)[0][0] if sizes else (1, 1)
    root = Path(shown)
    names = tuple(f.name for f in folders)
    rel = [(k, str(f.relative_to(root))) for k, f in files]
    return ImageExamples(
        shown, rel, tuple(size), colour, ref.arg("size") is not None, names, task, broken,
        opts,
    )  # fmt: skip


# ------------------------------------------------------------------ read whole (in memory)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_GRAY_MODES = frozenset({"1", "L", "LA"})


def _load_images(ref: Ref, task: str, base_dir: Path, where: _Where) -> Table:
    shown = _resolve(base_dir, ref.arg("dir"))
    folders = _class_folders(shown, where)
    files = [(k, f) for k, folder in enumerate(folders) for f in _image_files(folder, where)]
    size = ref.arg("size")
    pixels = [_read_image(f, size, where) for _, f in files]
    if size is None:
        _check_sizes(ref.arg("dir"), [f for _, f in files], pixels, where)
    if any(p.ndim == 3 for p in pixels):  # some colour image: grey ones get three equal channels
        pixels = [p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=2) for p in pixels]
    x = np.stack(pixels).astype(np.float32) / 255.0  # 8 bits per channel
    x = x if x.ndim == 4 else x[..., None]
    labels = np.array([k for k, _ in files])
    names = tuple(f.name for f in folders)
    if task == "regression":
        return Table(x, labels.astype(np.float32), task, None, (), shown, "images", where.span)
    return Table(x, labels.astype(np.int32), task, len(names), names, shown, "images", where.span)


def _class_folders(shown: str, where: _Where) -> list[Path]:
    root = Path(shown)
    if not root.is_dir():
        problem = "not a folder" if root.exists() else "no such folder"
        raise where.spec(E_FILE, f"cannot read `{shown}`: {problem}", _PATH_HINT)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        hint = f"put the images of each class in a subfolder named after it: `{shown}/cat/1.png`"
        raise where.spec(E_DATA, f"`{shown}` has no class folders", hint)
    return folders


def _image_files(folder: Path, where: _Where) -> list[Path]:
    files = sorted(
        f
        for f in folder.iterdir()
        if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file()
    )
    if not files:
        hint = "add .png or .jpg images to it, or remove it"
        raise where.spec(E_DATA, f"class folder `{folder}` holds no images", hint)
    return files


def _read_image(path: Path, size: Any, where: _Where, mode: str | None = None) -> np.ndarray:
    """Pixels as uint8: (H, W) for grey images, (H, W, 3) for colour (alpha is dropped);
    `mode` ("L" or "RGB") converts every image to it (`dnn predict`, runtime/inputs.py)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            im = opened.convert(mode or ("L" if opened.mode in _GRAY_MODES else "RGB"))
        if size is not None:
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(im)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        reason = "not an image Pillow can read" if isinstance(e, UnidentifiedImageError) else e
        message = f"cannot read image `{path}`: {reason}"
        raise where.file(E_FILE, message, _start(str(path)), "replace or remove the file") from None


def _check_sizes(written: str, files: list[Path], pixels: list[np.ndarray], where: _Where) -> None:
    """Without `size`, every image must have the most common height and width."""
    sizes = [p.shape[:2] for p in pixels]
    (h, w), _ = Counter(sizes).most_common(1)[0]
    for f, s in zip(files, sizes, strict=True):
        if s != (h, w):
            message = f"image `{f}` is {s[0]}x{s[1]} pixels but the others are {h}x{w}"
            fix = f'`images("{written}", size = [{h}, {w}])`'
            hint = f"give all images one size, or resize them: {fix}"
            raise where.spec(E_DATA, message, hint)
