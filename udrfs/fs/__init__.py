"""The FUSE mount: every version of every table on every branch as an ordinary file, and
`.tx` staging directories that commit files written into them atomically.

`namespace` resolves names and keeps the inode table (`nodes` says what each inode shows),
`operations` answers FUSE requests and hands those under `.tx` to `tx_operations`, `reader`
serves version bytes, `changes` renders the growing `.changes` files, `stats` the `.stats`
file, `catalog_view` caches the catalog for the daemon, `assembly` builds the handlers
and their parts (the one way, for the daemon and for in-process tests), and `daemon`
mounts, follows the refs and unmounts. The write side: `tx_directories` keeps the `.tx`
directories' state, `staged_writer` a file's bytes while it is written, `control` the
commands of `.control`.
docs/mount.md describes the design and its measurements.
"""
