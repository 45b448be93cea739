"""Checkpoint files: one ``.npz`` holding the arrays and a JSON metadata record, no pickle.

The metadata travels inside the archive as a ``uint8`` array named ``__meta__`` so that
a checkpoint is one file, written atomically (temporary file in the same folder, fsync,
``os.replace``): a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["FORMAT_VERSION", "CheckpointError", "save_checkpoint", "load_checkpoint", "atomic_write_bytes",
           "jsonable"]

FORMAT_VERSION = 1
_META_KEY = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated, of another format, or for another model."""


def jsonable(value: Any) -> Any:
    """A plain-Python copy of ``value`` for JSON: NumPy scalars become Python numbers.

    Mappings (keys as ``str``), lists and tuples are copied recursively; everything else is
    returned as it is.  The one converter behind checkpoints' metadata and ``results.json``.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, writer: Any) -> None:
    """Write a file atomically: ``writer(fileobj)`` fills a temporary file that replaces ``path``.

    Parameters
    ----------
    path : path-like
        Destination; its folder must exist.
    writer : callable
        ``writer(binary_file_object)``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-" + os.path.basename(path) + "-")
    try:
        # mkstemp creates the file 0600; give it the mode open() would (0666 less the umask).
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save_checkpoint(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """Save ``arrays`` and JSON-serialisable ``meta`` to ``path`` atomically.

    Parameters
    ----------
    path : path-like
        Destination file (conventionally ending in ``.npz``).
    arrays : mapping of str to ndarray
        Numeric arrays (object arrays are refused, as they would need pickle).
    meta : mapping
        JSON-serialisable metadata; ``format_version`` is added.
    """
    for name, arr in arrays.items():
        if np.asarray(arr).dtype.kind not in "biuf":
            raise TypeError(f"checkpoint array {name!r} has dtype {np.asarray(arr).dtype}; only numeric arrays "
                            "are stored (no pickle).")
    record = {"format_version": FORMAT_VERSION, **meta}
    blob = np.frombuffer(json.dumps(record).encode("utf-8"), dtype=np.uint8)
    payload = {name: np.asarray(arr) for name, arr in arrays.items()}
    payload[_META_KEY] = blob
    atomic_write_bytes(path, lambda fh: np.savez(fh, **payload))


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    arrays : dict of str to ndarray
    meta : dict

    Raises
    ------
    CheckpointError
        If the file is missing, not a valid archive (corrupt or truncated), lacks
        metadata, or has an unsupported ``format_version``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path!r} is corrupt or truncated ({exc})") from None
    blob = arrays.pop(_META_KEY, None)
    if blob is None:
        raise CheckpointError(f"checkpoint {path!r} has no metadata record; it was not written by sgn")
    try:
        meta = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path!r} has unreadable metadata ({exc})") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path!r} has format version {version!r}; this sgn reads "
                              f"version {FORMAT_VERSION}")
    return arrays, meta
