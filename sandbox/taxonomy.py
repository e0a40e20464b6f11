"""The sandbox's fixed product taxonomy: category paths, the family each belongs to, and names.

Kept apart from the generator so the project's default rules YAML and the tests can cite the same
tree. `Imported/Unsorted` exists in Plytix but in no configured taxonomy: products linked there are
the planted "unknown category path" defect.
"""

from __future__ import annotations

# leaf path -> (product family, product nouns)
LEAVES: dict[tuple[str, ...], tuple[str, tuple[str, ...]]] = {
    ("Apparel", "Outerwear", "Jackets"): ("Outerwear", ("Trail Jacket", "Rain Shell", "Down Jacket")),
    ("Apparel", "Outerwear", "Coats"): ("Outerwear", ("Wool Coat", "Trench Coat")),
    ("Apparel", "Tops", "Shirts"): ("Tops", ("Oxford Shirt", "Linen Shirt", "Flannel Shirt")),
    ("Apparel", "Tops", "Knitwear"): ("Tops", ("Merino Sweater", "Cable Cardigan")),
    ("Apparel", "Bottoms", "Trousers"): ("Bottoms", ("Chino Trouser", "Hiking Pant")),
    ("Footwear", "Boots"): ("Footwear", ("Hiking Boot", "Chelsea Boot")),
    ("Footwear", "Sneakers"): ("Footwear", ("Court Sneaker", "Trail Runner")),
    ("Accessories", "Bags"): ("Accessories", ("Day Pack", "Tote Bag")),
    ("Accessories", "Hats"): ("Accessories", ("Beanie", "Sun Hat")),
    ("Home", "Furniture", "Sofas"): ("Furniture", ("Modular Sofa", "Loveseat")),
    ("Home", "Lighting", "Lamps"): ("Lighting", ("Floor Lamp", "Desk Lamp")),
}
UNKNOWN_LEAF: tuple[str, ...] = ("Imported", "Unsorted")
FAMILIES: tuple[str, ...] = tuple(sorted({family for family, _ in LEAVES.values()}))
COLORS = ("Moss", "Navy", "Charcoal", "Sand", "Rust", "Ivory", "Black", "Olive")
SIZES = ("S", "M", "L")
BRANDS = ("Northbound", "Alder & Co", "Fjellvik", "Urban Field")
CHANNELS = ("E-commerce", "Social", "Print", "Marketplaces")
MARKETS = ("Worldwide", "North America", "Europe", "UK", "APAC")
WORKFLOW_STAGES = (
    "New", "Enrichment", "Creative assignment", "Image review", "Ready for approval", "Approved", "Published",
)
# Stages where a product is expected to carry its images in Plytix already.
LATE_STAGES = frozenset({"Ready for approval", "Approved", "Published"})
SEASONS = ("FW26", "SS26", "Core")


def all_category_paths() -> list[tuple[str, ...]]:
    """Every node of the tree (intermediate nodes included), parents before children."""
    paths: set[tuple[str, ...]] = set()
    for leaf in [*LEAVES, UNKNOWN_LEAF]:
        for depth in range(1, len(leaf) + 1):
            paths.add(leaf[:depth])
    return sorted(paths, key=lambda p: (len(p), p))
