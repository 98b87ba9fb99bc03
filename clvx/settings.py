"""Settings files for the command line: ``clvx.toml``, or ``pyproject.toml`` with ``[tool.clvx]``.

Keys are the command-line options without their dashes (``customer-col = "CustomerID"``).
Top-level keys apply to every command that has the option; a table named after a command
(``[segment]``) applies to that command only; ``input`` names the log. Flags given on the
command line win.

A setting is checked by the very rules of its flag: the same type (a whole number is not
``1.5``, a number is not ``true``), the same range (``top-k = 0`` is refused as
``--top-k 0`` is) and the same choices. Nothing here imports a data library.
"""

from __future__ import annotations

import difflib
import tomllib
import typing
from collections.abc import Collection, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from clv.errors import InputError


def read(path: Path) -> dict[str, Any]:
    """The settings table of a TOML file (``[tool.clvx]`` for a pyproject.toml)."""
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from exc
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("clvx")
        if table is None:
            raise InputError(f"{path} has no [tool.clvx] table")
        data = table
    return data


def for_command(data: Mapping[str, Any], command: str, *, commands: Collection[str], options: Collection[str],
                source: str) -> dict[str, Any]:
    """The settings that apply to ``command``: top-level keys, then its own table.

    Unknown tables and keys are refused with the nearest valid name. Keys come back in
    Python form (``customer_col``).
    """
    settings = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for table, values in data.items():
        if not isinstance(values, dict):
            continue
        if table not in commands:
            near = difflib.get_close_matches(table, sorted(commands), n=1)
            raise InputError(f"{source}: [{table}] is not a clvx command" + (f"; did you mean [{near[0]}]?" if near else ""))
        if table == command:
            settings.update(values)
    out = {}
    for key, value in settings.items():
        name = key.replace("-", "_")
        if name not in options:
            near = difflib.get_close_matches(key, sorted(n.replace("_", "-") for n in options), n=1)
            raise InputError(f"{source}: '{key}' is not a clvx option" + (f"; did you mean '{near[0]}'?" if near else ""))
        out[name] = value
    return out


def convert(param: Any, value: Any, ctx: Any, source: str, kind: Any) -> Any:
    """``value`` from a settings file, checked and converted by the command-line parameter of its flag.

    ``kind`` is the option's Python type (``int``, ``float``, ``bool``, ``str``, ``Path``, an
    Enum, or ``list[...]`` of one of them for a repeatable flag).
    """
    key = (param.name or "").replace("_", "-")
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        values = value if isinstance(value, list) else [value]
        for v in values:
            _check_type(v, item, param, source, key)
    else:
        if isinstance(value, list):
            raise InputError(f"{source}: setting '{key}' = {value!r} should be a single value, not a list")
        _check_type(value, kind, param, source, key)
    try:
        return param.process_value(ctx, value)
    except Exception as exc:  # the parameter's own range or choice check
        raise InputError(f"{source}: setting '{key}' = {_show(value)} should be {_expected(kind, param)}") from exc


def _check_type(value: Any, kind: Any, param: Any, source: str, key: str) -> None:
    # TOML values have types, and the command line would coerce them: a flag never takes
    # 1.5 for a whole number nor true for a number, so neither does its setting.
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: number,
        bool: isinstance(value, bool),
    }.get(kind, isinstance(value, str) or (number and kind is str))
    if not ok:
        raise InputError(f"{source}: setting '{key}' = {_show(value)} should be {_expected(kind, param)}")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _expected(kind: Any, param: Any) -> str:
    if typing.get_origin(kind) is list:
        (kind,) = typing.get_args(kind)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return "one of " + ", ".join(str(m.value) for m in kind)
    if kind is int:
        return "a whole number" + _range(param)
    if kind is float:
        return "a number" + _range(param)
    if kind is bool:
        return "true or false"
    return "text"


def _range(param: Any) -> str:
    lo, hi = getattr(param, "min", None), getattr(param, "max", None)
    if lo is not None and hi is not None:
        return f" from {lo:,} to {hi:,}"
    if lo is not None:
        return f" >= {lo:,}"
    if hi is not None:
        return f" <= {hi:,}"
    return ""
