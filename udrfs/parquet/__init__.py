"""Parquet knowledge: checking and describing files, and writing them for deduplication."""
