"""README.md's examples are the real output of the commands they show.

Each ```text block starting with ``$ clvx ...`` is run on the bundled sample with COLUMNS
fixed (docs/update_readme.py) and compared with the block. When one fails because the
output changed on purpose, refresh them all with ``python docs/update_readme.py``.

Cost, measured on a busy 2-core machine: the cheap examples (help, version, rfm, fit) take
about 13 s together; the ones that run the pipeline on the sample (segment, predict,
validate, cross-sell; marked slow) about 80 s more, and the two on the UCI retail log
(slow, skipped without it) about 70 s more. Each command runs once per session.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.conftest import requires_retail

ROOT = Path(__file__).resolve().parents[1]


def _load_updater():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "docs" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["update_readme"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


readme = _load_updater()
EXAMPLES = readme.parse(readme.README.read_text())


def _param(example):
    marks = []
    if not example.cheap:
        marks.append(pytest.mark.slow)
    if example.needs_retail:
        marks.append(requires_retail)
    return pytest.param(example, id=example.name[:70], marks=marks)


def test_the_readme_has_examples_of_every_kind() -> None:
    names = [e.name for e in EXAMPLES]
    for command in ("clvx --help", "clvx segment", "clvx rfm", "clvx fit", "clvx predict", "clvx validate", "clvx cross-sell"):
        assert any(n.startswith(command) for n in names), command


@pytest.mark.parametrize("example", [_param(e) for e in EXAMPLES])
def test_readme_example_is_the_real_output(example) -> None:
    real = readme.run(example)
    for command, shown, output in zip(example.commands, example.shown, real, strict=True):
        assert output == shown, (
            f"README.md is stale for `{readme._shell(command)}`; refresh it with: python docs/update_readme.py"
        )


def test_every_command_in_clvx_help_has_a_readme_section() -> None:
    (example,) = [e for e in EXAMPLES if e.name == "clvx --help"]
    listed = example.shown[0].split("Commands:\n", 1)[1].split("\n")
    commands = [line.split()[0] for line in listed if line.strip()]
    text = readme.README.read_text()
    assert len(commands) >= 8
    for command in commands:
        assert f"### `clvx {command}`" in text, command


# --------------------------------------------------------------------------- the updater itself


def test_parse_reads_commands_continuations_outputs_setup_and_width() -> None:
    text = (
        "Intro\n\n<!-- readme-setup\nprintf 'x' > a.csv\n-->\n```text columns=80\n"
        "$ clvx rfm a.csv \\\n    --period week\nline 1   \nline 2\n\n\n$ head -1 a.csv\nx\n```\n\n"
        "```text\nnot an example\n```\n"
    )
    (example,) = readme.parse(text)
    assert example.columns == 80
    assert example.setup == "printf 'x' > a.csv\n"
    assert example.commands == ("$ clvx rfm a.csv \\\n    --period week", "$ head -1 a.csv")
    assert example.shown == ("line 1\nline 2", "x")
    assert example.name == "clvx rfm a.csv --period week && head -1 a.csv"
    assert not example.cheap or example.name.startswith("clvx rfm")


def test_normalise_drops_the_checkout_path_step_times_and_trailing_spaces() -> None:
    raw = (
        f"No INPUT given: using the bundled sample ({readme.ROOT}/data/sample/transactions.parquet).\n"
        "Computing RFM ... 0.3 s\nFitting BG/NBD ... failed after 12.0 s\ntable   \n\n"
    )
    assert readme.normalise(raw) == "No INPUT given: using the bundled sample (data/sample/transactions.parquet).\ntable"


def test_update_rewrites_a_stale_block_and_check_reports_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    page = tmp_path / "README.md"
    page.write_text("# x\n\n```text\n$ clvx --version\nclvx 0.0.0\n```\n")
    assert readme.main(["--readme", str(page), "--check"]) == 1
    assert "clvx 0.0.0" in capsys.readouterr().out
    assert readme.main(["--readme", str(page)]) == 0
    from clv import __version__

    assert page.read_text() == f"# x\n\n```text\n$ clvx --version\nclvx {__version__}\n```\n"
    assert readme.main(["--readme", str(page), "--check"]) == 0
