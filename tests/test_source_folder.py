"""The folder walker and reader on real files: names, globs, .gitignore, links, special
files, files that cannot be read and files that change while they are read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tandem
from tandem.sources.folder import (
    FolderFile,
    FolderUnavailable,
    NotARegularFile,
    WalkProblem,
    read_file,
    walk_folder,
)

LIMIT = 1 << 20


def make_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def walk(root: Path, **options: object) -> list[FolderFile | WalkProblem]:
    return list(walk_folder(root, max_file_bytes=LIMIT, **options))  # type: ignore[arg-type]


def file_paths(root: Path, **options: object) -> list[str]:
    results = walk(root, **options)
    assert all(isinstance(result, FolderFile) for result in results), results
    return [result.path for result in results]


def test_repeated_names_at_several_depths_are_distinct_sorted_paths(tmp_path: Path) -> None:
    names = ["b/README.md", "README.md", "a/x/README.md", "a/README.md"]
    make_tree(tmp_path, {name: name for name in names})
    results = walk(tmp_path)
    assert [file.path for file in results] == [
        "README.md",
        "a/README.md",
        "a/x/README.md",
        "b/README.md",
    ]
    first = results[0]
    assert isinstance(first, FolderFile)
    status = (tmp_path / "README.md").stat()
    assert first.absolute == tmp_path / "README.md"
    assert first.version == f"{status.st_size}:{status.st_mtime_ns}"
    assert walk(tmp_path) == results  # the same tree walks the same way


def test_include_and_exclude_globs_with_exclude_winning(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "guide.md": "",
            "docs/intro.md": "",
            "docs/draft.md": "",
            "docs/data.csv": "",
            "node_modules/pkg/README.md": "",
        },
    )
    assert file_paths(tmp_path, include=["*.md"]) == [
        "docs/draft.md",
        "docs/intro.md",
        "guide.md",
        "node_modules/pkg/README.md",
    ]
    assert file_paths(tmp_path, include=["docs/"], exclude=["draft.md"]) == [
        "docs/data.csv",
        "docs/intro.md",
    ]
    assert file_paths(tmp_path, exclude=["node_modules/", "*.csv"]) == [
        "docs/draft.md",
        "docs/intro.md",
        "guide.md",
    ]


def test_hidden_files_and_directories_are_skipped(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {".env": "", ".git/config": "", ".cache/x.md": "", "a/.hidden.md": "", "a/b.md": ""},
    )
    assert file_paths(tmp_path) == ["a/b.md"]


def test_nested_gitignore_files_apply_to_their_subtree_with_negation(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            ".gitignore": "# build output\n*.log\n!\nbuild/\n",  # "!" alone: skipped, as git does
            "top.log": "",
            "build/out.txt": "",
            "c/build": "a file: the directory-only pattern leaves it",
            "a/.gitignore": "!keep.log\n/local.txt\n",
            "a/keep.log": "",
            "a/other.log": "",
            "a/local.txt": "",
            "a/b/local.txt": "anchored to a/: not ignored one level down",
            "a/b/.gitignore": "*.txt\n!wanted.txt\n",
            "a/b/wanted.txt": "",
            "a/b/keep.log": "a/.gitignore's negation reaches here",
            "z/keep.log": "a/.gitignore does not reach here",
        },
    )
    assert file_paths(tmp_path) == ["a/b/keep.log", "a/b/wanted.txt", "a/keep.log", "c/build"]


def test_an_ignored_directory_is_not_entered_even_for_a_negated_file(tmp_path: Path) -> None:
    make_tree(tmp_path, {".gitignore": "build/\n!build/keep.txt\n", "build/keep.txt": ""})
    assert file_paths(tmp_path) == []


def test_symlink_loops_end_and_each_file_comes_once_under_its_own_path(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a/one.txt": "1", "a/x/two.txt": "2", "z/real.txt": "3"})
    (tmp_path / "a" / "x" / "up").symlink_to("..")  # a/x/up -> a
    (tmp_path / "a" / "root").symlink_to(tmp_path)
    (tmp_path / "a" / "self").symlink_to(".")
    (tmp_path / "a-link.txt").symlink_to("z/real.txt")  # sorts first; the real path wins
    (tmp_path / "zz").symlink_to("z")
    assert file_paths(tmp_path) == ["a/one.txt", "a/x/two.txt", "z/real.txt"]


def test_links_to_a_file_and_a_directory_outside_the_root_are_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    make_tree(root, {"inside.txt": ""})
    make_tree(outside, {"note.txt": "n", "shelf/book.md": "b", "shelf/back": ""})
    (root / "note.txt").symlink_to(outside / "note.txt")
    (root / "shelf").symlink_to(outside / "shelf")
    (outside / "shelf" / "back").unlink()
    (outside / "shelf" / "back").symlink_to(root)  # and back into the root: already walked
    results = walk(root)
    assert [result.path for result in results] == ["inside.txt", "note.txt", "shelf/book.md"]
    assert isinstance(results[1], FolderFile)
    assert read_file(results[1], LIMIT)[0] == b"n"


def test_broken_links_and_link_cycles_are_problems(tmp_path: Path) -> None:
    make_tree(tmp_path, {"ok.txt": ""})
    (tmp_path / "dangling").symlink_to("nowhere")
    (tmp_path / "ping").symlink_to("pong")
    (tmp_path / "pong").symlink_to("ping")
    assert walk(tmp_path) == [
        FolderFile("ok.txt", tmp_path / "ok.txt", 0, (tmp_path / "ok.txt").stat().st_mtime_ns),
        WalkProblem("dangling", "broken symbolic link"),
        WalkProblem("ping", "symbolic link loop"),
        WalkProblem("pong", "symbolic link loop"),
    ]


def test_a_fifo_is_skipped_and_never_opened(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": ""})
    os.mkfifo(tmp_path / "pipe")  # opening it for reading would block with no writer
    (tmp_path / "pipe.txt").symlink_to("pipe")
    assert file_paths(tmp_path) == ["a.txt"]
    as_if_walked = FolderFile("pipe", tmp_path / "pipe", 0, 0)
    with pytest.raises(NotARegularFile):
        read_file(as_if_walked, LIMIT)


def test_a_name_that_is_not_utf8_is_a_problem(tmp_path: Path) -> None:
    make_tree(tmp_path, {"fine.txt": ""})
    (tmp_path / os.fsdecode(b"caf\xe9.txt")).write_text("named in Latin-1")
    assert walk(tmp_path)[0] == WalkProblem("caf\ufffd.txt", "name is not UTF-8")
    assert file_paths(tmp_path, exclude=["caf*"]) == ["fine.txt"]


def test_files_over_the_limit_are_problems(tmp_path: Path) -> None:
    make_tree(tmp_path, {"big.txt": "x" * 101, "fits.txt": "x" * 100})
    results = list(walk_folder(tmp_path, max_file_bytes=100))
    assert results[0] == WalkProblem("big.txt", "101 bytes exceeds the 100-byte limit")
    assert [result.path for result in results] == ["big.txt", "fits.txt"]


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_root_that_is_not_a_directory_is_unavailable(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    if kind == "a file":
        root.write_text("")
    with pytest.raises(FolderUnavailable, match=str(root)):
        walk_folder(root, max_file_bytes=LIMIT)  # raised at the call, not on iteration


def walk_without_root_privileges(root: Path) -> list[list[str]]:
    """[kind, path, reason] of each result, walked by a process that permissions bind.

    Root reads everything whatever the mode says, so as root the walk runs in a child
    process without the two capabilities that let it (setpriv, util-linux)."""
    script = (
        "import json, sys\nfrom pathlib import Path\n"
        "from tandem.sources.folder import walk_folder, WalkProblem\n"
        "print(json.dumps([[type(r).__name__, r.path, getattr(r, 'reason', '')]\n"
        "    for r in walk_folder(Path(sys.argv[1]), max_file_bytes=1 << 20)]))\n"
    )
    argv = [sys.executable, "-c", script, str(root)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        dropped = "-dac_override,-dac_read_search"
        argv = [setpriv, f"--inh-caps={dropped}", f"--bounding-set={dropped}", *argv]
    source_root = Path(tandem.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "setpriv" in done.stderr:
        pytest.skip(f"cannot drop root's file capabilities here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    result: list[list[str]] = json.loads(done.stdout)
    return result


def test_unreadable_files_and_directories_are_problems_not_errors(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": "", "locked.txt": "", "shut/inner.txt": "", "z.txt": ""})
    (tmp_path / "locked.txt").chmod(0)
    (tmp_path / "shut").chmod(0)
    try:
        results = walk_without_root_privileges(tmp_path)
    finally:
        (tmp_path / "shut").chmod(0o755)
    assert results == [
        ["FolderFile", "a.txt", ""],
        ["WalkProblem", "locked.txt", "cannot be read: permission denied"],
        ["WalkProblem", "shut/", "cannot be listed: Permission denied"],
        ["FolderFile", "z.txt", ""],
    ]


def test_read_file_gives_the_bytes_and_their_version(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": "hello"})
    (walked,) = walk(tmp_path)
    assert isinstance(walked, FolderFile)
    assert read_file(walked, LIMIT) == (b"hello", walked.version)
    (tmp_path / "a.txt").write_text("hello, world")
    data, version = read_file(walked, LIMIT)  # what is there now, at its own version
    status = (tmp_path / "a.txt").stat()
    assert (data, version) == (b"hello, world", f"{status.st_size}:{status.st_mtime_ns}")


def appending_on_read(monkeypatch: pytest.MonkeyPatch, path: Path, times: int) -> None:
    """Makes the reader's first `times` reads of `path` (reads from its start) append to
    the file as they begin."""
    real_read, inode = os.read, path.stat().st_ino
    reads = 0

    def read(descriptor: int, length: int) -> bytes:
        nonlocal reads
        ours = os.fstat(descriptor).st_ino == inode
        if ours and os.lseek(descriptor, 0, os.SEEK_CUR) == 0:
            reads += 1
            if reads <= times:
                with path.open("a") as writer:
                    writer.write("+")
        return real_read(descriptor, length)

    monkeypatch.setattr(os, "read", read)  # os.read is what the reader calls


def test_a_file_changing_during_the_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path, {"a.txt": "abc"})
    (walked,) = walk(tmp_path)
    assert isinstance(walked, FolderFile)
    appending_on_read(monkeypatch, tmp_path / "a.txt", times=1)
    data, version = read_file(walked, LIMIT)
    status = (tmp_path / "a.txt").stat()
    assert (data, version) == (b"abc+", f"{status.st_size}:{status.st_mtime_ns}")


def test_a_file_that_never_settles_has_an_unknown_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path, {"a.txt": "abc"})
    (walked,) = walk(tmp_path)
    assert isinstance(walked, FolderFile)
    appending_on_read(monkeypatch, tmp_path / "a.txt", times=100)
    data, version = read_file(walked, LIMIT)
    assert version == ""
    assert data.startswith(b"abc+")


def test_a_file_grown_past_the_limit_is_cut_and_has_an_unknown_version(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": "x" * 10})
    (walked,) = list(walk_folder(tmp_path, max_file_bytes=10))
    assert isinstance(walked, FolderFile)
    (tmp_path / "a.txt").write_text("y" * 11)
    assert read_file(walked, 10) == (b"y" * 10, "")


def test_a_file_gone_before_the_read_raises_file_not_found(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": "abc"})
    (walked,) = walk(tmp_path)
    assert isinstance(walked, FolderFile)
    (tmp_path / "a.txt").unlink()
    with pytest.raises(FileNotFoundError):
        read_file(walked, LIMIT)
