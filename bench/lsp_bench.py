"""`dnn lsp` under edits: latency, memory, and a replay of mutated specs (issue 20).

    python bench/lsp_bench.py latency [--layers 2000] [--edits 30]
    python bench/lsp_bench.py memory [--edits 1000]
    python bench/lsp_bench.py replay [--edits 3000] [--seed 0]

Each drives the real server (`python -m dnn.runtime.lsp`, default settings) over stdio with
pygls's client, and prints one JSON line.

- latency: a generated spec of `--layers` layers (bench/check_speed.py's), then edits that
  each change one layer line of the last version; the time from sending `didChange` to
  receiving that version's diagnostics (debounce included); then as many edits that add a
  line: Enter (a blank line), then the layer typed on it; then edits that each delete a
  layer line (`line_deleted`), paste three lines before one (`lines_pasted`), or paste them
  over two (`lines_replaced`), in the spec with distinct layer widths (`_distinct`).
  Target: 0.3 s.
- memory: `--edits` such edits, every other one adding a mistake the next one takes out;
  the server's resident memory (VmRSS) after the first 100 and after all of them. Target:
  flat.
- replay: the examples mutated as the train fuzzer mutates them (bench/mutants.py: a word, a
  number, a line), each edit that text, or it half-typed (a slice replaced by one of the
  front-end fuzzer's pieces, tests/test_roundtrip.py, or the text cut short) or, now and
  then, with a huge `repeat` (which the time limit must stop: E0608);
  after each edit a hover and a completion at a random place. Counts crashes (the server
  exits) and hangs (no answer or no diagnostics in 10 s). Target: 0 and 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as T
from pygls.lsp.client import LanguageClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_speed import deep_spec  # noqa: E402
from mutants import mutate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, "-m", "dnn.runtime.lsp"]
HANG_S = 10.0
# the front-end fuzzer's pieces (tests/test_roundtrip.py), and what half-typed text looks like
PIECES = list('{}()[]=:,.-+*/<!#"\\ \n\t_xy01') + ["model m {", "repeat", "->", " if ", "**"]
HUGE = "  repeat i in 0..1000000000 { h = dense(4 + i % 2)(in) }\n"


@dataclass
class Session:
    """A client talking to one server process."""

    client: LanguageClient
    uri: str
    version: int = 1
    published: dict[int, float] = field(default_factory=dict)  # version -> time received
    internal: int = 0  # diagnostics that report a bug in dnn (code `internal`)
    cut_off: int = 0  # checks stopped by the time limit (E0608)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pid(self) -> int:
        return int(self.client._server.pid)  # type: ignore[attr-defined]

    @property
    def alive(self) -> bool:
        return self.client._server.returncode is None  # type: ignore[attr-defined]


async def start(text: str, args: tuple[str, ...] = ()) -> Session:
    client = LanguageClient("dnn-bench", "1")
    # beside the examples, so that their imports resolve (the file itself need not exist)
    session = Session(client, (ROOT / "examples" / "edited.dnn").as_uri())

    @client.feature(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _published(ls: Any, params: T.PublishDiagnosticsParams) -> None:
        if params.version is not None and params.uri == session.uri:
            session.published[params.version] = time.perf_counter()
            session.internal += sum(d.code == "internal" for d in params.diagnostics)
            session.cut_off += any(d.code == "E0608" for d in params.diagnostics)
            session.event.set()

    await client.start_io(*SERVER, *args)
    await client.initialize_async(T.InitializeParams(capabilities=T.ClientCapabilities()))
    client.initialized(T.InitializedParams())
    item = T.TextDocumentItem(uri=session.uri, language_id="dnn", version=1, text=text)
    client.text_document_did_open(T.DidOpenTextDocumentParams(item))
    await wait_for(session, 1)
    return session


async def wait_for(session: Session, version: int, limit: float = HANG_S) -> float | None:
    """When `version`'s diagnostics arrived, or None after `limit` seconds."""
    deadline = time.perf_counter() + limit
    while version not in session.published:
        left = deadline - time.perf_counter()
        if left <= 0 or not session.alive:
            return None
        session.event.clear()
        try:
            await asyncio.wait_for(session.event.wait(), min(left, 0.5))
        except TimeoutError:
            pass
    return session.published[version]


def reopen(session: Session, folder: Path, text: str) -> None:
    """Close the document and open `text` as `folder`/edited.dnn (so its imports resolve),
    numbering on from the last version."""
    uri = (folder / "edited.dnn").as_uri()
    if uri == session.uri:
        return
    session.client.text_document_did_close(
        T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(uri=session.uri))
    )
    session.uri, session.version = uri, session.version + 1
    item = T.TextDocumentItem(uri=uri, language_id="dnn", version=session.version, text=text)
    session.client.text_document_did_open(T.DidOpenTextDocumentParams(item))


