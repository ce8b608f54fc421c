"""ivflake: search Faiss IVF index files where they lie, in S3, GCS, Azure or a directory.

    import ivflake
    index = ivflake.open("s3://bucket/index.faiss")   # reads only the header
    index.nprobe = 16
    D, I = index.search(xq, 10)                      # fetches just the lists it probes

`open` and `Index` are the native module's (``ivflake._ivflake``); `Client`
talks to an ``ivflake serve`` over HTTP. See the README's Python section.
"""

from ivflake._ivflake import (
    MAX_K,
    __version__,
    CorruptIndex,
    DeadlineExceeded,
    Index,
    IndexChanged,
    IndexNotFound,
    IvflakeError,
    UnsupportedIndex,
    open,
)
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
    "RemoteIndex",
    "ServerUnreachable",
    "UnsupportedIndex",
    "open",
]
