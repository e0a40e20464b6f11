"""What a payload may hold when a source misbehaves: wrong types, nulls, huge strings, odd Unicode
and SQL metacharacters. Shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

SQL = ["'; DROP TABLE plytix_product_changes; --", "\" OR 1=1 --", "' OR ''='", "$1", "?", "%s", "\\", "'||'",
       "/* x */", "{sku}", "%(name)s", ";", "''", "\\'; SELECT 1; --", "Robert'); DROP TABLE catalog_snapshot;--"]
ODD = ["\u202e", "\u200d", "\ufeff", "\x00", "\u0301", "\U0001f600", "\U0001f1e9\U0001f1ea", "ß", "İ", "\u2028",
       "\r\n", "\t", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ﷺ", "\U000e0041", "\u00a0"]

# Any Unicode scalar value: letters, controls, format characters, private use, unassigned.
unicode_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
sql_text = st.sampled_from(SQL)
odd_text = st.lists(st.sampled_from(ODD) | unicode_text | sql_text, max_size=5).map("".join)
# Long enough to be past every column and message limit the project sets (1 000 and 100 000).
huge_text = st.builds(lambda piece, n: piece * n, st.sampled_from(["x", "é", "😀", "'; --", "a\x00"]),
                      st.integers(100_001, 110_000))
# Huge strings are slow to push through DuckDB: one draw in eight is enough to hit every limit.
nasty_text = st.one_of(unicode_text, unicode_text, unicode_text, sql_text, sql_text, odd_text, odd_text, huge_text)
# A lone surrogate is legal in a JSON string escape ("\\ud800") and so reaches Python from any API.
surrogate_text = st.builds(lambda a, s, b: a + s + b, unicode_text, st.characters(categories=["Cs"]), unicode_text)

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), nasty_text, surrogate_text)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(unicode_text | sql_text, inner, max_size=4), max_leaves=12)
# What a field may hold instead of what the contract says.
wrong = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), nasty_text, surrogate_text,
                  st.lists(scalars, max_size=3), st.dictionaries(unicode_text, scalars, max_size=3))
