"""The language reference and `dnn help`, generated from the registries (one source of truth).

`python -m dnn.compiler.reference > docs/reference.md` regenerates the checked-in reference;
a test fails when it is stale.
"""

from __future__ import annotations

import json
from typing import Any

from .diagnostics import CODES
from .registry import REGISTRIES
from .registry.core import REQUIRED, TRAITS, Entry, Registry, SameAs
from .values import CallVal, show


def default_text(d: Any) -> str:
    """How a default is shown in help and the reference."""
    if d is REQUIRED:
        return "required"
    if isinstance(d, SameAs):
        return f"same as {d.arg}"
    if isinstance(d, CallVal):
        return (
            f"{d.name}(" + ", ".join((f"{k} = " if k else "") + show(v) for k, v, _ in d.args) + ")"
        )
    if isinstance(d, str):
        return d
    if isinstance(d, tuple):
        return "[" + ", ".join(default_text(x) for x in d) + "]"
    if type(d).__name__ == "RecordVal":
        return "{}"
    return show(d)


def entry_dict(e: Entry) -> dict[str, Any]:
    """One entry as JSON-ready data."""
    args = {
        a.name: {
            "type": a.type.label,
            "default": default_text(a.default),
            "required": a.required,
            "doc": a.doc,
            **({"unit": a.unit} if a.unit else {}),
        }
        for a in e.args
    }
    return {"args": args, "doc": e.doc, "formula": e.formula, "aliases": list(e.aliases)}


def facts(e: Entry) -> list[str]:
    """What an entry needs and implies, as `dnn check` applies it, and its minimal use."""
    out = []
    if e.task is not None:
        out.append(
            "task: "
            + "; ".join(
                f"{width}: {task}" if task else f"{width}: refused ({why})"
                for width, task, why in (
                    ("one output unit", e.task.one, e.task.refuse_one),
                    ("several units", e.task.several, e.task.refuse_several),
                )
            )
        )
    if e.int_input:
        out.append('input: integer ids (`i32`), e.g. from `builtin("tokens")` or an npz of ints')
    if e.needs.tasks:
        out.append("fits: " + ", ".join(e.needs.tasks))
    if e.needs.input == "image":
        out.append("input: one image [height, width, channels]")
    out += [f"{trait}: {TRAITS[trait]}" for trait in sorted(e.traits)]
    if e.slots is not None:
        defaults = {a.name: a.default for a in e.args}
        out.append(f"state: {e.slots.describe(defaults)}")
    if e.example:
        out.append(f"example: {e.example}")
    return out


def help_json() -> str:
    """`dnn help --format json`: {kind: {name: {args, doc, formula, aliases}}}."""
    return json.dumps(
        {reg.title: {e.name: entry_dict(e) for e in reg} for reg in REGISTRIES.values()}, indent=2
    )


def find(name: str) -> list[tuple[Registry, Entry]]:
    """Entries named `name` (or with it as an alias), in every registry."""
    return [(reg, e) for reg in REGISTRIES.values() if (e := reg.lookup(name)) is not None]  # type: ignore[misc]


def registry_by_title(name: str) -> Registry | None:
    return next((r for r in REGISTRIES.values() if name in (r.title, r.kind)), None)


def help_index() -> str:
    """`dnn help`: every kind and its words."""
    out = ["Words of the dnn language, by kind (`dnn help NAME` for one):", ""]
    for reg in REGISTRIES.values():
        names = [e.name + (f" ({', '.join(e.aliases)})" if e.aliases else "") for e in reg]
        out.append(f"{reg.title}: " + ", ".join(names))
    return "\n".join(out)


def help_kind(reg: Registry) -> str:
    out = [f"{reg.title}: {reg.doc}", ""]
    width = max((len(e.name) for e in reg), default=0)
    out += [f"  {e.name.ljust(width)}  {e.doc}" for e in reg]
    return "\n".join(out)


def help_entry(reg: Registry, e: Entry) -> str:
    """`dnn help dense`."""
    sig = ", ".join(
        a.name if a.required else f"{a.name} = {default_text(a.default)}" for a in e.args
    )
    out = [f"{e.name}({sig})  [{reg.kind}]", "", f"  {e.doc}"]
    if e.formula:
        out += ["", f"  formula: {e.formula}"]
    if e.aliases:
        out += [f"  aliases: {', '.join(e.aliases)}"]
    if e.known_as:
        out += [f"  elsewhere: {', '.join(e.known_as)}"]
    out += [f"  {line}" for line in facts(e)]
    if e.args:
        out += ["", "  arguments:"]
        for a in e.args:
            out.append(
                f"    {a.name}: {a.type.label}, default {default_text(a.default)}"
                + (f" — {a.doc}" if a.doc else "")
            )
    return "\n".join(out)


def reference_markdown() -> str:
    """The whole language reference as Markdown."""
    out = [
        "# dnn language reference",
        "",
        "Generated from the registries by `make reference`; do not edit by hand.",
        "",
    ]
    out += [f"- [{r.title}](#{r.title})" for r in REGISTRIES.values()]
    for reg in REGISTRIES.values():
        out += ["", f"## {reg.title}", "", reg.doc, ""]
        for e in reg:
            out += _entry_markdown(e)
    return "\n".join(out) + "\n"


def errors_markdown() -> str:
    """docs/errors.md: every diagnostic code and what it means."""
    out = [
        "# dnn diagnostics",
        "",
        "Generated from `compiler/diagnostics.py` by `make reference`; do not edit by hand.",
        "",
        "Every message has the form `path:line:col: error[CODE]: message`, then the source line,",
        "a caret under the spot and, where a fix is known, a hint. `dnn check --format json`",
        "gives the same as data. Exit status: 0 clean, 1 a mistake in a spec, 2 bad usage.",
        "",
        "| code | meaning |",
        "| --- | --- |",
    ]
    out += [f"| {c} | {m} |" for c, m in CODES.items()]
    return "\n".join(out) + "\n"


def _entry_markdown(e: Entry) -> list[str]:
    out = [f"### `{e.name}`", "", e.doc + "."]
    if e.aliases:
        out += ["", "Aliases: " + ", ".join(f"`{a}`" for a in e.aliases) + "."]
    if e.known_as:
        out += ["", "Elsewhere: " + ", ".join(f"`{a}`" for a in e.known_as) + "."]
    if e.formula:
        out += ["", f"Formula: `{e.formula}`"]
    if facts(e):
        out += ["", *(f"- {line}" for line in facts(e))]
    if e.args:
        out += ["", "| argument | type | default | meaning |", "| --- | --- | --- | --- |"]
        out += [
            f"| `{a.name}` | {_cell(a.type.label)} | {_cell(default_text(a.default))} | "
            f"{_cell(a.doc)} |"
            for a in e.args
        ]
    out.append("")
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


if __name__ == "__main__":
    import sys

    print(errors_markdown() if sys.argv[1:] == ["errors"] else reference_markdown(), end="")
