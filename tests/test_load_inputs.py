"""The loader against the files users really have: odd encodings, names, dates, numbers and pipes."""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from clv.errors import InputError
from clv.load import ColumnMapping, ReadOptions, load_transactions
from tests.conftest import ONLINE_RETAIL, requires_retail

TODAY = dt.date(2025, 6, 30)
FIXED = ReadOptions(today=TODAY)
HEADER = "customer_id,date,amount\n"


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path, mapping: ColumnMapping = ColumnMapping(), **options):
    return load_transactions(path, mapping, options=ReadOptions(today=TODAY, **options))


def error(path, mapping: ColumnMapping = ColumnMapping(), **options) -> str:
    with pytest.raises(InputError) as err:
        load(path, mapping, **options)
    message = str(err.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- encodings


def test_latin1_file_is_refused_with_the_line_of_the_first_bad_byte(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes((HEADER + "a,2024-01-01,1\nJosé,2024-01-02,2\nJosè,2024-01-03,3\n").encode("latin-1"))
    message = error(path)
    assert message == (f"{path}: is not UTF-8 text (byte 0xE9 on line 3); if it was saved as Latin-1 or "
                       "Windows-1252, pass read.encoding='latin-1' or read.encoding='cp1252'")


def test_named_encoding_keeps_distinct_ids_distinct(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes((HEADER + "José,2024-01-02,2\nJosè,2024-01-03,3\n").encode("latin-1"))
    ids = load(path, encoding="latin-1").frame.collect()["customer_id"].to_list()
    assert set(ids) == {"José", "Josè"}
    assert "unknown encoding 'klingon'" in error(path, encoding="klingon")


def test_utf8_with_bom_and_utf16_files(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (HEADER + "Zoë,2024-01-02,2\n").encode())
    assert load(bom).frame.collect()["customer_id"].to_list() == ["Zoë"]
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes((HEADER + "Zoë,2024-01-02,2\n").encode("utf-16"))
    assert "is UTF-16 text; pass read.encoding='utf-16'" in error(utf16)
    assert load(utf16, encoding="utf-16").frame.collect()["customer_id"].to_list() == ["Zoë"]


# --------------------------------------------------------------------------- paths


def test_glob_is_expanded_once_and_each_match_read_literally(tmp_path):
    write(tmp_path, HEADER + "q,2024-01-01,1\n", "q?.csv")
    write(tmp_path, HEADER + "a,2024-01-01,1\n", "qA.csv")
    tx = load(str(tmp_path / "q*.csv"))
    assert (tx.quality.n_files, tx.quality.n_rows) == (2, 2)
    # An existing name wins over its glob meaning.
    tx = load(str(tmp_path / "q?.csv"))
    assert (tx.quality.n_files, tx.frame.collect()["customer_id"].to_list()) == (1, ["q"])


def test_existing_file_with_brackets_in_its_name_is_read(tmp_path):
    path = write(tmp_path, HEADER + "a,2024-01-01,1\n", "sales[2024].csv")
    assert load(str(path)).quality.n_rows == 1


def test_glob_never_reads_the_runs_own_outputs(tmp_path):
    write(tmp_path, HEADER + "a,2024-01-01,1\n", "log.csv")
    out = write(tmp_path, "customer_id,frequency\na,0\n", "scores.csv")
    tx = load_transactions(str(tmp_path / "*.csv"), options=FIXED, exclude=[str(tmp_path / "." / "scores.csv")])
    assert tx.sources == (str(tmp_path / "log.csv"),)
    with pytest.raises(InputError, match="no files match '.*' other than this run's output files"):
        load_transactions(str(tmp_path / "scores*.csv"), options=FIXED, exclude=[out])


def test_input_from_a_pipe_is_read_once(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    text = HEADER + "a,2024-01-01,1\nb,2024-01-02,2\n"
    result: dict[str, object] = {}

    def feed() -> None:
        with open(fifo, "w") as fh:
            fh.write(text)

    def read() -> None:
        from clv.load import is_summary

        assert not is_summary(fifo)  # a first look, as the CLI takes, must not exhaust the pipe
        tx = load(fifo)
        result["rows"] = (tx.frame.collect().height, tx.quality.n_rows)

    # Daemon threads, so that a loader that blocks on the pipe fails the test instead of hanging it.
    threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=read, daemon=True)]
    for thread in threads:
        thread.start()
    threads[1].join(timeout=10)
    assert result.get("rows") == (2, 2)


# --------------------------------------------------------------------------- dates


def test_far_off_dates_are_excluded_and_counted(tmp_path):
    rows = "".join(f"c{i},2024-0{1 + i % 6}-1{i % 9},10\n" for i in range(200))
    path = write(tmp_path, HEADER + rows + "x,9999-12-31,5\ny,1900-01-01,5\nz,0001-01-01,5\nw,2025-07-01,5\n")
    tx = load(path)
    q = tx.quality
    assert (q.n_future_date, q.n_far_past_date, q.n_used) == (2, 2, 200)
    assert q.as_of == dt.date(2024, 6, 18) and dt.date(2013, 6, 1) < q.far_past_cutoff < dt.date(2014, 6, 1)
    frame = tx.frame.collect()
    assert frame.height == 200 and frame["date"].min() == dt.datetime(2024, 1, 10)
    kept = load(path, keep_outlying_dates=True)
    assert kept.quality.n_future_date == 0 and kept.frame.collect().height == 204


def test_far_past_rule_keeps_a_long_thin_history_and_catches_frequent_placeholders(tmp_path):
    # Nine years of a sale a year, then a busy year: the early years are history.
    early = "".join(f"e{y},{2015 + y}-03-01,5\n" for y in range(9))
    busy = "".join(f"c{i},{dt.date(2024, 1, 1) + dt.timedelta(days=i % 366)},10\n" for i in range(900))
    tx = load(write(tmp_path, HEADER + early + busy))
    assert tx.quality.n_far_past_date == 0 and tx.frame.collect().height == 909
    # A placeholder date on 5% of the rows is still one day among hundreds.
    placeholder = "".join(f"p{i},1900-01-01,5\n" for i in range(45))
    tx = load(write(tmp_path, HEADER + busy + placeholder, "placeholder.csv"))
    assert tx.quality.n_far_past_date == 45 and tx.frame.collect().height == 900


def test_as_of_in_the_future_is_one_clear_error(tmp_path):
    path = write(tmp_path, HEADER + "a,2024-01-01,1\n")
    with pytest.raises(InputError, match=r"^as_of='9999-12-31' is not a usable end date; give a date up to today \(2025-06-30\)$"):
        load_transactions(path, as_of=dt.date(9999, 12, 31), options=FIXED)
    with pytest.raises(InputError, match=r"^as_of='2026-01-01' is after today \(2025-06-30\); the observation cannot end in the future$"):
        load_transactions(path, as_of=dt.date(2026, 1, 1), options=FIXED)


def test_month_first_dates_with_dashes(tmp_path):
    clear = load(write(tmp_path, HEADER + "a,01-15-2024,1\nb,02-20-2024,2\n"))
    assert clear.frame.collect()["date"].to_list() == [dt.datetime(2024, 1, 15), dt.datetime(2024, 2, 20)]
    ambiguous = load(write(tmp_path, HEADER + "a,01-02-2024,1\nb,03-04-2024,2\n", "amb.csv"))
    assert "could be day/month or month/day" in ambiguous.notes[0]


def test_two_digit_years_are_refused_or_read_with_percent_y(tmp_path):
    path = write(tmp_path, HEADER + "a,01/15/24,1\nb,02/20/24,2\n")
    assert error(path) == f"{path}: column 'date' has two-digit years (e.g. '01/15/24'); pass columns.date_format='%m/%d/%y'"
    tx = load(path, ColumnMapping(date_format="%m/%d/%y"))
    assert tx.frame.collect()["date"].min() == dt.datetime(2024, 1, 15)


def test_iso_timestamps_with_zones_are_converted_before_taking_the_day(tmp_path):
    text = HEADER + "a,2024-01-16T14:00:00Z,1\nb,2024-01-16T23:30:00-02:00,2\nc,2024-01-16T01:00:00.5+02:00,3\n"
    path = write(tmp_path, text)
    utc = load(path).frame.sort("amount").collect()["date"].to_list()
    assert utc == [dt.datetime(2024, 1, 16, 14), dt.datetime(2024, 1, 17, 1, 30), dt.datetime(2024, 1, 15, 23, 0, 0, 500000)]
    tokyo = load(path, timezone="Asia/Tokyo")
    assert tokyo.frame.sort("amount").collect()["date"][0] == dt.datetime(2024, 1, 16, 23)
    assert "converted to Asia/Tokyo before taking the day" in tokyo.notes[0]
    assert "unknown time zone 'Mars/Olympus'" in error(path, timezone="Mars/Olympus")


def test_zoned_parquet_agrees_with_zoned_csv(tmp_path):
    csv_path = write(tmp_path, HEADER + "a,2024-01-16T23:30:00-02:00,2\n")
    parquet = tmp_path / "log.parquet"
    stamp = dt.datetime(2024, 1, 17, 1, 30, tzinfo=dt.UTC)
    pl.DataFrame({"customer_id": ["a"], "date": [stamp], "amount": [2.0]}).with_columns(
        pl.col("date").dt.convert_time_zone("America/Sao_Paulo")).write_parquet(parquet)
    for zone in ("UTC", "Asia/Tokyo"):
        assert load(csv_path, timezone=zone).frame.collect().equals(load(parquet, timezone=zone).frame.collect())


def test_epoch_and_excel_dates(tmp_path):
    path = write(tmp_path, HEADER + "a,1705413600,1\nb,1705420800.5,2\n")
    message = error(path)
    assert "holds numbers, not dates (e.g. '1705413600')" in message and "epoch_ms" in message and "excel" in message
    dates = load(path, ColumnMapping(date_format="epoch")).frame.sort("amount").collect()["date"].to_list()
    assert dates == [dt.datetime(2024, 1, 16, 14), dt.datetime(2024, 1, 16, 16, 0, 0, 500000)]
    ms = write(tmp_path, HEADER + "a,1705413600000,1\n", "ms.csv")
    assert load(ms, ColumnMapping(date_format="epoch_ms")).frame.collect()["date"][0] == dt.datetime(2024, 1, 16, 14)
    excel = write(tmp_path, HEADER + "a,45307.25,1\n", "excel.csv")
    assert load(excel, ColumnMapping(date_format="excel")).frame.collect()["date"][0] == dt.datetime(2024, 1, 16, 6)
    parquet = tmp_path / "epoch.parquet"
    pl.DataFrame({"customer_id": ["a"], "date": [1705413600], "amount": [1.0]}).write_parquet(parquet)
    assert load(parquet, ColumnMapping(date_format="epoch")).frame.collect()["date"][0] == dt.datetime(2024, 1, 16, 14)


# --------------------------------------------------------------------------- ids and numbers


def test_placeholder_ids_count_as_no_customer(tmp_path):
    placeholders = ["NULL", "null", "None", "N/A", "NaN", "-", '""', "   "]
    rows = "".join(f"{p},2024-01-0{1 + i % 9},5\n" for i, p in enumerate(placeholders))
    path = write(tmp_path, HEADER + rows + "real,2024-01-02,7\n")
    tx = load(path)
    assert tx.frame.collect()["customer_id"].to_list() == ["real"]
    assert (tx.quality.n_no_customer, tx.quality.n_placeholder_customer) == (8, 8)
    kept = load(path, keep_placeholder_ids=True)
    assert kept.frame.collect().height == 7  # a blank id is no id either way
    # The blank ids are no customer; none is reported as a placeholder that the option would keep.
    assert (kept.quality.n_no_customer, kept.quality.n_placeholder_customer) == (2, 0)


def test_thousands_separators_and_decimal_commas(tmp_path):
    us = load(write(tmp_path, 'customer_id,date,amount\na,2024-01-01,"1,234.56"\nb,2024-01-02,7.5\n'))
    assert us.frame.sort("customer_id").collect()["amount"].to_list() == [1234.56, 7.5]
    assert "read ',' as a thousands separator in 'amount'" in us.notes[0]
    eu = load(write(tmp_path, "customer_id;date;amount\na;2024-01-01;1.234,56\nb;2024-01-02;7,5\n", "eu.csv"))
    assert eu.frame.sort("customer_id").collect()["amount"].to_list() == [1234.56, 7.5]
    assert "read ',' as the decimal mark in 'amount'" in eu.notes[0]
    ambiguous = write(tmp_path, 'customer_id,date,amount\na,2024-01-01,"1,234"\nb,2024-01-02,7\n', "amb.csv")
    assert "has values such as '1,234' (first at row 1) that could be thousands or decimals" in error(ambiguous)
    assert load(ambiguous, decimal_comma=True).frame.collect()["amount"][0] == pytest.approx(1.234)
    assert load(ambiguous, decimal_comma=False).frame.collect()["amount"][0] == 1234.0
    mixed = write(tmp_path, 'customer_id,date,amount\na,2024-01-01,"1,5"\nb,2024-01-02,7.5\n', "mixed.csv")
    assert "mixes decimal marks ('7.5' at row 2, '1,5' at row 1)" in error(mixed)


def test_dots_as_thousands_separators_get_a_hint(tmp_path):
    path = write(tmp_path, "customer_id;date;amount\na;2024-01-01;1.234.567\n")
    assert error(path).endswith("(first at row 1: '1.234.567'); if '.' separates thousands here, pass read.decimal_comma=True")
    assert load(path, decimal_comma=True).frame.collect()["amount"].to_list() == [1234567.0]


def test_price_and_quantity_with_decimal_commas(tmp_path):
    path = write(tmp_path, "customer_id;date;price;quantity\na;2024-01-01;2,50;4\n")
    assert load(path).frame.collect()["amount"].to_list() == [10.0]


# --------------------------------------------------------------------------- broken files


def test_unbalanced_quote_names_the_line(tmp_path):
    path = write(tmp_path, HEADER + 'a,2024-01-01,1\n"b,2024-01-02,2\nc,2024-01-03,3\n')
    assert error(path) == (f"{path}: a quoted field opens on line 3 and is never closed (an unbalanced '\"'); "
                           "fix that line or export the file again")


def test_a_column_named_like_the_internal_row_number(tmp_path):
    path = write(tmp_path, "_row,__clvx_row,customer_id,date,amount\n1,1,a,2024-01-01,5\n2,2,b,2024-01-02,x\n")
    assert error(path) == f"{path}: column 'amount' has 1 non-numeric value (first at row 2: 'x')"
    ok = write(tmp_path, "_row,customer_id,date,amount\n1,a,2024-01-01,5\n", "ok.csv")
    assert load(ok).frame.collect()["amount"].to_list() == [5.0]


def test_old_mac_line_endings_are_read(tmp_path):
    path = tmp_path / "mac.csv"
    path.write_bytes(b"customer_id,date,amount\ra,2024-01-01,1\rb,2024-01-02,2\r")
    tx = load(path)
    assert tx.quality.n_rows == 2 and "lines end in CR only" in tx.notes[0]


def test_optional_column_empty_in_every_row_is_treated_as_absent(tmp_path):
    path = write(tmp_path, "customer_id,date,amount,sku\na,2024-01-01,1,\nb,2024-01-02,2,\n")
    tx = load(path)
    assert tx.columns.product is None and not tx.has("product_id")
    assert tx.notes == ("column 'sku' is empty in every row; read as if there were no product column",)


# --------------------------------------------------------------------------- counts


def test_counts_describe_the_rows_used(tmp_path):
    path = write(tmp_path, HEADER + "a,2024-01-01,10\na,2024-01-02,-3\nb,2024-01-03,0\n"
                 "a,2024-02-01,10\na,2024-02-02,-4\nb,2024-02-03,0\nc,2024-02-04,0\n,2024-02-05,1\n")
    q = load_transactions(path, as_of=dt.date(2024, 1, 31), options=FIXED).quality
    # The row with no customer is dated after the as-of date: it is counted there.
    assert (q.n_rows, q.n_no_customer, q.n_after_as_of, q.n_returns, q.n_zero_amount, q.n_used) == (8, 0, 5, 1, 1, 3)
    assert (q.first_date, q.last_date) == (dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 3))


def test_one_pass_and_per_day_counts_agree(tiny_csv, monkeypatch):
    import clv.load

    mapping = ColumnMapping(customer="customer", date="when")
    once = load_transactions(tiny_csv, mapping, options=FIXED)
    monkeypatch.setattr(clv.load, "_days", lambda *args: None)  # force the per-day pass
    per_day = load_transactions(tiny_csv, mapping, options=FIXED)
    assert replace(per_day.quality, far_past_cutoff=None) == once.quality
    assert per_day.frame.collect().sort(pl.all()).equals(once.frame.collect().sort(pl.all()))


@requires_retail
def test_retail_counts_up_to_as_of_describe_those_rows():
    mapping = ColumnMapping(customer="customer_id", date="invoice_date", price="price", quantity="quantity")
    as_of = dt.date(2011, 6, 30)
    q = load_transactions(ONLINE_RETAIL, mapping, as_of=as_of, options=FIXED).quality
    rows = pl.scan_parquet(ONLINE_RETAIL).filter(
        pl.col("customer_id").is_not_null() & (pl.col("invoice_date") < dt.datetime(2011, 7, 1))
    ).select(((pl.col("price") * pl.col("quantity")) < 0).sum().alias("returns"),
             ((pl.col("price") * pl.col("quantity")) == 0).sum().alias("zero"), pl.len().alias("used")).collect().row(0)
    assert (q.n_returns, q.n_zero_amount, q.n_used) == rows


def test_summary_file_in_latin1_names_the_encoding(tmp_path):
    from clv.load import load_summary

    path = tmp_path / "summary.csv"
    path.write_bytes("customer_id,frequency,recency,T,monetary_value\nJosé,1,2,3,4\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"is not UTF-8 text \(byte 0xE9 on line 2\)"):
        load_summary(path)
    assert load_summary(path, options=ReadOptions(encoding="latin-1"))["customer_id"].to_list() == ["José"]


def test_a_repeated_header_is_refused_not_guessed(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("customer_id,date,amount,amount\nA,2024-01-01,5,6\n")
    with pytest.raises(InputError, match=r"column 'amount' appears twice in the header \(columns 3 and 4\); rename or remove one"):
        load_transactions(path)


def test_dashes_settle_day_and_month_as_slashes_do(tmp_path):
    """Billing on the 1st (every day <= 12): '-' is read month first, like '/', with the same note."""
    rows = [f"A,{m:02d}{sep}01{sep}2024,5" for m in range(1, 13) for sep in ["-"]]
    dashed, slashed = tmp_path / "dash.csv", tmp_path / "slash.csv"
    dashed.write_text("customer_id,date,amount\n" + "\n".join(rows) + "\n")
    slashed.write_text("customer_id,date,amount\n" + "\n".join(r.replace("-", "/") for r in rows) + "\n")
    a, b = load_transactions(dashed), load_transactions(slashed)
    assert a.quality.last_date == b.quality.last_date == dt.datetime(2024, 12, 1)
    assert a.notes and b.notes and "could be day/month or month/day" in a.notes[0]


@pytest.mark.parametrize("value", ["nan", "NaN", "inf"])
def test_nan_and_infinite_amounts_are_named_with_their_row(tmp_path, value):
    path = tmp_path / "odd.csv"
    path.write_text(f"customer_id,date,amount\nA,2024-01-01,3\nA,2024-01-05,{value}\n")
    with pytest.raises(InputError, match=r"column 'amount' has 1 infinite or NaN value \(first at row 2\)"):
        load_transactions(path)


def test_rows_with_no_customer_are_counted_inside_the_as_of_window_only(tmp_path):
    path = write(tmp_path, HEADER + "a,2024-01-01,10\n,2024-01-02,1\nNULL,2024-01-03,1\n"
                 "a,2024-02-01,10\n,2024-02-02,1\nNULL,2024-02-03,1\n")
    q = load_transactions(path, as_of=dt.date(2024, 1, 31), options=FIXED).quality
    assert (q.n_no_customer, q.n_placeholder_customer, q.n_after_as_of, q.n_used) == (2, 1, 3, 1)
    whole = load_transactions(path, options=FIXED).quality
    assert (whole.n_no_customer, whole.n_placeholder_customer, whole.n_after_as_of, whole.n_used) == (4, 2, 0, 2)
