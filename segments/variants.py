"""Product variants: the same product in another colour, size or pattern, found from the descriptions.

A description is cut into words; colour, size, pattern, number and filler words are
dropped, and what is left is the product's *core* ("LUNCH BAG RED RETROSPOT" and "LUNCH
BAG BLACK SKULL" both leave "LUNCH BAG"). Two products are variants when

1. their cores are the same words (in any order) and not empty, or
2. their cores have the same length, at least ``MIN_SWAP_CORE`` words, and differ in
   exactly one word at the same place ("CHRISTMAS TREE DECORATION" and "CHRISTMAS STAR
   DECORATION": the same decoration in another design),

and, when the log has categories, they share one. A teapot and its cosy are not variants
("TEAPOT" and "TEA COSY" are different cores), nor are a bag and its refill.

Descriptions only find *candidates*. Whether a customer who owns one is offered the other
is decided by what owners did (:func:`split_variants`): when at least
``MIN_COLLECTED_CO_OWNERS`` customers own both and owners of one are at least
``COLLECTED_LIFT`` times as likely as any customer to own the other, the pair is a
*collected set* (shops stock the lunch bag in every pattern) and is offered, labelled as
another colour its buyers also buy. Otherwise it is a *competing* variant (its owners
chose one, or too few owners say otherwise) and is offered only when asked. Products
without descriptions fall back on the co-purchase rule of
``segments.associations.substitute_pairs`` (same category, owned together far less than
independence predicts).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import sparse

COLOUR_WORDS = frozenset(
    "RED PINK BLUE GREEN BLACK WHITE IVORY CREAM SILVER GOLD PURPLE YELLOW ORANGE BROWN GREY GRAY "
    "TURQUOISE LILAC AQUA NAVY TEAL BEIGE CHOCOLATE COPPER BRONZE CLEAR MAUVE FUCHSIA LAVENDER MINT "
    "PASTEL NATURAL ANTIQUE MULTICOLOUR MULTI COLOUR COLOURED COLOURS ASSORTED".split()
)
SIZE_WORDS = frozenset(
    "SMALL LARGE MEDIUM MINI JUMBO BIG GIANT TINY LITTLE XL XXL XS EXTRA SIZE SIZES TALL SHORT WIDE SLIM "
    "SINGLE DOUBLE TRIPLE".split()
)
PATTERN_WORDS = frozenset(
    "RETROSPOT POLKADOT POLKA DOT DOTS SPOT SPOTS SPOTTY SKULL SKULLS STRIPE STRIPES STRIPED STRIPEY "
    "FLORAL FLOWER FLOWERS PAISLEY GINGHAM CHECK CHECKED TARTAN DOILY LACE LEOPARD ZEBRA CAMOUFLAGE "
    "SPACEBOY DOLLY GIRL WOODLAND PANTRY REGENCY BAROQUE VINTAGE RETRO ENGLISH ROSE ROSES CHERRY "
    "STRAWBERRY APPLE LEAF LEAVES BIRD BIRDS BUTTERFLY OWL CAT DOG RABBIT HEART HEARTS STAR STARS "
    "SCANDINAVIAN MOROCCAN ORIENTAL FRENCH LONDON BOTANICAL DAISY BLOSSOM SWEETHEART UNION JACK PATTERN "
    "PRINT PRINTED DESIGN DESIGNS STYLE".split()
)
FILLER_WORDS = frozenset("OF THE AND WITH IN ON A AN & + W/ / - SET PACK BOX ASSTD".split())
MIN_SWAP_CORE = 3
MIN_COLLECTED_CO_OWNERS = 5  # customers owning both variants before their co-ownership counts as evidence
# Owners of one at least this many times as likely as anyone to own the other: a set people collect.
# Not 1 (independence): heavy buyers own many products, so most pairs in a wholesale log sit above 1.
COLLECTED_LIFT = 2.0
PAIR_BLOCK = 20_000  # candidate pairs whose co-owners are counted at once
MAX_GROUP = 500  # products sharing one core beyond this are too generic to call variants


def _core_words(description: pl.Expr) -> pl.Expr:
    """The description's words, upper case, without colour, size, pattern, number or filler words."""
    dropped = sorted(COLOUR_WORDS | SIZE_WORDS | PATTERN_WORDS | FILLER_WORDS)
    words = description.str.to_uppercase().str.replace_all(r"[^A-Z0-9/&+ -]", " ").str.split(" ")
    return words.list.eval(
        pl.element().filter((pl.element().str.len_chars() > 0) & ~pl.element().is_in(dropped) & ~pl.element().str.contains(r"\d"))
    )


