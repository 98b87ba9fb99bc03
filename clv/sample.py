"""A synthetic transaction log with known structure, for the default run, tests and benchmarks.

Customers arrive uniformly over the first ``arrival_days`` of the log and then
follow the BG/NBD story (Fader, Hardie & Lee 2005, section 2): while alive a
customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)`` (per day)
and after each repeat purchase drops out with probability ``p ~ Beta(a, b)``.
Each order's value follows the Gamma-Gamma spend model (Fader, Hardie & Lee 2005b,
"RFM and CLV", eq. 1-2): ``z ~ Gamma(p, nu)`` with ``nu ~ Gamma(q, v)`` per customer.

Products come from a small catalogue with planted relations: every customer has a
latent type that sets which categories they buy; three *base* categories hold
substitutes (a customer owns at most one coffee machine, bike or printer) and each
base product has a *complement* (its pods, parts or ink) that its owners buy in
later orders only. Order value is split over the order's lines in proportion to
list price x quantity, so unit prices vary around the list price from order to
order while every order total follows the Gamma-Gamma model exactly.

The generator is deterministic for a given ``seed`` and vectorised (numpy and
polars), so ``clvx sample --customers 1000000`` takes seconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

SAMPLE_FILE = "transactions.parquet"
TRUTH_FILE = "truth.json"
CUSTOMERS_FILE = "customers.csv"
MINUTES_PER_DAY = 24 * 60
MAX_LINES_PER_ORDER = 6
GUEST_ORDER_SHARE = 0.02
CONSUMABLE_DOUBLE_QUANTITY = 0.2


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    category: str
    list_price: float
    popularity: float = 1.0


# Base categories hold substitutes; each base product's complement is in COMPLEMENT_OF.
BASE_CATEGORIES = ("Coffee Machines", "Bikes", "Printers")
COMPLEMENT_CATEGORY = {"Coffee Machines": "Coffee Pods", "Bikes": "Bike Parts", "Printers": "Ink & Paper"}

CATALOGUE: tuple[Product, ...] = (
    Product("CM-100", "Barista One espresso machine", "Coffee Machines", 189.0, 3.0),
    Product("CM-200", "Barista Duo espresso machine", "Coffee Machines", 269.0, 2.0),
    Product("CM-300", "Filtra drip coffee maker", "Coffee Machines", 79.0, 1.5),
    Product("POD-100", "Barista One pods, 50", "Coffee Pods", 14.0),
    Product("POD-200", "Barista Duo pods, 50", "Coffee Pods", 16.0),
    Product("POD-300", "Filtra paper filters, 200", "Coffee Pods", 6.0),
    Product("BK-10", "Urban city bike", "Bikes", 449.0, 2.0),
    Product("BK-20", "Trail mountain bike", "Bikes", 699.0, 1.5),
    Product("BK-30", "Fold-away commuter bike", "Bikes", 529.0, 1.0),
    Product("BP-10", "City bike tyre set", "Bike Parts", 39.0),
    Product("BP-20", "Trail suspension service kit", "Bike Parts", 59.0),
    Product("BP-30", "Folding bike hinge kit", "Bike Parts", 29.0),
    Product("PR-1", "Inkwell home printer", "Printers", 129.0, 2.0),
    Product("PR-2", "LaserPro office printer", "Printers", 249.0, 1.0),
    Product("INK-1", "Inkwell cartridge pack", "Ink & Paper", 32.0),
    Product("INK-2", "LaserPro toner", "Ink & Paper", 68.0),
    *(Product(f"KT-{i:02d}", name, "Kitchen", price, pop) for i, (name, price, pop) in enumerate((
        ("Chef's knife", 45.0, 3.0), ("Cast-iron skillet", 39.0, 2.5), ("Mixing bowls", 24.0, 2.0),
        ("Digital scale", 19.0, 1.5), ("Spice rack", 29.0, 1.2), ("Bread tin", 12.0, 1.0),
        ("Salad spinner", 22.0, 0.8), ("Tea towels, 3", 9.0, 0.6)), start=1)),
    *(Product(f"GD-{i:02d}", name, "Garden", price, pop) for i, (name, price, pop) in enumerate((
        ("Pruning shears", 25.0, 2.5), ("Watering can", 18.0, 2.0), ("Seed collection", 12.0, 1.6),
        ("Garden gloves", 9.0, 1.4), ("Bird feeder", 21.0, 1.0), ("Planter box", 34.0, 0.7)), start=1)),
    *(Product(f"BO-{i:02d}", name, "Books", price, pop) for i, (name, price, pop) in enumerate((
        ("Everyday baking", 22.0, 2.5), ("Cycling atlas", 28.0, 1.8), ("Home office handbook", 18.0, 1.5),
        ("The coffee book", 24.0, 1.5), ("Grow your own", 16.0, 1.2), ("Weekend rides", 19.0, 1.0)), start=1)),
    *(Product(f"GF-{i:02d}", name, "Gifts", price, pop) for i, (name, price, pop) in enumerate((
        ("Gift card", 25.0, 3.0), ("Scented candle", 16.0, 2.2), ("Photo frame", 14.0, 1.6),
        ("Chocolate box", 12.0, 1.5), ("Travel mug", 15.0, 1.2), ("Notebook set", 11.0, 1.0)), start=1)),
    *(Product(f"HM-{i:02d}", name, "Home", price, pop) for i, (name, price, pop) in enumerate((
        ("Desk lamp", 35.0, 2.0), ("Throw blanket", 39.0, 1.8), ("Storage baskets", 26.0, 1.5),
        ("Wall clock", 29.0, 1.2), ("Door mat", 17.0, 1.0), ("Cushion covers", 19.0, 0.9)), start=1)),
)
COMPLEMENTS: dict[str, str] = {
    "CM-100": "POD-100", "CM-200": "POD-200", "CM-300": "POD-300",
    "BK-10": "BP-10", "BK-20": "BP-20", "BK-30": "BP-30",
    "PR-1": "INK-1", "PR-2": "INK-2",
}

# Latent customer types: share of customers and relative weight of each category.
CUSTOMER_TYPES: dict[str, tuple[float, dict[str, float]]] = {
    "coffee lover": (0.30, {"Coffee Machines": 2.0, "Coffee Pods": 5.0, "Kitchen": 3.0, "Gifts": 1.0, "Books": 0.5}),
    "cyclist": (0.20, {"Bikes": 2.0, "Bike Parts": 4.0, "Books": 1.0, "Gifts": 1.0, "Garden": 0.5}),
    "home office": (0.20, {"Printers": 2.0, "Ink & Paper": 5.0, "Home": 2.0, "Books": 1.5}),
    "home maker": (0.30, {"Kitchen": 3.0, "Garden": 3.0, "Home": 3.0, "Gifts": 2.0}),
}
GENERIC_CATEGORIES = ("Kitchen", "Garden", "Books", "Gifts", "Home")


@dataclass(frozen=True)
class SampleSpec:
    """True parameters of the sample. Rates are per day; ``v`` is Gamma-Gamma's scale."""

    n_customers: int = 5_000
    seed: int = 42
    start: dt.date = dt.date(2023, 1, 1)
    n_days: int = 730
    arrival_days: int = 540
    r: float = 0.9
    alpha: float = 40.0
    a: float = 0.6
    b: float = 3.4
    p: float = 6.0
    q: float = 4.0
    v: float = 25.0
    mean_extra_lines: float = 0.9
    guest_order_share: float = GUEST_ORDER_SHARE
    type_shares: dict[str, float] = field(default_factory=lambda: {k: v[0] for k, v in CUSTOMER_TYPES.items()})


