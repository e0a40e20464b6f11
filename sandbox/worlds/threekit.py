"""The Threekit world (threekit.md): configurable items tied to the catalog, their 3D models and
variants, pricebooks, saved configurations and configurator orders, with planted defects.

- A share of styles is configurable: one `item` asset per style, named after the Plytix parent and
  pointing at it by SKU and product id (`metadata.sku`, `metadata.plytixProductId`) and at the
  style's first PhotoShelter image (`metadata.photoshelterImageId`); one `model` asset behind it
  (`proxyId`); one catalog variant per size.
- Items carry `Pricing` values for every active pricebook and currency (and, on some, the deleted
  2025 pricebook a client must skip). Configurations choose an item, a pricebook and a currency and
  carry the matching price in `metadata.price`. Item prices are drawn clear of
  `threekit_review_threshold` on both sides in every pricebook and currency, so "above the
  threshold" has the same answer whatever the currency.
- Orders take consecutive configurations into carts of one to three, so a configuration knows
  whether it was ordered and by which Shopify line item.

Planted cases go to `ground_truth`: `threekit_missing_price` (an item lacking a price for an active
pricebook and currency), `threekit_broken_sku_ref` (item SKU and product id not in Plytix),
`threekit_broken_image_ref` (image id not in PhotoShelter), `threekit_config_missing_price`,
`threekit_config_needs_review` (priced above the threshold), `threekit_config_invalid_option` (a
size or finish the item does not offer) and `threekit_unpublished_model_change` (a model whose
`publishedAt` is null or older than its `updatedAt`).

Draws are made a chunk at a time with numpy generators seeded from `gen.rng(kind, chunk)`, always
a full chunk's worth, so a record's draws depend on its number alone; rows are assembled by DuckDB
(`threekit_sql`). Draw kinds: 200 items, 210 configurations, 220 orders.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from sandbox import taxonomy
from sandbox.services.threekit_render import USER_ID
from sandbox.world import image_id, product_id, sku_of
from sandbox.worlds import threekit_sql as sql

STYLE_CHUNK = 25_000
RECORD_CHUNK = 50_000
PB_RETAIL, PB_TRADE, PB_OLD = sql.PB_RETAIL, sql.PB_TRADE, sql.PB_OLD
# A SKU or image number no catalog reaches (a million products at most, ten images each).
BROKEN_SKU_BASE, BROKEN_IMAGE_BASE = 2_000_000, 90_000_000_000
STATUS_WEIGHTS = (("List", 5), ("In Cart", 8), ("New", 30), ("In Progress", 25), ("Complete", 25), ("Cancelled", 7))
MONOGRAMS = ("For Ada", "A.L.", "Trail 26", "JMK")
MONOGRAM_LEAVES = ("Bags", "Hats", "Shirts", "Knitwear")  # items offering a free-text monogram
WIDTH_LEAVES = ("Sofas", "Lamps")  # items with a numeric width


def _register(con, name: str, columns: dict) -> None:
    """Register a chunk's draws for SQL; numpy text arrays become Python strings, which DuckDB reads."""
    frame = {k: v.astype(object) if isinstance(v, np.ndarray) and v.dtype.kind == "U" else v for k, v in columns.items()}
    con.register(name, pd.DataFrame(frame))


