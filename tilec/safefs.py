"""Reading and listing files of an artifact directory without leaving it.

Every path inside the directory is opened component by component relative to the directory
itself (``openat`` with ``O_NOFOLLOW``), so a symlink anywhere below the root — ``entries/``,
an entry directory, a file — is refused rather than followed, and only regular files are read
(a FIFO, a device or ``/dev/zero`` behind a name would hang or exhaust memory). The root itself
is whatever the user named. Sizes are capped before reading.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["UnsafePath", "read_bytes", "list_dir", "is_plain_dir", "MAX_FILE_BYTES"]

MAX_FILE_BYTES = 512 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class UnsafePath(OSError):
    """A path below an artifact directory that is a symlink, not a regular file or directory,
    or too large; ``str()`` is one line naming it."""


def _parts(rel: str) -> list[str]:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise UnsafePath(errno.EINVAL, f"{rel!r}: not a plain relative path")
    return parts


def _open_dir(root: Path, parts: list[str]) -> int:
    """An fd of root/parts... (each component a real directory, not a symlink)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for i, p in enumerate(parts):
            try:
                nfd = os.open(p, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    what = "a symlink" if _is_link(fd, p) else "not a directory"
                    raise UnsafePath(e.errno, f"{'/'.join(parts[:i + 1])}: {what}") from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def read_bytes(root: str | Path, rel: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of root/rel, a regular file reached without following any symlink below
    root. FileNotFoundError when absent; UnsafePath when it is not plain; OSError otherwise."""
    *dirs, name = _parts(rel)
    dfd = _open_dir(Path(root), dirs)
    try:
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafePath(e.errno, f"{rel}: a symlink") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(errno.EINVAL, f"{rel}: not a regular file")
            if st.st_size > max_bytes:
                raise UnsafePath(errno.EFBIG, f"{rel}: {st.st_size} bytes, over the {max_bytes}-byte limit")
            os.set_blocking(fd, True)
            chunks, left = [], st.st_size + 1
            while left > 0:
                b = os.read(fd, min(left, 1 << 20))
                if not b:
                    break
                chunks.append(b)
                left -= len(b)
            data = b"".join(chunks)
            if len(data) > st.st_size:
                raise UnsafePath(errno.EFBIG, f"{rel}: grew while being read")
            return data
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


def list_dir(root: str | Path, rel: str = "") -> list[str]:
    """Names in root/rel (a real directory below root, no symlink on the way), sorted."""
    dfd = _open_dir(Path(root), _parts(rel) if rel else [])
    try:
        return sorted(os.listdir(dfd))
    finally:
        os.close(dfd)


def is_plain_dir(root: str | Path, rel: str) -> bool:
    """True when root/rel is a directory reached without following a symlink below root."""
    try:
        os.close(_open_dir(Path(root), _parts(rel)))
        return True
    except OSError:
        return False
