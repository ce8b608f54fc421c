"""ivflake: search Faiss IVF index files where they lie, in S3, GCS, Azure or a directory.

    import ivflake
    index = ivflake.open("s3://bucket/index.faiss")   # reads only the header
    index.nprobe = 16
    D, I = index.search(xq, 10)                      # fetches just the lists it probes

`open` and `Index` are the native module's (``ivflake._ivflake``); `Client`
talks to an ``ivflake serve`` over HTTP. See the README's Python section.
"""

import functools
import os

from ivflake._ivflake import (
    MAX_K,
    __version__,
    CorruptIndex,
    DeadlineExceeded,
    Index,
    IndexChanged,
    IndexNotFound,
    IvflakeError,
    MutableIndex,
    UnsupportedIndex,
    create,
    open_mutable,
)
from ivflake._ivflake import open as _open_file
from ivflake.client import Client, InsecureTokenWarning, RemoteIndex, ServerUnreachable

__all__ = [
    "MAX_K",
    "__version__",
    "Client",
    "CorruptIndex",
    "DeadlineExceeded",
    "Index",
    "IndexChanged",
    "IndexNotFound",
    "InsecureTokenWarning",
    "IvflakeError",
    "MutableIndex",
    "RemoteIndex",
    "ServerUnreachable",
    "UnsupportedIndex",
    "create",
    "open",
    "open_mutable",
]


@functools.wraps(_open_file)
def open(uri, **kwargs):  # noqa: A001 (faiss-like name, shadows the builtin as faiss's API would)
    # The native open's documentation, which says where a prefix goes.
    text = os.fspath(uri)
    if text.endswith("/") or ("://" not in text and os.path.isdir(text)):
        return open_mutable(text.rstrip("/") if "://" not in text else text, **kwargs)
    return _open_file(uri, **kwargs)


