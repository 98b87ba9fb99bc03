"""Loading: column detection, ids as text, dates, returns, and one clear error per bad file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from clv.errors import InputError
from clv.load import ColumnMapping, detect_date_format, load_transactions


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_ids_stay_text_exactly_as_written(tiny_csv):
    tx = load_transactions(tiny_csv, ColumnMapping(customer="customer", date="when"))
    ids = set(tx.frame.collect()["customer_id"])
    assert ids == {"00042", "7", "123456789012345678901"}


def test_auto_detects_common_column_names(tmp_path):
    path = write(tmp_path, "CustomerID,InvoiceDate,InvoiceNo,StockCode,UnitPrice,Quantity\n1,2011-01-02 10:00,5,A,2.5,4\n")
    tx = load_transactions(path)
    cols = tx.columns
    assert (cols.customer, cols.date, cols.order, cols.product) == ("CustomerID", "InvoiceDate", "InvoiceNo", "StockCode")
    assert (cols.price, cols.quantity, cols.amount) == ("UnitPrice", "Quantity", None)
    assert tx.frame.collect()["amount"].to_list() == [10.0]


def test_returns_are_netted_and_unmatched_returns_dropped(tiny_csv, tmp_path):
    tx = load_transactions(tiny_csv, ColumnMapping(customer="customer", date="when"))
    q = tx.quality
    assert (q.n_rows, q.n_no_customer, q.n_returns, q.n_returns_unmatched) == (9, 1, 1, 0)
    frame = tx.frame.collect()
    netted = frame.filter(pl.col("amount") < 0).row(0, named=True)
    assert netted["date"] == dt.datetime(2024, 1, 5)  # moved onto the purchase before it

    path = write(tmp_path, "customer_id,date,amount\nx,2024-01-02,-3\nx,2024-01-05,10\n")
    tx = load_transactions(path)
    assert tx.quality.n_returns_unmatched == 1
    assert tx.frame.collect()["amount"].to_list() == [10.0]


def test_as_of_excludes_later_rows_and_counts_them(tiny_csv):
    tx = load_transactions(tiny_csv, ColumnMapping(customer="customer", date="when"), as_of=dt.date(2024, 1, 14))
    assert tx.quality.n_after_as_of == 3
    assert tx.frame.collect()["date"].max() < dt.datetime(2024, 1, 15)


def test_glob_reads_all_files(tmp_path):
    write(tmp_path, "customer_id,date,amount\na,2024-01-01,1\n", "part1.csv")
    write(tmp_path, "customer_id,date,amount\nb,2024-01-02,2\n", "part2.csv")
    tx = load_transactions(str(tmp_path / "part*.csv"))
    assert tx.quality.n_files == 2 and tx.frame.collect().height == 2


def test_parquet_float_ids_lose_their_decimal_point(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"customer_id": [17850.0, None], "date": [dt.date(2024, 1, 1)] * 2, "amount": [1.0, 2.0]}).write_parquet(path)
    tx = load_transactions(path)
    assert tx.frame.collect()["customer_id"].to_list() == ["17850"]


@pytest.mark.parametrize(
    ("values", "fmt"),
    [
        (["2011-12-01", "2011-12-09"], "%Y-%m-%d"),
        (["12/1/2010 8:26", "12/19/2010 14:03"], "%m/%d/%Y %H:%M"),
        (["19970101", "19971231"], "%Y%m%d"),
        (["25/12/2020", "01/02/2021"], "%d/%m/%Y"),
    ],
)
def test_detects_date_formats(values, fmt):
    assert detect_date_format(pl.Series(values))[0] == fmt


def test_day_month_order_is_settled_by_the_whole_column(tmp_path):
    fmt, alternative = detect_date_format(pl.Series(["01/02/2021", "03/04/2021"]))
    assert (fmt, alternative) == ("%m/%d/%Y", "%d/%m/%Y")
    # The first rows are ambiguous, a later one is not: day/month, and no warning.
    rows = "".join(f"c{i},0{1 + i % 9}/0{1 + i % 9}/2021,1\n" for i in range(3000)) + "z,25/12/2021,1\n"
    path = write(tmp_path, "customer_id,date,amount\n" + rows)
    tx = load_transactions(path)
    assert tx.notes == () and tx.frame.collect()["date"].max() == dt.datetime(2021, 12, 25)
    ambiguous = write(tmp_path, "customer_id,date,amount\na,01/02/2021,1\nb,03/04/2021,2\n", "ambiguous.csv")
    assert "could be day/month or month/day" in load_transactions(ambiguous).notes[0]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "log.csv is empty"),
        ("customer_id,date,amount\n", "log.csv: has a header but no rows"),
        ("customer_id,date,amount\na,2024-01-01,1\nb,yesterday,2\n",
         "log.csv: column 'date' has 1 value that is not a date in the format of the others (first at row 2: 'yesterday')"),
        ("customer_id,date,amount\na,2024-01-01,1\nb,2024-01-02,n/a\nc,2024-01-02,x\n",
         "log.csv: column 'amount' has 2 non-numeric values (first at row 2: 'n/a')"),
        ("customer_id,date,amount\na,2024-01-01,1\nb,,2\n", "log.csv: column 'date' has 1 empty value (first at row 2)"),
        ("customer_id,date,amount\na,2024-01-01,\n", "log.csv: column 'amount' has 1 empty value (first at row 1)"),
        ("customer_id,date,amount\na,soon,1\n", "log.csv: column 'date' has values that are not dates in any known format (e.g. 'soon'); pass columns.date_format, e.g. columns.date_format='%d/%m/%Y'"),
        ("who,date,amount\na,2024-01-01,1\n", "log.csv: no customer column found; name it with columns.customer. Columns: who, date, amount"),
        ("customer_id,date,price\na,2024-01-01,1\n", "no amount column found"),
        ("customer_id,date,amount\n,2024-01-01,1\n", "log.csv: column 'customer_id' is empty in every row"),
    ],
)
def test_malformed_csv_gives_one_clear_error(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_transactions(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_misspelt_column_flag_suggests_the_nearest(tiny_csv):
    with pytest.raises(InputError, match=r"no column 'custmer' \(given by columns.customer\); did you mean 'customer'\?"):
        load_transactions(tiny_csv, ColumnMapping(customer="custmer", date="when"))


def test_binary_and_corrupt_files_are_refused(tmp_path):
    binary = tmp_path / "blob.csv"
    binary.write_bytes(b"\x00\x01\x02garbage\x00")
    with pytest.raises(InputError, match="contains binary data"):
        load_transactions(binary)
    corrupt = tmp_path / "broken.parquet"
    corrupt.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        load_transactions(corrupt)
    fake = tmp_path / "fake.parquet"
    fake.write_text("customer_id,date,amount\n")
    with pytest.raises(InputError, match="not a valid Parquet file"):
        load_transactions(fake)


def test_missing_paths_and_directories(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_transactions(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="is a directory"):
        load_transactions(tmp_path)
    with pytest.raises(InputError, match="no files match"):
        load_transactions(str(tmp_path / "*.csv"))


def test_a_log_without_amounts_loads_when_amounts_are_not_needed(tmp_path):
    # need_amount=False used to reach pl.col(None) and crash with a TypeError
    path = write(tmp_path, "customer,date\na,2024-01-01\na,2024-01-03\nb,2024-01-02\n")
    tx = load_transactions(path, need_amount=False, as_of=dt.date(2024, 1, 3))
    frame = tx.frame.collect().sort("date")
    assert frame["customer_id"].to_list() == ["a", "b", "a"]
    assert frame["amount"].null_count() == 3
    q = tx.quality
    assert (q.n_rows, q.n_used, q.n_returns, q.n_zero_amount) == (3, 3, 0, 0)
    assert (q.first_date, q.last_date) == (dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 3))
    with pytest.raises(InputError, match="no amount column found"):
        load_transactions(path)
    bad = write(tmp_path, "customer,date\na,2024-01-01\na,not a date\n", "bad.csv")
    with pytest.raises(InputError, match=r"column 'date' has 1 value that is not a date .*first at row 2: 'not a date'"):
        load_transactions(bad, need_amount=False)
