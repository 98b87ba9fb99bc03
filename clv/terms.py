"""clvx's shared vocabulary: time units, the period of a summary, the limits of every setting.

Defined once and light to import (no data library), so the command line can build its
options from the same values the core checks against.
"""

from __future__ import annotations

from enum import Enum

DAYS_PER_WEEK = 7.0
DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12  # a calendar-exact month

MAX_HORIZON_YEARS = 100
MAX_ANNUAL_DISCOUNT_RATE = 1.0  # 100% a year
MAX_PENALIZER = 1e3
SEED_MAX = 2**32 - 1  # numpy's seed range


class Period(str, Enum):
    """The time unit of frequency, recency and T."""

    day = "day"
    week = "week"
    month = "month"

    @property
    def days(self) -> float:
        """Length of one period in days (a month is 365.25 / 12 days)."""
        return {"day": 1.0, "week": DAYS_PER_WEEK, "month": DAYS_PER_MONTH}[self.value]

    @property
    def truncate_every(self) -> str:
        return {"day": "1d", "week": "1w", "month": "1mo"}[self.value]


class Engine(str, Enum):
    """How the models are fitted: lifetimes' fitters, the vectorised numpy engine, or ``auto`` (numpy, see clv.models)."""

    auto = "auto"
    lifetimes = "lifetimes"
    numpy = "numpy"


class PurchaseModel(str, Enum):
    """The model of purchase counts and dropout, or ``auto``: chosen on an inner holdout of the calibration data."""

    bgnbd = "bgnbd"
    mbgnbd = "mbgnbd"
    pareto = "pareto"
    auto = "auto"

    @property
    def label(self) -> str:
        """The model's name as the papers write it: ``BG/NBD``, ``MBG/NBD``, ``Pareto/NBD``."""
        return MODEL_LABELS[self.value]


MODEL_LABELS = {"bgnbd": "BG/NBD", "mbgnbd": "MBG/NBD", "pareto": "Pareto/NBD", "auto": "auto"}
DEFAULT_PURCHASE_MODEL = PurchaseModel.bgnbd


class SegmentMethod(str, Enum):
    """k-means on value and behaviour, or the named RFM segments."""

    kmeans = "kmeans"
    rfm = "rfm"


class Dialect(str, Enum):
    """The SQL engines clvx writes its aggregates for (sqlglot's dialect names)."""

    duckdb = "duckdb"
    postgres = "postgres"
    spark = "spark"
    bigquery = "bigquery"
    snowflake = "snowflake"
    redshift = "redshift"
    trino = "trino"


class Aggregate(str, Enum):
    """What the query returns: the RFM summary, the distinct histories a fit needs, customer x product, or what cross-sell reads."""

    rfm = "rfm"
    histories = "histories"
    products = "products"
    purchases = "purchases"  # cross-sell: customer x product with the offer horizon's inner split
    catalogue = "catalogue"  # cross-sell: per product, its names, line counts and revenue
    baskets = "baskets"  # cross-sell: order x product, for same-order timing, bundle relations and bundles
