"""TrainConfig as command-line flags (one `--flag` per field, its help and bound from the field)
and as the docs' settings table.

`ticketserve train` and the benchmarks share the flags, so a new setting appears everywhere at
once. `python -m training.config_flags` prints the table that docs/api.md holds.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Literal, get_args, get_origin

from training.config import TrainConfig, default, expected, item, kind


def add_config_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """One flag per TrainConfig field; an omitted flag leaves TrainConfig's default."""
    for name, info in TrainConfig.model_fields.items():
        options: dict[str, Any] = {"default": None, "help": _help(name)}
        base, _ = kind(info)
        if get_origin(base) is Literal:
            options["choices"] = get_args(base)
        elif base is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif get_origin(base) is list and kind(item(info))[0] is str:
            options.update(type=_names, metavar="A,B,...")
        elif get_origin(base) is list:
            options.update(nargs="+", type=float, metavar="X")
        elif get_origin(base) is dict and kind(item(info))[0] is str:
            options.update(nargs="+", type=_pattern, metavar="NAME=REGEX")
        elif get_origin(base) is dict:
            options.update(nargs="+", type=_head_weight, metavar="HEAD=WEIGHT")
        else:
            options["type"] = base
        parser.add_argument(f"--{name.replace('_', '-')}", **options)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig values given on the command line."""
    values = {
        name: getattr(args, name)
        for name in TrainConfig.model_fields
        if getattr(args, name, None) is not None
    }
    for name in ("head_weights", "mask_patterns"):
        if name in values:
            values[name] = dict(values[name])
    return values


def _help(name: str) -> str:
    info = TrainConfig.model_fields[name]
    base, _ = kind(info)
    # A switch or a choice shows what it takes already.
    plain = base is bool or get_origin(base) is Literal
    shown = f"default {_shown(default(name))}" + ("" if plain else f"; {expected(name)}")
    # argparse formats help with %, so a literal one is doubled.
    return f"{info.description} ({shown})".replace("%", "%%")


def markdown_table() -> str:
    """The training settings as a Markdown table: flag, API field, default, accepted values."""
    rows = [
        "| setting (API field / CLI flag) | default | accepts | what it does |",
        "|---|---|---|---|",
    ]
    for name, info in TrainConfig.model_fields.items():
        flag = f"--{name.replace('_', '-')}"
        rows.append(
            f"| `{name}` / `{flag}` | `{json.dumps(default(name))}` | {expected(name)} "
            f"| {(info.description or '').replace('|', '/')} |"
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
