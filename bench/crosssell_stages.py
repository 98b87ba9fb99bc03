"""Where `clvx cross-sell` spends its time: wall and CPU seconds per internal step, in one process.

    python bench/crosssell_stages.py log.parquet [clvx cross-sell options, e.g. --targets offers.csv]
    python bench/crosssell_stages.py report log.parquet -o r.html -o r.xlsx -o r.md   # clvx report instead
    python bench/crosssell_stages.py rules log.parquet -o rules.csv                    # clvx rules instead

Runs the command line in this process with a timer around each step named in STEPS
(cumulative: a step's time includes the steps it calls, e.g. ``choose_ridge`` includes its
``model_scores``), and prints one JSON line: per step, calls, wall and CPU seconds and the
largest resident memory seen while it ran (``rss_mb``, sampled every 20 ms), and the process's
peak resident memory (MB). CPU seconds are what a busy, shared machine inflates least; the
step with the largest ``rss_mb`` innermost is where the peak is.
"""

import functools
import importlib
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = {
    "clvx": ("load",),
    "segments.aggregates": ("crosssell_aggregates", "catalogue_of", "crosssell_baskets"),
    "segments.pipeline": ("build_report", "run_crosssell", "run_baskets", "crosssell_bundles", "run_segmentation", "customer_categories", "inner_calibration", "holdout_spend", "offer_timing", "timing_of_pairs", "ranking_timing", "crosssell_targets", "crosssell_rules"),
    "segments.associations": ("build_ownership", "ownership_of", "pair_counts", "pair_timing", "non_product_ids", "association_rules",
                              "find_bundles"),
    "segments.crosssell": ("build_model", "item_weights_for", "choose_ridge", "fit_calibration", "score_quantiles", "model_scores", "offer_scores",
                           "segment_ranking", "expected_buyers_by_segment", "expected_by_segment", "customer_targets", "explain_targets", "offer_relations",
                           "typical_order_values", "customer_spend_scale"),
    "segments.cluster": ("segment_customers",),
    "present.render": ("write_frame",),
    "present.report": ("html_report", "xlsx_report", "markdown_report"),
}
stats: dict[str, dict[str, float]] = {}
running: dict[str, int] = {}  # steps under way (a step may call itself through another)
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE_MB


def sample_rss(every_s: float = 0.02) -> None:
    """Charge the current resident memory to every step under way, every ``every_s`` seconds."""
    while True:
        now = rss_mb()
        for name in list(running):
            s = stats.setdefault(name, {"calls": 0, "wall_s": 0.0, "cpu_s": 0.0, "rss_mb": 0.0})
            s["rss_mb"] = max(s.get("rss_mb", 0.0), now)
        time.sleep(every_s)


def timed(name, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        running[name] = running.get(name, 0) + 1
        try:
            return fn(*args, **kwargs)
        finally:
            running[name] -= 1
            if not running[name]:
                del running[name]
            s = stats.setdefault(name, {"calls": 0, "wall_s": 0.0, "cpu_s": 0.0, "rss_mb": 0.0})
            s["calls"] += 1
            s["wall_s"] += time.perf_counter() - wall
            s["cpu_s"] += time.process_time() - cpu
    return wrapper


def install() -> None:
    """Wrap each step where it is defined and wherever a module imported it by name."""
    modules = [importlib.import_module(m) for m in (*STEPS, "cli", "segments.pipeline", "segments.crosssell", "clvx", "present.report")]
    for module_name, names in STEPS.items():
        home = importlib.import_module(module_name)
        for name in names:
            original = getattr(home, name, None)
            if original is None:  # a step another version of clvx does not have (comparing branches)
                continue
            wrapped = timed(name, original)
            for module in modules:
                if getattr(module, name, None) is original:
                    setattr(module, name, wrapped)


if __name__ == "__main__":
    # As the command line does before any data library loads: polars reads its pool size and its
    # allocator's options when it is imported, and install() imports it.
    from clv import threads as pools

    os.environ.update(pools.environment())
    install()
    threading.Thread(target=sample_rss, daemon=True).start()
    import cli

    command = sys.argv[1:2] if sys.argv[1:2] in (["report"], ["rules"]) else ["cross-sell"]
    sys.argv = ["clvx", *command, *sys.argv[1 + (command != ["cross-sell"]):], "-q"]
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        cli.main()
    except SystemExit as exit_:
        if exit_.code:
            raise
    stats["total"] = {"calls": 1, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "rss_mb": 0.0}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats["total"]["rss_mb"] = peak
    print(json.dumps({"peak_mb": round(peak), "steps": {k: {m: round(v, 2) for m, v in s.items()} for k, s in stats.items()}}))
