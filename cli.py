"""clvx command line: parse options, call one function of the Python API (``clvx``), hand its
result to presentation (``present``).

Heavy libraries (polars, lifetimes, scikit-learn) are imported inside the commands so that
``clvx --help`` starts instantly.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import itertools
import os
import signal
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

try:  # typer >= 0.22 vendors click and raises its own exception types
    from typer import TyperException as UsageBase
except ImportError:  # pragma: no cover - older typer on top of click
    from click import ClickException as UsageBase  # type: ignore[assignment]

from clv import __version__  # light: the package's __init__ imports nothing heavy
from clv import threads as pools
from clv.terms import (
    DEFAULT_PURCHASE_MODEL,
    MAX_ANNUAL_DISCOUNT_RATE,
    MAX_HORIZON_YEARS,
    MAX_PENALIZER,
    SEED_MAX,
    Aggregate,
    Dialect,
    Engine,
    Period,
    PurchaseModel,
    SegmentMethod,
)
from clv.threads import MAX_THREADS, THREADS_ENV
from present.formats import Format

if TYPE_CHECKING:
    import clvx
    from present.output import Emitter, Reporter
    from present.progress import ReporterListener

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 runtime failure (e.g. a model cannot be fitted), 2 usage or input error."
EXIT_INPUT = 2
EXIT_RUNTIME = 1
EXIT_INTERRUPTED = 130
HORIZON_HELP = "12m, 39w, 90d or 1y"

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


COLUMNS_PANEL = "Input columns"
READING_PANEL = "Reading the input"
OUTPUT_PANEL = "Output"
RUN_PANEL = "Run"
MODEL_PANEL = "Model"
CLV_PANEL = "CLV"


def _flag(*names: str, help: str, panel: str | None = None) -> Any:
    """A boolean flag's option: shown without a value placeholder."""
    return typer.Option(*names, help=help, rich_help_panel=panel, metavar="")


