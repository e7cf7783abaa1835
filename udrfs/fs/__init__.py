"""The FUSE mount: every version of every table on every branch as an ordinary file.

`namespace` resolves names and keeps the inode table, `operations` answers FUSE requests,
`reader` serves version bytes, `changes` renders the growing `.changes` files, `stats` the
`.stats` file, `catalog_view` caches the catalog for the daemon, and `daemon` mounts,
follows the refs and unmounts. docs/mount.md describes the design and its measurements.
"""
