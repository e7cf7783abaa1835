"""Parquet knowledge: checking and describing files (inspect) and writing them for dedup (writer)."""
