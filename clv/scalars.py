"""Python numbers from polars' scalar results.

polars types ``Series.max()``, ``.mean()``, ``.quantile()`` and ``DataFrame.item()`` as
any Python literal or None, since a column can hold anything and be empty. Where the
core knows a result is a number, these helpers say so once: a number comes back as
``float``/``int``, None (an empty or all-null column) as ``null`` when one is given, and
anything else raises ``TypeError``, as ``float(None)`` would. ``to_date`` and
``to_datetime`` do the same for ``Date`` and ``Datetime`` columns, with no ``null``:
where the core reads a date, the column is known to hold one.
"""

from __future__ import annotations

import datetime as dt
import numbers


def to_float(value: object, *, null: float | None = None) -> float:
    """``value`` (a polars scalar) as a float; None becomes ``null`` when it is given."""
    if value is None and null is not None:
        return null
    if not isinstance(value, numbers.Real):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def to_int(value: object, *, null: int | None = None) -> int:
    """``value`` (a polars scalar of an integer column) as an int; None becomes ``null`` when it is given."""
    if value is None and null is not None:
        return null
    if not isinstance(value, numbers.Integral):
        raise TypeError(f"expected a whole number, got {value!r}")
    return int(value)


def to_date(value: object) -> dt.date:
    """``value`` (a polars scalar of a ``Date`` column) as a date; a datetime is refused, not truncated."""
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise TypeError(f"expected a date, got {value!r}")
    return value


def to_datetime(value: object) -> dt.datetime:
    """``value`` (a polars scalar of a ``Datetime`` column) as a datetime."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return value
