"""`data.cache` (runtime/data/cache.py): a streamed source's decoded examples kept on disk.
A cached row is the decoded row bit for bit; the next opening decodes none; a row torn on disk
is decoded again; a changed file starts a new cache; sources read from a memory map are not
cached; a folder that refuses the cache sends it to ~/.cache/dnn/data; a streamed run with a Grain
worker process filling the cache trains as the in-memory run without it, and so does an
in-memory run reading the cache back."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dnn.runtime import pipeline
from dnn.runtime.data import images
from dnn.runtime.fit import train
from PIL import Image
from test_stream_sources import assert_same_rows, in_memory, opened

import dnn


@pytest.fixture
def img(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Five small images of two classes (one grey, so every image gets three channels)."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for k, (cls, mode) in enumerate([("cat", "L"), ("cat", "RGB"), ("dog", "RGB"), ("dog", "L")]):
        (tmp_path / "img" / cls).mkdir(parents=True, exist_ok=True)
        shape = (6, 5, 3) if mode == "RGB" else (6, 5)
        Image.fromarray(rng.integers(0, 255, shape, np.uint8)).save(tmp_path / f"img/{cls}/{k}.png")
    return tmp_path


def _folders(root: Path) -> list[Path]:
    """The caches in `root`'s .dnn-cache (beside its `.lock`)."""
    return sorted(p for p in (root / ".dnn-cache").iterdir() if not p.name.startswith("."))


def test_cached_rows_are_the_decoded_rows_and_the_next_opening_decodes_none(
    img: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = in_memory('images("img")', img)
    first = opened('images("img")', img, cache=True)
    assert first._cache is not None and first._cache.filled() == 0
    assert_same_rows(first, table)  # decoded, stored, given back
    assert first._cache.filled() == 4
    (folder,) = _folders(img / "img")  # hidden inside the image folder: not a class
    assert folder.name.startswith("images-") and {p.name for p in folder.iterdir()} == {
        "x.npy",
        "y.npy",
        "check.npy",
    }
    assert np.load(folder / "x.npy").dtype == np.uint8  # pixels, not floats: a quarter the disk

    def no_decoding(*a: Any) -> None:
        raise AssertionError("decoded an image the cache holds")

    monkeypatch.setattr(images, "_decode_image", no_decoding)
    again = opened('images("img")', img, cache=True)
    assert again._cache is not None and again._cache.folder == folder
    assert_same_rows(again, table)  # every row from the cache
    assert in_memory('images("img")', img).x.shape == table.x.shape  # the folder is no class


def test_a_torn_row_is_decoded_again(img: Path) -> None:
    table = in_memory('images("img")', img)
    examples = opened('images("img")', img, cache=True)
    assert_same_rows(examples, table)
    xs = np.load(examples._cache.folder / "x.npy", mmap_mode="r+")
    xs[2, 0, 0, 0] ^= 0xFF  # a bit flipped on disk after its check was written
    xs.flush()
    fresh = opened('images("img")', img, cache=True)
    assert_same_rows(fresh, table)
    assert (
        np.load(fresh._cache.folder / "x.npy")[2].tobytes()
        == (table.x[2] * 255).round().astype(np.uint8).tobytes()
    )  # stored again, mended


def test_a_changed_file_starts_a_new_cache_and_drops_the_old(img: Path) -> None:
    opened('images("img")', img, cache=True)[0]
    (old,) = _folders(img / "img")
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(img / "img/cat/0.png")
    os.utime(img / "img/cat/0.png", ns=(1, 1))  # a new modification time
    examples = opened('images("img")', img, cache=True)
    assert float(examples[0][0].max()) == 0.0  # the new pixels, not the cached ones
    (new,) = _folders(img / "img")
    assert new != old and not old.exists()
    sized = opened('images("img", size = [4, 3])', img, cache=True)  # another reading: its own
    assert sized[0][0].shape == (4, 3, 3) and len(_folders(img / "img")) == 2


def test_a_csv_row_is_cached_as_its_numbers(img: Path) -> None:
    lines = ["a,b,label"] + [f"{i * 0.5:.6g},{i - 3},{i % 2}" for i in range(9)]
    (img / "t.csv").write_text("\n".join(lines) + "\n")
    table = in_memory('csv("t.csv", label = "label")', img)
    for _ in range(2):  # filled, then read back
        examples = opened('csv("t.csv", label = "label")', img, cache=True)
        assert_same_rows(examples, table)
    assert examples._cache.filled() == 9 and examples._cache.folder.parent == img / ".dnn-cache"


def test_memory_mapped_sources_are_not_cached(img: Path) -> None:
    np.savez(img / "a.npz", x=np.ones((4, 3)), y=np.arange(4) % 2)
    assert opened('npz("a.npz")', img, cache=True)._cache is None
    assert not (img / ".dnn-cache").exists()


def test_a_folder_that_refuses_it_sends_the_cache_to_the_user_cache(
    img: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (img / "img" / ".dnn-cache").write_text("a file where the folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(img / "home-cache"))
    examples = opened('images("img")', img, cache=True)
    assert_same_rows(examples, in_memory('images("img")', img))
    assert examples._cache.folder.parent == img / "home-cache" / "dnn" / "data"
    assert examples._cache.filled() == 4


SPEC = """dnn 1
model m {{
  input x: f32[6, 5, 3]
  flatten
  dense(2)
}}
data {{
  source = images("img")
  split = {{ train: 0.5, val: 0.25, test: 0.25 }}
  stream = {stream}
  workers = 1
  cache = {cache}
}}
train {{
  optimizer = adam(lr = 0.01)
  batch_size = 4
  epochs = 2
}}
"""


def test_worker_processes_fill_the_cache_and_runs_train_alike(img: Path) -> None:
    for k in range(12):  # 16 images: 8 train, 4 val, 4 test
        cls = "cat" if k % 2 else "dog"
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 255, (6, 5, 3), np.uint8)).save(img / f"img/{cls}/x{k}.png")
    results = []
    for name, stream, use in [("plain", "false", "false"), ("fill", "true", "true"),
                              ("read", "false", "true")]:  # fmt: skip
        spec = img / f"{name}.dnn"
        spec.write_text(SPEC.format(stream=stream, cache=use))
        run = img / name
        results.append((train(dnn.load(str(spec)), run, mode="quiet"), _history(run)))
        if name == "fill":  # every example read is stored: train, val and test
            (folder,) = _folders(img / "img")
            assert int(np.count_nonzero(np.load(folder / "check.npy"))) == 16
    (plain, history), *others = results
    for result, other in others:
        assert other == history and result["test"] == plain["test"]


def _history(run: Path) -> list[dict[str, Any]]:
    drop = ("time", "samples_per_s", "data_wait_s")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in drop} for x in lines]


