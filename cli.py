"""clvx command line: parse options, call the core, hand the result to present.output.

Heavy libraries (polars, lifetimes, scikit-learn) are imported inside the commands
so that ``clvx --help`` starts instantly.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import os
import signal
import sys
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

try:  # typer >= 0.22 vendors click and raises its own exception types
    from typer import TyperException as UsageBase
except ImportError:  # pragma: no cover - older typer on top of click
    from click import ClickException as UsageBase  # type: ignore[assignment]

if TYPE_CHECKING:
    from clv.load import Transactions
    from present.output import Emitter, Reporter

from clv import __version__  # noqa: E402 - light: the package's __init__ imports nothing heavy

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 runtime failure (e.g. a model cannot be fitted), 2 usage or input error."

app = typer.Typer(
    name="clvx",
    help=(
        "Customer lifetime value, segments and cross-sell targets from a raw transaction log.\n\n"
        "Run any command without INPUT to try it on the bundled sample. " + EXIT_CODES_HELP
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


class PeriodChoice(str, Enum):
    day = "day"
    week = "week"
    month = "month"


class FormatChoice(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


class MethodChoice(str, Enum):
    kmeans = "kmeans"
    rfm = "rfm"


MethodOpt = Annotated[MethodChoice, typer.Option("--method", help="How customers are segmented: kmeans (cluster value and behaviour) or rfm (the 11 named RFM segments)")]
KOpt = Annotated[str, typer.Option("--k", help="Number of segments, or auto (3 to 8, chosen by silhouette among stable solutions)")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same input and seed give the same output")]


def _parse_date(value: str | None, flag: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a date in YYYY-MM-DD form", param_hint=flag) from None


# --------------------------------------------------------------------------- option groups
# Each group is declared once and added to every command that takes it, so all
# commands spell and document the shared options identically.

COLUMNS_PANEL = "Input columns"
OUTPUT_PANEL = "Output"
RUN_PANEL = "Run"


def _opt(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


def _col(flag: str, help_text: str) -> Any:
    return Annotated[Optional[str], typer.Option(flag, help=help_text, rich_help_panel=COLUMNS_PANEL, show_default=False)]


@dataclass(frozen=True)
class Source:
    """Where the transaction log is and how to read it."""

    input: str | None
    customer_col: str | None
    date_col: str | None
    amount_col: str | None
    price_col: str | None
    quantity_col: str | None
    order_col: str | None
    product_col: str | None
    category_col: str | None
    date_format: str | None
    as_of: dt.date | None
    paths: tuple[str, ...] | None = None  # INPUT's glob matched once, less the run's own outputs

    PARAMS = (
        _opt("input", Annotated[Optional[str], typer.Argument(
            help="Transaction log: a CSV or Parquet file, or a quoted glob of them. Default: the bundled sample.",
            show_default=False)], None),
        _opt("customer_col", _col("--customer-col", "Customer id column \\[default: auto-detect, e.g. customer_id, CustomerID]"), None),
        _opt("date_col", _col("--date-col", "Date or datetime column \\[default: auto-detect, e.g. date, order_date, InvoiceDate]"), None),
        _opt("amount_col", _col("--amount-col", "Line revenue column \\[default: auto-detect, e.g. amount, revenue, sales]"), None),
        _opt("price_col", _col("--price-col", "Unit price column; revenue = price x quantity"), None),
        _opt("quantity_col", _col("--quantity-col", "Quantity column, with --price-col"), None),
        _opt("order_col", _col("--order-col", "Order / invoice id column"), None),
        _opt("product_col", _col("--product-col", "Product id column"), None),
        _opt("category_col", _col("--category-col", "Product category column"), None),
        _opt("date_format", _col("--date-format", "strftime format of the date column, e.g. '%d/%m/%Y' \\[default: detect]"), None),
        _opt("as_of", Annotated[Optional[str], typer.Option(
            "--as-of", help="End of observation, YYYY-MM-DD; later rows are excluded \\[default: last date in the log]",
            rich_help_panel=COLUMNS_PANEL, show_default=False)], None),
    )

    @classmethod
    def build(cls, kw: dict[str, Any]) -> Source:
        kw["as_of"] = _parse_date(kw["as_of"], "--as-of")
        return cls(**kw)


@dataclass(frozen=True)
class Output:
    format: FormatChoice | None
    output: Path | None

    PARAMS = (
        _opt("format", Annotated[Optional[FormatChoice], typer.Option(
            "--format", "-f", help="table, csv, json or parquet \\[default: from --output's extension, else table]",
            rich_help_panel=OUTPUT_PANEL, show_default=False)], None),
        _opt("output", Annotated[Optional[Path], typer.Option(
            "--output", "-o", help="Write to this file (atomically) instead of stdout",
            rich_help_panel=OUTPUT_PANEL, show_default=False, dir_okay=False)], None),
    )

    @classmethod
    def build(cls, kw: dict[str, Any]) -> Output:
        return cls(**kw)

    def emitter(self) -> Emitter:
        from present.output import Emitter, Format

        return Emitter(fmt=Format(self.format.value) if self.format else None, output=self.output)


@dataclass(frozen=True)
class Run:
    quiet: bool
    debug: bool
    config: Path | None

    PARAMS = (
        _opt("quiet", Annotated[bool, typer.Option(
            "--quiet", "-q", help="No progress or summaries on stderr (warnings and errors still show)",
            rich_help_panel=RUN_PANEL)], False),
        _opt("debug", Annotated[bool, typer.Option(
            "--debug", help="Show the full traceback when something fails", rich_help_panel=RUN_PANEL)], False),
        _opt("config", Annotated[Optional[Path], typer.Option(
            "--config", help="Settings file (clvx.toml, or pyproject.toml with [tool.clvx]); flags override it",
            rich_help_panel=RUN_PANEL, show_default=False, dir_okay=False)], None),
    )

    @classmethod
    def build(cls, kw: dict[str, Any]) -> Run:
        return cls(**kw)

    def reporter(self) -> Reporter:
        from present.output import Reporter

        return Reporter(quiet=self.quiet)




def command(*, summary: str, help_example: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command whose parameters named in ``GROUPS`` are filled from shared options.

    ``summary`` is its line in ``clvx --help`` (short enough not to be cut at 80 columns).

    The wrapper also turns clvx's errors into one ``Error: ...`` line on stderr and
    the error's exit code (a traceback only with ``--debug``).
    """

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)  # typer needs real Annotated objects
        own = [p.replace(annotation=hints[name]) for name, p in sig.parameters.items() if name not in GROUPS]
        groups = [name for name in sig.parameters if name in GROUPS]
        extra = [p for g in groups for p in GROUPS[g].PARAMS]  # type: ignore[attr-defined]
        if "run" not in groups:
            extra += list(Run.PARAMS)

        @functools.wraps(fn)
        def wrapper(ctx: typer.Context, **kwargs: Any) -> None:
            try:
                if kwargs.get("config") is not None:
                    apply_config(ctx, kwargs, kwargs["config"], command_params)
            except Exception as exc:
                _fail(exc, Run(quiet=False, debug=bool(kwargs.get("debug")), config=None))
            built = {}
            for g in groups:
                names = [p.name for p in GROUPS[g].PARAMS]  # type: ignore[attr-defined]
                built[g] = GROUPS[g].build({n: kwargs.pop(n) for n in names})  # type: ignore[attr-defined]
            run = built.get("run") or Run.build({n: kwargs.pop(n) for n in ("quiet", "debug", "config")})
            try:
                from present.files import transaction

                if "source" in built:
                    built["source"] = _guard_outputs(built["source"], kwargs, built, run)
                else:
                    _guard_outputs(None, kwargs, built, run)
                with transaction():
                    fn(**kwargs, **built)
            except (typer.Exit, typer.Abort, UsageBase):
                raise
            except BaseException as exc:
                _fail(exc, run)

        context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        command_params = {p.name: p for p in own + extra}
        wrapper.__signature__ = sig.replace(parameters=[context, *own, *extra])  # type: ignore[attr-defined]
        # Rich help keeps single newlines as line breaks: re-flow each paragraph to one line.
        paragraphs = [" ".join(p.split()) for p in (inspect.getdoc(fn) or "").split("\n\n")]
        wrapper.__doc__ = "\n\n".join([*paragraphs, f"[bold]Example:[/bold] [cyan]{help_example}[/cyan]"])
        return app.command(name=fn.__name__.rstrip("_").replace("_", "-"), short_help=summary)(wrapper)

    return decorate


