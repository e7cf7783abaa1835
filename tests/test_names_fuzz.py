"""Random ref and table names, through the API and the CLI, never touch a path outside the
store, never change a file of the store outside `refs/` (beyond adding new immutable objects),
never show a file they name, and never raise anything but a `UdrError`."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import udrfs
from udrfs.cli.main import main as udr_main
from udrfs.errors import UdrError

SECRET = "CANARY-SECRET"
# Where new files may appear in a store: content-addressed data, refs, their locks, staging.
GROWS = ("objects/", "packs/", "index/", "refs/", "locks/", "staging/")

# Characters that mean something to a path, to git's ref rules or to the CLI.
_TRICKY = "./-_@{}~^:?*[]\\ \t\n\x00\x7fé" + "abcdef0123456789AZ"
_LURES = [
    "..",
    "../udr.toml",
    "../../udr.toml",
    "../../canary/file",
    "../../../canary/file",
    "/",
    "//x",
    "main/..",
    "../tags/v1",
    "../heads/main",
    "main.lock",
    ".tmp-x",
    "@",
    "@{1}",
    "-b",
    "--help",
    "x/",
    "x.",
    "0" * 64,
    "deadbeef",
    "/etc/os-release",
    "/tmp",
]

names = st.one_of(
    st.sampled_from(_LURES),
    st.from_regex(r"[a-z0-9][a-z0-9._/-]{0,15}", fullmatch=True),
    st.text(alphabet=_TRICKY, max_size=24),
    st.text(max_size=12),
    st.lists(st.sampled_from(["..", ".", "a", "main", "", "x.lock", "canary", "udr.toml"]))
    .map("/".join)
    .filter(bool),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`store/` (main with table t, tag v1), a sibling `canary/` that lures escapes, and
    `scratch/` for the CLI's input and output files."""
    root = tmp_path_factory.mktemp("fuzz")
    repo = udrfs.Repo.init(root / "store")
    repo.write_table("t", pa.table({"a": [1, 2]}))
    repo.create_tag("v1")
    canary = root / "canary"
    for rel in ("file", "udr.toml", "refs/heads/main", "deep/er/file"):
        (canary / rel).parent.mkdir(parents=True, exist_ok=True)
        (canary / rel).write_text(f"{SECRET} {'0' * 64}\n")
    (root / "file").write_text(f"{SECRET}\n")
    scratch = root / "scratch"
    scratch.mkdir()
    pq.write_table(pa.table({"a": [3]}), scratch / "in.parquet")
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under `root` except scratch/: relative path -> content hash
    ("dir" for a directory)."""
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir.split(os.sep)[0] == "scratch":
            continue
        for d in dirs:
            out[os.path.normpath(os.path.join(rel_dir, d)) + "/"] = "dir"
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.normpath(os.path.join(rel_dir, f))] = hashlib.sha256(
                    fh.read()
                ).hexdigest()
    return out


def check_untouched(before: dict[str, str], after: dict[str, str]) -> None:
    for path, digest in before.items():
        in_store = path.startswith("store/")
        may_change = in_store and path.removeprefix("store/").startswith(("refs/", "locks/"))
        if may_change or (in_store and path.startswith("store/staging/")):
            continue
        assert after.get(path) == digest, f"{path} was changed or removed"
    for path in after.keys() - before.keys():
        assert path.startswith("store/"), f"{path} appeared outside the store"
        assert path.removeprefix("store/").startswith(GROWS), f"{path} appeared in the store"


@contextlib.contextmanager
def guarded(world: Path) -> Iterator[io.StringIO]:
    """Run a block of calls: the tree is checked afterwards and everything printed is
    returned for the caller to check."""
    before = snapshot(world)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        yield printed
    check_untouched(before, snapshot(world))
    assert (world / "store" / "udr.toml").is_file()


def api_call(fn: Callable[[], object], shown: list[str]) -> None:
    try:
        fn()
    except UdrError as exc:  # anything else fails the test
        shown.append(str(exc))


FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(name=names, table=names)
def test_api_calls_with_random_names_stay_in_the_store(world: Path, name: str, table: str) -> None:
    repo = udrfs.Repo(world / "store")
    shown: list[str] = []
    data = pa.table({"a": [7]})
    with guarded(world) as printed:
        api_call(lambda: repo.create_branch(name), shown)
        api_call(lambda: repo.write_table(table, data, branch=name), shown)
        api_call(lambda: repo.write_table("t", data, branch=name), shown)
        api_call(lambda: repo.read_table(table, branch=name), shown)
        api_call(lambda: repo.read_table("t", branch=name), shown)
        api_call(lambda: repo.versions(table, branch=name), shown)
        api_call(lambda: repo.versions("t", branch=name), shown)
        api_call(lambda: repo.create_branch("fuzz-from", from_=name), shown)
        api_call(lambda: repo.delete_branch("fuzz-from"), shown)
        api_call(lambda: repo.delete_branch(name), shown)
        api_call(lambda: repo.create_tag(name, "main"), shown)
        api_call(lambda: repo.delete_tag(name), shown)
        api_call(lambda: repo.staging.names(name), shown)
        api_call(lambda: repo.staging.discard("main", table), shown)
    assert not any(SECRET in text for text in [*shown, printed.getvalue()])
    assert "main" in repo.branches()


def cli(argv: list[str]) -> None:
    try:
        udr_main(argv)
    except SystemExit as exc:  # argparse: a usage error (2), or a name that is --help (0)
        assert exc.code in (0, 2)


@FUZZ
@given(name=names, table=names)
def test_cli_with_random_names_stays_in_the_store(world: Path, name: str, table: str) -> None:
    store, scratch = str(world / "store"), world / "scratch"
    out = str(scratch / "out.parquet")
    with guarded(world) as printed:
        cli(["branch", store, "create", "--", name])
        cli(["import", store, f"--branch={name}", "--", table, str(scratch / "in.parquet")])
        cli(["cat", store, f"--branch={name}", "-o", out, "--", "t"])
        cli(["cat", store, "-o", out, "--", table])
        cli(["versions", store, f"--branch={name}", "--", table])
        cli(["log", store, f"--branch={name}"])
        cli(["tables", store, f"--branch={name}"])
        cli(["branch", store, "create", "fuzz-from", f"--from={name}"])
        cli(["branch", store, "delete", "fuzz-from"])
        cli(["branch", store, "delete", "--", name])
        cli(["tag", store, "--", name])
        cli(["tag", store, name, "--delete"])
    assert SECRET not in printed.getvalue()
    assert "main" in udrfs.Repo(store).branches()
