"""Files the user names: destinations checked before the work that fills them, OS errors as one line
naming the path, the cause and the fix, and the kind of a file that is not what it should be."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Collection, Iterator

from cmzoo.errors import CmzooError, OutputError

# What to do about the OS errors a writer meets, by errno; any other: "check the path and the disk".
FIXES = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space (the disk quota is used up) or write elsewhere",
    errno.EACCES: "the location is not writable; write elsewhere",
    errno.EPERM: "the location is not writable; write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EISDIR: "it is a directory; give a file name",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "give a shorter path",
    errno.ENOENT: "its folder cannot be created there; write elsewhere",
}

# Leading bytes of the files most often given by mistake, and what to call them.
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP image or WAV sound)"),
    (b"PK\x03\x04", "a zip archive (.npz, .pt or .zip)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x80\x02", "a Python pickle (.pt or .pkl)"),
    (b"\x80\x04", "a Python pickle (.pt or .pkl)"),
    (b"\x80\x05", "a Python pickle (.pt or .pkl)"),
)


def file_kind(head: bytes) -> str:
    """What the first bytes of a file say it is: 'a PNG image', 'text', 'an empty file', …"""
    if not head:
        return "an empty file"
    for magic, kind in SIGNATURES:
        if head.startswith(magic):
            return kind
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # not only a character cut off at the end of `head`
            return "binary data of no known kind"
    return "text"


def os_error_cause(err: OSError) -> str:
    """'No space left on device (ENOSPC)'; the message itself for an OSError without an errno."""
    if err.errno in errno.errorcode:
        return f"{os.strerror(err.errno)} ({errno.errorcode[err.errno]})"
    return str(err) or type(err).__name__


@contextmanager
def writing(path: str | Path, what: str, note: str = "") -> Iterator[Path]:
    """An OSError in the block becomes one OutputError line naming `what`, the path, the cause and the
    fix, followed by `note` (e.g. what was saved before)."""
    path = Path(path)
    try:
        yield path
    except OSError as err:
        fix = FIXES.get(err.errno, "check the path and the disk")
        raise OutputError(f"cannot write {what} {path}: {os_error_cause(err)}; {fix}{note}") from None


def check_folder(folder: str | Path, what: str) -> Path:
    """Refuse, before any work, a folder that cannot be created or written to: a file in its place or
    on its path, a read-only location. Nothing is left behind (the probe file is anonymous)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder} is a file, not a folder; give a folder path")
    _probe(folder, folder, what)
    return folder


def check_destination(path: str | Path, what: str, suffixes: Collection[str] | None = None) -> Path:
    """Refuse, before any work, a file destination that cannot be written: a directory, a suffix not in
    `suffixes` (when given), a folder that cannot be created or written to."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a directory; give a file name inside it")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        shown = ", ".join(s for s in (".png", ".jpg", ".webp") if s in suffixes) or ", ".join(sorted(suffixes))
        ending = f"ending in {path.suffix!r}" if path.suffix else "without a suffix"
        raise OutputError(f"{what} {path}: cannot write a file {ending}; end the name in a known suffix such as "
                          f"{shown}")
    _probe(path.parent, path, what)
    return path


def _probe(folder: Path, path: Path, what: str) -> None:
    """Raise unless `folder`, or its nearest existing parent where it would be created, takes new files."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {what} {path}: {existing} is a file, not a folder; give another path")
    with writing(path, what):
        tempfile.TemporaryFile(dir=existing).close()


def write_bytes(path: str | Path, data: bytes, what: str, note: str = "") -> Path:
    """Write `data` to `path` (creating its folder); an OS error is one OutputError line (see `writing`)."""
    with writing(path, what, note) as path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def write_text(path: str | Path, text: str, what: str, note: str = "") -> Path:
    """Write UTF-8 `text` to `path`, as :func:`write_bytes`."""
    return write_bytes(path, text.encode("utf-8"), what, note)


def read_text(path: str | Path, what: str, error: type[CmzooError], fix: str = "give a text file") -> str:
    """The UTF-8 text of `path`; a missing file, a directory, an unreadable or a binary file raise `error`
    in one line that names the file and, for a binary one, what it holds instead, and then `fix`."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {path} is a directory; give the file itself")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as err:
        raise error(f"cannot read {what} {path}: {os_error_cause(err)}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not text: it holds {file_kind(data[:16])}; {fix}") from None


def read_json(path: str | Path, what: str, error: type[CmzooError], fix: str = "restore the file") -> Any:
    """The JSON value in `path`, read as :func:`read_text`; invalid JSON raises `error` naming the line."""
    try:
        return json.loads(read_text(path, what, error, fix))
    except json.JSONDecodeError as err:
        raise error(f"{what} {path} is not valid JSON ({err.msg} at line {err.lineno}); {fix}") from None
