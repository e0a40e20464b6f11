"""Deterministic world generator: one seed, one catalog, and the ground truth of what was planted.

Every product and image is derived from its own index and the seed alone, so the world is built
chunk by chunk straight into DuckDB (a million products never exist as one Python list) and any
record can be regenerated without the others. Products come in styles of four (a parent and three
size variants); each product has `images_per_product` PhotoShelter images tagged with its SKU, the
parent's are style-level shots tagged with the style code only.

Defects are planted on purpose and recorded in `ground_truth(kind, record_id)`; everything not
planted is clean, so the catalog-quality findings can be checked exactly.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import pandas as pd

from sandbox import taxonomy
from sandbox.options import SandboxOptions

CHUNK = 50_000
LEAF_PATHS = list(taxonomy.LEAVES)
TITLE_LIMIT = 150  # the marketplace title limit the default rules enforce

SCHEMA = """
CREATE TABLE categories (seq INTEGER, id VARCHAR PRIMARY KEY, name VARCHAR, path VARCHAR[],
    parents_ids VARCHAR[], slug VARCHAR, ord VARCHAR, n_children INTEGER, modified TIMESTAMP);
CREATE TABLE products (seq BIGINT, id VARCHAR PRIMARY KEY, sku VARCHAR, label VARCHAR,
    status VARCHAR, created TIMESTAMP, modified TIMESTAMP, parent_id VARCHAR, num_variations INTEGER,
    product_family_id VARCHAR, categories VARCHAR[], thumbnail VARCHAR, attributes JSON);
CREATE TABLE plytix_assets (seq BIGINT, id VARCHAR PRIMARY KEY, filename VARCHAR, source_url VARCHAR,
    file_size BIGINT, created TIMESTAMP, modified TIMESTAMP);
CREATE TABLE collections (seq INTEGER, id VARCHAR PRIMARY KEY, name VARCHAR, parent_id VARCHAR,
    created_at TIMESTAMP, modified_at TIMESTAMP);
CREATE TABLE galleries (seq BIGINT, id VARCHAR PRIMARY KEY, name VARCHAR, collection_id VARCHAR,
    created_at TIMESTAMP, modified_at TIMESTAMP);
CREATE TABLE images (seq BIGINT, id VARCHAR PRIMARY KEY, gallery_id VARCHAR, file_name VARCHAR,
    file_size BIGINT, width INTEGER, height INTEGER, uploaded_at TIMESTAMP, updated_at TIMESTAMP,
    model_released BOOLEAN, property_released BOOLEAN, keyword VARCHAR, caption VARCHAR,
    credit VARCHAR, title VARCHAR, sku VARCHAR, style_code VARCHAR, product_family VARCHAR,
    approval VARCHAR, usage_ecommerce VARCHAR, usage_social VARCHAR, usage_print VARCHAR,
    usage_marketplaces VARCHAR, licensed_market VARCHAR, license_expiration VARCHAR);
