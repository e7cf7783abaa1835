"""The query layer: DuckDB over any version (engine), row-level diffs and merges, the udr://
fsspec filesystem and the change feed. Everything here reads through the catalog."""