def test_auto_starts_no_worker_process_where_the_cache_holds_every_image(
    img: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    pixels = np.random.default_rng(0).integers(0, 255, (200, 6, 5, 3), np.uint8)
    for k, p in enumerate(pixels):  # more than the splits' heads read
        Image.fromarray(p).save(img / f"img/{'cat' if k % 2 else 'dog'}/n{k}.png")
    spec = img / "auto.dnn"
    spec.write_text(SPEC.format(stream="true", cache="true").replace("workers = 1", ""))
    assert pipeline.prepare(dnn.load(str(spec))).streamed["train"].workers == 3  # decoding
    for x, _ in opened('images("img")', img, cache=True):  # every image stored
        assert x.shape == (6, 5, 3)
    assert pipeline.prepare(dnn.load(str(spec))).streamed["train"].workers == 0  # maps only


def test_dnn_data_says_how_much_of_the_cache_is_filled(img: Path, capsys: Any) -> None:
    from dnn.runtime.cli import main

    spec = img / "data.dnn"
    spec.write_text(SPEC.format(stream="true", cache="true").replace("workers = 1", "workers = 0"))
    assert main(["data", str(spec)]) == 0
    (folder,) = _folders(img / "img")
    assert f"cache: 4 of 4 examples decoded and stored in {folder} (data.cache)" in (
        capsys.readouterr().out
    )


def test_no_cache_where_no_disk_has_the_space(img: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def full(*_: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(img / "home-cache"))
    examples = opened('images("img")', img, cache=True)
    assert examples._cache is None  # read without it
    assert_same_rows(examples, in_memory('images("img")', img))
    assert _folders(img / "img") == []  # nothing half made left behind
    assert [p.name for p in (img / "img" / ".dnn-cache").iterdir()] == [".lock"]


RACE = """
import sys, time
from pathlib import Path
from dnn.compiler.diagnostics import Span
from dnn.compiler.driver import value
from dnn.runtime.data.sources import open_examples
from dnn.runtime.data.table import _Where
span = Span("spec.dnn", 1, 1, 1, 2)
go = Path(sys.argv[1]) / "go"
while not go.exists():  # every process starts together
    time.sleep(0.005)
examples = open_examples(value('images("img")', "dataset")[0], "classification", Path(sys.argv[1]),
                         _Where(span, {}, span), "fail", cache=True)
for i in range(len(examples)):
    examples[i]
print(examples._cache.folder)
"""


def test_processes_starting_together_make_one_cache_and_all_use_it(img: Path) -> None:
    import subprocess
    import sys

    home = img / "home-cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(home)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(img)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    (img / "go").touch()
    folders = {p.communicate(timeout=120)[0].strip() for p in runs}
    assert all(p.returncode == 0 for p in runs)
    assert folders == {str(f) for f in _folders(img / "img")} and len(folders) == 1
    assert not home.exists()  # no process fell back to a second copy


def test_a_cache_in_use_is_kept_and_a_vanished_one_is_read_without(img: Path) -> None:
    table = in_memory('images("img")', img)
    reading = opened('images("img")', img, cache=True)
    assert_same_rows(reading, table)  # its maps are open: a shared lock on the folder
    (old,) = _folders(img / "img")
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(img / "img/cat/0.png")
    os.utime(img / "img/cat/0.png", ns=(1, 1))
    opened('images("img")', img, cache=True)[0]  # a new cache: the old one is still read
    assert old in _folders(img / "img") and len(_folders(img / "img")) == 2
    shutil.rmtree(old)  # removed by hand while a run reads it
    again = pickle.loads(pickle.dumps(reading))  # as Grain sends it to a worker process
    assert again._cache.maps() is None
    assert_same_rows(again, in_memory('images("img")', img))  # decoded, as without a cache


def test_a_cache_this_user_cannot_write_is_read(img: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = in_memory('images("img")', img)
    assert_same_rows(opened('images("img")', img, cache=True), table)
    load = np.load

    def read_only(path: Any, mmap_mode: Any = None, **kw: Any) -> Any:
        if mmap_mode == "r+":
            raise PermissionError(13, "Permission denied", str(path))
        return load(path, mmap_mode=mmap_mode, **kw)

    monkeypatch.setattr(np, "load", read_only)
    monkeypatch.setattr(images, "_decode_image", lambda *a: pytest.fail("decoded"))
    examples = opened('images("img")', img, cache=True)
    assert examples._cache is not None and not examples._cache.writable
    assert_same_rows(examples, table)  # every row from the maps, none decoded


def test_stream_auto_that_reads_whole_makes_no_cache(img: Path) -> None:
    from dnn.runtime.data import load

    spec = img / "auto.dnn"
    spec.write_text(SPEC.format(stream="auto", cache="true"))
    program = dnn.load(str(spec))
    assert load.stream_sources(program, "classification") is None  # it fits: read whole
    assert not (img / "img" / ".dnn-cache").exists()
    (img / "img" / ".dnn-cache").mkdir()
    (img / "img" / ".dnn-cache" / "x.npy").write_bytes(b"0" * 100)
    assert all(".dnn-cache" not in p.parts for p in load._files(img / "img"))


def test_a_maker_that_checked_before_another_made_the_cache_keeps_it(img: Path) -> None:
    """Process B found no cache, then A made and filled it before B took the root's lock:
    B uses A's cache (its rows kept), rather than replacing it with an empty one."""
    from dnn.runtime.data import cache

    a = opened('images("img")', img, cache=True)
    assert_same_rows(a, in_memory('images("img")', img))
    folder = a._cache.folder
    name, source = folder.name, folder.name.split("-")[1]
    x, y = (np.asarray(v) for v in a._load(0))
    assert cache._made(folder.parent, name, source, len(a), x, y) == folder  # B, late
    assert opened('images("img")', img, cache=True)._cache.filled() == 4


def test_check_warns_of_stream_only_fields_in_a_spec_that_reads_whole(
    img: Path, capsys: Any
) -> None:
    from dnn.runtime.cli import main

    (img / "t.csv").write_text("a,label\n1,0\n2,1\n")
    text = SPEC.format(stream="false", cache="true").replace('images("img")', 'csv("t.csv")')
    spec = img / "whole.dnn"
    spec.write_text(text.replace("  workers = 1", "  workers = 1\n  on_error = skip"))
    assert main(["check", str(spec)]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "W0810" in line] == [  # not `on_error`:
        # read whole, a bad example is skipped too (tests/test_skip_memory.py)
        f"{spec}:11:13: warning[W0810]: `workers` applies to streamed reading, but `stream = "
        "false` reads the data whole: the data is read by this process",
        f"{spec}:13:11: warning[W0810]: `cache` applies to streamed reading, but `stream = "
        "false` reads the data whole: `csv` is read whole, decoded once per run",
    ]
    assert err.count("hint: set `stream = true`, or leave the field out") == 2
    spec.write_text(SPEC.format(stream="false", cache="true").replace("  workers = 1\n", ""))
    assert main(["check", str(spec)]) == 0  # an image folder read whole is cached: no warning
    assert "W0810" not in capsys.readouterr().err


def test_two_spellings_of_one_folder_share_its_cache(img: Path) -> None:
    (img / "specs").mkdir()
    here = opened('images("img")', img, cache=True)
    there = opened('images("../img")', img / "specs", cache=True)  # a spec one folder down
    assert here._cache.folder == there._cache.folder and len(_folders(img / "img")) == 1
    sized = opened('images("img", size = [4, 3])', img, cache=True)  # another reading
    assert sized._cache.folder != here._cache.folder


def test_without_posix_fallocate_the_disk_is_reserved_by_writing(
    img: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """macOS has no posix_fallocate: the cache's files are written out whole when made."""
    from dnn.runtime.data import cache

    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    path = img / "f.npy"
    np.lib.format.open_memmap(path, "w+", np.uint8, (3, 1000)).flush()
    cache._reserve(path)
    assert os.stat(path).st_blocks * 512 >= os.stat(path).st_size  # no hole left
    assert not np.load(path).any()  # and the values still zeros
    examples = opened('images("img")', img, cache=True)
    assert_same_rows(examples, in_memory('images("img")', img))
    assert examples._cache.filled() == 4
