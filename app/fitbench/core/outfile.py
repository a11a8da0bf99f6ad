"""Files FitBench writes where the user says (a PDF, a twin, an exported run): safely.

Policy, the same for every output path:
- a target that is not a regular file (a folder, a FIFO, a character or block device, a socket)
  is refused before any work: replacing it would turn /dev/null into a PDF;
- a symbolic link is refused too, naming its target: renaming over it would silently replace the
  link with a file, and writing through it would change a file the user never named; give the
  target's own path (or remove the link) to write there;
- the path is honoured as given (no suffix is added);
- the bytes go to an anonymous temporary file in the same folder (Linux O_TMPFILE: the kernel
  frees it if the process dies, even by SIGKILL), which is given a name and renamed over the
  target only when complete and synced; elsewhere a named `.<name>.<pid>.partial` file is used
  and removed on every error path. Either way the target is the old file or the whole new one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

PARTIAL_SUFFIX = ".partial"


class OutputPathError(ValueError):
    """The output path cannot be written; the message names it and says what to give instead."""


def file_kind(mode: int, folder: str = "a folder") -> str:
    """What a non-regular file is, in words for an error (`folder`: how to name a directory)."""
    if stat.S_ISDIR(mode):
        return folder
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_output(path: Path, what: str = "the output", *, create_parent: bool = False) -> Path:
    """`path` if `what` may be written there (absent, or an existing regular file), else
    OutputPathError. With create_parent, a missing folder is created (else it is an error)."""
    path = Path(path)
    try:
        st = path.lstat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputPathError(f"cannot write {what} to {path}: {exc.strerror or exc}") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            raise OutputPathError(
                f"cannot write {what} to {path}: it is a symbolic link (to {target}); FitBench "
                "does not replace or write through links: give the real path or remove the link"
            )
        if stat.S_ISDIR(st.st_mode):
            raise OutputPathError(
                f"cannot write {what} to {path}: that is a folder; give a file name inside it"
            )
        if not stat.S_ISREG(st.st_mode):
            raise OutputPathError(
                f"cannot write {what} to {path}: it is {file_kind(st.st_mode)}, not a regular file"
            )
    parent = path.parent
    if create_parent:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(
                f"cannot write {what} to {path}: cannot create the folder {parent}: "
                f"{exc.strerror or exc}"
            ) from None
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {what} to {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {what} to {path}: no permission to write in {parent}")
    return path


def _anonymous(dir_fd: int) -> int | None:
    """An unnamed file in the folder (O_TMPFILE), or None where the system has none."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):  # the name is given through /proc
        return None
    try:
        return os.open(".", flag | os.O_WRONLY, 0o666, dir_fd=dir_fd)
    except OSError:  # EOPNOTSUPP/EISDIR/EINVAL: the filesystem or kernel has no O_TMPFILE
        return None


@contextlib.contextmanager
def atomic_output(path: Path, what: str = "the output") -> Iterator[BinaryIO]:
    """A binary file whose bytes replace `path` when the block ends without an exception.

    Call check_output first (this re-checks just before the rename). On any exception, or a
    KeyboardInterrupt, nothing is left behind and `path` is untouched.
    """
    path = Path(path)
    name = path.name
    partial = f".{name}.{os.getpid()}{PARTIAL_SUFFIX}"
    dir_fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    named = False  # whether `partial` exists in the folder
    fd: int | None = None
    try:
        fd = _anonymous(dir_fd)
        if fd is None:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=dir_fd)
            named = True
        with os.fdopen(fd, "wb", closefd=False) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        check_output(path, what)
        if not named:
            os.link(
                f"/proc/self/fd/{fd}",
                partial,
                src_dir_fd=dir_fd,
                dst_dir_fd=dir_fd,
                follow_symlinks=True,
            )
            named = True
        os.replace(partial, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        named = False
    finally:
        if fd is not None:
            os.close(fd)
        if named:
            with contextlib.suppress(OSError):
                os.unlink(partial, dir_fd=dir_fd)
        os.close(dir_fd)


def write_output(path: Path, data: bytes, what: str = "the output") -> None:
    """check_output + atomic_output for bytes already in memory; OSError becomes
    OutputPathError naming the file."""
    check_output(path, what)
    try:
        with atomic_output(path, what) as f:
            f.write(data)
    except OSError as exc:
        raise OutputPathError(f"cannot write {what} to {path}: {exc.strerror or exc}") from None