class ThreekitWorld:
    def __init__(self, con, gen):
        self.con, self.gen, self.o, self.now = con, gen, gen.o, gen.now
        self.history_s = self.o.history_days * 86400

    def build(self) -> None:
        self.con.execute(sql.SCHEMA)
        self._pricebooks()
        self._materials()
        priced = 0
        for chunk, start in enumerate(range(0, (self.o.products + 3) // 4, STYLE_CHUNK)):
            priced = self._items(chunk, start, priced)
        n_configs = self.o.products * self.o.threekit_configurations_per_100_products // 100 if priced else 0
        sizes = self._order_sizes(n_configs)
        ages = self._configurations(n_configs, priced, int(sizes.sum()))
        self._orders(sizes, ages)
        self.con.execute("DROP TABLE threekit_item_facts")

    def _np(self, kind: int, index: int) -> np.random.Generator:
        """A numpy generator seeded from the world's `rng(kind, index)`, for one chunk of draws."""
        return np.random.default_rng(self.gen.rng(kind, index).getrandbits(64))

    # ---- fixed records ----
    def _pricebooks(self) -> None:
        rows = [(1, PB_RETAIL, "Retail 2026", ["USD", "EUR"], 356, None),
                (2, PB_TRADE, "Trade 2026", ["USD"], 340, None),
                (3, PB_OLD, "Retail 2025", ["USD", "EUR"], 720, 356)]  # deleted: clients must skip it
        for seq, pid, name, currencies, age, deleted in rows:
            self.con.execute("INSERT INTO threekit_pricebooks VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [seq, pid, name, currencies, self.now - timedelta(days=age, hours=3), USER_ID,
                              None if deleted is None else self.now - timedelta(days=deleted)])

    def _materials(self) -> None:
        created, updated = self.now - timedelta(days=400), self.now - timedelta(days=200)
        for k, color in enumerate(taxonomy.COLORS):
            self.con.execute(
                "INSERT INTO threekit_assets VALUES (?, ?, ?, 'material', NULL, ['finishes'], ?, [], '{}', NULL, "
                "'main', NULL, '[]', ?, ?, ?)",
                [k, sql.MATERIAL_IDS[k], f"{color} finish", [color.lower()], created, updated, updated])

    # ---- items, models and variants: one per configurable style ----
    def _items(self, chunk: int, start: int, priced_before: int) -> int:
        """Build one chunk of styles; return the running count of priced items (configurations pick those)."""
        o, t = self.o, self.o.threekit_review_threshold
        end = min(start + STYLE_CHUNK, (o.products + 3) // 4)
        ipp = o.images_per_product
        styles = self.con.execute(sql.STYLE_ROWS, [4 * start * ipp, 4 * end * ipp, 4 * start, 4 * end]).df()
        s = styles["seq"].to_numpy() // 4
        u = self._np(200, chunk).random((STYLE_CHUNK, 21 + len(taxonomy.COLORS)))[s - start]
        keep = u[:, 0] < o.share_threekit_configurable_styles
        styles, s, u = styles[keep].reset_index(drop=True), s[keep], u[keep]
        if not len(s):
            return priced_before
        premium = u[:, 1] < o.share_threekit_premium_items
        # Clear of the threshold in every pricebook and currency: 1.25 t x 0.85 (trade) stays above it.
        usd = np.round(np.where(premium, 1.25 * t + u[:, 2] * 1.75 * t, 0.02 * t + u[:, 2] * 0.88 * t)) - 0.01
        eur = np.round(usd * 0.92, 2)
        broken_sku = u[:, 5] < o.share_threekit_broken_sku_ref
        broken_image = u[:, 6] < o.share_threekit_broken_image_ref
        sku, pid, image = styles["sku"].to_numpy(object), styles["id"].to_numpy(object), styles["image_id"].to_numpy(object)
        for k in np.flatnonzero(broken_sku):  # a product since deleted from Plytix
            sku[k], pid[k] = sku_of(BROKEN_SKU_BASE + s[k]), product_id(BROKEN_SKU_BASE + s[k])
        for k in np.flatnonzero(broken_image):
            image[k] = image_id(BROKEN_IMAGE_BASE + s[k])
        # The style's own colour first, then one or two other finishes in a drawn order.
        color_keys = u[:, 21:].copy()
        own = [taxonomy.COLORS.index(c) if c in taxonomy.COLORS else 0 for c in styles["color"]]
        color_keys[np.arange(len(s)), own] = -1
        order = np.argsort(color_keys, axis=1)
        n_colors = 2 + (u[:, 8] < 0.5)
        leaf = styles["leaf"].to_numpy(object)
        # Ages in seconds before now: updated after created, the item published after its last edit.
        created = (60 + u[:, 10] * 340) * 86400
        updated = np.minimum(3 * 3600 + u[:, 11] * (self.history_s - 3 * 3600), created - 60)
        model_created = created + 300
        model_updated = np.minimum(3 * 3600 + u[:, 13] * (self.history_s - 3 * 3600), model_created - 60)
        unpublished = u[:, 14] < o.share_threekit_unpublished_models
        stale = model_created - (0.1 + 0.8 * u[:, 16]) * (model_created - model_updated)  # before the last edit
        model_published = np.where(unpublished, np.where(u[:, 15] < 1 / 3, -1, stale), model_updated - 60 - u[:, 17] * 7140)
        status_roll = u[:, 18:21]
        status = np.where(status_roll < 0.85, "active", np.where(status_roll < 0.95, "deactivated", "invalid"))
        _register(self.con, "draws", {
            "s": s, "label": styles["label"], "leaf": leaf, "sku": sku, "product_id": pid, "image_id": image,
            "colors": [[sql.MATERIAL_IDS[c] for c in row[:n]] for row, n in zip(order, n_colors, strict=True)],
            "monogram": np.isin(leaf, MONOGRAM_LEAVES) & (u[:, 9] < 0.5), "width": np.isin(leaf, WIDTH_LEAVES),
            "usd": usd, "eur": eur, "trade": np.round(usd * 0.85, 2), "old_usd": np.round(usd * 0.95, 2),
            "old_eur": np.round(eur * 0.95, 2), "has_old_price": u[:, 7] < 0.5,
            "missing": u[:, 3] < o.share_threekit_missing_price, "missing_mode": (u[:, 4] * 3).astype(int),
            "broken_sku": broken_sku, "broken_image": broken_image, "unpublished": unpublished,
            "created_us": _us(created), "updated_us": _us(updated), "published_us": _us(updated - 60 - u[:, 12] * 7140),
            "model_created_us": _us(model_created), "model_updated_us": _us(model_updated),
            "model_published_us": np.where(model_published < 0, -1, _us(model_published)),
            "variant_status": status.tolist(),
        })
        for statement in (sql.ITEMS_SQL, sql.MODELS_SQL, sql.VARIANTS_SQL):
            self.con.execute(statement, [self.now])
        self.con.execute(sql.FACTS_SQL, [priced_before])
        self.con.execute(sql.ITEM_TRUTH_SQL)
        self.con.unregister("draws")
        return self.con.execute("SELECT count(*) FROM threekit_item_facts").fetchall()[0][0]

    # ---- configurations and orders ----
    def _order_sizes(self, n_configs: int) -> np.ndarray:
        """Cart sizes (one to three): orders take consecutive configurations until they run out."""
        n_orders = self.o.products * self.o.threekit_orders_per_100_products // 100
        self._order_draws = self._np(220, 0).random((n_orders, 12))
        u = self._order_draws
        sizes = 1 + (u[:, 0] < 0.3) + (u[:, 1] < 0.1)
        return sizes[np.cumsum(sizes) <= n_configs]

    def _configurations(self, n_configs: int, priced: int, ordered: int) -> np.ndarray:
        """Insert the configurations; return each one's age in seconds (orders are placed after them)."""
        ages = []
        for chunk, start in enumerate(range(0, n_configs, RECORD_CHUNK)):
            m = min(RECORD_CHUNK, n_configs - start)
            u = self._np(210, chunk).random((RECORD_CHUNK, 16))[:m]
            age = 60 + u[:, 0] * (self.history_s - 60)
            ages.append(age)
            _register(self.con, "draws", {
                "seq": np.arange(start, start + m), "age_us": _us(age),
                "priced_no": (u[:, 1] * priced).astype(np.int64), "trade": u[:, 2] < 0.15, "euro": u[:, 3] < 0.25,
                "color_pick": u[:, 4], "size": np.array(taxonomy.SIZES)[(u[:, 5] * 3).astype(int)],
                "monogram": np.where(u[:, 6] < 0.5, np.array(MONOGRAMS)[(u[:, 7] * len(MONOGRAMS)).astype(int)], None),
                "width": 160 + 10 * (u[:, 8] * 11).astype(int),
                "invalid": u[:, 9] < self.o.share_threekit_config_invalid_option, "invalid_size": u[:, 10] < 0.5,
                "not_offered_pick": u[:, 11], "missing": u[:, 12] < self.o.share_threekit_config_missing_price,
                "thumbnail": u[:, 13] >= 0.1, "customer": np.where(u[:, 14] < 0.3, 1 + (u[:, 15] * 999_999).astype(int), -1),
            })
            self.con.execute(sql.CONFIGURATIONS_SQL, [ordered, self.now])
            self.con.execute(sql.CONFIGURATION_TRUTH_SQL, [self.o.threekit_review_threshold])
            self.con.unregister("draws")
        return np.concatenate(ages) if ages else np.zeros(0)

    def _orders(self, sizes: np.ndarray, config_ages: np.ndarray) -> None:
        n = len(sizes)
        if not n:
            return
        u = self._order_draws[:n]
        first = np.cumsum(sizes) - sizes
        weights = np.array([w for _, w in STATUS_WEIGHTS], dtype=float)
        pick = np.searchsorted(np.cumsum(weights) / weights.sum(), u[:, 2], side="right")
        status = np.array([name for name, _ in STATUS_WEIGHTS])[pick]
        # Placed up to three hours after the newest configuration in its cart, and before now.
        newest = np.minimum.reduceat(config_ages, first)
        age = newest - u[:, 3] * np.minimum(3 * 3600, newest - 1)
        untouched = (status == "New") & (u[:, 4] < 0.5)
        later = np.where(untouched, 0.0, u[:, 5] * np.minimum(age, 10 * 86400))
        _register(self.con, "draws", {
            "seq": np.arange(n), "first": first, "size": sizes, "status": status, "age_us": _us(age),
            "later_us": _us(later), "noted": (status == "Complete") & (u[:, 6] < 0.5),
            "customer": np.where(u[:, 7] < 0.2, 1 + (u[:, 8] * 999_999).astype(int), -1),
            "counts": (1 + (u[:, 9:12] < 0.15).astype(int)).tolist(),
        })
        self.con.execute(sql.ORDERS_SQL, [self.now])
        self.con.unregister("draws")


def _us(seconds: np.ndarray) -> np.ndarray:
    return (seconds * 1e6).astype(np.int64)


def build(con, gen) -> None:
    ThreekitWorld(con, gen).build()