MethodOpt = Annotated[SegmentMethod, typer.Option("--method", help="How customers are segmented: kmeans (cluster value and behaviour) or rfm (the 11 named RFM segments)")]
KOpt = Annotated[str, typer.Option("--k", help="Number of segments, or auto (3 to 8, chosen by silhouette among stable solutions)")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Random seed; the same input and seed give the same output")]
ExcludeCustomersOpt = Annotated[Optional[Path], typer.Option("--exclude-customers", help="File of customer ids to leave out of every export (opt-outs, no consent): a customer_id column or a single column; .csv, .parquet or .json", exists=True, dir_okay=False, show_default=False)]
ExcludeProductsOpt = Annotated[Optional[str], typer.Option("--exclude-products", help="Regular expression of product ids or descriptions that are not products (added to the built-in rules)", show_default=False)]
# Rules and bundles: one definition for cross-sell's --rules/--bundles and the rules command.
RulesPerProductOpt = Annotated[int, typer.Option("--rules-per-product", min=1, max=1000, help="Rules: the most confident rules kept per product bought first")]
MinSupportOpt = Annotated[float, typer.Option("--min-support", min=0.0, max=1.0, help="Rules: least share of customers owning both products")]
MinLiftOpt = Annotated[float, typer.Option("--min-lift", min=0.0, help="Rules: least lift (how many times likelier than by chance)")]
BundlesOpt = Annotated[Optional[Path], typer.Option("--bundles", help="Write sets of 2-3 products bought together in one order (support, lift, attach rate, revenue); needs an order column", dir_okay=False, show_default=False)]
BundleMinSupportOpt = Annotated[float, typer.Option("--bundle-min-support", min=0.0001, max=0.5, help="Bundles: least share of orders holding the whole set")]
TopBundlesOpt = Annotated[int, typer.Option("--top-bundles", min=1, max=10_000, help="Bundles: how many to keep, best attach rate first")]


def _parse_date(value: str | None, flag: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a date in YYYY-MM-DD form", param_hint=flag) from None


def _parse_k(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not 'auto' or a whole number", param_hint="--k") from None


def _horizon(text: str) -> Any:
    from clv.models import Horizon

    return Horizon.parse(text)


# --------------------------------------------------------------------------- option groups
# Each group is declared once and added to every command that takes it (by the type of the
# command's parameter), so all commands spell and document the shared options identically.


def _opt(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


def _col(flag: str, help_text: str) -> Any:
    return Annotated[Optional[str], typer.Option(flag, help=help_text, rich_help_panel=COLUMNS_PANEL, show_default=False)]


@dataclass(frozen=True)
class SourceArgs:
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
    encoding: str | None
    decimal_comma: bool | None
    timezone: str
    keep_placeholder_ids: bool
    keep_outlying_dates: bool
    table: str | None = None
    query: str | None = None
    exclude: tuple[Path, ...] = ()  # the run's own outputs, which a glob INPUT never reads

    PARAMS = (
        _opt("input", Annotated[Optional[str], typer.Argument(
            help="Transaction log or RFM summary: a CSV or Parquet file, or a quoted glob of them; or a database: "
            "postgresql://user@host/db or duckdb:///path.db with --table or --query; or (segment, cross-sell, report) a folder "
            "of the rows of clvx sql rfm, products, purchases, catalogue, baskets. Default: the bundled sample.",
            show_default=False)], None),
        _opt("customer_col", _col("--customer-col", "Customer id column \\[default: auto-detect, e.g. customer_id, CustomerID]"), None),
        _opt("date_col", _col("--date-col", "Date or datetime column \\[default: auto-detect, e.g. date, order_date, InvoiceDate]"), None),
        _opt("amount_col", _col("--amount-col", "Line revenue column \\[default: auto-detect, e.g. amount, revenue, sales]"), None),
        _opt("price_col", _col("--price-col", "Unit price column; revenue = price x quantity"), None),
        _opt("quantity_col", _col("--quantity-col", "Quantity column, with --price-col"), None),
        _opt("order_col", _col("--order-col", "Order / invoice id column"), None),
        _opt("product_col", _col("--product-col", "Product id column"), None),
        _opt("category_col", _col("--category-col", "Product category column"), None),
        _opt("date_format", _col("--date-format", "strftime format of the date column, e.g. '%d/%m/%Y'; or epoch / epoch_ms "
                                 "(Unix seconds / milliseconds, UTC) or excel (serial days) \\[default: detect]"), None),
        _opt("as_of", Annotated[Optional[str], typer.Option(
            "--as-of", help="End of observation, YYYY-MM-DD; later rows are excluded \\[default: last date in the log]",
            rich_help_panel=COLUMNS_PANEL, show_default=False)], None),
        _opt("encoding", Annotated[Optional[str], typer.Option(
            "--encoding", help="Text encoding of CSV input, e.g. latin-1 or cp1252 \\[default: UTF-8; a file that is not valid UTF-8 is refused]",
            rich_help_panel=READING_PANEL, show_default=False)], None),
        _opt("decimal_comma", Annotated[Optional[bool], typer.Option(
            "--decimal-comma/--no-decimal-comma", help="Read ',' as the decimal mark (1.234,56) or as a thousands separator "
            "(1,234.56) \\[default: decided from the values, with a note]", rich_help_panel=READING_PANEL, show_default=False,
            metavar="")], None),
        _opt("timezone", Annotated[str, typer.Option(
            "--timezone", help="IANA zone that timestamps with an offset (...Z, +02:00) and Unix times are converted to before "
            "the day is taken", rich_help_panel=READING_PANEL)], "UTC"),
        _opt("keep_placeholder_ids", Annotated[bool, _flag(
            "--keep-placeholder-ids", help="Count ids such as NULL, None, N/A, NaN and - as real customers \\[default: such "
            "rows have no customer]", panel=READING_PANEL)], False),
        _opt("keep_outlying_dates", Annotated[bool, _flag(
            "--keep-outlying-dates", help="Keep rows dated after today or far before the rest of the log \\[default: "
            "excluded and counted]", panel=READING_PANEL)], False),
        _opt("table", Annotated[Optional[str], typer.Option(
            "--table", help="With a database INPUT: the table of order lines, e.g. sales or public.sales (the group-bys run "
            "in the database)", rich_help_panel=READING_PANEL, show_default=False)], None),
        _opt("query", Annotated[Optional[str], typer.Option(
            "--query", help="With a database INPUT: a SELECT that returns the order lines, instead of --table",
            rich_help_panel=READING_PANEL, show_default=False)], None),
    )

    @classmethod
    def build(cls, kw: dict[str, Any]) -> SourceArgs:
        kw["as_of"] = _parse_date(kw["as_of"], "--as-of")
        if kw["input"] == "-":
            kw["input"] = "/dev/stdin"  # as Unix tools read '-'
        return cls(**kw)

    def options(self) -> clvx.Source:
        from clv.load import ColumnMapping, ReadOptions
        from clvx import Source

        mapping = ColumnMapping(
            customer=self.customer_col, date=self.date_col, amount=self.amount_col, price=self.price_col,
            quantity=self.quantity_col, order=self.order_col, product=self.product_col, category=self.category_col,
            date_format=self.date_format,
        )
        read = ReadOptions(encoding=self.encoding, decimal_comma=self.decimal_comma, timezone=self.timezone,
                           keep_placeholder_ids=self.keep_placeholder_ids, keep_outlying_dates=self.keep_outlying_dates)
        return Source(input=self.input, columns=mapping, as_of=self.as_of, read=read, exclude=self.exclude, table=self.table,
                      query=self.query)


@dataclass(frozen=True)
class OutputArgs:
    format: Format | None
    output: Path | None
    raw_csv: bool

    PARAMS = (
        _opt("format", Annotated[Optional[Format], typer.Option(
            "--format", "-f", help="table, csv, json or parquet \\[default: from --output's extension, else table]",
            rich_help_panel=OUTPUT_PANEL, show_default=False)], None),
        _opt("output", Annotated[Optional[Path], typer.Option(
            "--output", "-o", help="Write to this file (atomically; - is stdout) instead of stdout",
            rich_help_panel=OUTPUT_PANEL, show_default=False, dir_okay=False)], None),
        _opt("raw_csv", Annotated[bool, _flag(
            "--raw-csv", help="Write CSV text cells exactly as they are, without the leading ' that stops spreadsheets "
            "running cells starting with = + - @ as formulas (for programs, not spreadsheets)", panel=OUTPUT_PANEL)], False),
    )

    @classmethod
    def build(cls, kw: dict[str, Any]) -> OutputArgs:
        return cls(**kw)

    def emitter(self) -> Emitter:
        from present.output import Emitter

        return Emitter(fmt=self.format, output=self.output, raw_csv=self.raw_csv)


@dataclass(frozen=True)
class RunArgs:
    quiet: bool
    debug: bool
    config: Path | None
    threads: int | None = None

    PARAMS = (
        _opt("quiet", Annotated[bool, _flag(
            "--quiet", "-q", help="No progress or summaries on stderr (warnings and errors still show)", panel=RUN_PANEL)], False),
        _opt("debug", Annotated[bool, _flag(
            "--debug", help="Show the full traceback when something fails", panel=RUN_PANEL)], False),
        _opt("config", Annotated[Optional[Path], typer.Option(
            "--config", help="Settings file (clvx.toml, or pyproject.toml with \\[tool.clvx]); flags override it",
            rich_help_panel=RUN_PANEL, show_default=False, dir_okay=False)], None),
        _opt("threads", Annotated[Optional[int], typer.Option(
            "--threads", min=1, max=MAX_THREADS, envvar=THREADS_ENV, help="Threads for polars, k-means and the model fits "
            "\\[default: the CPUs this process may use]", rich_help_panel=RUN_PANEL, show_default=False)], None),
    )

    @classmethod
    def build(cls, kw: dict[str, Any]) -> RunArgs:
        return cls(**kw)

    def reporter(self) -> Reporter:
        from present.output import Reporter

        return Reporter(quiet=self.quiet)

    def listener(self) -> ReporterListener:
        from present.progress import ReporterListener

        return ReporterListener(self.reporter())


@dataclass(frozen=True)
class ModelArgs:
    """Options shared by every command that fits a purchase model and Gamma-Gamma."""

    period: Period | None
    penalizer: float
    engine: Engine
    model: PurchaseModel
    explain: bool

    PARAMS = (
        _opt("model", Annotated[PurchaseModel, typer.Option(
            "--model", help="Purchase model: bgnbd (BG/NBD), mbgnbd (MBG/NBD), pareto (Pareto/NBD), or auto (the best "
            "on the last third of the log held back; see --explain)", rich_help_panel=MODEL_PANEL)], DEFAULT_PURCHASE_MODEL),
        _opt("explain", Annotated[bool, _flag(
            "--explain", help="Show how choices were made: with --model auto, each model's score on the held-back part; "
            "in segment, the candidate k",
            panel=MODEL_PANEL)], False),
        _opt("period", Annotated[Optional[Period], typer.Option(
            "--period", help="Time unit of frequency, recency and T; for an RFM summary file, the unit it is in "
            "\\[default: day, or the saved model's]", rich_help_panel=MODEL_PANEL, show_default=False)], None),
        _opt("penalizer", Annotated[float, typer.Option(
            "--penalizer", min=0.0, max=MAX_PENALIZER, help="L2 penalty on the model parameters; a small value (0.001) helps hard fits",
            rich_help_panel=MODEL_PANEL)], 0.0),
        _opt("engine", Annotated[Engine, typer.Option(
            "--engine", help="Model fitting: numpy (lifetimes' equations, vectorised), lifetimes (its own fitters) or auto (numpy)",
            rich_help_panel=MODEL_PANEL)], Engine.auto),
    )

    @classmethod
    def build(cls, kw: dict[str, Any]) -> ModelArgs:
        return cls(period=kw["period"], penalizer=kw["penalizer"], engine=Engine(kw["engine"]),
                   model=PurchaseModel(kw["model"]), explain=bool(kw["explain"]))

    def options(self, *, default_period: bool = True) -> clvx.ModelOptions:
        from clvx import ModelOptions

        period = self.period or (Period.day if default_period else None)
        return ModelOptions(period=period, penalizer=self.penalizer, engine=self.engine.value, model=self.model)

    def explain_choice(self, choice: Any, reporter: Reporter) -> None:
        """With ``--explain``, the comparison behind ``--model auto`` on stderr."""
        if self.explain and choice is not None:
            from present import render

            render.explain_choice(choice, reporter)


@dataclass(frozen=True)
class CLVArgs:
    """The CLV horizon and discount rate, on every command that computes CLV."""

    horizon: str
    discount_rate: float

    PARAMS = (
        _opt("horizon", Annotated[str, typer.Option(
            "--horizon", help=f"CLV horizon: {HORIZON_HELP} (at most {MAX_HORIZON_YEARS} years)", rich_help_panel=CLV_PANEL)], "12m"),
        _opt("discount_rate", Annotated[float, typer.Option(
            "--discount-rate", min=0.0, max=MAX_ANNUAL_DISCOUNT_RATE, help="Annual discount rate for CLV (0.10 = 10%)", rich_help_panel=CLV_PANEL)], 0.10),
    )

    @classmethod
    def build(cls, kw: dict[str, Any]) -> CLVArgs:
        return cls(**kw)

    def options(self) -> clvx.CLVOptions:
        from clvx import CLVOptions

        return CLVOptions(horizon=_horizon(self.horizon), discount_rate=self.discount_rate)


@dataclass(frozen=True)
class RuleArgs:
    """The bounds of association rules and bundles, shared by cross-sell and rules."""

    min_support: float
    min_lift: float
    rules_per_product: int
    bundle_min_support: float
    top_bundles: int

    PARAMS = (
        _opt("min_support", MinSupportOpt, 0.005),
        _opt("min_lift", MinLiftOpt, 1.5),
        _opt("rules_per_product", RulesPerProductOpt, 10),
        _opt("bundle_min_support", BundleMinSupportOpt, 0.005),
        _opt("top_bundles", TopBundlesOpt, 50),
    )

    @classmethod
    def build(cls, kw: dict[str, Any]) -> RuleArgs:
        return cls(**kw)

    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``clvx.CrossSellOptions`` and ``clvx.RulesOptions``."""
        return {"min_support": self.min_support, "min_lift": self.min_lift, "rules_per_product": self.rules_per_product,
                "bundle_min_support": self.bundle_min_support, "top_bundles": self.top_bundles}


GROUPS: tuple[type, ...] = (SourceArgs, OutputArgs, RunArgs, ModelArgs, CLVArgs, RuleArgs)


def command(*, summary: str, help_example: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command whose parameters typed as an option group get that group's options.

    ``summary`` is its line in ``clvx --help`` (short enough not to be cut at 80 columns).
    The wrapper applies the settings file, checks every output before any work, writes
    the outputs only if the command succeeds, and turns errors into one ``Error: ...``
    line on stderr and an exit code (a traceback only with ``--debug``).
    """

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)  # typer needs real Annotated objects
        groups = {name: hints[name] for name in sig.parameters if hints.get(name) in GROUPS}
        own = [p.replace(annotation=hints[name]) for name, p in sig.parameters.items() if name not in groups]
        extra = [p for g in groups.values() for p in g.PARAMS]
        if RunArgs not in groups.values():
            extra += list(RunArgs.PARAMS)

        @functools.wraps(fn)
        def wrapper(ctx: typer.Context, **kwargs: Any) -> None:
            run = RunArgs(quiet=bool(kwargs.get("quiet")), debug=bool(kwargs.get("debug")), config=kwargs.get("config"),
                          threads=kwargs.get("threads"))
            try:
                if run.config is not None:
                    apply_settings(ctx, kwargs, run.config, annotations)
                built = {}
                for name, group in groups.items():
                    built[name] = group.build({p.name: kwargs.pop(p.name) for p in group.PARAMS})
                run = next((b for b in built.values() if isinstance(b, RunArgs)), None) or RunArgs.build(
                    {n: kwargs.pop(n) for n in ("quiet", "debug", "config", "threads")})
                from present.files import transaction

                _guard_outputs(built, kwargs, run)
                with pools.use(run.threads), transaction():
                    fn(**kwargs, **built)
            except (typer.Exit, typer.Abort, UsageBase):
                raise
            except BaseException as exc:
                _fail(exc, run)

        annotations = {p.name: p.annotation for p in (*own, *extra)}
        context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        wrapper.__signature__ = sig.replace(parameters=[context, *own, *extra])  # type: ignore[attr-defined]
        # Rich help keeps single newlines as line breaks: re-flow each paragraph to one line.
        paragraphs = [" ".join(p.split()) for p in (inspect.getdoc(fn) or "").split("\n\n")]
        wrapper.__doc__ = "\n\n".join([*paragraphs, f"[bold]Example:[/bold] [cyan]{help_example}[/cyan]"])
        return app.command(name=fn.__name__.rstrip("_").replace("_", "-"), short_help=summary)(wrapper)

    return decorate


def apply_settings(ctx: Any, kwargs: dict[str, Any], path: Path, annotations: dict[str, Any]) -> None:
    """Fill options not given on the command line from a settings file, by the rules of their flags."""
    from clvx import settings

    commands = {info.name or info.callback.__name__ for info in app.registered_commands}
    options = {p.name for cmd in typer.main.get_command(app).commands.values() for p in cmd.params} - {"config", "help"}
    values = settings.for_command(settings.read(path), ctx.info_name, commands=commands, options=options, source=str(path))
    params = {p.name: p for p in ctx.command.params}
    for name, value in values.items():
        if name not in params:
            continue  # an option of another command
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
            continue
        kwargs[name] = settings.convert(params[name], value, ctx, str(path), _base_type(annotations[name]))


def _base_type(annotation: Any) -> Any:
    """``Annotated[Optional[X], ...]`` -> ``X``; ``list[X]`` stays a list type."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return args[0]
    return annotation


# --------------------------------------------------------------------------- safety and errors

# Options that name files a command writes, with the flag users type.
OUTPUT_FLAGS = {"output": "--output", "assignments": "--assignments", "targets": "--targets",
                "rules": "--rules", "bundles": "--bundles", "save": "--save"}


def _outputs(kwargs: dict[str, Any], built: dict[str, Any]) -> list[Any]:
    from clv.errors import InputError
    from present.files import Output, is_stdout, same_file

    found = []
    for value in built.values():
        if isinstance(value, OutputArgs):
            found.append(Output("--output", value.output) if value.output is not None else Output("the table", Path("-")))
    for name, flag in OUTPUT_FLAGS.items():
        value = kwargs.get(name)
        for path in value if isinstance(value, list) else [value]:
            if path is not None:
                found.append(Output(flag, Path(path)))
    if kwargs.get("truth") is not None:
        from clv.sample import CUSTOMERS_FILE, TRUTH_FILE

        for out in found:
            if not is_stdout(out.path) and same_file(out.path, Path(kwargs["truth"])):
                raise InputError(f"--truth {kwargs['truth']} is the {out.flag} file; give the truth its own folder")
        found += [Output("--truth", Path(kwargs["truth"]) / name, makes_folder=True) for name in (TRUTH_FILE, CUSTOMERS_FILE)]
    return found


def _guard_outputs(built: dict[str, Any], kwargs: dict[str, Any], run: RunArgs) -> None:
    """Refuse, before any work, outputs that would overwrite an input or each other.

    A glob INPUT never reads the run's own outputs: they are left out of its match.
    """
    from clv.load import resolve_paths
    from present.files import check_outputs, is_stdout

    outputs = _outputs(kwargs, built)
    inputs: list[tuple[str, Path]] = []
    if run.config is not None:
        inputs.append(("--config", run.config))
    if kwargs.get("saved_model") is not None:
        inputs.append(("--saved-model", kwargs["saved_model"]))
    if kwargs.get("exclude_customers") is not None:
        inputs.append(("--exclude-customers", kwargs["exclude_customers"]))
    if kwargs.get("offers") is not None:
        inputs.append(("TARGETS", kwargs["offers"]))
    if kwargs.get("campaign") is not None:
        inputs.append(("--campaign", kwargs["campaign"]))
    for name, source in list(built.items()):
        if not isinstance(source, SourceArgs):
            continue
        if source.input is None:
            from clv.sample import bundled_sample_path

            inputs.append(("bundled sample", bundled_sample_path()))
        elif "://" in source.input:
            continue  # a database: no file to protect
        elif any(ch in source.input for ch in "*?[") and not Path(source.input).exists():
            # The loader leaves the outputs out of the glob's match; say which, before any work.
            files = tuple(o.path for o in outputs if not is_stdout(o.path))
            kept = resolve_paths(source.input, exclude=files)
            built[name] = replace(source, exclude=files)
            left_out = [p for p in resolve_paths(source.input) if p not in kept]
            if left_out:
                run.reporter().warn(f"'{source.input}' also matches {', '.join(map(str, left_out))}, this run's own output; "
                                    "it is not read, and it will be replaced")
            inputs += [("INPUT", p) for p in kept]
        else:
            inputs.append(("INPUT", Path(source.input)))
    check_outputs(outputs, inputs)
    _check_formats(built, kwargs)


def _check_formats(built: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """An output name whose format cannot be told is refused now, not after the whole analysis."""
    from present import render

    for value in built.values():
        if isinstance(value, OutputArgs):
            value.emitter().format  # noqa: B018 - raises for a name it cannot tell
    for name in ("assignments", "targets", "rules", "bundles"):
        if kwargs.get(name) is not None:
            render.export_format(Path(kwargs[name]))


def _exit_code(exc: BaseException) -> int:
    from clv.errors import InputError

    return EXIT_INPUT if isinstance(exc, InputError) else EXIT_RUNTIME


def _debug_from_environment() -> bool:
    return os.environ.get("CLVX_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _debug(run: RunArgs) -> bool:
    return run.debug or _debug_from_environment()


def _fail(exc: BaseException, run: RunArgs) -> None:
    from clv.errors import ClvxError
    from present.output import Reporter

    if isinstance(exc, (SystemExit, BrokenPipeError)):
        raise exc  # an exit code already chosen; a reader (`| head`) that stopped reading
    reporter = Reporter()
    if _debug(run):
        if isinstance(exc, ClvxError) and exc.marked != str(exc):
            reporter.error(exc.marked)  # the line without --debug, options named as flags; the traceback names them as the API does
        raise exc
    if isinstance(exc, ClvxError):
        reporter.error(exc.marked)  # the reporter names its options as flags
        raise typer.Exit(_exit_code(exc))
    if isinstance(exc, MemoryError):
        reporter.error("out of memory; try a Parquet input, fewer columns, or a coarser --period")
        raise typer.Exit(EXIT_RUNTIME)
    if isinstance(exc, KeyboardInterrupt):
        raise typer.Exit(EXIT_INTERRUPTED)
    reporter.error(f"unexpected failure: {type(exc).__name__}: {exc} (run again with --debug for the traceback)")
    raise typer.Exit(EXIT_RUNTIME)


# --------------------------------------------------------------------------- commands


def _echo(text: str) -> None:
    """``text`` on stdout; a reader that closed the pipe (``| head``) has what it wanted (present.files.reader_gone)."""
    try:
        typer.echo(text)
        sys.stdout.flush()
    except BrokenPipeError:
        from present.files import reader_gone  # only then: --version stays free of the output modules

        reader_gone()


def _version(value: bool) -> None:
    if value:
        _echo(f"clvx {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", "-V", help="Print the version and exit", callback=_version, is_eager=True, metavar="")] = False,
) -> None:
    """Customer lifetime value, segments and cross-sell targets from a raw transaction log."""


@command(
    summary="Frequency, recency, T and spend per customer; RFM segments",
    help_example="clvx rfm sales.csv --period week --format csv > rfm.csv",
)
def rfm(
    source: SourceArgs,
    out: OutputArgs,
    run: RunArgs,
    period: Annotated[Period, typer.Option("--period", help="Time unit of frequency, recency and T (weeks start on Monday)")] = Period.day,
    scores: Annotated[bool, typer.Option("--scores/--no-scores", help="Add r_score, f_score, m_score and rfm_segment", metavar="")] = True,
) -> None:
    """Recency, frequency, T and monetary value per customer, with RFM scores and segments.

    Computed exactly as lifetimes' summary_data_from_transaction_data: purchases in the
    same period are one purchase, frequency counts repeat periods, recency and T are in
    periods, monetary_value is the mean spend of repeat periods (0 for one-time buyers).
    """
    import clvx
    from present import render

    listener = run.listener()
    result = clvx.rfm(source.options(), period=period, scores=scores, listener=listener)
    if result.bins is not None:
        render.report_score_bins(result.bins, listener.reporter)
    render.rfm_rows(result.summary, result.period, out.emitter())


@command(
    summary="Fit the purchase model and Gamma-Gamma; show or save them",
    help_example="clvx fit sales.csv --period week --save model.json",
)
def fit(
    source: SourceArgs,
    fitting: ModelArgs,
    out: OutputArgs,
    run: RunArgs,
    save: Annotated[Optional[Path], typer.Option("--save", help="Write the fitted models to this JSON file", dir_okay=False, show_default=False)] = None,
) -> None:
    """Fit a purchase model (BG/NBD, MBG/NBD or Pareto/NBD: purchases and dropout) and Gamma-Gamma (spend).

    Prints the parameters with 95% intervals (on the log scale, so never negative).

    INPUT is a transaction log or an RFM summary file (customer_id, frequency, recency, T[, monetary_value]).
    """
    import clvx
    from present import render
    from present.files import atomic_write_bytes, when_written
    from present.output import to_json

    listener = run.listener()
    result = clvx.fit(source.options(), model=fitting.options(), listener=listener)
    fitting.explain_choice(result.choice, listener.reporter)
    if save is not None:
        atomic_write_bytes(save, to_json(result.document()).encode())
        when_written(lambda: listener.reporter.info(f"Saved the fitted models to {save}."))
    render.fit_result(result.purchase_model, result.gamma_gamma, result.period, out.emitter())


@command(
    summary="P(alive), expected purchases and spend, discounted CLV",
    help_example="clvx predict sales.csv --horizon 12m --discount-rate 0.08 -o scores.csv",
)
def predict(
    source: SourceArgs,
    fitting: ModelArgs,
    clv: CLVArgs,
    out: OutputArgs,
    run: RunArgs,
    saved_model: Annotated[Optional[Path], typer.Option("--saved-model", help="Score with models saved by clvx fit --save instead of fitting", dir_okay=False, show_default=False)] = None,
    interval: Annotated[Optional[float], typer.Option("--interval", help="Add prediction intervals at this level, e.g. 0.9: purchases_low/high and clv_low/high over the horizon", rich_help_panel=CLV_PANEL, show_default=False)] = None,
) -> None:
    """P(alive), expected purchases, expected spend and discounted CLV per customer.

    CLV sums expected spend x expected purchases per month over the horizon, discounted monthly. With
    --interval, each customer also gets the equal-tailed interval of purchases over the horizon from the
    model's predictive distribution (parameter uncertainty included) and the CLV interval it implies.
    """
    import clvx
    from present import render

    options = replace(clv.options(), interval=interval)
    listener = run.listener()
    result = clvx.predict(source.options(), model=fitting.options(default_period=saved_model is None), clv=options,
                          saved_model=saved_model, listener=listener)
    fitting.explain_choice(result.choice, listener.reporter)
    render.predictions(result.scores, result.period, options.horizon, options.discount_rate, out.emitter(),
                       model=result.purchase_model, level=interval)


@command(
    summary="Backtest the forecast and cross-sell on a holdout period",
    help_example="clvx validate sales.csv --calibration-end 2024-06-30",
)
def validate(
    source: SourceArgs,
    fitting: ModelArgs,
    out: OutputArgs,
    run: RunArgs,
    calibration_end: Annotated[Optional[str], typer.Option("--calibration-end", help="Last day of the calibration period, YYYY-MM-DD (required); the holdout runs from the next day to --as-of", show_default=False)] = None,
    cross_sell: Annotated[bool, typer.Option("--cross-sell/--no-cross-sell", help="With a product column, also backtest the cross-sell ranking", metavar="")] = True,
    exclude_products: ExcludeProductsOpt = None,
    seed: SeedOpt = 42,
    intervals: Annotated[bool, typer.Option("--intervals/--no-intervals", help="Also check the prediction intervals (coverage at 50/80/90%, PIT, the total) and show tracking and decile tables", metavar="")] = True,
) -> None:
    """Holdout backtest: fit on the calibration period, forecast the holdout, compare with baselines.

    Reports totals, bias, MAE, RMSE, MSLE and Pearson r for the model and for two naive
    forecasts (zero for everyone; each customer's calibration rate x holdout length). With a
    product column, also the cross-sell targets against first-time purchases in the holdout,
    beside random, popularity and segment-popularity rankings. Then the diagnostics: each level's
    interval coverage beside the coverage the model implies, a PIT table, whether the total's interval
    holds the actual total, cumulative tracking and calibration by decile.
    """
    import clvx
    from present import render

    if calibration_end is None:
        raise clvx.InputError("validate needs --calibration-end YYYY-MM-DD (or calibration-end in the --config file)")
    cal_end = _parse_date(calibration_end, "--calibration-end")
    assert cal_end is not None
    listener = run.listener()
    result = clvx.validate(source.options(), calibration_end=cal_end, model=fitting.options(), cross_sell=cross_sell,
                           exclude_products=exclude_products, seed=seed, intervals=intervals, listener=listener)
    fitting.explain_choice(result.choice, listener.reporter)
    render.backtest(result.backtest, out.emitter(), cross_sell=result.cross_sell, diagnostics=result.diagnostics)


@command(
    summary="Customer segments, named and profiled by value and churn",
    help_example="clvx segment sales.parquet --k auto --explain --assignments segments.csv",
)
def segment(
    source: SourceArgs,
    fitting: ModelArgs,
    clv: CLVArgs,
    out: OutputArgs,
    run: RunArgs,
    method: MethodOpt = SegmentMethod.kmeans,
    k: KOpt = "auto",
    seed: SeedOpt = 42,
    assignments: Annotated[Optional[Path], typer.Option("--assignments", help="Write one row per customer (segment, features, CLV) for CRM import; .csv, .parquet or .json", dir_okay=False, show_default=False)] = None,
    exclude_customers: ExcludeCustomersOpt = None,
    save: Annotated[Optional[Path], typer.Option("--save", help="Write the fitted models and the segments' centres and scaling to this JSON file (for clvx predict --saved-model, and for scoring in Spark)", dir_okay=False, show_default=False)] = None,
) -> None:
    """Customer segments a marketer can name and act on, profiled by size, revenue, CLV and churn risk.

    Clusters customers on days since last purchase, frequency, spend, P(alive) and CLV (log-scaled), names each
    segment from the RFM vocabulary and orders them by their share of predicted CLV.
    """
    import clvx
    from present import render
    from present.files import when_written

    listener = run.listener()
    segments = clvx.SegmentOptions(method=method.value, k=_parse_k(k), seed=seed)
    result = clvx.segment(source.options(), model=fitting.options(), clv=clv.options(), segments=segments,
                          exclude_customers=exclude_customers, listener=listener)
    fitting.explain_choice(result.choice, listener.reporter)
    render.segmentation_notes(result.run, listener.reporter)
    if save is not None:
        from present.files import atomic_write_bytes
        from present.output import to_json

        atomic_write_bytes(save, to_json(result.document()).encode())
        when_written(lambda: listener.reporter.info(f"Saved the fitted models and segments to {save}."))
    if assignments is not None:
        render.write_assignments(result.run, assignments, raw=out.raw_csv)
        n = result.run.segmentation.assignments.height
        when_written(lambda: listener.reporter.info(f"Wrote {n:,} customer assignments to {assignments}."))
    render.segment_profile(result.run, out.emitter(), explain=fitting.explain)


@command(
    summary="Who should be offered which product, and expected revenue",
    help_example="clvx cross-sell sales.parquet --targets offers.csv --top-k 3 --rules rules.csv",
)
def cross_sell(
    source: SourceArgs,
    fitting: ModelArgs,
    clv: CLVArgs,
    out: OutputArgs,
    run: RunArgs,
    bounds: RuleArgs,
    top: Annotated[int, typer.Option("--top", min=1, max=100, help="Products per segment in the ranking")] = 5,
    targets: Annotated[Optional[Path], typer.Option("--targets", help="Write offers per customer (with reasons) to this file", dir_okay=False, show_default=False)] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="Offers per customer in --targets")] = 5,
    max_offers: Annotated[Optional[int], typer.Option("--max-offers", min=1, max=100, help="Cap on offers per customer (contact fatigue); at most --top-k", show_default=False)] = None,
    allow_substitutes: Annotated[bool, _flag("--allow-substitutes", help="Also offer substitutes of what a customer owns (same category, rarely owned together)")] = False,
    allow_variants: Annotated[bool, _flag("--allow-variants", help="Also offer competing variants of what a customer owns (another colour, size or pattern its owners rarely buy too)")] = False,
    rules: Annotated[Optional[Path], typer.Option("--rules", help="Write association rules (support, confidence, lift, leverage, conviction, timing), bounded by --min-support, --min-lift and --rules-per-product", dir_okay=False, show_default=False)] = None,
    bundles: BundlesOpt = None,
    control: Annotated[float, typer.Option("--control", min=0.0, max=0.9, help="Hold out this share of targeted customers per segment as a control group (group = control in --targets; do not contact them), e.g. 0.1")] = 0.0,
    exclude_customers: ExcludeCustomersOpt = None,
    exclude_products: ExcludeProductsOpt = None,
    offer_horizon: Annotated[str, typer.Option("--offer-horizon", help="Horizon of expected buyers and revenue of offers: 90d, 12w, 6m")] = "90d",
    method: MethodOpt = SegmentMethod.kmeans,
    k: KOpt = "auto",
    seed: SeedOpt = 42,
) -> None:
    """Rank who should be offered what: products per segment by expected revenue, and offers per customer.

    Never offers what a customer already bought, nor a competing variant of it (another colour, size or
    pattern, found from the descriptions, that its owners rarely buy too), nor (with a category column) a
    substitute of it. Variants its owners do buy as well are offered, labelled so.
    Non-product lines (postage, fees, discounts, manual adjustments) are detected and left out.
    """
    import clvx
    from present import render
    from present.files import when_written

    listener = run.listener()
    offers = clvx.CrossSellOptions(
        top=top, top_k=top_k, max_offers=max_offers, allow_substitutes=allow_substitutes, allow_variants=allow_variants,
        exclude_products=exclude_products,
        offer_horizon=_horizon(offer_horizon), targets=targets is not None, rules=rules is not None,
        bundles=bundles is not None, control=control, seed=seed, **bounds.options(),
        exclude_customers=exclude_customers,
    )
    if control > 0 and targets is None:
        raise clvx.InputError("--control holds customers out of the --targets file: give --targets FILE too")
    segments = clvx.SegmentOptions(method=method.value, k=_parse_k(k), seed=seed)
    result = clvx.cross_sell(source.options(), model=fitting.options(), clv=clv.options(), segments=segments,
                             offers=offers, listener=listener)
    fitting.explain_choice(result.choice, listener.reporter)
    render.excluded_products(result.run.excluded, listener.reporter)
    if targets is not None and result.targets is not None:
        render.write_frame(result.targets, targets, raw=out.raw_csv)
        n_offers, n_customers = result.targets.height, result.targets["customer_id"].n_unique()
        when_written(lambda: listener.reporter.info(f"Wrote {n_offers:,} offers for {n_customers:,} customers to {targets}."))
    if rules is not None and result.rules is not None:
        render.export_rows(result.rules, rules, "association rules", listener.reporter, raw=out.raw_csv)
    if bundles is not None and result.bundles is not None:
        render.export_rows(result.bundles, bundles, "bundles", listener.reporter, raw=out.raw_csv)
    render.crosssell_ranking(result.run, out.emitter())


@command(
    summary="Association rules and bundles: products bought together",
    help_example="clvx rules sales.parquet -o rules.csv --min-support 0.01 --bundles bundles.csv",
)
def rules(
    source: SourceArgs,
    out: OutputArgs,
    run: RunArgs,
    bounds: RuleArgs,
    bundles: BundlesOpt = None,
    exclude_products: ExcludeProductsOpt = None,
) -> None:
    """Association rules between products (support, confidence, lift, leverage, conviction, timing), and bundles.

    The rules cross-sell writes with --rules, byte for byte for the same options, without its segments, models
    and offers: only the log is read and products owned together counted. Non-product lines (postage, fees,
    discounts, manual adjustments) are detected and left out.
    """
    import clvx
    from present import render

    listener = run.listener()
    options = clvx.RulesOptions(exclude_products=exclude_products, bundles=bundles is not None, **bounds.options())
    result = clvx.rules(source.options(), options, listener=listener)
    render.excluded_products(result.run.excluded, listener.reporter)
    if bundles is not None and result.bundles is not None:
        render.export_rows(result.bundles, bundles, "bundles", listener.reporter, raw=out.raw_csv)
    render.association_rules(result.rules, out.emitter(), listener.reporter)


@command(
    summary="Measure a campaign: treatment vs control uplift and ROI",
    help_example="clvx measure offers.csv sales.parquet --start 2024-07-01 --cost-per-contact 0.5 --margin 0.3",
)
def measure(
    offers: Annotated[Path, typer.Argument(metavar="TARGETS", help="The targets file cross-sell --targets --control wrote (with its group column)", exists=True, dir_okay=False)],
    source: SourceArgs,
    out: OutputArgs,
    run: RunArgs,
    start: Annotated[Optional[str], typer.Option("--start", help="First day of the campaign, YYYY-MM-DD (required)", show_default=False)] = None,
    end: Annotated[Optional[str], typer.Option("--end", help="Last day of the campaign window, YYYY-MM-DD \\[default: the log's last day]", show_default=False)] = None,
    cost_per_contact: Annotated[float, typer.Option("--cost-per-contact", min=0.0, help="Cost of contacting one treatment customer (for ROI)")] = 0.0,
    margin: Annotated[float, typer.Option("--margin", min=0.0, max=1.0, help="Share of revenue that is margin, e.g. 0.3 (for ROI)")] = 1.0,
    seed: SeedOpt = 42,
) -> None:
    """Did the campaign work? Treatment against control over the campaign window, overall, per segment and per offered product.

    Conversion to the offered products, revenue per customer, incremental revenue with a 95% bootstrap interval
    over customers, and ROI = (incremental revenue x margin - cost) / cost. "not significant" when the interval spans zero.
    """
    import clvx
    from present import render

    if start is None:
        raise clvx.InputError("measure needs --start YYYY-MM-DD (or start in the --config file)")
    first = _parse_date(start, "--start")
    assert first is not None
    result = clvx.measure(offers, source.options(), start=first, end=_parse_date(end, "--end"), cost_per_contact=cost_per_contact,
                          margin=margin, seed=seed, listener=run.listener())
    render.campaign_measurement(result, out.emitter())


@command(
    summary="HTML, XLSX or Markdown report for strategy meetings",
    help_example="clvx report sales.parquet -o report.html -o report.xlsx --calibration-end 2024-06-30",
)
def report(
    source: SourceArgs,
    fitting: ModelArgs,
    clv: CLVArgs,
    run: RunArgs,
    output: Annotated[Optional[list[Path]], typer.Option("--output", "-o", help="Report file(s): .html (self-contained page), .xlsx (workbook) or .md; repeat for several (required)", dir_okay=False, show_default=False)] = None,
    calibration_end: Annotated[Optional[str], typer.Option("--calibration-end", help="Also backtest the forecast (and cross-sell) with a holdout from the day after this date", show_default=False)] = None,
    title: Annotated[str, typer.Option("--title", help="Report title")] = "Customer value report",
    campaign: Annotated[Optional[Path], typer.Option("--campaign", help="Also measure a campaign: the targets file cross-sell --targets --control wrote (needs --campaign-start)", exists=True, dir_okay=False, show_default=False)] = None,
    campaign_start: Annotated[Optional[str], typer.Option("--campaign-start", help="First day of the campaign, YYYY-MM-DD", show_default=False)] = None,
    campaign_end: Annotated[Optional[str], typer.Option("--campaign-end", help="Last day of the campaign window \\[default: the log's last day]", show_default=False)] = None,
    cost_per_contact: Annotated[float, typer.Option("--cost-per-contact", min=0.0, help="Campaign: cost of contacting one customer (for ROI)")] = 0.0,
    margin: Annotated[float, typer.Option("--margin", min=0.0, max=1.0, help="Campaign: share of revenue that is margin (for ROI)")] = 1.0,
    exclude_customers: ExcludeCustomersOpt = None,
    exclude_products: ExcludeProductsOpt = None,
    method: MethodOpt = SegmentMethod.kmeans,
    k: KOpt = "auto",
    seed: SeedOpt = 42,
) -> None:
    """A report for strategy meetings: headline numbers, segments, charts, cross-sell targets, methodology.

    HTML is one self-contained file (styles and charts inline, no network); .xlsx holds the same tables as
    sheets; .md holds them as Markdown for wikis.
    """
    import clvx
    from present.files import when_written
    from present.report import REPORT_SUFFIXES, write_report

    if not output:
        raise clvx.InputError("report needs --output PATH (.html, .xlsx or .md), or output in the --config file")
    for path in output:
        if path.suffix.lower() not in REPORT_SUFFIXES:
            raise clvx.InputError(f"cannot tell the report format of '{path}'; use .html, .xlsx or .md")
    listener = run.listener()
    segments = clvx.SegmentOptions(method=method.value, k=_parse_k(k), seed=seed)
    measured = None
    if campaign is not None:
        start = _parse_date(campaign_start, "--campaign-start")
        if start is None:
            raise clvx.InputError("--campaign needs --campaign-start YYYY-MM-DD, the first day of the campaign")
        measured = clvx.CampaignOptions(targets=campaign, start=start, end=_parse_date(campaign_end, "--campaign-end"),
                                        cost_per_contact=cost_per_contact, margin=margin, seed=seed)
    result = clvx.report(
        source.options(), title=title, calibration_end=_parse_date(calibration_end, "--calibration-end"),
        exclude_products=exclude_products, model=fitting.options(), clv=clv.options(), segments=segments, campaign=measured,
        exclude_customers=exclude_customers, listener=listener,
    )
    fitting.explain_choice(result.choice, listener.reporter)
    # Each format stands on its own: one that fails (a disk, a library's limit) costs only itself.
    failed = []
    for path in output:
        try:
            with listener.step(f"Writing {path}"):
                write_report(result.data, path)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as exc:
            reason = exc.marked if isinstance(exc, clvx.ClvxError) else f"{type(exc).__name__}: {exc}"
            failed.append(f"{path} ({reason})")
            continue
        when_written(functools.partial(listener.reporter.info, f"Wrote {path}."))
    if failed:
        from present.files import OutputError, fail_after_commit

        error = OutputError(f"could not write the report {'; '.join(failed)}")
        if len(failed) == len(output):
            raise error
        fail_after_commit(error)


@command(
    summary="SQL for the aggregates, to run in a warehouse or on Spark",
    help_example="clvx sql rfm --dialect snowflake --table shop.sales --customer-col CustomerID --amount-col revenue > rfm.sql",
)
def sql(
    run: RunArgs,
    aggregate: Annotated[Aggregate, typer.Argument(help="rfm (the summary of clvx rfm), histories (what a fit needs: distinct (frequency, recency, T) and (frequency, monetary_value) rows with counts), products (customer x product: first and last purchase, orders, revenue), or what cross-sell reads: purchases (customer x product, split --offer-horizon before the end), catalogue (per product: its most frequent description and category, line counts, revenue) and baskets (order x product)")],
    dialect: Annotated[Dialect, typer.Option("--dialect", help="The engine that will run the query")] = Dialect.duckdb,
    table: Annotated[str, typer.Option("--table", help="The table of order lines, e.g. sales, schema.sales or project.dataset.sales")] = "transactions",
    query: Annotated[Optional[str], typer.Option("--query", help="A SELECT that returns the order lines, instead of --table", show_default=False)] = None,
    customer_col: _col("--customer-col", "Customer id column") = None,  # type: ignore[valid-type]
    date_col: _col("--date-col", "Date or timestamp column") = None,  # type: ignore[valid-type]
    amount_col: _col("--amount-col", "Line revenue column") = None,  # type: ignore[valid-type]
    price_col: _col("--price-col", "Unit price column; revenue = price x quantity") = None,  # type: ignore[valid-type]
    quantity_col: _col("--quantity-col", "Quantity column, with --price-col") = None,  # type: ignore[valid-type]
    order_col: _col("--order-col", "Order / invoice id column (adds n_orders to rfm)") = None,  # type: ignore[valid-type]
    product_col: _col("--product-col", "Product id column (needed by products)") = None,  # type: ignore[valid-type]
    category_col: _col("--category-col", "Product category column (a key of products)") = None,  # type: ignore[valid-type]
    description_col: _col("--description-col", "Product name column (the catalogue's description)") = None,  # type: ignore[valid-type]
    offer_horizon: Annotated[str, typer.Option("--offer-horizon", help="purchases: the cross-sell --offer-horizon its inner split is for: 90d, 12w, 6m")] = "90d",
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="End of observation, YYYY-MM-DD \\[default: the last day with a customer row, not after today]", show_default=False)] = None,
    period: Annotated[Period, typer.Option("--period", help="Time unit of frequency, recency and T (weeks start on Monday)")] = Period.day,
    keep_placeholder_ids: Annotated[bool, _flag("--keep-placeholder-ids", help="Count ids such as NULL, N/A and - as real customers")] = False,
) -> None:
    """Print the SQL that computes clvx's aggregates where the log lives, for any of seven engines.

    One definition, translated by sqlglot: on the same rows it gives exactly clvx rfm's summary (purchases in one
    period are one purchase, returns netted against the latest purchase at or before them, rows without a customer,
    after today or after --as-of left out). Unnamed columns default to customer_id, date and amount. Every model
    command and segment take the rfm result as INPUT; cross-sell runs these queries itself on a database INPUT, and
    clvx.spark.aggregates runs them in Spark.
    """
    import clvx

    columns = clvx.ColumnMapping(customer=customer_col, date=date_col, amount=amount_col, price=price_col, quantity=quantity_col,
                                 order=order_col, product=product_col, category=category_col, description=description_col)
    text = clvx.sql(aggregate.value, dialect=dialect.value, columns=columns, table=None if query else table, query=query,
                    as_of=_parse_date(as_of, "--as-of"), period=period, keep_placeholder_ids=keep_placeholder_ids,
                    offer_horizon=_horizon(offer_horizon))
    _echo(text + ";")


@command(
    summary="Generate a synthetic log with known model parameters",
    help_example="clvx sample --customers 100000 --seed 7 --output big.parquet",
)
def sample(
    run: RunArgs,
    customers: Annotated[int, typer.Option("--customers", "-n", min=1, max=50_000_000, help="Number of customers")] = 5_000,
    seed: SeedOpt = 42,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write (.parquet or .csv) \\[default: CSV to stdout]", dir_okay=False, show_default=False)] = None,
    truth: Annotated[Optional[Path], typer.Option("--truth", help="Also write truth.json and customers.csv (true parameters) to this folder", file_okay=False, show_default=False)] = None,
) -> None:
    """Generate a synthetic transaction log with known BG/NBD, Gamma-Gamma and product structure."""
    import clvx
    from present import render
    from present.files import when_written

    listener = run.listener()
    result = clvx.sample(customers=customers, seed=seed, listener=listener)
    render.write_sample(result, output, truth)
    n_lines = result.transactions.height
    when_written(lambda: listener.reporter.info(f"Wrote {n_lines:,} order lines for {customers:,} customers"
                                                + (f" to {output}." if output else ".")))


def _help_without_placeholder(command: Any) -> None:
    """--help is a flag like --quiet: show it without a value placeholder."""
    original = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option


def _option_value(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (``--flag V`` or ``--flag=V``), the last one given."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def _threads_setting(path: str, argv: list[str], commands: Any) -> object:
    """``threads`` from a settings file, read as clvx.settings reads it (its own table wins); None when absent or unreadable."""
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # the settings file's own checks report it
    if Path(path).name == "pyproject.toml":
        data = data.get("tool", {}).get("clvx", {})
    command = next((a for a in argv if a in commands), None)
    table = data.get(command) if command else None
    return table["threads"] if isinstance(table, dict) and "threads" in table else data.get("threads")


def _size_pools_before_imports(argv: list[str], commands: Any) -> None:
    """Size polars' pool and quieten idle OpenMP threads before either library is imported (see clv/threads.py).

    polars fixes its pool size when it is imported, which happens before typer has parsed
    the options, so --threads, CLVX_THREADS and the settings file's threads are read here
    first. Variables the user set are left alone; a value that does not parse is left for
    the option's own check, which reports it.
    """
    value: object = _option_value(argv, "--threads")
    if value is None and not os.environ.get(THREADS_ENV, "").strip() and (config := _option_value(argv, "--config")):
        value = _threads_setting(config, argv, commands)
    try:
        os.environ.update(pools.environment(None if value is None else pools.check(value)))
    except Exception:  # noqa: BLE001 - reported by the option's own check
        return


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _model_file_as_model(args: list[str]) -> bool:
    """Whether ``--model`` was given a file, as it was before it named the purchase model."""
    values = [b for a, b in itertools.pairwise(args) if a == "--model"]
    values += [a.split("=", 1)[1] for a in args if a.startswith("--model=")]
    return any(v not in {m.value for m in PurchaseModel} and (v.endswith(".json") or Path(v).is_file()) for v in values)


def main() -> None:
    """Console entry point: usage errors become one ``Error:`` line and exit code 2."""
    group = typer.main.get_command(app)
    # `clvx --help` only lists the commands, so it is rendered as plain click help: typer's
    # rich help renderer imports markdown-it and would double the start-up time. Each
    # command's own --help, with its option panels, stays rich.
    group.rich_markup_mode = None  # type: ignore[attr-defined]
    for command in (group, *getattr(group, "commands", {}).values()):
        _help_without_placeholder(command)
    _size_pools_before_imports(sys.argv[1:], getattr(group, "commands", {}))
    from segments import _sklearn

    _sklearn.lean = True  # this process is clvx's own: scikit-learn's k-means loads alone (see segments/_sklearn.py)
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so pending output files are removed.
    signal.signal(signal.SIGTERM, _terminated)
    if "--debug" not in sys.argv and not _debug_from_environment():
        # A library's object that fails again while being cleaned up after an error that was
        # already reported ("Exception ignored in ... ZipFile.__del__") is noise, not news.
        sys.unraisablehook = lambda _: None
    try:
        code = group(standalone_mode=False)
    except UsageBase as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            _echo(ctx.get_help())
            code = 0
        else:
            message, hint = exc.format_message(), f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            if _model_file_as_model(sys.argv[1:]):
                message, hint = message.rstrip("."), "; --model names the purchase model now: give a saved model file with --saved-model"
            typer.echo(f"Error: {message}{hint}", err=True)
            code = getattr(exc, "exit_code", EXIT_INPUT)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        # A write to stdout outside clvx's own writers (which go on) met a reader that closed the pipe: it has
        # what it wanted, so stop quietly, with 0 as they do.
        from present.files import reader_gone

        reader_gone()
        code = 0
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
