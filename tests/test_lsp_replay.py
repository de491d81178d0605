"""A few hundred mutated and half-typed specs as edits: `dnn lsp` never crashes or hangs.

bench/lsp_bench.py replays thousands (`python bench/lsp_bench.py replay`); this is its fast
form: a short debounce and check limit, so the huge repeats it inserts are cut off quickly.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pygls  # noqa: F401 - the test extra installs it: a missing install must fail, not skip

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from lsp_bench import replay  # noqa: E402


def test_replayed_edits_never_crash_or_hang_the_server() -> None:
    args = ("--debounce-ms", "0", "--check-timeout", "0.3")
    result = asyncio.run(replay(200, seed=1, args=args))
    assert result["answered"] == 200
    assert (result["crashes"], result["hangs"], result["internal_errors"]) == (0, 0, 0)
    assert result["cut_off_E0608"] >= 1  # the huge repeats it inserts are stopped
