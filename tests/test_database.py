"""A database as INPUT (clv/database.py): the same summary, scores and segments as from the Parquet file.

Oracle: the same command on the bundled sample's Parquet file. The database is a DuckDB
file and a real PostgreSQL server started for the session (tests/engines.py); the
errors are checked line for line, and no message ever shows the password.
"""

from __future__ import annotations

import pytest

from cli import app
from clv.database import mask
from tests.engines import PG_PASSWORD

duckdb = pytest.importorskip("duckdb")

SEGMENT = ["segment", "--k", "4", "-q", "-f", "csv"]


@pytest.fixture(scope="session")
def duck_file(tmp_path_factory):
    from clv.sample import bundled_sample_path

    path = tmp_path_factory.mktemp("duck") / "shop.db"
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE sales AS SELECT * FROM read_parquet('{bundled_sample_path()}')")
    return path


@pytest.fixture(scope="session")
def from_file():
    """Each command's stdout on the bundled sample's Parquet file, computed once."""
    from typer.testing import CliRunner

    runner, out = CliRunner(), {}
    for name, args in {"rfm": ["rfm", "--no-scores", "-q", "-f", "csv"], "predict": ["predict", "-q", "-f", "csv"],
                       "segment": SEGMENT}.items():
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        out[name] = res.stdout
    return out


def test_mask_hides_the_password_and_keeps_the_rest():
    assert mask("postgresql://ann:p%40ss@db.example:5432/shop") == "postgresql://ann:***@db.example:5432/shop"
    assert mask("postgresql://ann@db/shop") == "postgresql://ann@db/shop"


def test_duckdb_file_rfm_and_predict_equal_the_parquet_file(runner, duck_file, from_file):
    uri = f"duckdb:///{duck_file}"
    for name, args in {"rfm": ["rfm", "--no-scores", "-q", "-f", "csv"], "predict": ["predict", "-q", "-f", "csv"]}.items():
        res = runner.invoke(app, [*args[:1], uri, "--table", "sales", *args[1:]])
        assert res.exit_code == 0, res.output
        assert res.stdout == from_file[name], name


@pytest.mark.slow
def test_duckdb_file_segments_equal_the_parquet_file(runner, duck_file, from_file):
    res = runner.invoke(app, [SEGMENT[0], f"duckdb:///{duck_file}", "--table", "sales", *SEGMENT[1:]])
    assert res.exit_code == 0, res.output
    assert res.stdout == from_file["segment"]


def test_query_reads_a_select_instead_of_a_table(runner, duck_file, from_file):
    res = runner.invoke(app, ["rfm", f"duckdb:///{duck_file}", "--query", "SELECT * FROM sales WHERE price IS NOT NULL",
                              "--no-scores", "-q", "-f", "csv"])
    assert res.exit_code == 0, res.output
    assert res.stdout == from_file["rfm"]


def test_commands_that_need_order_lines_refuse_a_database_in_one_line(runner, duck_file):
    res = runner.invoke(app, ["validate", f"duckdb:///{duck_file}", "--table", "sales", "--calibration-end", "2024-01-01"])
    assert res.exit_code == 2
    assert res.stderr.startswith(f"Error: duckdb:///{duck_file}: this command needs the order lines")
    assert res.stderr.count("\n") == 1


def test_missing_duckdb_table_and_file_are_one_line_errors(runner, duck_file, tmp_path):
    res = runner.invoke(app, ["rfm", f"duckdb:///{duck_file}", "--table", "nosuch", "-q"])
    assert res.exit_code == 2
    assert res.stderr == f"Error: duckdb:///{duck_file}: no table nosuch (--table nosuch); check its name and schema, e.g. public.sales\n"
    res = runner.invoke(app, ["rfm", f"duckdb:///{tmp_path}/none.db", "--table", "sales", "-q"])
    assert res.exit_code == 2
    assert res.stderr == (f"Error: duckdb:///{tmp_path}/none.db: cannot open the DuckDB file; check the path after duckdb:// "
                          "(three slashes for an absolute path)\n")


def test_table_without_a_database_input_is_refused(runner, tiny_csv):
    res = runner.invoke(app, ["rfm", str(tiny_csv), "--table", "sales", "-q"])
    assert res.exit_code == 2
    assert "--table and --query go with a database INPUT" in res.stderr


# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_rfm_and_predict_equal_the_parquet_file(runner, postgres, from_file):
    for name, args in {"rfm": ["rfm", "--no-scores", "-q", "-f", "csv"], "predict": ["predict", "-q", "-f", "csv"]}.items():
        res = runner.invoke(app, [*args[:1], postgres.uri(), "--table", "sales", *args[1:]])
        assert res.exit_code == 0, res.output
        assert res.stdout == from_file[name], name
        assert PG_PASSWORD not in res.output


@pytest.mark.slow
def test_postgres_segments_equal_the_parquet_file(runner, postgres, from_file):
    res = runner.invoke(app, [SEGMENT[0], postgres.uri(), "--table", "public.sales", *SEGMENT[1:]])
    assert res.exit_code == 0, res.output
    assert res.stdout == from_file["segment"]


def test_postgres_password_from_pgpassword(runner, postgres, from_file):
    uri = postgres.uri().replace(f":{PG_PASSWORD}@", "@")
    res = runner.invoke(app, ["rfm", uri, "--table", "sales", "--no-scores", "-q", "-f", "csv"], env={"PGPASSWORD": PG_PASSWORD})
    assert res.exit_code == 0, res.output
    assert res.stdout == from_file["rfm"]


def test_postgres_wrong_password_is_one_line_without_the_password(runner, postgres):
    res = runner.invoke(app, ["rfm", postgres.uri(password="wrong-guess"), "--table", "sales", "-q"])
    assert res.exit_code == 2
    shown = postgres.uri(password="***")
    assert res.stderr == f"Error: {shown}: the server refused the user name or password; check the URI's user, PGPASSWORD or ~/.pgpass\n"
    assert "wrong-guess" not in res.output


def test_postgres_unreachable_server_is_one_line(runner, postgres):
    from tests.engines import _free_port

    uri = f"postgresql://clvx:{PG_PASSWORD}@127.0.0.1:{_free_port()}/clvx"
    res = runner.invoke(app, ["segment", uri, "--table", "sales", "-q"])
    assert res.exit_code == 2
    assert res.stderr == f"Error: {mask(uri)}: cannot reach the database server; check the host and port, and that the server is running\n"
    assert PG_PASSWORD not in res.output


def test_postgres_missing_table_and_database_are_one_line(runner, postgres):
    res = runner.invoke(app, ["fit", postgres.uri(), "--table", "salez", "-q"])
    assert res.exit_code == 2
    assert res.stderr == f"Error: {postgres.uri(password='***')}: no table salez (--table salez); check its name and schema, e.g. public.sales\n"
    res = runner.invoke(app, ["fit", postgres.uri(database="nope"), "--table", "sales", "-q"])
    assert res.exit_code == 2
    assert res.stderr == f"Error: {postgres.uri(password='***', database='nope')}: no such database on the server; check the database name at the end of the URI\n"


def test_postgres_missing_column_names_the_columns_it_has(runner, postgres):
    res = runner.invoke(app, ["rfm", postgres.uri(), "--table", "sales", "--customer-col", "client", "-q"])
    assert res.exit_code == 2
    assert "no column 'client'" in res.stderr and "customer_id" in res.stderr
    assert PG_PASSWORD not in res.output


def test_segment_save_adds_the_centres_to_a_model_file_predict_reads(runner, tmp_path):
    import json

    path = tmp_path / "model.json"
    res = runner.invoke(app, ["segment", "--k", "4", "-q", "--save", str(path)])
    assert res.exit_code == 0, res.output
    doc = json.loads(path.read_text())
    assert len(doc["segments"]["centres"]) == 4 and len(doc["segments"]["names"]) == 4
    res = runner.invoke(app, ["predict", "--saved-model", str(path), "-q", "-f", "csv"])
    assert res.exit_code == 0, res.output


def test_database_input_and_table_from_a_settings_file(runner, duck_file, from_file, tmp_path):
    config = tmp_path / "clvx.toml"
    config.write_text(f'input = "duckdb:///{duck_file}"\ntable = "sales"\n\n[sql]\ndialect = "postgres"\n')
    res = runner.invoke(app, ["rfm", "--config", str(config), "--no-scores", "-q", "-f", "csv"])
    assert res.exit_code == 0, res.output
    assert res.stdout == from_file["rfm"]
    res = runner.invoke(app, ["sql", "rfm", "--config", str(config)])
    assert res.exit_code == 0, res.output
    assert 'CAST("customer_id" AS TEXT)' in res.stdout  # PostgreSQL's spelling, from the [sql] table
