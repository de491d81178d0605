"""The `shards` source: ArrayRecord records read through Grain; `write_shards` makes them.

The format: files `part-00000.array_record`, ... written with `group_size:1` (one record per
chunk, as Grain reads fastest), one record per example, each record the bytes of an
uncompressed NPZ archive (`np.savez`) of two arrays, `x` (the raw example, float32 or int32)
and `y` (an int32 class index or float32 values). An NPZ is plain headers and raw array bytes:
it is read back with `np.load(..., allow_pickle=False)`, so a record can never run code, and
any tool with NumPy can write one. Beside the files, `dnn-shards.json` holds the format name,
the shape and dtype of `x`, the task, the classes and their names, and each file's record
count (the classes are known without reading every record; a record whose class lies
outside them is an error met at that record). Part of the sources stage
(runtime/data/sources.py, which says what every source gives).
"""

from __future__ import annotations

import glob
import io
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import E_DATA, E_FILE, E_SHARDS, Span
from dnn.compiler.registry.layers import fmt_shape
from dnn.compiler.values import Ref

from .examples import Examples, Item, Opts, Skipped, _Bad
from .table import _resolve, _start, _Where

SHARDS_META = "dnn-shards.json"  # beside the shards: shape, dtype, classes, records per file
SHARDS_FORMAT = "dnn-shards 1"


