"""Time each stage of `clvx report` in one process and print JSON: the analysis steps, the rules and
bundles, then each report file, and inside the workbook each sheet's cells, its column widths and the
closing of the workbook (xlsxwriter assembling and zipping the XML).

    python bench/report_stages.py log.parquet [--out DIR] [--save data.pickle | --load data.pickle]

Each stage: wall and CPU seconds (user + sys, every thread of the process). With --save, the
report's data is pickled after the analysis; with --load, the analysis is skipped and only the
files are written, so the presentation can be timed again in seconds rather than minutes.
"""

import contextlib
import json
import os
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clv import threads  # noqa: E402

os.environ.update(threads.environment())  # as the command line does before polars and scikit-learn load

import xlsxwriter  # noqa: E402

import clvx  # noqa: E402
from present import report  # noqa: E402
from segments import _sklearn, pipeline  # noqa: E402

_sklearn.lean = True  # as in the command line's process

stages: dict[str, dict[str, float]] = {}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def step(name: str, total: float | None = None):
    start, cpu_before = time.perf_counter(), cpu_seconds()
    yield
    took = stages.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
    took["wall_s"] += round(time.perf_counter() - start, 3)
    took["cpu_s"] += round(cpu_seconds() - cpu_before, 3)


def timed(owner, attribute: str, name) -> None:
    """Wrap ``owner.attribute`` so each call is a stage; ``name(*args)`` names it."""
    inner = getattr(owner, attribute)

    def wrapper(*args, **kwargs):
        with step(name(*args, **kwargs)):
            return inner(*args, **kwargs)

    setattr(owner, attribute, wrapper)


class Timing(clvx.Silent):
    def step(self, description: str, total: float | None = None):
        return step(description)


args = sys.argv[1:]
out = Path(args[args.index("--out") + 1]) if "--out" in args else Path(tempfile.mkdtemp(prefix="report-stages-"))
out.mkdir(parents=True, exist_ok=True)
# Parts of the analysis timed on their own, inside or outside its progress steps.
timed(pipeline, "segment_ranking", lambda *a, **k: "Segment ranking (segment_ranking)")
timed(pipeline, "ranking_timing", lambda *a, **k: "Ranking timing (ranking_timing)")
timed(clvx, "resolve_model", lambda *a, **k: "Model choice (resolve_model)")
timed(clvx, "data_notices", lambda *a, **k: "Notices (data_notices)")
timed(pipeline, "crosssell_rules", lambda *a, **k: "Rules (crosssell_rules)")
timed(pipeline, "crosssell_bundles", lambda *a, **k: "Bundles (crosssell_bundles)")
timed(report, "customer_scores", lambda *a, **k: "xlsx: customer_scores")
timed(report, "_xlsx_table", lambda wb, name, *a, **k: f"xlsx sheet: {name}")
timed(xlsxwriter.worksheet.Worksheet, "autofit", lambda ws, *a, **k: "xlsx: autofit (all sheets)")
timed(xlsxwriter.Workbook, "close", lambda *a, **k: "xlsx: close (assemble and zip the XML)")

with step("Whole run"):
    if "--load" in args:
        with open(args[args.index("--load") + 1], "rb") as fh:
            data = pickle.load(fh)
    else:
        with step("Analysis (clvx.report)"):
            data = clvx.report(clvx.Source(input=args[0]), listener=Timing()).data
        if "--save" in args:
            with open(args[args.index("--save") + 1], "wb") as fh:
                pickle.dump(data, fh)
    for suffix in ("html", "xlsx", "md"):
        with step(f"Writing r.{suffix}"):
            report.write_report(data, out / f"r.{suffix}")
print(json.dumps(stages, indent=1))
