"""The asset checks against hand-made warehouse rows: each fails on exactly what it guards against."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from assets.checks import join_does_not_fan_out, report_not_empty, sku_unique
from assets.warehouse import ensure_tables

DAY = date(2026, 11, 21)


@pytest.fixture
def con(tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        ensure_tables(con)
        yield con


def image_rows(con, rows: list[tuple]) -> None:
    con.executemany("INSERT INTO product_images (snapshot_date, product_id, image_id, match_type, match_key) "
                    "VALUES (?, ?, ?, ?, ?)", [(DAY, *row) for row in rows])


FINE = [("P1", "I1", "sku", "SKU-1"), ("P2", "I1", "sku", "SKU-1"),  # one SKU typed twice shares its image
        ("P3", "I2", "style_code", "ST-1"), ("P4", "I2", "style_code", "ST-1"), ("P5", None, "none", None)]


@pytest.mark.parametrize("extra, why", [
    ([], None),
    ([("P1", "I1", "sku", "SKU-1")], "1 repeated pair(s), 0 image(s)"),
    ([("P6", "I2", "product_family", "Jackets")], "0 repeated pair(s), 1 image(s)"),
    ([("P6", "I2", "style_code", "ST-2")], "0 repeated pair(s), 1 image(s)"),
    ([("P6", "I3", "sku", None)], "0 repeated pair(s), 1 image(s)"),
], ids=["shared-by-one-key", "repeated-pair", "other-match-type", "other-key", "no-key"])
def test_the_join_check_fails_only_on_repeated_pairs_or_images_reached_through_different_keys(con, extra, why):
    image_rows(con, FINE + extra)
    result = join_does_not_fan_out(con, [DAY])
    assert result.passed is (why is None)
    assert result.metadata["days_failed"].value == (0 if why is None else 1)
    if why:
        assert why in result.metadata["failures"].value


def test_sku_unique_fails_on_a_sku_typed_twice_and_the_report_check_on_an_empty_report(con):
    con.executemany("INSERT INTO catalog_snapshot (snapshot_date, product_id, sku, sku_key) VALUES (?, ?, ?, ?)",
                    [(DAY, "P1", "SKU-1", "SKU-1"), (DAY, "P2", "SKU-2", "SKU-2")])
    assert sku_unique(con, [DAY]).passed and not report_not_empty(con, [DAY]).passed
    con.execute("INSERT INTO catalog_snapshot (snapshot_date, product_id, sku, sku_key) VALUES (?, 'P3', ' sku-1', "
                "'SKU-1')", [DAY])
    con.execute("INSERT INTO catalog_quality_report (report_date, product_id, rule) VALUES (?, 'P3', 'duplicate_sku')",
                [DAY])
    assert not sku_unique(con, [DAY]).passed and report_not_empty(con, [DAY]).passed
