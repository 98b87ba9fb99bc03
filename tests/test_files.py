"""Output files never cost the user data: checked before work, all or nothing, atomic."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clv.errors import InputError
from present.files import Output, atomic_write, atomic_write_bytes, check_outputs, transaction
from tests.conftest import FIXTURES

TINY = ["--date-col", "when"]
ROOT = Path(__file__).resolve().parents[1]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".clvx-"))


@pytest.fixture()
def log(tmp_path: Path) -> Path:
    path = tmp_path / "in.csv"
    path.write_bytes((FIXTURES / "tiny.csv").read_bytes())
    return path


# --------------------------------------------------------------------------- refused before work


def test_output_that_is_the_input_is_refused_as_the_same_file(log: Path, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "hard.csv").hardlink_to(log)
    (tmp_path / "link.csv").symlink_to(log)
    monkeypatch.chdir(tmp_path)
    for name in ("in.csv", "./in.csv", str(log), "hard.csv", "link.csv"):
        with pytest.raises(InputError, match=r"^--output .* is the INPUT file.*destroy the input"):
            check_outputs([Output("--output", Path(name))], [("INPUT", Path("in.csv"))])


def test_two_outputs_on_one_file_are_refused_naming_both_flags(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="^--assignments and --output both write to x.csv; give each output its own file$"):
        check_outputs([Output("--assignments", Path("x.csv")), Output("--output", Path("./x.csv"))])
    with pytest.raises(InputError, match="both write to standard output"):
        check_outputs([Output("the table", Path("-")), Output("--targets", Path("-"))])
    # Devices can take several outputs: discarding two results in /dev/null is fine.
    check_outputs([Output("--assignments", Path("/dev/null")), Output("--output", Path("/dev/null"))])


def test_missing_folder_or_directory_output_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder .* does not exist; create it first"):
        check_outputs([Output("--output", tmp_path / "nodir" / "r.xlsx")])
    with pytest.raises(InputError, match="is a directory"):
        check_outputs([Output("--output", tmp_path)])


@pytest.mark.parametrize(
    "args",
    [
        ["rfm", "{log}", "-o", "{log}"],
        ["rfm", "{log}", "-o", "{dir}/./in.csv"],
        ["predict", "{log}", "-o", "{log}"],
        ["segment", "{log}", "--assignments", "{log}"],
        ["cross-sell", "{log}", "--targets", "{log}"],
        ["report", "{log}", "-o", "{dir}/ok.html", "-o", "{dir}/nodir/r.xlsx"],
        ["segment", "{log}", "--assignments", "{dir}/x.csv", "-o", "{dir}/x.csv"],
        ["cross-sell", "{log}", "--targets", "{dir}/x.csv", "--rules", "{dir}/x.csv"],
        ["rules", "{log}", "-o", "{log}"],
        ["rules", "{log}", "-o", "{dir}/x.csv", "--bundles", "{dir}/x.csv"],
        ["rules", "{log}", "--bundles", "{dir}/nodir/b.csv"],
    ],
)
def test_cli_refuses_unsafe_outputs_before_reading_and_changes_nothing(runner, log: Path, args: list[str]) -> None:
    from cli import app

    before = {p.name: p.read_bytes() for p in log.parent.iterdir()}
    filled = [a.format(log=log, dir=log.parent) for a in args]
    result = runner.invoke(app, [*filled, *TINY])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "Read " not in result.output  # refused before any work
    assert {p.name: p.read_bytes() for p in log.parent.iterdir()} == before


def test_predict_refuses_to_overwrite_its_model_file(runner, tmp_path: Path) -> None:
    from cli import app

    model = tmp_path / "m.json"
    model.write_text("{}")
    result = runner.invoke(app, ["predict", "--saved-model", str(model), "-o", str(model)])
    assert result.exit_code == 2
    assert "is the --saved-model file" in result.output
    assert model.read_text() == "{}"


def test_glob_input_never_reads_the_runs_own_output(runner, log: Path) -> None:
    from cli import app

    out = log.parent / "in-rfm.csv"
    first = runner.invoke(app, ["rfm", str(log.parent / "in*.csv"), "-o", str(out), "-q", *TINY])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["rfm", str(log.parent / "in*.csv"), "-o", str(out), *TINY])
    assert again.exit_code == 0, again.output
    assert "Read 9 rows from in.csv" in again.output  # not 9 + the previous output's rows


# --------------------------------------------------------------------------- all or nothing


def test_failed_run_changes_no_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("old a")

    def boom(tmp: Path) -> None:
        tmp.write_text("partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError), transaction():
        atomic_write_bytes(first, b"new a")
        atomic_write(second, boom)
    assert first.read_text() == "old a"
    assert not second.exists()
    assert leftovers(tmp_path) == []
    with transaction():
        atomic_write_bytes(first, b"new a")
        atomic_write_bytes(second, b"new b")
        assert first.read_text() == "old a"  # held back until the run succeeds
    assert (first.read_text(), second.read_text()) == ("new a", "new b")


def test_symlink_output_keeps_the_link_and_replaces_its_target(tmp_path: Path) -> None:
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and target.read_text() == "new"


def test_fifo_output_is_written_through_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    atomic_write_bytes(fifo, b"through the pipe")
    reader.join(timeout=10)
    assert got == [b"through the pipe"]
    assert fifo.is_fifo()


def test_dash_means_standard_output(runner, log: Path, monkeypatch) -> None:
    from cli import app

    monkeypatch.chdir(log.parent)
    result = runner.invoke(app, ["rfm", str(log), "-o", "-", "-f", "csv", "-q", *TINY])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("customer_id,frequency,recency,T,monetary_value")
    assert not (Path.cwd() / "-").exists()


def test_output_name_at_the_file_name_limit_is_written(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 250 + ".csv")
    atomic_write_bytes(path, b"ok")
    assert path.read_bytes() == b"ok"


def test_concurrent_writers_leave_one_complete_output(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    contents = {name: (name * 2_000_000).encode() for name in ("a", "b")}
    code = (
        "import sys; from present.files import atomic_write_bytes;"
        "[atomic_write_bytes(sys.argv[1], sys.argv[2].encode() * 2_000_000) for _ in range(5)]"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), name], cwd=ROOT) for name in contents]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert path.read_bytes() in contents.values()
    assert leftovers(tmp_path) == []


def test_sigterm_during_a_write_removes_the_temporary_file(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time; import cli; from present.files import atomic_write;"
        "signal.signal(signal.SIGTERM, cli._terminated);"
        "atomic_write(sys.argv[1], lambda tmp: (tmp.write_bytes(b'x' * 1_000_000), time.sleep(30)))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "big.csv")], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not leftovers(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(tmp_path), "the writer never started"
    proc.terminate()
    assert proc.wait(timeout=30) == 128 + 15
    assert leftovers(tmp_path) == [] and not (tmp_path / "big.csv").exists()


# --------------------------------------------------------------------------- the process edge


def run_clvx(*args: str, shell_suffix: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = " ".join([f"'{sys.executable}'", "cli.py", *(f"'{a}'" for a in args)]) + shell_suffix
    return subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_closed_stdout_is_one_error_line(log: Path) -> None:
    result = run_clvx("rfm", str(log), "-q", "-f", "csv", *TINY, shell_suffix=" >&-")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: cannot write the output: stdout is closed; write to a file with --output PATH")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [
    ("rfm", "-f", "csv", "-q"), ("rfm", "-q"), ("predict", "-f", "json", "-q"), ("segment", "--assignments", "{tmp}/a.csv", "-q"),
    ("sample", "--customers", "50", "--truth", "{tmp}/truth", "-q"), ("sql", "rfm"), ("--version",), (),
])
def test_a_reader_that_closed_the_pipe_is_no_failure_and_the_files_are_still_written(args, tmp_path: Path) -> None:
    """`clvx ... | head`: a reader that stops early has what it wanted. Here it is gone before the first byte, so every
    write to stdout meets the closed pipe (tables through rich, CSV and JSON through clvx's writer, the sample, SQL, the
    version, the help of a bare `clvx`): exit code 0 as for an output that fits the pipe's buffer, nothing said, and the
    command's files written all the same."""
    args = tuple(a.format(tmp=tmp_path) for a in args)
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "cli.py", *args], cwd=ROOT, stdout=write, stderr=subprocess.PIPE)
    os.close(write)
    os.close(read)
    stderr = proc.communicate(timeout=120)[1].decode()
    assert (proc.returncode, stderr) == (0, "")
    if "--assignments" in args:
        assert (tmp_path / "a.csv").read_text().startswith("customer_id,")
    if "--truth" in args:
        assert any((tmp_path / "truth").iterdir())


