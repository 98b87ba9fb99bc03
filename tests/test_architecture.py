"""The layers hold in the code, not only in the docs: imports point one way, the core only computes.

    cli.py -> present/ -> clvx/ (the Python API) -> segments/ -> clv/

A package may import what lies to its right, never to its left; the core (clv/, segments/)
and the API import no presentation or command-line library. Checked by reading every
import statement, including those inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("cli", "present", "clvx", "segments", "clv")  # each may import only those after it
PRESENTATION_LIBRARIES = ("rich", "typer", "click", "matplotlib", "xlsxwriter")
# What may import which presentation library (the CLI its framework, presentation its renderers).
ALLOWED_LIBRARIES = {"cli": PRESENTATION_LIBRARIES, "present": ("rich", "matplotlib", "xlsxwriter")}


def modules(layer: str) -> list[Path]:
    return [ROOT / "cli.py"] if layer == "cli" else sorted((ROOT / layer).rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module name imported by ``path`` (absolute imports), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(layer: str) -> list[str]:
    allowed_layers = set(LAYERS[LAYERS.index(layer) + 1:]) | {layer}
    bad = []
    for path in modules(layer):
        for line, name in imports(path):
            top = name.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line} imports {name}"
            if top in LAYERS and top not in allowed_layers:
                bad.append(where)
            if top in PRESENTATION_LIBRARIES and top not in ALLOWED_LIBRARIES.get(layer, ()):
                bad.append(where)
    return bad


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_one_way(layer: str) -> None:
    assert violations(layer) == []


def test_the_contract_catches_a_wrong_arrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: a core module importing presentation is reported."""
    fake = tmp_path / "clv"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from present.output import Reporter\n    import rich\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert violations("clv") == ["clv/bad.py:2 imports present.output", "clv/bad.py:3 imports rich"]


@pytest.mark.parametrize("layer", ["clv", "segments", "clvx"])
def test_the_core_and_the_api_neither_print_nor_write_files(layer: str) -> None:
    """Printing and writing are presentation's: the core returns frames and dataclasses."""
    writers = {"print", "write_csv", "write_parquet", "write_json", "write_excel", "write_text", "write_bytes", "to_csv"}
    bad = []
    for path in modules(layer):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                mode = next((a.value for a in node.args[1:2] if isinstance(a, ast.Constant)), None)
                if name in writers or (name == "open" and isinstance(mode, str) and set(mode) & set("wax+")):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}")
    assert bad == []


def test_the_wheel_ships_every_layer():
    """An installed clvx needs every package the layers name; a missing one fails only after install."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = config["tool"]["hatch"]["build"]["targets"]["wheel"]["only-include"]
    assert sorted(shipped) == sorted(["cli.py" if layer == "cli" else layer for layer in LAYERS])


LOADED = ("import atexit, sys\n"
          "def loaded():\n"
          "    heavy = ('scipy.special', 'scipy.optimize', 'sqlglot', 'lifetimes', 'sklearn', 'pandas', 'xlsxwriter', 'matplotlib')\n"
          "    print('loaded:', *(m for m in heavy if m in sys.modules and type(sys.modules[m]).__name__ != '_LazyModule'), file=sys.stderr)\n"
          "atexit.register(loaded)\n"
          "import cli\n"
          "sys.argv = ['clvx', *sys.argv[1:]]\n"
          "cli.main()\n")


@pytest.mark.parametrize(("args", "expected"), [
    (["rules", "-o", "{out}/rules.csv", "-q"], ""),  # counting pairs: no model, no SQL, no clustering
    (["rfm", "-o", "{out}/rfm.csv", "-q"], ""),
    (["sql", "rfm"], "sqlglot"),  # a control: writing SQL loads sqlglot, and the check sees it
    # The default engine fits a small log too: lifetimes and pandas load only with --engine lifetimes.
    (["fit", "-q"], "scipy.special scipy.optimize"),
    (["segment", "-o", "{out}/segments.csv", "-q"], "scipy.special scipy.optimize sklearn"),
    (["fit", "--engine", "lifetimes", "-q"], "scipy.special scipy.optimize lifetimes pandas"),
])
def test_a_command_loads_only_the_libraries_it_uses(tmp_path: Path, args: list[str], expected: str) -> None:
    done = subprocess.run([sys.executable, "-c", LOADED, *(a.format(out=tmp_path) for a in args)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert [line for line in done.stderr.splitlines() if line.startswith("loaded:")] == [f"loaded: {expected}".strip()]


def test_ordered_map_gives_loop_order_on_any_thread_count():
    """Blocks finish out of order on threads; the results come back in the order given, and each sees the caller's thread count."""
    import time

    from clv import threads

    def slow_first(i: int) -> tuple[int, int]:
        time.sleep(0.02 if i == 0 else 0.0)
        return i, threads.resolve()

    for n in (1, 2, 3):
        with threads.use(n):
            assert list(threads.ordered_map(slow_first, range(7))) == [(i, n) for i in range(7)]
