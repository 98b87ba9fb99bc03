"""scikit-learn for the command line, loaded without pandas.

scikit-learn imports pandas whenever it is installed (``sklearn.utils.fixes``, for
data-frame helpers clvx never calls): on 2 cores that is a third of scikit-learn's
import time and 60 MB of resident memory in a command that clusters a numpy array.
When ``hide_pandas`` is set (the command line sets it; its process is clvx's own) and
pandas is not loaded yet, pandas is hidden while scikit-learn loads and visible again
right after, so lifetimes (the small-data engine) still imports it when it needs it.
A Python user's process is left as it is: there the flag is off.
"""

from __future__ import annotations

import importlib
import sys

hide_pandas = False


def load(module: str = "sklearn.cluster") -> None:
    """Import ``module`` of scikit-learn (see the module docstring for pandas)."""
    if module in sys.modules:
        return
    if not hide_pandas or "pandas" in sys.modules or "sklearn" in sys.modules:
        importlib.import_module(module)
        return
    # With None in sys.modules, `import pandas` raises ImportError, as if pandas were not installed.
    sys.modules["pandas"] = None  # type: ignore[assignment]
    try:
        importlib.import_module(module)
    finally:
        del sys.modules["pandas"]
