"""Run a command and print its wall time (s), CPU time (user + sys, s), peak resident memory (MB) and last line of output as JSON.

    python bench/measure.py clvx segment log.parquet -q

A separate process, so that RUSAGE_CHILDREN holds exactly one child's peak.
"""

import json
import resource
import subprocess
import sys
import time

start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
peak_mb = usage.ru_maxrss / 1024
cpu_seconds = usage.ru_utime + usage.ru_stime  # what a busy machine inflates least
last = proc.stdout.strip().splitlines()[-1:] or [""]
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": peak_mb, "returncode": proc.returncode, "stderr": proc.stderr[-2000:], "last_line": last[0]}))
