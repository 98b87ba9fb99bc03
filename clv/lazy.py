"""Modules imported on first use, so a command that never needs one does not pay for loading it.

``special = lazy_module("scipy.special")`` binds a module object at once and runs the
module's code on the first attribute read (``special.gammaln``): `clvx rules`, which fits
no model, never loads scipy.special (a fifth of a second), nor `clvx segment` sqlglot.
This is the recipe of the Python documentation (``importlib.util.LazyLoader``).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """The module ``name``, loaded when one of its attributes is first read (at once when it already is)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module
