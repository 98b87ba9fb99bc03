"""Shared fixtures: the CDNOW log that ships with lifetimes, the bundled sample, a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

from clv import threads as _pools

# As the command line does, before polars and scikit-learn load: polars' pool sized to the
# CPUs this process may use, idle OpenMP threads asleep rather than spinning against the
# other tests' processes on a busy machine, polars' freed memory given back (a variable
# already set is left alone).
os.environ.update(_pools.environment())

import polars as pl  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tests.engines import postgres, spark  # noqa: F401 - session fixtures: a PostgreSQL server, a SparkSession

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ONLINE_RETAIL = SHARED_DATA / "online_retail.parquet"
RETAIL_FLAGS = [
    "--customer-col", "customer_id", "--date-col", "invoice_date", "--price-col", "price",
    "--quantity-col", "quantity", "--order-col", "invoice", "--product-col", "stock_code",
]


def lifetimes_dataset(name: str) -> Path:
    import lifetimes

    return Path(os.path.dirname(lifetimes.__file__)) / "datasets" / name


@pytest.fixture(scope="session")
def cdnow_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CDNOW_master.txt (23,570 customers, whitespace separated) as a CSV with text ids."""
    lines = lifetimes_dataset("CDNOW_master.txt").read_text().split("\n")
    rows = [line.split() for line in lines[1:] if line.strip()]
    frame = pl.DataFrame(rows, schema=["customer_id", "date", "number_of_cds", "dollar_value"], orient="row")
    path = tmp_path_factory.mktemp("cdnow") / "cdnow.csv"
    frame.write_csv(path)
    return path


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def tiny_csv() -> Path:
    return FIXTURES / "tiny.csv"


requires_retail = pytest.mark.skipif(not ONLINE_RETAIL.exists(), reason="../shared/data/online_retail.parquet not present")
