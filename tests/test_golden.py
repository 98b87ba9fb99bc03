"""Every command's files on the bundled sample, byte for byte, against stored digests.

A change of output must be deliberate: when one is, refresh the digests with
``python tests/test_golden.py`` and say why in the commit. Digests (not the files) are
stored, since the assignments and targets files run to megabytes.

The digest is of the text with every decimal number rounded to ``SIGNIFICANT`` digits and
the report's charts left out: numpy's exp and log (and BLAS) take other code paths on CPUs
with AVX-512 than without and round the last bits differently, which moves a fitted
parameter by 1e-14, a covariance from the numerical Hessian by 1e-9, and a customer whose
CLV sits on a histogram bin's edge into the next bin; a digest of the raw bytes would tell
CPUs apart rather than changes of clvx. On one machine the files themselves are
byte-identical run to run (tests/test_cli.py and tests/test_report.py hold that, charts
included; tests/test_report.py checks the charts are drawn).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGESTS = Path(__file__).parent / "golden" / "sample_outputs.json"
SIGNIFICANT = 6
DECIMAL = re.compile(rb"-?\d+\.\d+(?:[eE][-+]?\d+)?|-?\d+[eE][-+]?\d+")
CHART = re.compile(rb"<svg\b.*?</svg>", re.S)


def normalised(data: bytes) -> bytes:
    """``data`` with each chart (inline SVG) left out and each decimal number rounded to ``SIGNIFICANT``
    significant digits (integers untouched)."""
    return DECIMAL.sub(lambda m: f"{float(m.group()):.{SIGNIFICANT}g}".encode(), CHART.sub(b"<svg/>", data))

# (name, arguments): each writes the named files into the working folder.
RUNS: list[tuple[str, list[str]]] = [
    ("rfm", ["rfm", "-q", "-o", "rfm.csv"]),
    ("fit", ["fit", "-q", "-f", "json", "-o", "fit.json", "--save", "model.json"]),
    ("predict", ["predict", "-q", "-o", "predict.csv"]),
    ("predict-saved", ["predict", "-q", "--saved-model", "model.json", "-o", "predict-saved.csv"]),
    ("predict-interval", ["predict", "-q", "--interval", "0.9", "-o", "predict-interval.csv"]),
    ("segment", ["segment", "-q", "-o", "segment.json", "--assignments", "assignments.csv"]),
    ("cross-sell", ["cross-sell", "-q", "-o", "cross-sell.json", "--targets", "targets.csv", "--rules", "rules.csv"]),
    ("campaign", ["cross-sell", "-q", "--as-of", "2024-06-30", "-o", "campaign-ranking.json", "--targets", "campaign-targets.csv",
                  "--control", "0.1", "--bundles", "bundles.csv"]),
    ("measure", ["measure", "-q", "campaign-targets.csv", "--start", "2024-07-01", "--cost-per-contact", "0.5", "--margin", "0.3",
                 "-o", "measure.csv"]),
    ("validate", ["validate", "-q", "--calibration-end", "2024-06-30", "-o", "validate.json"]),
    ("report", ["report", "-q", "-o", "report.html", "-o", "report.md"]),
]


def run_all(folder: Path) -> dict[str, str]:
    """Run every command in ``folder``; the sha256 of each file written, by file name."""
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    for name, args in RUNS:
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, f"{name}: {result.output}"
    return {p.name: hashlib.sha256(normalised(p.read_bytes())).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_every_command_writes_the_stored_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got = run_all(tmp_path)
    want = json.loads(DIGESTS.read_text())
    changed = sorted(name for name in want.keys() | got.keys() if want.get(name) != got.get(name))
    assert not changed, f"outputs changed: {changed}; if deliberate, run python tests/test_golden.py"


def test_digests_ignore_the_last_bits_of_a_number_but_not_a_change():
    assert normalised(b"p,0.30000000000000004,1e-3") == normalised(b"p,0.3,0.001") == b"p,0.3,0.001"
    assert normalised(b"a/(a+b) = 1.4e-11") != normalised(b"a/(a+b) = 2.7e-11")
    assert normalised(b"id 000482, 12 rows, 3.141592653") == b"id 000482, 12 rows, 3.14159"
    assert normalised(b'<p>1</p><svg width="9">\n<path d="M 0 1.5"/></svg><p>2</p>') == b"<p>1</p><svg/><p>2</p>"


if __name__ == "__main__":
    import os
    import tempfile

    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        digests = run_all(Path(folder))
    DIGESTS.write_text(json.dumps(digests, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(digests)} digests to {DIGESTS}")
