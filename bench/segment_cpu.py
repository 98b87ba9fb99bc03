"""`clvx segment` before and after a change, and the pandas + lifetimes + scikit-learn baseline, in one run.

    python bench/segment_cpu.py --before /tmp/main-tree                 # 1M, 3M and 10M lines
    python bench/segment_cpu.py --before /tmp/main-tree --lines 1000000 --busy

``--before`` is a source tree of the earlier clvx (e.g. ``git archive main | tar -x -C DIR``),
run with this interpreter. Each command runs in a process of its own (bench/measure.py),
interleaved in rounds, the fastest of ``--repeat`` kept; CPU seconds (user + sys) and peak
RSS are reported beside wall time, since on a machine shared with other work the CPU a
command takes moves far less than its wall time. With ``--busy``, also `clvx segment` idle
and beside one CPU-bound process (the busy-machine check of bench/run.py). Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import PY, ROOT, busy_case, clvx, compiled, load_average, log_file, measure  # noqa: E402


def segment_in(tree: Path, log: str) -> tuple[list[str], dict[str, str]]:
    """`clvx segment` from the source tree ``tree`` (its modules first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return [PY, "-c", f"import sys; sys.path.insert(0, {str(tree)!r}); import cli; cli.main()", "segment", log, "-q"], env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="Source tree of the clvx to compare with")
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--busy", action="store_true", help="Also `clvx segment` idle and beside a CPU burner (1M lines)")
    args = parser.parse_args()
    compiled(ROOT, args.before.resolve())
    print(f"Load average before: {load_average()}", file=sys.stderr)
    rows = []
    for lines in args.lines:
        log = str(log_file(lines))
        before_cmd, before_env = segment_in(args.before.resolve(), log)
        after_cmd, after_env = segment_in(ROOT, log)
        commands = {"before": (before_cmd, before_env), "after": (after_cmd, after_env), "baseline": ([PY, "bench/baseline.py", log], None)}
        runs: dict[str, list[dict]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, (cmd, env) in commands.items():
                runs[name].append(measure(*cmd, env=env))
        best = {name: min(r, key=lambda m: m["cpu_seconds"]) for name, r in runs.items()}
        rows.append((lines, best))
        print(f"{lines:,}: " + ", ".join(f"{n} {m['cpu_seconds']:.1f} s CPU / {m['peak_mb']:.0f} MB" for n, m in best.items()), file=sys.stderr)
    out = [
        "| order lines | clvx segment before: CPU / wall / peak RSS | after: CPU / wall / peak RSS | baseline: CPU / wall / peak RSS "
        "| CPU after / before | baseline CPU / after CPU | after RSS / baseline RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lines, b in rows:
        cells = [f"{b[n]['cpu_seconds']:.2f} s / {b[n]['seconds']:.1f} s / {b[n]['peak_mb']:,.0f} MB" for n in ("before", "after", "baseline")]
        out.append(f"| {lines:,} | " + " | ".join(cells) + f" | {b['after']['cpu_seconds'] / b['before']['cpu_seconds']:.2f}x | "
                   f"{b['baseline']['cpu_seconds'] / b['after']['cpu_seconds']:.2f}x | {b['after']['peak_mb'] / b['baseline']['peak_mb']:.2f}x |")
    if args.busy:
        log = str(log_file(1_000_000))
        busy = busy_case(args.repeat, clvx("segment", log, "-q"))
        out += ["", f"Busy machine (`clvx segment`, 1,000,000 lines, one CPU-bound process beside it): {busy['busy']['seconds']:.1f} s "
                f"against {busy['idle']['seconds']:.1f} s idle, {busy['busy']['seconds'] / busy['idle']['seconds']:.2f}x (at most 1.8x)."]
    out += ["", f"Load average (1 / 5 / 15 min) after: {load_average()}."]
    print("\n".join(out))


if __name__ == "__main__":
    main()
