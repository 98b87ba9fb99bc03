"""The exceptions clvx raises, and how their messages name the options that fix them.

Core code raises these with a message that names the value, the rule and what to
do; only the command line turns them into an ``Error: ...`` line and an exit code
(``cli.py`` maps each class to its code).

A message (or a note) that tells the user which option to set names it with
:func:`option`, never as a command-line flag: the command line shows it as its flag
(``--date-format '%d/%m/%Y'``), and ``str()`` of the error, what a Python user reads,
shows the setting (``columns.date_format='%d/%m/%Y'``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

_MARK = "\x1f"  # a unit separator: never in a message's own text
_OPTION = re.compile(f"{_MARK}(\\[.*?\\]){_MARK}")

# Where each option lives in the Python API (clvx.Source and its parts); others are
# keyword arguments of the analysis functions, under the same name.
SETTING_PATHS = {
    **{f"{role}_col": f"columns.{role}" for role in ("customer", "date", "amount", "price", "quantity", "order", "product", "category")},
    "date_format": "columns.date_format",
    "as_of": "as_of",
    **{name: f"read.{name}" for name in ("encoding", "decimal_comma", "timezone", "keep_placeholder_ids", "keep_outlying_dates")},
    "interval": "clv.interval",
}


def option(name: str, value: object = None) -> str:
    """The option ``name`` (its Python name, e.g. ``date_format``), with a value to suggest, as a message names it."""
    shown = value if value is None or isinstance(value, bool) else str(value)
    return f"{_MARK}{json.dumps([name, shown])}{_MARK}"


def render_options(text: str, form: Callable[[str, object], str]) -> str:
    """``text`` with each option named by :func:`option` written by ``form(name, value)``."""
    return _OPTION.sub(lambda m: form(*json.loads(m.group(1))), text)


def as_setting(name: str, value: object) -> str:
    """An option as a Python user sets it: ``columns.date_format='%d/%m/%Y'``."""
    path = SETTING_PATHS.get(name, name)
    return path if value is None else f"{path}={value!r}"


def readable(text: str) -> str:
    """A message or note as a Python user reads it (options as settings)."""
    return render_options(text, as_setting)


class ClvxError(Exception):
    """Base class for every error clvx reports to the user."""

    def __str__(self) -> str:
        return readable(super().__str__())

    @property
    def marked(self) -> str:
        """The message with its options still marked, for a front end to name them its own way."""
        return super().__str__()


class InputError(ClvxError):
    """The input (file, column, value or option) is malformed; the command line exits with 2."""


class ModelError(ClvxError):
    """A model cannot be fitted or used on this data; the command line exits with 1."""


class NotFittedError(ModelError, AttributeError):
    """An estimator's learned state was read before ``fit``.

    Also an AttributeError, as in scikit-learn, so ``hasattr(est, "params_")`` stays False.
    """