def test_diagnostics_on_a_closed_pipe_too_are_no_failure(tmp_path: Path) -> None:
    """`clvx segment 2>&1 | head`: progress and notices meet the closed pipe as well; they fall silent, and the run
    goes on to write its files (rich's own answer exits 1 and points stdout, not stderr, at /dev/null)."""
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "cli.py", "segment", "--assignments", str(tmp_path / "a.csv")], cwd=ROOT,
                            stdout=write, stderr=write)
    os.close(write)
    os.close(read)
    assert proc.wait(timeout=120) == 0
    assert (tmp_path / "a.csv").read_text().startswith("customer_id,")


def test_an_output_pipe_that_stops_reading_is_a_failure_not_a_closed_stdout() -> None:
    """`-o >(gzip > x.gz)` whose reader is gone has lost the data: one error line and a non-zero exit, unlike stdout's
    reader, which has what it wanted."""
    result = run_clvx("rfm", "-q", "-f", "csv", shell_suffix=" -o >(exec 0<&-; sleep 2)")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("Error: cannot write /dev/fd/") and result.stderr.strip().endswith("Broken pipe")


def test_clvx_debug_zero_keeps_tracebacks_off(tmp_path: Path) -> None:
    result = run_clvx("rfm", str(tmp_path / "missing.csv"), env={"CLVX_DEBUG": "0"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert run_clvx("rfm", str(tmp_path / "missing.csv"), env={"CLVX_DEBUG": "1"}).stderr.count("Traceback") == 1


def test_debug_keeps_the_error_line_naming_flags_before_the_traceback() -> None:
    """With --debug the traceback names options as the Python API does (columns.customer); the line above it is
    the one a run without --debug prints, naming the flag."""
    stderr = run_clvx("rfm", "--customer-col", "custmer", "--debug").stderr
    line = next(x for x in stderr.splitlines() if x.startswith("Error: "))
    assert "no column 'custmer' (given by --customer-col)" in line
    assert stderr.index(line) < stderr.index("Traceback") and "(given by columns.customer)" in stderr


@pytest.mark.parametrize("redirect", [" -o /dev/full", " > /dev/full"])
def test_a_full_disk_is_one_error_line(log: Path, redirect: str) -> None:
    result = run_clvx("rfm", str(log), "-q", "-f", "csv", *TINY, shell_suffix=redirect)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last in ("Error: cannot write /dev/full: No space left on device",
                    "Error: cannot write the output to stdout: the disk is full; free some space, "
                    "or write elsewhere with --output PATH")


def test_a_full_disk_inside_a_library_writer_is_one_line_and_no_file_changes(tmp_path: Path) -> None:
    """xlsxwriter wraps ENOSPC in its own FileCreateError; the message is still the disk's."""
    import errno

    class FileCreateError(Exception):
        pass

    kept = tmp_path / "r.html"
    kept.write_text("old")

    def full(tmp: Path) -> None:
        raise FileCreateError(OSError(errno.ENOSPC, "No space left on device"))

    with pytest.raises(Exception, match=r"cannot write .*r.xlsx: No space left on device; no file was changed$"), transaction():
        atomic_write_bytes(kept, b"new")
        atomic_write(tmp_path / "r.xlsx", full)
    assert kept.read_text() == "old" and leftovers(tmp_path) == []


def test_wrote_lines_appear_only_once_the_files_are_in_place(runner, log: Path) -> None:
    from cli import app

    result = runner.invoke(app, ["cross-sell", "--targets", str(log.parent / "t.csv"), "--rules", str(log.parent / "no" / "r.csv")])
    assert result.exit_code == 2 and "Wrote" not in result.output
    assert not (log.parent / "t.csv").exists()


def test_glob_input_says_which_output_it_leaves_out(runner, log: Path) -> None:
    from cli import app

    out = log.parent / "in-rfm.csv"
    out.write_text("stale")
    result = runner.invoke(app, ["rfm", str(log.parent / "in*.csv"), "-o", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert f"also matches {out}, this run's own output; it is not read, and it will be replaced" in result.stderr


def test_dash_as_input_reads_standard_input(log: Path) -> None:
    result = run_clvx("rfm", "-", "-q", "-f", "csv", "--no-scores", *TINY, shell_suffix=f" < '{log}'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == "00042,2,14,19,22.5"


def test_sample_truth_folder_cannot_be_the_output_file(runner, tmp_path: Path) -> None:
    from cli import app

    target = tmp_path / "ss.csv"
    result = runner.invoke(app, ["sample", "-n", "50", "-o", str(target), "--truth", str(target)])
    assert result.exit_code == 2 and "--truth" in result.stderr and "is the --output file" in result.stderr
    assert not target.exists()


def test_exports_to_a_device_need_no_extension(runner) -> None:
    from cli import app

    result = runner.invoke(app, ["segment", "-q", "--method", "rfm", "-o", "/dev/null", "--assignments", "/dev/null"])
    assert result.exit_code == 0, result.output
