"""scikit-learn's k-means for the command line, loaded without what clvx never calls.

clvx uses one scikit-learn estimator, ``KMeans`` (defined in ``sklearn.cluster._kmeans``).
Imported the ordinary way, it costs about 0.8 s of CPU on 2 cores and 55 MB, mostly for
code that never runs in a clvx command:

- ``sklearn.cluster``'s package module imports every clustering algorithm (DBSCAN brings
  sklearn.neighbors, spectral clustering sklearn.manifold), and ``sklearn.metrics``' (the
  k-means needs only its pairwise distances) every metric, the ranking ones scipy.stats;
- ``sklearn.utils.fixes`` imports scipy.stats (for ``scipy.stats.mode``, which only other
  estimators call) and pandas whenever it is installed (for data-frame helpers).

When ``lean`` is set (the command line sets it; its process is clvx's own), :func:`load`
imports ``sklearn.cluster._kmeans`` with stand-ins for those two package modules, with
pandas hidden, and with scipy.stats deferred: a stand-in module that loads the real one
on its first attribute read, so scikit-learn's code that does use scipy.stats still
works. Right after, the stand-ins leave ``sys.modules``: a later ``import
sklearn.cluster``, ``import scipy.stats`` or ``import pandas`` (``--engine lifetimes``
needs pandas) loads the real module as usual. About 0.2 s of CPU and 24 MB then.
A Python user's process is left as it is: there the flag is off and :func:`load` imports
``sklearn.cluster``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

lean = False

KMEANS_MODULE = "sklearn.cluster._kmeans"
PACKAGES_SKIPPED = ("sklearn.cluster", "sklearn.metrics")  # package modules that import every algorithm / metric
DEFERRED = ("scipy.stats",)


class _Deferred(types.ModuleType):
    """Stands in for a module not loaded yet: the first attribute read loads the real module and answers from it."""

    def __getattr__(self, name: str) -> Any:
        real = sys.modules.get(self.__name__)
        if real is None or real is self:
            sys.modules.pop(self.__name__, None)
            real = importlib.import_module(self.__name__)
        return getattr(real, name)


def _package_without_init(name: str) -> types.ModuleType:
    """A package module whose submodules can be imported without running the package's ``__init__``."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(f"No package named {name!r}", name=name)
    module = types.ModuleType(name)
    module.__path__ = list(spec.submodule_search_locations)
    module.__spec__ = spec
    return module


def load() -> None:
    """Import scikit-learn's k-means (see the module docstring for what ``lean`` leaves out)."""
    if KMEANS_MODULE in sys.modules:
        return
    if not lean:
        importlib.import_module("sklearn.cluster")
        return
    stand_ins: dict[str, types.ModuleType | None] = {}
    if "pandas" not in sys.modules and "sklearn" not in sys.modules:
        # With None in sys.modules, `import pandas` raises ImportError, as if pandas were not installed.
        stand_ins["pandas"] = None
    importlib.import_module("scipy")
    stand_ins.update({name: _Deferred(name) for name in DEFERRED if name not in sys.modules})
    sys.modules.update(stand_ins)  # type: ignore[arg-type]
    try:
        importlib.import_module("sklearn")
        packages = {name: _package_without_init(name) for name in PACKAGES_SKIPPED if name not in sys.modules}
        stand_ins.update(packages)
        sys.modules.update(packages)
        importlib.import_module(KMEANS_MODULE)
    finally:
        for name, module in stand_ins.items():
            if name in sys.modules and sys.modules[name] is module:
                del sys.modules[name]


def kmeans_class() -> type:
    """scikit-learn's ``KMeans``, loaded by :func:`load`."""
    load()
    return sys.modules[KMEANS_MODULE].KMeans
