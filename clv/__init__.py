"""clvx core: loading, RFM, CLV models, backtests. Pure functions over polars frames."""

__version__ = "0.1.0"
