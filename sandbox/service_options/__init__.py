"""Start options of the services beyond the catalog, one mixin per service, merged into
`SandboxOptions`. World knobs (the generator's; changing one rebuilds the world) are marked with
`json_schema_extra=WORLD` or named `share_*`."""

WORLD = {"world": True}
