"""Where `clvx cross-sell` spends its time: wall and CPU seconds per internal step, in one process.

    python bench/crosssell_stages.py log.parquet [clvx cross-sell options, e.g. --targets offers.csv]

Runs the command line in this process with a timer around each step named in STEPS
(cumulative: a step's time includes the steps it calls, e.g. ``choose_ridge`` includes its
``model_scores``), and prints one JSON line: per step, calls, wall and CPU seconds, and the
process's peak resident memory (MB). CPU seconds are what a busy, shared machine inflates least.
"""

import functools
import importlib
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = {
    "clvx": ("load",),
    "segments.pipeline": ("run_segmentation", "inner_calibration", "offer_timing", "ranking_timing", "crosssell_targets", "crosssell_rules"),
    "segments.associations": ("build_ownership", "pair_counts", "pair_timing", "non_product_ids", "association_rules"),
    "segments.crosssell": ("build_model", "item_weights_for", "choose_ridge", "fit_calibration", "score_quantiles", "model_scores", "offer_scores",
                           "segment_ranking", "expected_buyers_by_segment", "customer_targets", "explain_targets", "offer_relations"),
    "present.render": ("write_frame",),
}
stats: dict[str, dict[str, float]] = {}


def timed(name, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            s = stats.setdefault(name, {"calls": 0, "wall_s": 0.0, "cpu_s": 0.0})
            s["calls"] += 1
            s["wall_s"] += time.perf_counter() - wall
            s["cpu_s"] += time.process_time() - cpu
    return wrapper


def install() -> None:
    """Wrap each step where it is defined and wherever a module imported it by name."""
    modules = [importlib.import_module(m) for m in (*STEPS, "cli", "segments.pipeline", "segments.crosssell", "clvx")]
    for module_name, names in STEPS.items():
        home = importlib.import_module(module_name)
        for name in names:
            original = getattr(home, name)
            wrapped = timed(name, original)
            for module in modules:
                if getattr(module, name, None) is original:
                    setattr(module, name, wrapped)


if __name__ == "__main__":
    install()
    import cli

    sys.argv = ["clvx", "cross-sell", *sys.argv[1:], "-q"]
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        cli.main()
    except SystemExit as exit_:
        if exit_.code:
            raise
    stats["total"] = {"calls": 1, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": round(peak), "steps": {k: {m: round(v, 2) for m, v in s.items()} for k, s in stats.items()}}))
