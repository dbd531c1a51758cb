"""TrainConfig as command-line flags (one `--flag` per field, its help and bound from the field)
and as the docs' settings table.

`ticketserve train` and the benchmarks share the flags, so a new setting appears everywhere at
once. `python -m training.config_flags` prints the table that docs/api.md holds.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, Field, fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

from training.config import TrainConfig, expected, is_pattern_map, non_null


def add_config_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """One flag per TrainConfig field; an omitted flag leaves TrainConfig's default."""
    hints = get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        hint = hints[f.name]
        options: dict[str, Any] = {"default": None, "help": _help(f)}
        base = non_null(hint)
        if get_origin(base) is Literal:
            options["choices"] = get_args(base)
        elif base is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif get_origin(base) is list and get_args(base)[0] is str:
            options.update(type=_names, metavar="A,B,...")
        elif get_origin(base) is list:
            options.update(nargs="+", type=float, metavar="X")
        elif is_pattern_map(base):
            options.update(nargs="+", type=_pattern, metavar="NAME=REGEX")
        elif get_origin(base) is dict:
            options.update(nargs="+", type=_head_weight, metavar="HEAD=WEIGHT")
        else:
            options["type"] = base
        parser.add_argument(f"--{f.name.replace('_', '-')}", **options)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig values given on the command line."""
    values = {
        f.name: getattr(args, f.name)
        for f in fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    for name in ("head_weights", "mask_patterns"):
        if name in values:
            values[name] = dict(values[name])
    return values


def _help(f: Field[Any]) -> str:
    default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
    # A switch or a choice shows what it takes already.
    plain = isinstance(default, bool) or (default is None and f.metadata["bound"] is None)
    shown = f"default {_shown(default)}" + ("" if plain or f.name == "mode" else f"; {expected(f)}")
    # argparse formats help with %, so a literal one is doubled.
    return f"{f.metadata['help']} ({shown})".replace("%", "%%")


def markdown_table() -> str:
    """The training settings as a Markdown table: flag, API field, default, accepted values."""
    rows = [
        "| setting (API field / CLI flag) | default | accepts | what it does |",
        "|---|---|---|---|",
    ]
    for f in fields(TrainConfig):
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        flag = f"--{f.name.replace('_', '-')}"
        rows.append(
            f"| `{f.name}` / `{flag}` | `{json.dumps(default)}` | {expected(f)} "
            f"| {f.metadata['help'].replace('|', '/')} |"
        )
    return "\n".join(rows) + "\n"


def _shown(default: Any) -> str:
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, list | dict):
        return " ".join(map(str, default)) or "none"
    return str(default)


def _names(value: str) -> list[str]:
    """`queue,priority,type` as a list; the names are checked by TrainConfig."""
    return [name.strip() for name in value.split(",")]


def _pattern(value: str) -> tuple[str, str]:
    name, sep, pattern = value.partition("=")
    if not sep or not name or not pattern:
        raise argparse.ArgumentTypeError(f"expected NAME=REGEX, got {value!r}")
    return name, pattern


def _head_weight(value: str) -> tuple[str, float]:
    head, sep, weight = value.partition("=")
    try:
        if not sep or not head:
            raise ValueError
        return head, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEAD=WEIGHT, got {value!r}") from None


if __name__ == "__main__":
    print(markdown_table(), end="")