class ShardExamples(Examples):
    """Records of ArrayRecord shards through Grain's `ArrayRecordDataSource`: each record an
    uncompressed NPZ of `x` and `y` (`write_shards`), read without unpickling anything."""

    cacheable = False  # a record decodes in microseconds (`_Layout`): nothing to keep

    def __init__(
        self,
        pattern: str,
        paths: list[str],
        counts: list[int],
        meta: dict[str, Any],
        task: str,
        opts: Opts,
    ) -> None:
        super().__init__(opts)
        self._paths, self._starts = paths, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.origin, self.task = pattern, task
        self.shape, self.dtype = tuple(meta["shape"]), np.dtype(meta["dtype"])
        self._stored = meta["task"]
        self.classes = meta["classes"] if task == "classification" else None
        self.class_names = tuple(meta["class_names"]) if task == "classification" else ()

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _source(self) -> Any:
        from grain.sources import ArrayRecordDataSource

        return self._opened("_open_source", lambda: ArrayRecordDataSource(self._paths))

    def _place(self, i: int) -> tuple[str, Span, str | None]:
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        name = os.path.basename(self._paths[k])
        return f"record {i - int(self._starts[k])} of {name}", _start(self._paths[k]), None

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._decode(i, self._source()[i])

    def _decode(self, i: int, record: bytes) -> tuple[np.ndarray, np.ndarray]:
        layout = self.__dict__.get("_layout")
        if layout is not None:
            fast = layout.read(record)
            if fast is not None:
                return self._as_task(fast[0], fast[1])
        x, y = self._parse(i, record)
        if layout is None:  # the first record read here: the others' layout, where it fits
            self.__dict__["_layout"] = _Layout.of(record, x, y)
        return self._as_task(x, y)

    def _as_task(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.task == "regression" and self._stored == "classification":
            y = y.astype(np.float32)
        return x, y

    def _parse(self, i: int, record: bytes) -> tuple[np.ndarray, np.ndarray]:
        """A record read as any NPZ is (`np.load`), every part of it checked."""
        try:
            with np.load(io.BytesIO(record), allow_pickle=False) as z:
                x, y = z["x"], z["y"]
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as e:
            where, at, _ = self._place(i)
            message = f"{where} is not an NPZ of `x` and `y` ({e})"
            raise _Bad(
                where, message, at, "write shards with `dnn data --write-shards`", None, E_SHARDS
            ) from None
        if x.shape != self.shape or x.dtype != self.dtype:
            where, at, _ = self._place(i)
            message = (
                f"{where} holds x of shape {fmt_shape(x.shape)} {x.dtype}, but `{SHARDS_META}` "
                f"says {fmt_shape(self.shape)} {self.dtype}"
            )
            raise _Bad(
                where, message, at, "write every shard of a set from one source", None, E_SHARDS
            )
        return x, y

    def _getitems(self, rows: Sequence[int]) -> list[Item]:
        records = self._source().__getitems__(list(rows))
        out: list[Item] = []
        for i, record in zip(rows, records, strict=True):
            try:
                x, y = self._decode(i, record)
                self._check_label(i, y)
                out.append((x, y))
            except _Bad as bad:
                out.append(self._failed(bad))
        return out


class _Layout:
    """Where a set's records keep `x`'s and `y`'s bytes. The records of one set are NPZs of
    arrays of one shape and dtype, so every byte but the arrays' values and the CRC-32 of
    each member lies where it lies in the first record. A record is read by slicing when its
    length and every such byte match the first's and each member's CRC-32 (zip's own
    integrity check) matches its bytes; any other record is parsed whole by `np.load`, as
    the first was: 6 us a digits record instead of `np.load`'s 101 us, which go to parsing
    the zip directory and the `.npy` headers (measured on this machine)."""

    def __init__(
        self,
        length: int,
        keep: np.ndarray,
        same: np.ndarray,
        members: list[tuple[int, int, int]],
        arrays: list[tuple[int, np.dtype, tuple[int, ...], int]],
    ):
        self.length, self.keep, self.same = length, keep, same
        self.members = members  # (CRC offset, data start, data end) of x.npy and y.npy
        self.arrays = arrays  # (offset, dtype, shape, size) of x and y

    @staticmethod
    def of(record: bytes, x: np.ndarray, y: np.ndarray) -> _Layout | None:
        import struct

        try:
            archive = zipfile.ZipFile(io.BytesIO(record))
            infos = {info.filename: info for info in archive.infolist()}
            members, arrays, varying = [], [], []
            for name, a in (("x.npy", x), ("y.npy", y)):
                info = infos[name]
                h = info.header_offset
                names, extra = struct.unpack("<HH", record[h + 26 : h + 30])
                start = h + 30 + names + extra
                end = start + info.file_size
                npy = io.BytesIO(record[start:end])
                version = np.lib.format.read_magic(npy)
                if version == (1, 0):
                    np.lib.format.read_array_header_1_0(npy)
                elif version == (2, 0):
                    np.lib.format.read_array_header_2_0(npy)
                else:
                    return None
                offset = start + npy.tell()
                if offset + a.nbytes != end or a.dtype.hasobject:
                    return None
                members.append((h + 14, start, end))
                arrays.append((offset, a.dtype, a.shape, a.size))
                varying += [range(h + 14, h + 18), range(offset, end)]
            central = archive.start_dir
            while record[central : central + 4] == b"PK\x01\x02":  # the directory's CRCs
                varying.append(range(central + 16, central + 20))
                names, extra, comment = struct.unpack("<HHH", record[central + 28 : central + 34])
                central += 46 + names + extra + comment
        except (zipfile.BadZipFile, KeyError, ValueError, struct.error):
            return None
        mask = np.ones(len(record), bool)
        for r in varying:
            mask[r.start : r.stop] = False
        keep = np.flatnonzero(mask)
        return _Layout(
            len(record), keep, np.frombuffer(record, np.uint8)[keep].copy(), members, arrays
        )

    def read(self, record: bytes) -> tuple[np.ndarray, np.ndarray] | None:
        import zlib

        if len(record) != self.length:
            return None
        if not np.array_equal(np.frombuffer(record, np.uint8)[self.keep], self.same):
            return None
        for crc, start, end in self.members:
            if zlib.crc32(record[start:end]) != int.from_bytes(record[crc : crc + 4], "little"):
                return None
        x, y = (
            np.frombuffer(record, dtype, count, offset).reshape(shape).copy()
            for offset, dtype, shape, count in self.arrays
        )
        return x, y


def _open_shards(ref: Ref, task: str, base: Path, opts: Opts) -> Examples:
    written, where = str(ref.arg("pattern")), opts.where
    pattern = _resolve(base, written)
    meta_path = Path(pattern).parent / SHARDS_META
    meta = _shards_meta(meta_path, pattern, where)
    paths = sorted(glob.glob(pattern))
    listed = meta["files"]
    for name in listed:
        if not (meta_path.parent / name).is_file():
            message = f"shard `{meta_path.parent / name}` of `{pattern}` is missing"
            hint = f"`{meta_path}` lists {len(listed)} shards: copy the missing one back, or write the shards again"
            raise where.spec(E_FILE, message, hint)
    if not paths:
        message = f"no file matches `{pattern}`"
        raise where.spec(E_FILE, message, "write shards with `dnn data SPEC --write-shards DIR`")
    unknown = [p for p in paths if os.path.basename(p) not in listed]
    if unknown:
        message = f"shard `{unknown[0]}` is not listed in `{meta_path}`"
        raise where.spec(
            E_SHARDS, message, "write every shard of a set with one `dnn data --write-shards`"
        )
    counts = [int(listed[os.path.basename(p)]) for p in paths]
    _check_readable(paths, counts, pattern, where)
    if task == "classification" and meta["task"] != "classification":
        message = f"the shards `{pattern}` hold real-valued targets, not class labels"
        raise where.spec(E_DATA, message, "use a regression loss such as `mse`")
    return ShardExamples(pattern, paths, counts, meta, task, opts)


def _shards_meta(path: Path, pattern: str, where: _Where) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except OSError as e:
        message = (
            f"cannot read `{path}` (the description of the shards `{pattern}`): {e.strerror or e}"
        )
        raise where.spec(
            E_FILE, message, "write shards with `dnn data SPEC --write-shards DIR`"
        ) from None
    except ValueError as e:
        message = f"`{path}` is not JSON ({e})"
        raise where.spec(
            E_SHARDS, message, "write shards with `dnn data SPEC --write-shards DIR`"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != SHARDS_FORMAT:
        message = f"`{path}` does not describe shards (`format` is not `{SHARDS_FORMAT}`)"
        raise where.spec(E_SHARDS, message, "write shards with `dnn data SPEC --write-shards DIR`")
    return meta


def _check_readable(paths: list[str], counts: list[int], pattern: str, where: _Where) -> None:
    """Every shard opens as an ArrayRecord file with the records its description says."""
    from array_record.python.array_record_module import ArrayRecordReader

    for path, count in zip(paths, counts, strict=True):
        try:
            reader = ArrayRecordReader(path)
            found = reader.num_records()
            reader.close()
        except (OSError, RuntimeError, ValueError) as e:
            message = f"cannot read shard `{path}` of `{pattern}`: not an ArrayRecord file ({e})"
            raise where.file(E_FILE, message, _start(path), "write the shards again") from None
        if found != count:
            message = f"shard `{path}` holds {found} records but `{SHARDS_META}` says {count}"
            raise where.file(E_SHARDS, message, _start(path), "write the shards again")


def write_shards(
    examples: Examples, folder: Path, per_shard: int = 10_000
) -> tuple[list[Path], list[Skipped]]:
    """Write every example of `examples` (in order, skipped ones left out) to ArrayRecord
    shards `folder/part-NNNNN.array_record` of `per_shard` records, each record an uncompressed
    NPZ of `x` and `y`, and `folder/dnn-shards.json` describing them. Returns the shards
    written and the examples skipped."""
    from array_record.python.array_record_module import ArrayRecordWriter

    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    counts: dict[str, int] = {}
    skipped: list[Skipped] = []
    writer, count = None, 0
    for start in range(0, len(examples), 1024):
        for item in examples._getitems(range(start, min(start + 1024, len(examples)))):
            if isinstance(item, Skipped):
                skipped.append(item)
                continue
            if writer is None or count == per_shard:
                if writer is not None:
                    writer.close()
                    counts[paths[-1].name] = count
                paths.append(folder / f"part-{len(paths):05d}.array_record")
                writer, count = ArrayRecordWriter(str(paths[-1]), "group_size:1"), 0
            buf = io.BytesIO()
            np.savez(buf, x=item[0], y=item[1])
            writer.write(buf.getvalue())
            count += 1
    if writer is not None:
        writer.close()
        counts[paths[-1].name] = count
    meta = {
        "format": SHARDS_FORMAT,
        "origin": examples.origin,
        "shape": list(examples.shape),
        "dtype": str(np.dtype(examples.dtype)),
        "task": examples.task,
        "classes": examples.classes,
        "class_names": list(examples.class_names),
        "files": counts,
    }
    (folder / SHARDS_META).write_text(json.dumps(meta, indent=1) + "\n")
    return paths, skipped