@dataclass(frozen=True)
class Sample:
    transactions: pl.DataFrame
    customers: pl.DataFrame
    truth: dict[str, Any]


def _category_table() -> tuple[list[str], np.ndarray]:
    categories = list(dict.fromkeys(p.category for p in CATALOGUE))
    weights = np.array([[CUSTOMER_TYPES[t][1].get(c, 0.0) for c in categories] for t in CUSTOMER_TYPES])
    return categories, weights / weights.sum(axis=1, keepdims=True)


def _draw_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per element of ``rows``, from row ``rows[i]`` of ``probs``."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(rows))
    out = np.empty(len(rows), dtype=np.int64)
    for k in range(probs.shape[0]):
        mask = rows == k
        out[mask] = np.searchsorted(cum[k], u[mask] * cum[k, -1], side="right")
    return np.minimum(out, probs.shape[1] - 1)


def _popular_product(rng: np.random.Generator, category_idx: np.ndarray, categories: list[str]) -> np.ndarray:
    """A product index per element, drawn by popularity within its category."""
    n_products = len(CATALOGUE)
    probs = np.zeros((len(categories), n_products))
    for j, prod in enumerate(CATALOGUE):
        probs[categories.index(prod.category), j] = prod.popularity
    probs /= probs.sum(axis=1, keepdims=True)
    return _draw_rows(rng, probs, category_idx)