def edit(session: Session, text: str) -> float:
    """Send the whole new text as the next version; the time it was sent."""
    session.version += 1
    ident = T.VersionedTextDocumentIdentifier(uri=session.uri, version=session.version)
    change = T.TextDocumentContentChangeWholeDocument(text=text)
    sent = time.perf_counter()
    session.client.text_document_did_change(T.DidChangeTextDocumentParams(ident, [change]))
    return sent


async def stop(session: Session) -> None:
    if session.alive:
        await session.client.shutdown_async(None)
        session.client.exit(None)
    await session.client.stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ------------------------------------------------------------------ latency and memory


def _layer_edits(text: str, n: int, broken_every: int = 0) -> list[str]:
    """`n` successive versions of `text`, each one `dense(width)` line changed from the last
    (as typing changes one line at a time); with `broken_every`, every so often an edit adds
    an unknown argument that the next edit takes out again."""
    lines = text.split("\n")
    rows = [i for i, line in enumerate(lines) if line.strip() == "dense(width) -> relu"]
    out, broken = [], None
    for k in range(n):
        if broken is not None:
            lines[broken], broken = "  dense(width) -> relu", None
        else:
            i = rows[(k * 7919) % len(rows)]
            if broken_every and k % broken_every == broken_every - 1:
                lines[i], broken = "  dense(width, oops = 1) -> relu", i
            else:
                lines[i] = f"  dense({k % 50 + 8}) -> relu"
        out.append("\n".join(lines))
    return out


