"""The on-disk store: format manifest, packs (through the native engine), objects and refs.

The format is specified in docs/format.md. This layer knows nothing about tables or commits.
"""

from udrfs.store.store import Store

__all__ = ["Store"]
