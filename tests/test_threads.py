"""Thread pools: the caps are in force inside k-means and the model fits, and the entry point sizes polars' pool.

Checked with threadpoolctl's own view of the loaded pools, inside the steps, never with timings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import clvx
from clv import likelihood
from clv import threads as pools
from clv.errors import InputError
from segments import cluster

ROOT = Path(__file__).resolve().parents[1]


def _pool_sizes() -> dict[str, set[int]]:
    """The thread count of every loaded pool, by kind (openmp, blas)."""
    sizes: dict[str, set[int]] = {}
    for pool in threadpool_info():
        sizes.setdefault(pool["user_api"], set()).add(pool["num_threads"])
    return sizes


@pytest.fixture()
def seen_in_kmeans(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, set[int]]]:
    """The pools as each k-means fit sees them, recorded from inside ``KMeans.fit``."""
    seen: list[dict[str, set[int]]] = []
    original = cluster._kmeans

    def recording(*args, **kwargs):
        km = original(*args, **kwargs)
        fit = km.fit

        def fit_and_record(*a, **kw):
            seen.append(_pool_sizes())
            return fit(*a, **kw)

        km.fit = fit_and_record
        return km

    monkeypatch.setattr(cluster, "_kmeans", recording)
    return seen


def _points() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.vstack([rng.normal(c, 0.3, size=(200, 2)) for c in (0.0, 3.0, 6.0)])


def test_kmeans_runs_on_one_thread_whatever_the_thread_count(seen_in_kmeans) -> None:
    """Lloyd iterations on a 10,000-customer sample are too short for a pool: one thread, and the same sums everywhere."""
    X = _points()
    solutions = []
    for n in (1, 2, 4):
        with clvx.threads(n):
            k, _, centres = cluster.select_k(X, seed=0, k_range=(3, 4))
            labels, _, final = cluster.fit_kmeans_centres(X, k, seed=0, centres=centres)
        solutions.append((k, centres.tobytes(), labels.tobytes(), final.tobytes()))
    assert len(seen_in_kmeans) >= 9  # every candidate k, the stability check and the final fit, three times
    for sizes in seen_in_kmeans:
        assert sizes["openmp"] == {1}  # scikit-learn's k-means threads
        assert sizes.get("blas", {1}) == {1}
    assert solutions[1] == solutions[0] and solutions[2] == solutions[0]


def test_the_caps_are_lifted_after_the_step(seen_in_kmeans) -> None:
    before = _pool_sizes()
    with clvx.threads(1):
        cluster.fit_kmeans(_points(), 3, seed=0)
    assert seen_in_kmeans and seen_in_kmeans[0]["openmp"] == {1}
    assert _pool_sizes() == before


def test_the_model_fit_and_its_hessian_run_with_one_blas_thread_at_any_thread_count_and_give_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    from clv.load import load_transactions
    from clv.models import BGNBD
    from clv.rfm import collect, rfm_summary
    from clv.sample import bundled_sample_path

    seen: list[dict[str, set[int]]] = []
    hessian = likelihood._hessian

    def recording(objective, log_params):
        seen.append(_pool_sizes())
        return hessian(objective, log_params)

    monkeypatch.setattr(likelihood, "_hessian", recording)
    tx = load_transactions(bundled_sample_path())
    summary = collect(rfm_summary(tx.frame, tx.as_of))
    fits = {}
    for n in (1, 2):
        with clvx.threads(n):
            fits[n] = BGNBD(engine="numpy").fit(summary).params_
    assert seen and all(sizes["blas"] == {1} for sizes in seen)
    assert fits[1].params == fits[2].params and fits[1].standard_errors == fits[2].standard_errors


@pytest.mark.parametrize("n", [1, 2])
def test_beside_gives_the_result_and_waits_for_the_thread_however_the_block_ends(n: int) -> None:
    import threading
    import time

    started: list[str] = []

    def work() -> int:
        started.append(threading.current_thread().name)
        return 42

    with pools.beside(work, threads=n) as result:
        if n == 1:
            assert started == [threading.current_thread().name]  # at once, in the caller's thread
        assert result() == 42
    assert len(started) == 1

    def failing() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"), pools.beside(failing, threads=n) as result:
        result()
    finished: list[int] = []
    with pytest.raises(KeyError), pools.beside(lambda: time.sleep(0.05) or finished.append(1), threads=n):
        raise KeyError("the block's own error")  # the thread is still waited for
    assert finished == [1] and not [t for t in threading.enumerate() if t.name.startswith("clvx-beside")]


def test_default_is_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pools.THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert pools.resolve() == 3
    monkeypatch.setenv(pools.THREADS_ENV, "2")
    assert pools.resolve() == 2
    with pools.use(1):
        assert pools.resolve() == 1
    assert pools.resolve() == 2


@pytest.mark.parametrize("value", ["0", "many", "1.5", "5000"])
def test_a_bad_environment_value_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(pools.THREADS_ENV, value)
    with pytest.raises(InputError, match=f"the environment variable CLVX_THREADS.*1 to {pools.MAX_THREADS}"):
        pools.resolve()


def test_a_bad_api_value_names_the_setting() -> None:
    with pytest.raises(InputError, match=r"^threads = 0 is out of range"):
        clvx.threads(0).__enter__()


def test_the_environment_leaves_what_the_user_set() -> None:
    assert pools.environment(3, current={}) == {
        "POLARS_MAX_THREADS": "3", "OMP_WAIT_POLICY": "PASSIVE",
        "_RJEM_MALLOC_CONF": "background_thread:true,dirty_decay_ms:300,muzzy_decay_ms:0,narenas:3",
    }
    mine = {"POLARS_MAX_THREADS": "8", "OMP_WAIT_POLICY": "active", "_RJEM_MALLOC_CONF": "narenas:1"}
    assert pools.environment(3, current=mine) == {}


def test_polars_allocator_reads_the_options_clvx_sets() -> None:
    # jemalloc names an option it does not know on stderr: proof that polars' build reads this variable.
    env = {**os.environ, pools.ALLOCATOR_ENV: "clvx_probe:1"}
    script = "import polars; polars.DataFrame({'a': [1, 2]}).sum()"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert "clvx_probe" in out.stderr
    env[pools.ALLOCATOR_ENV] = pools.allocator_options(2)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert "jemalloc" not in out.stderr


def _polars_pool_after_entry(args: list[str], env: dict[str, str], tmp_path: Path) -> str:
    """polars' pool size in a fresh process after the command line's entry point read ``args``."""
    script = (
        "import sys, cli, typer\n"
        "group = typer.main.get_command(cli.app)\n"
        f"cli._size_pools_before_imports({args!r}, group.commands)\n"
        "import os\n"
        "allocator = os.environ.get('_RJEM_MALLOC_CONF')  # polars prepends its own defaults to it when it loads\n"
        "import polars\n"
        "print(polars.thread_pool_size(), os.environ.get('OMP_WAIT_POLICY'), allocator)\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("POLARS_MAX_THREADS", "OMP_WAIT_POLICY", pools.ALLOCATOR_ENV, pools.THREADS_ENV)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env={**clean, **env}, check=True)
    return out.stdout.strip()


def test_the_command_line_sizes_polars_pool_before_importing_it(tmp_path: Path) -> None:
    one = f"1 PASSIVE {pools.allocator_options(1)}"
    assert _polars_pool_after_entry(["rfm", "--threads", "1"], {}, tmp_path) == one
    assert _polars_pool_after_entry(["rfm"], {"CLVX_THREADS": "1"}, tmp_path) == one
    config = tmp_path / "clvx.toml"
    config.write_text("threads = 2\n[rfm]\nthreads = 1\n")
    assert _polars_pool_after_entry(["rfm", "--config", str(config)], {}, tmp_path) == one
    # The user's own settings win.
    mine = {"POLARS_MAX_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE", "_RJEM_MALLOC_CONF": "narenas:1"}
    assert _polars_pool_after_entry(["rfm", "--threads", "1"], mine, tmp_path) == "2 ACTIVE narenas:1"


def test_threads_option_from_the_command_line_and_a_settings_file(runner, tiny_csv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cli

    seen: list[int] = []
    real_use = pools.use

    def recording(n):
        seen.append(pools.resolve(n))
        return real_use(n)

    monkeypatch.setattr(pools, "use", recording)
    tiny = ["rfm", str(tiny_csv), "--customer-col", "customer", "--date-col", "when", "--amount-col", "amount", "-q"]
    assert runner.invoke(cli.app, [*tiny, "--threads", "1"]).exit_code == 0
    config = tmp_path / "clvx.toml"
    config.write_text("threads = 1\n")
    assert runner.invoke(cli.app, [*tiny, "--config", str(config)]).exit_code == 0
    assert seen == [1, 1]
    assert runner.invoke(cli.app, [*tiny, "--threads", "0"]).exit_code == 2


def test_the_command_line_clusters_with_only_the_k_means_of_scikit_learn(tmp_path: Path) -> None:
    """The command line loads KMeans without pandas, scipy.stats or the rest of sklearn.cluster and
    sklearn.metrics (0.6 s of CPU and 30 MB); each still loads in full when imported afterwards."""
    script = (
        "import sys, cli\n"
        "sys.argv = ['clvx', 'segment', '-q', '--engine', 'numpy', '--k', '3']\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "print(*(name in sys.modules for name in ('sklearn.cluster._kmeans', 'pandas', 'scipy.stats', 'sklearn.cluster',\n"
        "      'sklearn.metrics', 'sklearn.neighbors')))\n"
        "import pandas, scipy.stats, sklearn.cluster, sklearn.metrics\n"
        "from sklearn.cluster._kmeans import KMeans\n"
        "print(pandas.__name__, scipy.stats.norm.cdf(0.0), sklearn.cluster.KMeans is KMeans, sklearn.metrics.silhouette_score.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip().splitlines()[-2:] == ["True False False False False False", "pandas 0.5 True silhouette_score"]


def test_scikit_learn_code_that_reads_scipy_stats_still_finds_it() -> None:
    """scipy.stats is deferred while the k-means loads, not hidden: scikit-learn's own uses of it still work."""
    script = (
        "import sys\n"
        "from segments import _sklearn\n"
        "_sklearn.lean = True\n"
        "_sklearn.load()\n"
        "from sklearn.utils import fixes\n"
        "import numpy as np\n"
        "print('scipy.stats' in sys.modules, fixes._mode(np.array([1, 2, 2]))[0][0])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False 2"