def _line_inserts(text: str, n: int) -> list[str]:
    """`n` successive versions of `text` that add a layer line as typing does: Enter (a
    blank line), then the line typed on it; alternately."""
    lines = text.split("\n")
    rows = [i for i, line in enumerate(lines) if line.strip() == "dense(width) -> relu"]
    out = []
    for k in range(n):
        at = rows[(k // 2 * 7919) % len(rows)] + 1 + k // 2  # the earlier inserts move rows
        if k % 2 == 0:
            lines.insert(at, "  ")
        else:
            lines[at] = "  relu"
        out.append("\n".join(lines))
    return out


def _distinct(text: str) -> str:
    """`text` with its `dense(width) -> relu` lines given widths 8, 9, ..., 57, 8, ...: a line
    deleted from a run of equal lines is, as a text, the last one deleted, so on the spec as
    generated a deletion or a paste would land at the end of a run (less to move after it)."""
    lines = text.split("\n")
    rows = [i for i, line in enumerate(lines) if line.strip() == "dense(width) -> relu"]
    for k, i in enumerate(rows):
        lines[i] = f"  dense({8 + k % 50}) -> relu"
    return "\n".join(lines)


def _layer_rows(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if re.fullmatch(r"  dense\(\d+\) -> relu", line)]


def _line_deletes(text: str, n: int) -> list[str]:
    """`n` successive versions of `text`, each with one more layer line deleted."""
    lines = text.split("\n")
    out = []
    for k in range(n):
        rows = _layer_rows(lines)
        del lines[rows[(k * 7919) % len(rows)]]
        out.append("\n".join(lines))
    return out


PASTED = ["  dense(width) -> relu", "  res(width)", "  dense(32) -> tanh"]


def _pastes(text: str, n: int, replaced: int = 0) -> list[str]:
    """`n` successive versions of `text`, each with the three `PASTED` lines pasted in place
    of `replaced` layer lines (0: inserted before a layer line)."""
    lines = text.split("\n")
    out = []
    for k in range(n):
        rows = _layer_rows(lines)
        at = rows[(k * 7919) % (len(rows) - replaced)]
        lines[at : at + replaced] = PASTED
        out.append("\n".join(lines))
    return out


async def _times(session: Session, versions: list[str]) -> dict[str, float]:
    times = []
    for new in versions:
        sent = edit(session, new)
        got = await wait_for(session, session.version)
        assert got is not None, "no diagnostics"
        times.append(got - sent)
    return {
        "median_s": round(statistics.median(times), 3),
        "p90_s": round(sorted(times)[int(0.9 * len(times))], 3),
        "max_s": round(max(times), 3),
    }


async def latency(layers: int, edits: int) -> dict[str, Any]:
    """Edits of one line, insertions of a line, deletions and pastes (each reparses only the
    lines between the statements around it)."""
    text = deep_spec(layers)
    session = await start(text)
    changed = await _times(session, _layer_edits(text, edits))
    # from the spec as first opened: every version differs from the last by one new line
    edit(session, text)
    assert await wait_for(session, session.version) is not None
    inserted = await _times(session, _line_inserts(text, edits))
    spread = _distinct(text)
    kinds = {
        "line_deleted": _line_deletes(spread, edits),
        "lines_pasted": _pastes(spread, edits),
        "lines_replaced": _pastes(spread, edits, replaced=2),
    }
    result: dict[str, Any] = {"line_changed": changed, "line_inserted": inserted}
    for kind, versions in kinds.items():
        edit(session, spread)
        assert await wait_for(session, session.version) is not None
        result[kind] = await _times(session, versions)
    await stop(session)
    return {"bench": "lsp_latency", "layers": layers, "edits": edits, **result}


async def memory(layers: int, edits: int) -> dict[str, Any]:
    text = deep_spec(layers)
    session = await start(text)
    samples = {}
    for k, new in enumerate(_layer_edits(text, edits, broken_every=2), 1):
        edit(session, new)
        assert await wait_for(session, session.version) is not None, "no diagnostics"
        if k == 100 or k % 250 == 0 or k == edits:
            samples[k] = rss_kib(session.pid)
    await stop(session)
    first, last = samples[100], samples[edits]
    return {
        "bench": "lsp_memory",
        "layers": layers,
        "edits": edits,
        "rss_kib": samples,
        "growth_after_100": round(last / first - 1, 4),
    }


# ------------------------------------------------------------------ replay


def damage(text: str, rng: random.Random) -> str:
    """Half-typed text: a slice replaced by a piece, or the text cut short."""
    if rng.random() < 0.25:
        return text[: rng.randrange(len(text) + 1)]
    i = rng.randrange(len(text) + 1)
    j = min(len(text), i + rng.randrange(7))
    return text[:i] + rng.choice(["", *PIECES]) + text[j:]


def replay_texts(n: int, seed: int) -> list[tuple[Path, str]]:
    """`n` edits (the example's folder, the text) in runs of 20 from an example: the run's
    text takes the train fuzzer's mutations one after another, and an edit is that text, or
    it half-typed (one `damage`), or now and then it as written with a huge `repeat` added
    to its model."""
    rng = random.Random(seed)
    examples = sorted(ROOT.glob("examples/**/*.dnn"))
    out: list[tuple[Path, str]] = []
    base, example = "", examples[0]
    while len(out) < n:
        if len(out) % 20 == 0:
            example = rng.choice(examples)
            base = example.read_text()
        roll = rng.random()
        if roll < 0.45:
            base = mutate(base, rng)
            text = base
        elif roll < 0.95:
            text = damage(base, rng)
        else:  # into the example as written, so nothing before it is poisoned
            fresh = example.read_text()
            model = re.search(r"^model ", fresh, re.M)
            at = fresh.find("\n}", model.start()) if model else -1
            text = fresh[:at] + "\n" + HUGE.rstrip("\n") + fresh[at:] if at > 0 else fresh
        out.append((example.parent, text))
    return out


async def replay(n: int, seed: int, args: tuple[str, ...] = ()) -> dict[str, Any]:
    texts = replay_texts(n, seed)
    rng = random.Random(seed + 1)
    session = await start(texts[0][1], args)
    crashes = hangs = answered = internal = cut_off = 0
    worst = 0.0
    for folder, text in texts:
        if not session.alive:
            crashes += 1
            internal += session.internal
            cut_off += session.cut_off
            await session.client.stop()
            session = await start(text, args)
            continue
        reopen(session, folder, text)
        sent = edit(session, text)
        lines = text.split("\n")
        line = rng.randrange(len(lines))
        pos = T.Position(line, rng.randrange(len(lines[line]) + 1))
        doc = T.TextDocumentIdentifier(uri=session.uri)
        try:
            await asyncio.wait_for(
                session.client.text_document_hover_async(T.HoverParams(doc, pos)), HANG_S
            )
            await asyncio.wait_for(
                session.client.text_document_completion_async(T.CompletionParams(doc, pos)),
                HANG_S,
            )
            answered += 1
        except TimeoutError:
            hangs += 1
            continue
        got = await wait_for(session, session.version)
        if got is None:
            hangs += session.alive
            continue
        worst = max(worst, got - sent)
    alive = session.alive
    await stop(session)
    return {
        "bench": "lsp_replay",
        "edits": n,
        "seed": seed,
        "answered": answered,
        "crashes": crashes + (not alive),
        "hangs": hangs,
        "internal_errors": internal + session.internal,
        "cut_off_E0608": cut_off + session.cut_off,
        "huge_repeats": sum(HUGE.strip() in t for _, t in texts),
        "slowest_diagnostics_s": round(worst, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("latency", "memory", "replay"))
    p.add_argument("--layers", type=int, default=2000)
    p.add_argument("--edits", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--server-args", default="", help="e.g. '--check-timeout 0.5'")
    a = p.parse_args()
    if a.what == "latency":
        result = asyncio.run(latency(a.layers, a.edits or 30))
    elif a.what == "memory":
        result = asyncio.run(memory(a.layers, a.edits or 1000))
    else:
        result = asyncio.run(replay(a.edits or 3000, a.seed, tuple(a.server_args.split())))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