def generate(spec: SampleSpec = SampleSpec()) -> Sample:
    """Simulate a transaction log; see the module docstring for the process."""
    rng = np.random.default_rng(spec.seed)
    n = spec.n_customers
    type_names = list(CUSTOMER_TYPES)
    shares = np.array([spec.type_shares[t] for t in type_names])
    ctype = rng.choice(len(type_names), size=n, p=shares / shares.sum())
    birth = rng.uniform(0, spec.arrival_days, size=n)
    lam = rng.gamma(spec.r, 1.0 / spec.alpha, size=n)
    p_drop = rng.beta(spec.a, spec.b, size=n)
    nu = rng.gamma(spec.q, 1.0 / spec.v, size=n)

    # Repeat purchases: Poisson(lambda) arrivals over the remaining window, cut off at
    # the dropout, which follows the K-th repeat purchase with K ~ Geometric(p).
    remaining = spec.n_days - birth
    n_potential = rng.poisson(lam * remaining)
    max_repeats = rng.geometric(p_drop)
    n_repeat = np.minimum(n_potential, max_repeats)
    alive = n_potential < max_repeats
    owner = np.repeat(np.arange(n), n_potential)
    times = birth[owner] + rng.uniform(0, 1, size=owner.size) * remaining[owner]
    # One float key (customer, then time) sorts far faster than a two-key lexsort.
    order_key = np.argsort(owner * float(2 * spec.n_days) + times)
    owner, times = owner[order_key], times[order_key]
    rank = np.arange(owner.size) - np.repeat(np.cumsum(n_potential) - n_potential, n_potential)
    keep = rank < n_repeat[owner]
    order_customer = np.concatenate([np.arange(n), owner[keep]])
    order_time = np.concatenate([birth, times[keep]])
    order_sort = np.argsort(order_customer * float(2 * spec.n_days) + order_time, kind="stable")
    order_customer, order_time = order_customer[order_sort], order_time[order_sort]
    n_orders = order_customer.size
    order_value = rng.gamma(spec.p, 1.0 / nu[order_customer])
    counts = np.bincount(order_customer, minlength=n)
    order_index = np.arange(n_orders) - np.repeat(np.cumsum(counts) - counts, counts)

    # Lines: a category per line by the customer's type, then products.
    n_lines = 1 + np.minimum(rng.poisson(spec.mean_extra_lines, size=n_orders), MAX_LINES_PER_ORDER - 1)
    line_order = np.repeat(np.arange(n_orders), n_lines)
    line_customer = order_customer[line_order]
    categories, type_probs = _category_table()
    cat = _draw_rows(rng, type_probs, ctype[line_customer])
    product = _popular_product(rng, cat, categories)

    # Each customer owns one product of each base category they ever buy in: the
    # first order with such a line fixes it; later lines of that category become
    # its complement, and complement lines before any base purchase become generic.
    product_index = {p.product_id: i for i, p in enumerate(CATALOGUE)}
    base_cat_idx = np.array([categories.index(c) for c in BASE_CATEGORIES])
    comp_cat_idx = np.array([categories.index(COMPLEMENT_CATEGORY[c]) for c in BASE_CATEGORIES])
    comp_of = np.array([product_index[COMPLEMENTS[p.product_id]] if p.product_id in COMPLEMENTS else -1 for p in CATALOGUE])
    line_oi = order_index[line_order]
    for k, bcat in enumerate(base_cat_idx):
        is_base = cat == bcat
        is_comp = cat == comp_cat_idx[k]
        # Lines are ordered by customer and time, so a customer's first base line comes first.
        base_lines = np.flatnonzero(is_base)
        customers_with_base, first_idx = np.unique(line_customer[base_lines], return_index=True)
        first_base = np.full(n, np.iinfo(np.int64).max)
        first_base[customers_with_base] = line_oi[base_lines[first_idx]]
        owned = np.full(n, -1)
        owned[customers_with_base] = product[base_lines[first_idx]]
        has_base = first_base[line_customer] < line_oi
        same_order_dup = is_base & (line_oi == first_base[line_customer])
        product[same_order_dup] = owned[line_customer[same_order_dup]]
        to_comp = (is_base & has_base) | (is_comp & has_base)
        product[to_comp] = comp_of[owned[line_customer[to_comp]]]
        cat[to_comp] = comp_cat_idx[k]
        orphan = is_comp & ~has_base
        if orphan.any():
            generic = np.array([categories.index(c) for c in GENERIC_CATEGORIES])
            cat[orphan] = generic[rng.integers(0, len(generic), size=int(orphan.sum()))]
            product[orphan] = _popular_product(rng, cat[orphan], categories)

    list_price = np.array([p.list_price for p in CATALOGUE])
    consumable = np.isin(cat, comp_cat_idx)
    quantity = 1 + (consumable & (rng.random(line_order.size) < CONSUMABLE_DOUBLE_QUANTITY)).astype(np.int64)

    # The same product twice in one order is one line with the quantities summed.
    n_products = len(CATALOGUE)
    line_key = line_order * n_products + product
    by_key = np.argsort(line_key, kind="stable")  # keys are nearly sorted already: timsort is quick
    sorted_key = line_key[by_key]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    quantity = np.add.reduceat(quantity[by_key], starts)
    key = sorted_key[starts]
    line_order, product = key // n_products, key % n_products
    weight = list_price[product] * quantity
    order_weight = np.bincount(line_order, weights=weight, minlength=n_orders)
    price = np.round(order_value[line_order] * weight / order_weight[line_order] / quantity, 2)

    # Guest checkouts: a few orders copied with no customer, as real logs have.
    n_guest = round(spec.guest_order_share * n_orders)
    guest_src = np.sort(rng.choice(n_orders, size=n_guest, replace=False))
    is_guest_line = np.isin(line_order, guest_src)
    guest_of = np.full(n_orders, -1)
    guest_of[guest_src] = n_orders + np.arange(n_guest)
    line_order = np.concatenate([line_order, guest_of[line_order[is_guest_line]]])
    product = np.concatenate([product, product[is_guest_line]])
    quantity = np.concatenate([quantity, quantity[is_guest_line]])
    price = np.concatenate([price, price[is_guest_line]])
    order_customer = np.concatenate([order_customer, np.full(n_guest, -1)])
    order_time = np.concatenate([order_time, order_time[guest_src]])

    # Order ids follow time; lines are sorted by date, order and product.
    minutes = np.floor(order_time * MINUTES_PER_DAY).astype(np.int64)
    order_rank = np.empty(minutes.size, dtype=np.int64)
    order_rank[np.argsort(minutes, kind="stable")] = np.arange(minutes.size)
    product_ids = np.array([p.product_id for p in CATALOGUE])
    id_rank = np.argsort(np.argsort(product_ids))
    line_sort = np.argsort(order_rank[line_order] * n_products + id_rank[product])
    line_order, product, quantity, price = line_order[line_sort], product[line_sort], quantity[line_sort], price[line_sort]

    start = dt.datetime.combine(spec.start, dt.time())
    width = max(6, len(str(n)))
    cust = order_customer[line_order]
    transactions = pl.DataFrame(
        {
            "customer_id": pl.Series(cust + 1).cast(pl.String).str.zfill(width),
            "order_id": pl.Series(order_rank[line_order] + 100_001).cast(pl.String),
            "date": pl.Series(minutes[line_order] * 60_000_000).cast(pl.Duration("us")) + start,
            "product_id": pl.Series(product_ids)[product],
            "category": pl.Series([p.category for p in CATALOGUE])[product],
            "quantity": quantity,
            "price": price,
        }
    ).with_columns(pl.when(pl.Series(cust) >= 0).then(pl.col("customer_id")).alias("customer_id"))
    customers = pl.DataFrame(
        {
            "customer_id": pl.Series(np.arange(1, n + 1)).cast(pl.String).str.zfill(width),
            "type": np.array(type_names)[ctype],
            "first_purchase": pl.Series(np.floor(birth * MINUTES_PER_DAY).astype(np.int64) * 60_000_000).cast(pl.Duration("us")) + start,
            "lambda_per_day": lam,
            "p_dropout": p_drop,
            "nu": nu,
            "mean_order_value": spec.p / nu,
            "alive_at_end": alive,
            "n_orders": counts,
        }
    )
    return Sample(transactions, customers, sample_truth(spec))