def variant_pairs(products: pl.DataFrame, order: pl.Series) -> sparse.csr_matrix:
    """Symmetric products x products boolean matrix of variants, in the order of ``order`` (product ids).

    ``products`` has ``product_id, description`` and optionally ``category``.
    """
    n_p = len(order)
    empty = sparse.csr_matrix((n_p, n_p), dtype=bool)
    if "description" not in products.columns or n_p == 0:
        return empty
    has_cat = "category" in products.columns
    frame = (
        pl.DataFrame({"product_id": order, "_j": np.arange(n_p, dtype=np.int64)})
        .join(products, on="product_id", how="left")
        .with_columns(_core_words(pl.col("description").fill_null("")).alias("_core"),
                      (pl.col("category").fill_null("") if has_cat else pl.lit("")).alias("_cat"))
        .filter(pl.col("_core").list.len() > 0)
        .select("_j", "_cat", "_core")
    )
    same = frame.with_columns(pl.col("_core").list.sort().list.join(" ").alias("_key")).select("_j", "_cat", "_key")
    swap = (
        frame.filter(pl.col("_core").list.len() >= MIN_SWAP_CORE)
        .with_columns(pl.int_ranges(0, pl.col("_core").list.len()).alias("_pos"))
        .explode("_pos")
        .with_columns(
            pl.concat_str(
                pl.col("_pos").cast(pl.String),
                pl.col("_core").list.head(pl.col("_pos")).list.join(" "),
                pl.col("_core").list.slice(pl.col("_pos") + 1).list.join(" "),
                separator="|",
            ).alias("_key")
        )
        .select("_j", "_cat", "_key")
    )
    keys = pl.concat([same.with_columns(pl.lit("=").alias("_rule")), swap.with_columns(pl.lit("~").alias("_rule"))])
    keys = keys.filter(pl.len().over("_rule", "_cat", "_key") <= MAX_GROUP)
    pairs = keys.join(keys, on=["_rule", "_cat", "_key"], suffix="_b").filter(pl.col("_j") != pl.col("_j_b")).select("_j", "_j_b").unique()
    if pairs.height == 0:
        return empty
    i, j = pairs["_j"].to_numpy(), pairs["_j_b"].to_numpy()
    return sparse.csr_matrix((np.ones(len(i), dtype=bool), (i, j)), shape=(n_p, n_p))


def split_variants(variants: sparse.csr_matrix, X: sparse.spmatrix) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """``(competing, collected)``: the candidate ``variants`` (symmetric, boolean) split by co-ownership in ``X``.

    ``X`` is customers x products ownership (ones). A pair (i, j) is *collected* when
    ``co_owners >= MIN_COLLECTED_CO_OWNERS`` and its lift ``co_owners x n_customers /
    (owners_i x owners_j)`` (the share of i's owners who own j over j's share of all
    customers) is at least ``COLLECTED_LIFT``; every other candidate is *competing*. Both
    parts are symmetric, as the lift and the count are.
    """
    shape = variants.shape
    V = sparse.triu(variants, k=1).tocoo()
    if V.nnz == 0:
        empty = sparse.csr_matrix(shape, dtype=bool)
        return empty, empty.copy()
    Xc = (sparse.csc_matrix(X) > 0).astype(np.float64)
    owners = np.asarray(Xc.sum(axis=0)).ravel()
    co = np.concatenate([  # co-owners per pair, a block of pairs at a time (memory: the owners of a block)
        np.asarray(Xc[:, V.row[s : s + PAIR_BLOCK]].multiply(Xc[:, V.col[s : s + PAIR_BLOCK]]).sum(axis=0)).ravel()
        for s in range(0, V.nnz, PAIR_BLOCK)
    ])
    lift = co * Xc.shape[0] / np.maximum(owners[V.row] * owners[V.col], 1.0)
    collected = (co >= MIN_COLLECTED_CO_OWNERS) & (lift >= COLLECTED_LIFT)

    def symmetric(keep: np.ndarray) -> sparse.csr_matrix:
        i, j = V.row[keep], V.col[keep]
        return sparse.csr_matrix((np.ones(2 * len(i), dtype=bool), (np.r_[i, j], np.r_[j, i])), shape=shape)

    return symmetric(~collected), symmetric(collected)