def _base_type(annotation: Any) -> Any:
    """``Annotated[Optional[X], ...]`` -> ``X``; ``list[X]`` stays a list type."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return args[0]
    return annotation


def _convert_setting(key: str, value: Any, annotation: Any, source: str) -> Any:
    from clv.errors import InputError

    target = _base_type(annotation)
    if typing.get_origin(target) is list:
        (item,) = typing.get_args(target)
        values = value if isinstance(value, list) else [value]
        return [_convert_setting(key, v, item, source) for v in values]
    try:
        if isinstance(target, type) and issubclass(target, Enum):
            return target(value)
        if target is Path:
            return Path(value)
        if target is bool and isinstance(value, bool):
            return value
        if target in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            return target(value)
        if target is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    except ValueError:
        pass
    expected = (f"one of {', '.join(m.value for m in target)}" if isinstance(target, type) and issubclass(target, Enum)
                else getattr(target, "__name__", str(target)))
    raise InputError(f"{source}: setting '{key}' = {value!r} should be {expected}")


def _all_option_names() -> set[str]:
    names = set()
    for info in app.registered_commands:
        names |= {n for n in inspect.signature(info.callback).parameters if n != "ctx"}
    return names


def apply_config(ctx: Any, kwargs: dict[str, Any], path: Path, params: dict[str, inspect.Parameter]) -> None:
    """Fill options not given on the command line from a TOML settings file.

    Top-level keys apply to every command that has that option (named as on the
    command line, without dashes: ``customer-col = "CustomerID"``); a table named after
    a command (``[segment]``) applies to that command only. ``input`` names the log.
    """
    import difflib
    import tomllib

    from clv.errors import InputError

    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from exc
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("clvx")
        if data is None:
            raise InputError(f"{path} has no [tool.clvx] table")
    command_names = {info.name or info.callback.__name__ for info in app.registered_commands}
    known = _all_option_names() - {"config"}
    settings = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for table, values in data.items():
        if isinstance(values, dict):
            if table not in command_names:
                near = difflib.get_close_matches(table, sorted(command_names), n=1)
                raise InputError(f"{path}: [{table}] is not a clvx command" + (f"; did you mean [{near[0]}]?" if near else ""))
            if table == ctx.info_name:
                settings.update(values)
    for key, value in settings.items():
        name = key.replace("-", "_")
        if name not in known:
            near = difflib.get_close_matches(key, sorted(n.replace("_", "-") for n in known), n=1)
            raise InputError(f"{path}: '{key}' is not a clvx option" + (f"; did you mean '{near[0]}'?" if near else ""))
        if name not in params:
            continue
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
            continue
        kwargs[name] = _convert_setting(key, value, params[name].annotation, str(path))


# Options that name files a command writes, with the flag users type.
OUTPUT_FLAGS = {"output": "--output", "assignments": "--assignments", "targets": "--targets",
                "rules": "--rules", "save": "--save"}


def _outputs(kwargs: dict[str, Any], built: dict[str, Any]) -> list[Any]:
    from present.files import Output as OutputFile

    found = []
    out = built.get("out")
    if out is not None and out.output is not None:
        found.append(OutputFile("--output", out.output))
    elif out is not None:
        found.append(OutputFile("the table", Path("-")))  # the result goes to standard output
    for name, flag in OUTPUT_FLAGS.items():
        value = kwargs.get(name)
        for path in value if isinstance(value, list) else [value]:
            if path is not None:
                found.append(OutputFile(flag, Path(path)))
    truth = kwargs.get("truth")
    if truth is not None:
        from clv.sample import CUSTOMERS_FILE, TRUTH_FILE

        found += [OutputFile("--truth", Path(truth) / name) for name in (TRUTH_FILE, CUSTOMERS_FILE)]
    return found


def _guard_outputs(source: Source | None, kwargs: dict[str, Any], built: dict[str, Any], run: Run) -> Source | None:
    """Refuse, before any work, outputs that would overwrite an input or each other.

    A glob INPUT never reads the run's own outputs: they are left out of the match.
    """
    from dataclasses import replace

    from clv.load import resolve_paths
    from present.files import check_outputs, same_file

    outputs = _outputs(kwargs, built)
    inputs: list[tuple[str, Path]] = []
    if run.config is not None:
        inputs.append(("--config", run.config))
    if kwargs.get("model_file") is not None:
        inputs.append(("--model", Path(kwargs["model_file"])))
    if source is not None:
        if source.input is None:
            from clv.sample import bundled_sample_path

            inputs.append(("bundled sample", bundled_sample_path()))
        elif any(ch in source.input for ch in "*?[") and not Path(source.input).exists():
            matched = resolve_paths(source.input)
            kept = [p for p in matched if not any(same_file(p, o.path) for o in outputs)]
            if not kept:
                raise _input_error(f"'{source.input}' matches only this run's own output files; nothing to read")
            if len(kept) < len(matched):
                source = replace(source, paths=tuple(map(str, kept)))
            inputs += [("INPUT", p) for p in kept]
        else:
            inputs.append(("INPUT", Path(source.input)))
    check_outputs(outputs, inputs)
    return source


def _input_error(message: str) -> Exception:
    from clv.errors import InputError

    return InputError(message)


def _fail(exc: BaseException, run: Run) -> None:
    from clv.errors import ClvxError
    from present.output import Reporter

    if run.debug or os.environ.get("CLVX_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off"):
        raise exc
    reporter = Reporter()
    if isinstance(exc, ClvxError):
        reporter.error(str(exc))
        raise typer.Exit(exc.exit_code)
    if isinstance(exc, MemoryError):
        reporter.error("out of memory; try a Parquet input, fewer columns, or a coarser --period")
        raise typer.Exit(1)
    if isinstance(exc, KeyboardInterrupt):
        raise typer.Exit(130)
    if isinstance(exc, SystemExit):
        raise exc
    reporter.error(f"unexpected failure: {type(exc).__name__}: {exc} (run again with --debug for the traceback)")
    raise typer.Exit(1)


# --------------------------------------------------------------------------- shared steps


def load(source: Source, reporter: Reporter, *, need: tuple[str, ...] = ()) -> Transactions:
    """Load and validate the log, then tell the user what was used and excluded."""
    from clv.load import ColumnMapping, load_transactions
    from clv.sample import bundled_sample_path

    path: Any = source.paths or source.input
    if path is None:
        path = str(bundled_sample_path())
        reporter.info(f"No INPUT given: using the bundled sample ({path}).")
    mapping = ColumnMapping(
        customer=source.customer_col,
        date=source.date_col,
        amount=source.amount_col,
        price=source.price_col,
        quantity=source.quantity_col,
        order=source.order_col,
        product=source.product_col,
        category=source.category_col,
        date_format=source.date_format,
    )
    with reporter.step("Reading and checking the transaction log"):
        tx = load_transactions(path, mapping, as_of=source.as_of)
    for role in need:
        if getattr(tx.columns, role) is None:
            from clv.errors import InputError

            raise InputError(f"this command needs a {role} column; name it with --{role}-col")
    for note in tx.notes:
        reporter.warn(note)
    _report_quality(tx, reporter)
    return tx


def _report_quality(tx: Transactions, reporter: Reporter) -> None:
    q = tx.quality
    files = f"{q.n_files} files" if q.n_files > 1 else Path(tx.sources[0]).name
    reporter.info(f"Read {q.n_rows:,} rows from {files}; columns: {tx.columns.describe()}.")
    excluded = []
    if q.n_no_customer:
        excluded.append(f"{q.n_no_customer:,} with no customer ({q.n_no_customer / q.n_rows:.1%})")
    if q.n_after_as_of:
        excluded.append(f"{q.n_after_as_of:,} dated after {q.as_of}")
    if q.n_returns_unmatched:
        excluded.append(f"{q.n_returns_unmatched:,} returns with no earlier purchase in the log")
    if excluded:
        reporter.info("Excluded: " + "; ".join(excluded) + ".")
    kept = []
    if q.n_returns - q.n_returns_unmatched:
        kept.append(f"{q.n_returns - q.n_returns_unmatched:,} returns netted against the purchase before them")
    if q.n_zero_amount:
        kept.append(f"{q.n_zero_amount:,} zero-amount lines kept as purchases")
    if kept:
        reporter.info("Kept: " + "; ".join(kept) + ".")
    first = q.first_date.date() if q.first_date else None
    reporter.info(f"Observation: {first} to {q.as_of}.")


def _period(p: PeriodChoice) -> Any:
    from clv.rfm import Period

    return Period(p.value)


PeriodOpt = Annotated[PeriodChoice, typer.Option("--period", help="Time unit of frequency, recency and T (weeks start on Monday)")]


class EngineChoice(str, Enum):
    auto = "auto"
    lifetimes = "lifetimes"
    numpy = "numpy"


@dataclass(frozen=True)
class ModelOpts:
    """Options shared by every command that fits BG/NBD and Gamma-Gamma."""

    period: PeriodChoice | None
    penalizer: float
    engine: str

    PARAMS = (
        _opt("period", Annotated[Optional[PeriodChoice], typer.Option(
            "--period", help="Time unit of frequency, recency and T; for an RFM summary file, the unit it is in "
            "\\[default: day, or the saved model's]", rich_help_panel="Model", show_default=False)], None),
        _opt("penalizer", Annotated[float, typer.Option(
            "--penalizer", min=0.0, help="L2 penalty on the model parameters; a small value (0.001) helps hard fits",
            rich_help_panel="Model")], 0.0),
        _opt("engine", Annotated[EngineChoice, typer.Option(
            "--engine", help="Model fitting: lifetimes, numpy (same equations, vectorised) or auto (lifetimes for small data)",
            rich_help_panel="Model")], "auto"),
    )

    @classmethod
    def build(cls, kw: dict[str, Any]) -> ModelOpts:
        kw["engine"] = EngineChoice(kw["engine"]).value
        return cls(**kw)


GROUPS: dict[str, type] = {"source": Source, "out": Output, "run": Run, "model": ModelOpts}


@dataclass(frozen=True)
class Summarized:
    """An RFM summary, from a transaction log or read from a summary file."""

    summary: Any  # pl.DataFrame
    period: Any  # clv.rfm.Period
    transactions: Transactions | None


def summarize(source: Source, period: Any, reporter: Reporter) -> Summarized:
    """RFM per customer: computed from a transaction log, or read from an RFM summary file."""
    from clv.load import is_summary, load_summary
    from clv.rfm import collect, rfm_summary

    if source.input is not None and is_summary(source.paths[0] if source.paths else source.input):
        with reporter.step("Reading the RFM summary"):
            summary = load_summary(source.input, source.customer_col)
        reporter.info(f"Read an RFM summary of {summary.height:,} customers from {source.input} (recency and T in {period.value}s).")
        return Summarized(summary, period, None)
    tx = load(source, reporter)
    with reporter.step("Computing RFM"):
        summary = collect(rfm_summary(tx.frame, tx.as_of, period))
    return Summarized(summary, period, tx)


def fit_models(summary: Any, opts: ModelOpts, reporter: Reporter) -> tuple[Any, Any]:
    from clv.models import BGNBD, GammaGamma

    with reporter.step("Fitting BG/NBD"):
        bg = BGNBD(penalizer=opts.penalizer, engine=opts.engine).fit(summary).params_
    with reporter.step("Fitting Gamma-Gamma"):
        gg = GammaGamma(penalizer=opts.penalizer, engine=opts.engine).fit(summary).params_
    _warn_about_fit(bg, gg, reporter)
    return bg, gg


def _warn_about_fit(bg: Any, gg: Any, reporter: Reporter) -> None:
    from clv.models import CORRELATION_WARNING, LOW_DROPOUT

    if bg.a / (bg.a + bg.b) < LOW_DROPOUT:
        reporter.warn(
            f"BG/NBD finds almost no dropout (mean dropout chance per purchase a/(a+b) = {bg.a / (bg.a + bg.b):.4f}), "
            "so P(alive) is near 1 for nearly everyone; the log may be too short to see customers leave"
        )
    if gg.n_excluded:
        reporter.info(f"Gamma-Gamma: {gg.n_excluded:,} repeat customers with zero or negative spend were left out of the fit.")
    if abs(gg.frequency_spend_correlation) > CORRELATION_WARNING:
        reporter.warn(
            f"spend and frequency are correlated (r = {gg.frequency_spend_correlation:.2f}); Gamma-Gamma assumes "
            "they are independent, so expected spend may be biased"
        )


# --------------------------------------------------------------------------- commands


def _version(value: bool) -> None:
    if value:
        typer.echo(f"clvx {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", "-V", help="Print the version and exit", callback=_version, is_eager=True)] = False,
) -> None:
    """Customer lifetime value, segments and cross-sell targets from a raw transaction log."""


@command(
    summary="Frequency, recency, T and spend per customer; RFM segments",
    help_example="clvx rfm sales.csv --period week --format csv > rfm.csv",
)
def rfm(
    source: Source,
    out: Output,
    run: Run,
    period: PeriodOpt = PeriodChoice.day,
    scores: Annotated[bool, typer.Option("--scores/--no-scores", help="Add r_score, f_score, m_score and rfm_segment")] = True,
) -> None:
    """Recency, frequency, T and monetary value per customer, with RFM scores and segments.

    Computed exactly as lifetimes' summary_data_from_transaction_data: purchases in the
    same period are one purchase, frequency counts repeat periods, recency and T are in
    periods, monetary_value is the mean spend of repeat periods (0 for one-time buyers).
    """
    from present import render
    from clv.rfm import collect, rfm_summary, score_rfm

    reporter = run.reporter()
    tx = load(source, reporter)
    per = _period(period)
    with reporter.step("Computing RFM"):
        summary = collect(rfm_summary(tx.frame, tx.as_of, per))
    columns = ["customer_id", "frequency", "recency", "T", "monetary_value"]
    if scores:
        summary, bins = score_rfm(summary, per)
        columns += ["r_score", "f_score", "m_score", "rfm_segment"]
        render.report_score_bins(bins, reporter)
    render.rfm_rows(summary.select(columns), per, out.emitter())




@command(
    summary="Fit BG/NBD and Gamma-Gamma; show or save the parameters",
    help_example="clvx fit sales.csv --period week --save model.json",
)
def fit(
    source: Source,
    model: ModelOpts,
    out: Output,
    run: Run,
    save: Annotated[Optional[Path], typer.Option("--save", help="Write the fitted models to this JSON file", dir_okay=False)] = None,
) -> None:
    """Fit BG/NBD (purchases and dropout) and Gamma-Gamma (spend); print parameters with 95% intervals.

    INPUT is a transaction log or an RFM summary file (customer_id, frequency, recency, T[, monetary_value]).
    """
    from present import render
    from clv.models import model_document
    from present.output import atomic_write_bytes, to_json

    reporter = run.reporter()
    period = _period(model.period or PeriodChoice.day)
    data = summarize(source, period, reporter)
    bg, gg = fit_models(data.summary, model, reporter)
    if save is not None:
        atomic_write_bytes(save, to_json(model_document(bg, gg, period=period.value, clvx_version=__version__)).encode())
        reporter.info(f"Saved the fitted models to {save}.")
    render.fit_result(bg, gg, period, out.emitter())


@command(
    summary="P(alive), expected purchases and spend, discounted CLV",
    help_example="clvx predict sales.csv --horizon 12m --discount-rate 0.08 -o scores.csv",
)
def predict(
    source: Source,
    model: ModelOpts,
    out: Output,
    run: Run,
    horizon: Annotated[str, typer.Option("--horizon", help="Forecast horizon: 12m, 39w, 90d or 1y")] = "12m",
    discount_rate: Annotated[float, typer.Option("--discount-rate", min=0.0, max=10.0, help="Annual discount rate for CLV")] = 0.10,
    model_file: Annotated[Optional[Path], typer.Option("--model", help="Score with models saved by clvx fit --save instead of fitting", dir_okay=False)] = None,
) -> None:
    """P(alive), expected purchases, expected spend and discounted CLV per customer.

    CLV sums expected spend x expected purchases per month over the horizon, discounted monthly.
    """
    from present import render
    from clv.errors import InputError
    from clv.load import read_json
    from clv.models import Horizon, models_from_document, score_customers

    reporter = run.reporter()
    h = Horizon.parse(horizon)
    if model_file is not None:
        saved_period, bg, gg = models_from_document(read_json(model_file), str(model_file))
        if model.period is not None and model.period.value != saved_period:
            raise InputError(f"--period {model.period.value} differs from the saved model's period ({saved_period}); drop --period")
        period = _period(PeriodChoice(saved_period))
        data = summarize(source, period, reporter)
    else:
        period = _period(model.period or PeriodChoice.day)
        data = summarize(source, period, reporter)
        bg, gg = fit_models(data.summary, model, reporter)
    with reporter.step("Scoring customers"):
        scored = score_customers(data.summary, bg, gg, period_days=period.days, horizon=h, annual_discount_rate=discount_rate)
    render.predictions(scored, period, h, discount_rate, out.emitter())


@command(
    summary="Backtest the forecast and cross-sell on a holdout period",
    help_example="clvx validate sales.csv --calibration-end 2024-06-30",
)
def validate(
    source: Source,
    model: ModelOpts,
    out: Output,
    run: Run,
    calibration_end: Annotated[Optional[str], typer.Option("--calibration-end", help="Last day of the calibration period, YYYY-MM-DD (required); the holdout runs from the next day to --as-of", show_default=False)] = None,
    cross_sell: Annotated[bool, typer.Option("--cross-sell/--no-cross-sell", help="With a product column, also backtest the cross-sell ranking")] = True,
    exclude_products: Annotated[Optional[str], typer.Option("--exclude-products", help="Regular expression of non-product ids or descriptions")] = None,
    seed: SeedOpt = 42,
) -> None:
    """Holdout backtest: fit on the calibration period, forecast the holdout, compare with baselines.

    Reports totals, bias, MAE, RMSE, MSLE and Pearson r for the model and for two naive
    forecasts (zero for everyone; each customer's calibration rate x holdout length). With a
    product column, also the cross-sell targets against first-time purchases in the holdout,
    beside random, popularity and segment-popularity rankings.
    """
    from present import render
    from clv.backtest import holdout_backtest

    from clv.errors import InputError

    if calibration_end is None:
        raise InputError("validate needs --calibration-end YYYY-MM-DD (or calibration-end in the --config file)")
    reporter = run.reporter()
    cal_end = _parse_date(calibration_end, "--calibration-end")
    tx = load(source, reporter)
    period = _period(model.period or PeriodChoice.day)
    with reporter.step("Fitting on the calibration period and scoring the holdout"):
        result = holdout_backtest(tx.frame, cal_end, tx.as_of, period, penalizer=model.penalizer, engine=model.engine)
    cross = None
    if cross_sell and tx.has("product_id"):
        from segments.pipeline import crosssell_backtest

        with reporter.step("Backtesting cross-sell targets"):
            # Same calibration summary as the forecast backtest: reuse its fitted models.
            cross = crosssell_backtest(tx, cal_end, exclude_products=exclude_products, seed=seed, period=period,
                                       models=(result.bgnbd, result.gamma_gamma))
    render.backtest(result, out.emitter(), cross_sell=cross)


def _parse_k(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not 'auto' or a whole number", param_hint="--k") from None


@command(
    summary="Customer segments, named and profiled by value and churn",
    help_example="clvx segment sales.parquet --k auto --explain --assignments segments.csv",
)
def segment(
    source: Source,
    model: ModelOpts,
    out: Output,
    run: Run,
    method: MethodOpt = MethodChoice.kmeans,
    k: KOpt = "auto",
    seed: SeedOpt = 42,
    explain: Annotated[bool, typer.Option("--explain", help="Show the candidate k with their scores")] = False,
    assignments: Annotated[Optional[Path], typer.Option("--assignments", help="Write one row per customer (segment, features, CLV) for CRM import; .csv, .parquet or .json", dir_okay=False)] = None,
) -> None:
    """Customer segments a marketer can name and act on, profiled by size, revenue, CLV and churn risk.

    Clusters customers on recency, frequency, spend, P(alive) and 12-month CLV (log-scaled), names each
    segment from the RFM vocabulary and orders them by their share of predicted CLV.
    """
    from present import render
    from segments.pipeline import run_segmentation

    reporter = run.reporter()
    k_value = _parse_k(k)
    tx = load(source, reporter)
    period = _period(model.period or PeriodChoice.day)
    result = run_segmentation(
        tx, period=period, method=method.value, k=k_value, seed=seed, penalizer=model.penalizer,
        engine=model.engine, step=reporter.step,
    )
    _warn_about_fit(result.bgnbd, result.gamma_gamma, reporter)
    render.segmentation_notes(result, reporter)
    if assignments is not None:
        render.write_assignments(result.segmentation, assignments)
        reporter.info(f"Wrote {result.segmentation.assignments.height:,} customer assignments to {assignments}.")
    render.segment_profile(result, out.emitter(), explain=explain)


@command(
    summary="Who should be offered which product, and expected revenue",
    help_example="clvx cross-sell sales.parquet --targets offers.csv --top-k 3 --rules rules.csv",
)
def cross_sell(
    source: Source,
    model: ModelOpts,
    out: Output,
    run: Run,
    top: Annotated[int, typer.Option("--top", min=1, max=100, help="Products per segment in the ranking")] = 5,
    targets: Annotated[Optional[Path], typer.Option("--targets", help="Write offers per customer (with reasons) to this file", dir_okay=False)] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="Offers per customer in --targets")] = 5,
    max_offers: Annotated[Optional[int], typer.Option("--max-offers", min=1, help="Cap on offers per customer (contact fatigue); at most --top-k")] = None,
    allow_substitutes: Annotated[bool, typer.Option("--allow-substitutes", help="Also offer substitutes of what a customer owns (same category, rarely owned together)")] = False,
    rules: Annotated[Optional[Path], typer.Option("--rules", help="Write association rules (support, confidence, lift, leverage, conviction, timing)", dir_okay=False)] = None,
    exclude_products: Annotated[Optional[str], typer.Option("--exclude-products", help="Regular expression of product ids or descriptions that are not products (added to the built-in rules)")] = None,
    horizon: Annotated[str, typer.Option("--horizon", help="Horizon of expected buyers and revenue: 90d, 12w, 6m")] = "90d",
    method: MethodOpt = MethodChoice.kmeans,
    k: KOpt = "auto",
    seed: SeedOpt = 42,
) -> None:
    """Rank who should be offered what: products per segment by expected revenue, and offers per customer.

    Never offers what a customer already bought, nor (with a category column) a substitute of it.
    Non-product lines (postage, fees, discounts, manual adjustments) are detected and left out.
    """
    from present import render
    from clv.models import Horizon
    from segments.pipeline import crosssell_rules, crosssell_targets, run_crosssell

    reporter = run.reporter()
    tx = load(source, reporter, need=("product",))
    result = run_crosssell(
        tx, exclude_products=exclude_products, horizon=Horizon.parse(horizon), top=top,
        period=_period(model.period or PeriodChoice.day), method=method.value, k=_parse_k(k), seed=seed,
        penalizer=model.penalizer, engine=model.engine, step=reporter.step,
    )
    _warn_about_fit(result.segments.bgnbd, result.segments.gamma_gamma, reporter)
    render.excluded_products(result.excluded, reporter)
    if targets is not None:
        with reporter.step("Scoring offers per customer"):
            offers = crosssell_targets(result, top_k=top_k, max_offers=max_offers, allow_substitutes=allow_substitutes)
        render.write_frame(offers, targets)
        reporter.info(f"Wrote {offers.height:,} offers for {offers['customer_id'].n_unique():,} customers to {targets}.")
    if rules is not None:
        table = crosssell_rules(result)
        render.write_frame(table, rules)
        reporter.info(f"Wrote {table.height:,} association rules to {rules}.")
    render.crosssell_ranking(result, out.emitter())


@command(
    summary="HTML, XLSX or Markdown report for strategy meetings",
    help_example="clvx report sales.parquet -o report.html -o report.xlsx --calibration-end 2024-06-30",
)
def report(
    source: Source,
    model: ModelOpts,
    run: Run,
    output: Annotated[Optional[list[Path]], typer.Option("--output", "-o", help="Report file(s): .html (self-contained page), .xlsx (workbook) or .md; repeat for several (required)", dir_okay=False, show_default=False)] = None,
    calibration_end: Annotated[Optional[str], typer.Option("--calibration-end", help="Also backtest the forecast (and cross-sell) with a holdout from the day after this date")] = None,
    title: Annotated[str, typer.Option("--title", help="Report title")] = "Customer value report",
    exclude_products: Annotated[Optional[str], typer.Option("--exclude-products", help="Regular expression of non-product ids or descriptions")] = None,
    method: MethodOpt = MethodChoice.kmeans,
    k: KOpt = "auto",
    seed: SeedOpt = 42,
) -> None:
    """A report for strategy meetings: headline numbers, segments, charts, cross-sell targets, methodology.

    HTML is one self-contained file (styles and charts inline, no network); .xlsx holds the same tables as
    sheets; .md holds them as Markdown for wikis.
    """
    from clv import __version__ as version
    from present.report import REPORT_SUFFIXES, write_report
    from segments.pipeline import build_report

    from clv.errors import InputError

    if not output:
        raise InputError("report needs --output PATH (.html, .xlsx or .md), or output in the --config file")
    for path in output:
        if path.suffix.lower() not in REPORT_SUFFIXES:
            raise InputError(f"cannot tell the report format of '{path}'; use .html, .xlsx or .md")
    reporter = run.reporter()
    tx = load(source, reporter)
    data = build_report(
        tx, title=title, calibration_end=_parse_date(calibration_end, "--calibration-end"), exclude_products=exclude_products,
        clvx_version=version, step=reporter.step, period=_period(model.period or PeriodChoice.day), method=method.value,
        k=_parse_k(k), seed=seed, penalizer=model.penalizer, engine=model.engine,
    )
    _warn_about_fit(data.segments.bgnbd, data.segments.gamma_gamma, reporter)
    for path in output:
        with reporter.step(f"Writing {path}"):
            write_report(data, path)
        reporter.info(f"Wrote {path}.")


@command(
    summary="Generate a synthetic log with known model parameters",
    help_example="clvx sample --customers 100000 --seed 7 --output big.parquet",
)
def sample(
    run: Run,
    customers: Annotated[int, typer.Option("--customers", "-n", min=1, max=50_000_000, help="Number of customers")] = 5_000,
    seed: SeedOpt = 42,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write (.parquet or .csv) \\[default: CSV to stdout]", dir_okay=False)] = None,
    truth: Annotated[Optional[Path], typer.Option("--truth", help="Also write truth.json and customers.csv (true parameters) to this folder", file_okay=False)] = None,
) -> None:
    """Generate a synthetic transaction log with known BG/NBD, Gamma-Gamma and product structure."""
    from present import render
    from clv.sample import SampleSpec, generate

    reporter = run.reporter()
    with reporter.step(f"Simulating {customers:,} customers"):
        result = generate(SampleSpec(n_customers=customers, seed=seed))
    render.write_sample(result, output, truth)
    q = result.transactions
    reporter.info(f"Wrote {q.height:,} order lines for {customers:,} customers" + (f" to {output}." if output else "."))


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Console entry point: usage errors become one ``Error:`` line and exit code 2."""
    group = typer.main.get_command(app)
    # `clvx --help` only lists the commands, so it is rendered as plain click help: typer's
    # rich help renderer imports markdown-it and would double the start-up time. Each
    # command's own --help, with its option panels, stays rich.
    group.rich_markup_mode = None  # type: ignore[attr-defined]
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so pending output files are removed.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        code = group(standalone_mode=False)
    except UsageBase as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            code = 0
        else:
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"Error: {exc.format_message()}{hint}", err=True)
            code = getattr(exc, "exit_code", 2)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        code = 130
    except BrokenPipeError:
        # The reader (e.g. `head`) closed the pipe: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