def sample_truth(spec: SampleSpec) -> dict[str, Any]:
    """The true parameters and planted product relations of a sample, JSON-ready."""
    d = asdict(spec)
    end = spec.start + dt.timedelta(days=spec.n_days - 1)
    return {
        "seed": spec.seed,
        "n_customers": spec.n_customers,
        "start": spec.start.isoformat(),
        "end": end.isoformat(),
        "bgnbd_per_day": {k: d[k] for k in ("r", "alpha", "a", "b")},
        "gamma_gamma": {k: d[k] for k in ("p", "q", "v")},
        "customer_types": {t: {"share": spec.type_shares[t], "category_weights": w} for t, (_, w) in CUSTOMER_TYPES.items()},
        "substitutes": {c: [p.product_id for p in CATALOGUE if p.category == c] for c in BASE_CATEGORIES},
        "complements": [{"base": b, "complement": c} for b, c in COMPLEMENTS.items()],
        "products": [asdict(p) for p in CATALOGUE],
    }


def bundled_sample_dir() -> Path:
    """The folder of the bundled sample: inside an installed wheel, else ``data/sample``."""
    packaged = resources.files("clv") / "sample_data"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "data" / "sample"


def bundled_sample_path() -> Path:
    return bundled_sample_dir() / SAMPLE_FILE
