"""Real engines for the SQL tests: a throw-away PostgreSQL cluster and a local SparkSession.

Each is started once per test session and stopped at its end. A backend whose runtime is
not installed skips its tests with the reason (CI installs both: see .ci/run).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER = "clvx"
PG_PASSWORD = "s3cret-pw"
PG_DATABASE = "clvx"
RETURNS_CSV = Path(__file__).parent / "fixtures" / "tiny.csv"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int

    def uri(self, password: str = PG_PASSWORD, database: str = PG_DATABASE) -> str:
        return f"postgresql://{PG_USER}:{password}@{self.host}:{self.port}/{database}"


def _pg_bin() -> Path | None:
    # Debian keeps the server's tools under /usr/lib/postgresql/<version>/bin (PATH has wrappers only)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_cluster() -> Iterator[Postgres]:
    """initdb + pg_ctl on a temporary directory, listening on a free local port; as root, run as ``postgres``."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("adbc_driver_postgresql", reason="adbc-driver-postgresql is not installed (pip install 'clvx[warehouse]')")
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="clvx-pg-"))
    data = root / "data"
    if as_user:
        shutil.chown(root, "postgres")
    pwfile = root / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if as_user:
        shutil.chown(pwfile, "postgres")
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C"}

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, env=env, cwd=root)

    run(str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
        "--locale=C")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=32MB", "start")
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, PG_DATABASE],
                       check=True, capture_output=True, env={**env, "PGPASSWORD": PG_PASSWORD})
        yield Postgres("127.0.0.1", port)
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, env=env, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the session, with the bundled sample as table ``sales`` and the tiny log with
    returns as ``returns_log``."""
    import polars as pl

    from clv.sample import bundled_sample_path

    for server in postgres_cluster():
        uri = server.uri()
        pl.read_parquet(bundled_sample_path()).write_database("sales", uri, engine="adbc", if_table_exists="replace")
        returns_lines().write_database("returns_log", uri, engine="adbc", if_table_exists="replace")
        yield server


def returns_lines():
    """The tiny log with a return and a blank customer (tests/fixtures/tiny.csv), dates parsed, ids as text."""
    import polars as pl

    return pl.read_csv(RETURNS_CSV, infer_schema=False).with_columns(
        pl.col("when").str.to_datetime("%Y-%m-%d"), pl.col("amount").cast(pl.Float64)
    )


@pytest.fixture(scope="session")
def spark():
    """A local SparkSession on one core, quiet, for the whole test session (one per session: it takes seconds to start)."""
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'clvx[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java (Debian: apt-get install default-jre-headless)")
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("clvx-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()