CREATE TABLE ground_truth (kind VARCHAR, record_id VARCHAR);
-- Plytix asset rows with `assigned`/`n_products` derived from product links, never stored twice.
CREATE VIEW plytix_assets_view AS
SELECT a.*, coalesce(l.n, 0) AS n_products, coalesce(l.n, 0) > 0 AS assigned
FROM plytix_assets a LEFT JOIN (
    SELECT u.asset_id, count(DISTINCT u.product_id) AS n FROM (
        SELECT p.id AS product_id,
               unnest(regexp_extract_all(CAST(p.attributes AS VARCHAR), '"id": "([0-9a-f]{24})"', 1)) AS asset_id
        FROM products p
        UNION SELECT id, thumbnail FROM products
    ) u WHERE u.asset_id IS NOT NULL GROUP BY u.asset_id
) l ON l.asset_id = a.id;
"""


def _usage_rights(usable: list[dict]) -> dict:
    """The usage-rights attributes Plytix holds for a product whose images were synced from
    PhotoShelter: channels every usable image may be used in, the narrowest market, the first expiry.
    (The same rule as the project's image sync, so a synced world shows no differences.)"""
    channels = [label for label, column in (("E-commerce", "usage_ecommerce"), ("Marketplaces", "usage_marketplaces"),
                                            ("Print", "usage_print"), ("Social", "usage_social"))
                if all(image[column] == "Allowed" for image in usable)]
    markets = sorted(image["licensed_market"] for image in usable if image["licensed_market"] != "Worldwide")
    return {"usage_rights_channels": channels, "usage_rights_market": markets[0] if markets else "Worldwide",
            "license_expiration_date": min(image["license_expiration"] for image in usable)}


def product_id(index: int) -> str:
    return f"6740a1f2{index:016x}"


def category_id(index: int) -> str:
    return f"6740a0aa{index:016x}"


def plytix_asset_id(index: int) -> str:
    return f"6740a3b0{index:016x}"


def family_id(family: str) -> str:
    return f"6405f5ce{taxonomy.FAMILIES.index(family):016x}"


# PhotoShelter ids are 16 characters with a type prefix; real ones mix letters, ours are digits.
def image_id(index: int) -> str:
    return f"I0000{index:011d}"


def gallery_id(index: int) -> str:
    return f"G0000{index:011d}"


def collection_id(index: int) -> str:
    return f"C0000{index:011d}"


def sku_of(index: int) -> str:
    return f"SKU-{100000 + index}"


def style_code_of(style: int) -> str:
    return f"ST-{1000 + style}"


@dataclass
class _Chunk:
    products: list[dict] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    assets: list[dict] = field(default_factory=list)
    galleries: list[dict] = field(default_factory=list)
    truth: list[tuple[str, str]] = field(default_factory=list)


class WorldGenerator:
    """Builds the world for one set of options into a DuckDB connection."""

    def __init__(self, options: SandboxOptions):
        self.o = options
        self.now = options.anchor().replace(tzinfo=None)  # naive UTC throughout the sandbox
        self.n = options.products
        self.category_ids = {path: category_id(i) for i, path in enumerate(taxonomy.all_category_paths())}
        burst = options.burst_size if self.n >= 3 * options.burst_size else 0
        self.burst = range(self.n // 3, self.n // 3 + burst)
        self.burst_instant = self.now - timedelta(days=1, hours=3, microseconds=-123456)

    # --- deterministic draws ---
    def rng(self, kind: int, index: int) -> random.Random:
        """The generator for record `index` of draw stream `kind` (extensions use kinds >= 100)."""
        return self._rng(kind, index)

    def _rng(self, kind: int, index: int) -> random.Random:
        return random.Random((self.o.seed * 1_000_003 + kind) * 10_000_019 + index)

    def _style(self, style: int) -> dict:
        rng = self._rng(1, style)
        leaf = LEAF_PATHS[rng.randrange(len(LEAF_PATHS))]
        family, nouns = taxonomy.LEAVES[leaf]
        return {
            "leaf": leaf,
            "family": family,
            "noun": rng.choice(nouns),
            "color": rng.choice(taxonomy.COLORS),
            "brand": rng.choice(taxonomy.BRANDS),
            "season": rng.randrange(len(taxonomy.SEASONS)),
            "no_images": rng.random() < self.o.share_missing_images,
            "stage": rng.choice(taxonomy.WORKFLOW_STAGES),
        }

    def _is_duplicate(self, index: int) -> bool:
        """Whether product `index` re-uses the previous product's SKU: drawn on its own stream so
        the neighbour can ask too (image defects are kept off both products of a pair)."""
        # Only variant after variant: a parent's style-level shots would lose their style fallback.
        return index % 4 >= 2 and self._rng(6, index).random() < self.o.share_duplicate_sku

    # --- build ---
    def build(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(SCHEMA)
        self._build_categories(con)
        self._build_collections(con)
        for chunk in self._chunks():
            tables = (("products", chunk.products), ("images", chunk.images),
                      ("plytix_assets", chunk.assets), ("galleries", chunk.galleries))
            for table, rows in tables:
                if rows:
                    frame = pd.DataFrame(rows)
                    con.register("chunk_frame", frame)
                    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM chunk_frame")  # noqa: S608 (fixed table names)
                    con.unregister("chunk_frame")
            if chunk.truth:
                truth = pd.DataFrame(chunk.truth, columns=["kind", "record_id"])  # noqa: F841 (read by SQL)
                con.execute("INSERT INTO ground_truth SELECT * FROM truth")
        self._build_orphans(con)
        from sandbox.worlds import extensions  # the other services' worlds, tied to this catalog

        for extend in extensions():
            extend(con, self)

    def _build_categories(self, con: duckdb.DuckDBPyConnection) -> None:
        paths = taxonomy.all_category_paths()
        for seq, path in enumerate(paths):
            parents = [self.category_ids[path[:d]] for d in range(1, len(path))]
            children = sum(1 for p in paths if len(p) == len(path) + 1 and p[: len(path)] == path)
            con.execute(
                "INSERT INTO categories VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [seq, self.category_ids[path], path[-1], list(path), parents, path[-1].lower().replace(" ", "-"),
                 str(seq), children, self.now - timedelta(days=300)],
            )

    def _build_collections(self, con: duckdb.DuckDBPyConnection) -> None:
        for seq, season in enumerate([*taxonomy.SEASONS, "Unsorted uploads"]):
            con.execute(
                "INSERT INTO collections VALUES (?, ?, ?, 'root', ?, ?)",
                [seq, collection_id(seq), season, self.now - timedelta(days=200), self.now - timedelta(days=2)],
            )

    def _chunks(self) -> Iterator[_Chunk]:
        for start in range(0, self.n, CHUNK):
            chunk = _Chunk()
            styles: dict[int, dict] = {}
            for index in range(start, min(start + CHUNK, self.n)):
                style_no = index // 4
                if style_no not in styles:
                    styles[style_no] = self._style(style_no)
                    self._gallery(style_no, styles[style_no], chunk)
                style = styles[style_no]
                self._product(index, style_no, style, chunk)
            yield chunk

    def _modified(self, index: int, rng: random.Random) -> datetime:
        if index in self.burst:
            return self.burst_instant
        seconds = rng.uniform(60, self.o.history_days * 86400)
        return (self.now - timedelta(seconds=seconds)).replace(microsecond=rng.randrange(1_000_000))

    def _product(self, index: int, style_no: int, style: dict, chunk: _Chunk) -> None:
        o, rng = self.o, self._rng(2, index)
        pid, pos = product_id(index), index % 4
        is_parent = pos == 0
        sku = sku_of(index)
        truth = chunk.truth.append
        if self._is_duplicate(index):
            sku = " " + sku_of(index - 1).lower()  # the same SKU typed differently
            truth(("duplicate_sku", pid))
            truth(("duplicate_sku", product_id(index - 1)))
        leaf, family = style["leaf"], style["family"]
        if rng.random() < o.share_unknown_category:
            leaf = taxonomy.UNKNOWN_LEAF
            truth(("unknown_category", pid))
        elif rng.random() < o.share_family_mismatch:
            family = next(f for f in taxonomy.FAMILIES[rng.randrange(len(taxonomy.FAMILIES)):] + taxonomy.FAMILIES if f != family)
            truth(("family_mismatch", pid))
        label = f"{style['noun']} - {style['color']}" + ("" if is_parent else f" / {taxonomy.SIZES[pos - 1]}")
        stage = style["stage"]
        channels = ["E-commerce"] + (["Marketplaces"] if rng.random() < 0.4 else []) + (["Social"] if rng.random() < 0.3 else [])
        attributes: dict = {
            "workflow_stage": stage,
            "style_code": style_code_of(style_no),
            "product_family": family,
            "brand": style["brand"],
            "color": style["color"],
            "sales_channels": channels,
            "description": f"{label}: {style['brand']} {style['noun'].lower()} in {style['color'].lower()}.",
            "description_de": f"{label} (Deutsch)",
            "description_fr": f"{label} (Français)",
        }
        if not is_parent:
            attributes["size"] = taxonomy.SIZES[pos - 1]
        if "Marketplaces" in channels:
            attributes["marketplace_title"] = f"{style['brand']} {label}"
            if rng.random() < o.share_channel_title_too_long:
                attributes["marketplace_title"] = (f"{style['brand']} {label} " * 12)[: TITLE_LIMIT + 40]
                truth(("channel_title_too_long", pid))
        if rng.random() < o.share_missing_required:
            del attributes["description"]
            truth(("missing_required", pid))
        if leaf[0] == "Apparel":
            attributes["material"] = rng.choice(("Cotton", "Wool", "Recycled polyester", "Linen"))
            if rng.random() < o.share_missing_category_required:
                del attributes["material"]
                truth(("missing_category_required", pid))
        if rng.random() < o.share_missing_translations:
            del attributes[rng.choice(("description_de", "description_fr"))]
            truth(("missing_translations", pid))

        usable = self._images(index, style_no, style, sku if not is_parent else None, rng, chunk, pid)
        thumbnail = None
        if stage in taxonomy.LATE_STAGES:
            if usable:
                asset_ids = [self._asset(image["id"], image["seq"], chunk) for image in usable]
                attributes["hero_image"] = {"id": asset_ids[0]}
                if asset_ids[1:]:
                    attributes["alternate_images"] = [{"id": a} for a in asset_ids[1:]]
                attributes["image_approval_status"] = "Approved"
                attributes.update(_usage_rights(usable))
                thumbnail = asset_ids[0]
            else:
                truth(("no_hero_image", pid))
        modified = self._modified(index, rng)
        chunk.products.append({
            "seq": index, "id": pid, "sku": sku, "label": label,
            "status": "Completed" if stage == "Published" else "Draft",
            "created": modified - timedelta(days=rng.uniform(0, 300)), "modified": modified,
            "parent_id": None if is_parent else product_id(index - pos),
            "num_variations": min(3, self.n - 1 - index) if is_parent else 0,
            "product_family_id": family_id(family), "categories": [self.category_ids[leaf]],
            "thumbnail": thumbnail, "attributes": json.dumps(attributes),
        })

    def _images(self, index: int, style_no: int, style: dict, sku: str | None, rng: random.Random,
                chunk: _Chunk, pid: str) -> list[dict]:
        """Generate the product's images; return those usable on the anchor date."""
        o = self.o
        if style["no_images"] or o.images_per_product == 0:
            chunk.truth.append(("missing_images", pid))
            return []
        # Defects are drawn for every product, whatever its images, so the draws stay aligned. A pair
        # sharing a SKU shares its images too, so image defects there would not be observable.
        in_pair = self._is_duplicate(index) or (index + 1 < self.n and self._is_duplicate(index + 1))
        unapproved = rng.random() < o.share_unapproved_images and not in_pair
        expired = rng.random() < o.share_expired_rights and not (unapproved or in_pair)
        expiring = rng.random() < o.share_expiring_rights and not (unapproved or expired or in_pair)
        for kind, flag in (("unapproved_images", unapproved), ("expired_rights", expired), ("expiring_rights", expiring)):
            if flag:
                chunk.truth.append((kind, pid))
        usable = []
        gid, style_code, img_rng = gallery_id(style_no), style_code_of(style_no), rng
        for k in range(o.images_per_product):
            number = index * o.images_per_product + k
            iid = image_id(number)
            days_left = img_rng.randint(200, 900)
            if expired:
                days_left = -img_rng.randint(1, 200)
            elif expiring:
                days_left = img_rng.randint(1, 14)
            updated = self.now - timedelta(seconds=img_rng.uniform(60, o.history_days * 86400))
            view = ("front", "back", "side", "detail", "lifestyle")[k % 5]
            stem = (sku or style_code).strip().upper()
            chunk.images.append({
                "seq": number, "id": iid, "gallery_id": gid,
                "file_name": f"{stem}_{style['color'].lower()}_{view}.jpg",
                "file_size": img_rng.randint(800_000, 9_000_000), "width": 4000, "height": 5000,
                "uploaded_at": updated.replace(microsecond=0) - timedelta(days=img_rng.randint(1, 120)),
                "updated_at": updated.replace(microsecond=0),
                "model_released": img_rng.random() < 0.5, "property_released": False,
                "keyword": f"{style['noun'].split()[-1].lower()},{style['color'].lower()}",
                "caption": f"{style['noun']} in {style['color']}, {view}", "credit": "Studio B",
                "title": f"{style_code} {view}",
                "sku": sku, "style_code": style_code, "product_family": style["family"],
                "approval": img_rng.choice(("Pending Review", "Rejected")) if unapproved else "Approved",
                "usage_ecommerce": "Allowed", "usage_social": "Allowed",
                "usage_print": img_rng.choice(("Allowed", "Not Allowed")), "usage_marketplaces": "Allowed",
                "licensed_market": img_rng.choice(("Worldwide", "North America")),
                "license_expiration": (self.now + timedelta(days=days_left)).date().isoformat(),
            })
            if not (unapproved or expired):
                usable.append(chunk.images[-1])
        return usable

    def _asset(self, iid: str, number: int, chunk: _Chunk) -> str:
        """The Plytix asset made earlier from a PhotoShelter image (numbered like the image)."""
        aid = plytix_asset_id(number)
        chunk.assets.append({
            "seq": number, "id": aid, "filename": f"{iid}.jpg",
            "source_url": f"/img-get2/{iid}/fit=2000x2000", "file_size": 31885,
            "created": self.now - timedelta(days=30), "modified": self.now - timedelta(days=30),
        })
        return aid

    def _build_orphans(self, con: duckdb.DuckDBPyConnection) -> None:
        """Images whose SKU and style code match no product: uploads never tied to the catalog."""
        count = round(self.n * self.o.share_orphan_images)
        base = self.n * max(self.o.images_per_product, 1)
        rows = []
        for k in range(count):
            rng = self._rng(4, k)
            iid = image_id(base + k)
            updated = (self.now - timedelta(seconds=rng.uniform(60, self.o.history_days * 86400))).replace(microsecond=0)
            rows.append({
                "seq": base + k, "id": iid, "gallery_id": gallery_id(10**9), "file_name": f"upload_{k}.jpg",
                "file_size": rng.randint(800_000, 9_000_000), "width": 4000, "height": 5000,
                "uploaded_at": updated, "updated_at": updated, "model_released": False,
                "property_released": False, "keyword": "", "caption": "", "credit": "", "title": "",
                "sku": f"SKU-9{k:06d}", "style_code": f"ST-9{k:05d}", "product_family": None,
                "approval": "Approved", "usage_ecommerce": "Allowed", "usage_social": None,
                "usage_print": None, "usage_marketplaces": None, "licensed_market": "Worldwide",
                "license_expiration": (self.now + timedelta(days=365)).date().isoformat(),
            })
        if rows:
            created = self.now - timedelta(days=90)
            con.execute(
                "INSERT INTO galleries VALUES (?, ?, 'Unsorted uploads', ?, ?, ?)",
                [10**9, gallery_id(10**9), collection_id(len(taxonomy.SEASONS)), created, created],
            )
            con.register("orphan_frame", pd.DataFrame(rows))
            con.execute("INSERT INTO images BY NAME SELECT * FROM orphan_frame")
            con.execute("INSERT INTO ground_truth SELECT 'orphan_image', id FROM orphan_frame")
            con.unregister("orphan_frame")

    def _gallery(self, style_no: int, style: dict, chunk: _Chunk) -> None:
        if style["no_images"] or self.o.images_per_product == 0:
            return
        created = self.now - timedelta(days=self._rng(5, style_no).randint(60, 200))
        chunk.galleries.append({
            "seq": style_no, "id": gallery_id(style_no), "name": f"{style_code_of(style_no)} {style['noun']}",
            "collection_id": collection_id(style["season"]), "created_at": created, "modified_at": created,
        })
