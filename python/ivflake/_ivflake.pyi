"""Type stubs of the native module `ivflake._ivflake` (re-exported by `ivflake`)."""

import os
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, TypedDict, Union, overload

import numpy as np
import numpy.typing as npt

MAX_K: int
__version__: str

ArrayLike = Union[npt.ArrayLike, np.ndarray]
IdFilter = Mapping[str, Any]
"""``{"allow": ids}``, ``{"deny": ids}``, ``{"range": [start, end]}`` or
``{"range": {"start": s, "end": e}}`` (end excluded)."""

TextFields = Union[Mapping[str, str], Sequence[str]]
"""``{"column": "language code"}`` (``"en"``, ``"fr"``, ``"de"``, ``"zh"``...; a code the
library does not know raises ValueError listing those it does), or a list of
columns, each in English."""

class Hit(TypedDict):
    """One result of `MutableIndex.query` (and of `search(..., text=...)`)."""

    id: int
    fused: Optional[float]
    """Reciprocal Rank Fusion's score when more than one ranking was fused."""
    distance: Optional[float]
    """The vector search's distance, when it ranked this id."""
    bm25: Dict[str, float]
    """BM25 score per text field whose query ranked this id."""
    attributes: Optional[Dict[str, Any]]
    """The `return_attributes` columns; None when none were asked for."""

class IvflakeError(Exception):
    """Base class of every ivflake error; raised as such for store and internal failures."""

class IndexNotFound(IvflakeError):
    """The index object (or its directory, bucket or HTTP index name) does not exist."""

class CorruptIndex(IvflakeError):
    """The index file is damaged: its header does not parse, or a list fails its checksum."""

class UnsupportedIndex(IvflakeError):
    """A valid Faiss file that ivflake cannot serve (not an IVF index it supports)."""

class IndexChanged(IvflakeError):
    """The object changed in the store since it was opened; call `Index.reload()`."""

class DeadlineExceeded(IvflakeError):
    """The search's timeout passed before it finished."""

def open(
    uri: Union[str, "os.PathLike[str]"],
    *,
    memory_cache_bytes: Optional[int] = None,
    disk_cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    disk_cache_bytes: Optional[int] = None,
    manifest: Literal["auto", "ignore", "require"] = "auto",
    preload: Union[None, Literal["off", "auto"], float] = None,
    id_map_memory_bytes: Optional[int] = None,
    **store_options: Union[str, bool, int],
) -> Union[Index, "MutableIndex"]:
    """Opens the Faiss IVF index at `uri`, reading only its header.

    A mutable index's prefix (a URI ending in "/", or a local directory)
    opens as a `MutableIndex` instead, as `open_mutable` opens it.

    `uri` is ``s3://bucket/key``, ``gs://bucket/key``, ``az://container/key``,
    ``file:///abs/path`` or a path. Credentials and endpoints come from the
    environment as in the CLI (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``);
    `store_options` override them with object_store config keys, e.g.
    ``endpoint="http://127.0.0.1:9000", allow_http=True, region="us-east-1"``.

    `memory_cache_bytes` bounds this index's list cache (default 256 MiB, 0
    disables it). `disk_cache_dir` adds a disk tier of `disk_cache_bytes`
    (default 10 GiB) that survives restarts. `manifest` says what to do with
    the checksum sidecar ``ivflake manifest`` writes: use it when present
    ("auto"), never look ("ignore"), or refuse to open without it ("require").
    `preload` loads list data into the memory cache in the background after
    open ("auto": every list when they fit a quarter of the cache, else the
    most probed of earlier runs; a float sets the share); searches run
    meanwhile, and `Index.preloaded()` waits for it. An IndexIDMap's user ids
    are loaded at open when they take at most `id_map_memory_bytes` (default
    64 MiB), else read per search (and id filters are refused).

    Raises IndexNotFound, CorruptIndex, UnsupportedIndex, ValueError (bad URI
    or option) or IvflakeError (the store failed). Ctrl-C interrupts it.

    Example::

        index = ivflake.open("s3://bucket/index.faiss", memory_cache_bytes=1 << 30)
        D, I = index.search(xq, 10, nprobe=16)
    """

class Index:
    """A Faiss IVF index served from object storage; thread-safe."""

    @property
    def d(self) -> int:
        """Dimension of the query vectors."""
    @property
    def ntotal(self) -> int:
        """Number of vectors in the index."""
    @property
    def nlist(self) -> int:
        """Number of inverted lists."""
    @property
    def metric(self) -> Literal["l2", "inner_product"]: ...
    @property
    def type(self) -> str:
        """Faiss type, e.g. ``"IndexIVFPQ[IndexFlat]"``."""
    @property
    def version(self) -> str:
        """The object's ETag (or size where the store gives none) of the version served."""
    @property
    def uri(self) -> str: ...
    @property
    def nprobe(self) -> int:
        """Lists probed per query when `search` gets no `nprobe`; starts at the file's. Settable."""
    @nprobe.setter
    def nprobe(self, value: int) -> None: ...
    @property
    def open_stats(self) -> Dict[str, Any]:
        """What opening the index cost: `gets`, `bytes` of the file, `ms`."""
    @property
    def last_stats(self) -> Optional[Dict[str, Any]]:
        """Stats of the last finished search: lists probed and where they came
        from, GETs, bytes, quantizer/fetch/scan milliseconds."""
    def search(
        self,
        xq: ArrayLike,
        k: int,
        *,
        nprobe: Optional[int] = None,
        filter: Optional[IdFilter] = None,
        ids: Optional[Sequence[int]] = None,
        allow_partial: bool = False,
        timeout: Optional[float] = None,
        attribute_filter: Optional[Union[Dict[str, Any], str]] = None,
        k_factor: Optional[float] = None,
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """`(D, I)` for the `k` nearest neighbours of each row of `xq`, as faiss returns them.

        `xq` is an (n, d) float32 array (used without a copy when C-contiguous;
        other dtypes and layouts are converted) or one d-vector. `ids` keeps
        only those ids (an allow-list); `filter` takes the id filter forms of
        the HTTP API. `allow_partial` returns what could be scanned when lists
        fail to fetch (named in `last_stats["failed_lists"]`). `timeout` is in
        seconds (DeadlineExceeded past it). `attribute_filter` (a dict or JSON
        string in Amazon S3 Vectors' language, e.g. `{"category": "shoes",
        "price": {"$lt": 50}}`) keeps only rows whose attributes match; it
        needs the `<index>.attrs.parquet` that `ivflake build --input x.parquet`
        or `ivflake attributes` writes. `k_factor` sets how many candidates a
        refined index (`…,RFlat`, IndexRefine) re-ranks per result; the file's
        when left out.

        Releases the GIL for the whole search; Ctrl-C cancels it. Raises
        ValueError for a bad dimension, NaN/inf, k, nprobe or attribute filter
        (naming its JSON path).

        Example::

            D, I = index.search(xq, 10, nprobe=16, attribute_filter={"price": {"$lt": 50}})
        """
    async def search_async(
        self,
        xq: ArrayLike,
        k: int,
        *,
        nprobe: Optional[int] = None,
        filter: Optional[IdFilter] = None,
        ids: Optional[Sequence[int]] = None,
        allow_partial: bool = False,
        timeout: Optional[float] = None,
        attribute_filter: Optional[Union[Dict[str, Any], str]] = None,
        k_factor: Optional[float] = None,
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """`search` for asyncio: `D, I = await index.search_async(xq, k)`.

        Returns a coroutine, as an `async def` does, so `asyncio.run` takes it
        and it may be made before the event loop runs. The arguments are
        checked and the queries copied now (the array may change before the
        await); the search starts on the process's tokio runtime when the
        coroutine is first awaited. Cancelling the task cancels the search.
        """
    def warm(
        self, lists: Optional[Sequence[int]] = None, *, largest: int = 0, most_probed: int = 0
    ) -> Dict[str, Any]:
        """Loads lists into the caches ahead of searches; returns what it loaded."""
    def preloaded(self) -> Dict[str, Any]:
        """Waits for the background preload; returns its status (`state`, lists and bytes, `load`)."""
    def reload(self) -> None:
        """Switches to the object's current version; searches in flight finish on the old one."""
    def cache_info(self) -> Dict[str, Any]:
        """Hits, misses, evictions and bytes per cache tier, and this index's `residency`."""

def create(
    uri: str,
    *,
    d: Optional[int] = None,
    metric: Literal["l2", "inner_product"] = "l2",
    factory: Optional[str] = None,
    from_uri: Optional[str] = None,
    staleness: Optional[float] = None,
    keep_vectors: bool = True,
    text_fields: Optional[TextFields] = None,
) -> MutableIndex:
    """Creates a mutable index under the prefix `uri`: empty (`d`, `metric`,
    `factory`; exact until a compaction trains `factory`), or on the Faiss IVF
    file `from_uri`, used in place. `keep_vectors=False` keeps no raw vectors
    for `get`. `text_fields` makes string attribute columns searchable by
    text (`MutableIndex.query`): ``{"body": "en"}``, or ``["body"]`` for
    English."""

def open_mutable(uri: str, *, staleness: Optional[float] = None) -> MutableIndex:
    """Opens the mutable index under `uri`; `staleness` in seconds (0: strong)."""

class MutableIndex:
    """An index that takes writes; each returns once durable in the store."""

    @overload
    def search(
        self,
        xq: Any,
        k: int,
        *,
        nprobe: int = 16,
        filter: Optional[Dict[str, Any]] = None,
        ids: Optional[Any] = None,
        timeout: Optional[float] = None,
        attribute_filter: Optional[Union[Dict[str, Any], str]] = None,
        text: None = None,
    ) -> Tuple[Any, Any]:
        """`(D, I)` for the `k` nearest neighbours of each row of `xq` among
        the base and every write since."""
    @overload
    def search(
        self,
        xq: Optional[Any],
        k: int,
        *,
        nprobe: int = 16,
        filter: Optional[Dict[str, Any]] = None,
        ids: Optional[Any] = None,
        timeout: Optional[float] = None,
        attribute_filter: Optional[Union[Dict[str, Any], str]] = None,
        text: Mapping[str, str],
    ) -> List[Hit]:
        """With `text`: `query(xq, k, text=text, ...)` (`xq` one vector or None)."""
    def query(
        self,
        xq: Optional[Any] = None,
        k: int = 10,
        *,
        text: Optional[Mapping[str, str]] = None,
        nprobe: int = 16,
        filter: Optional[IdFilter] = None,
        attribute_filter: Optional[Union[Dict[str, Any], str]] = None,
        return_attributes: Optional[Sequence[str]] = None,
        timeout: Optional[float] = None,
    ) -> List[Hit]:
        """A full-text, vector or hybrid search: the best `k` hits for the query
        vector `xq` (1-D, or shape (1, d); None for text only) and the text
        queries `text`, `{"field": "query text", ...}` (BM25 over the
        index's text fields; any of a query's words matches). With more than
        one ranking (a vector and a text, or two texts) each ranks `k` and
        they are fused by Reciprocal Rank Fusion, sum of 1 / (60 + rank).

        Returns a list of dicts, best first: `id`, `fused` (RRF's score, None
        for one ranking), `distance` (when the vector search ranked it),
        `bm25` (`{field: score}` for the text queries that ranked it) and
        `attributes` (the `return_attributes` columns, or None). `filter`
        (the id filter forms of `search`) and `attribute_filter` apply to
        every ranking. `timeout` in seconds bounds the whole query
        (DeadlineExceeded). Raises ValueError for an unknown text field, an
        empty text, or neither `xq` nor `text`.

        Example::

            hits = index.query(xq, 10, text={"body": "red shoes"}, return_attributes=["title"])
        """
    def set_text_fields(self, fields: TextFields) -> None:
        """Makes these the index's text fields (a dict `{"column": "language
        code"}` or a list of columns, in English) in place of the current
        ones: builds the base's text index for them and commits a version.
        Writes may go on meanwhile.
        """
    @property
    def text_fields(self) -> Dict[str, str]:
        """The text fields `query` searches, as `{"column": "language code"}`."""
    def upsert(self, xb: Any, ids: Any, attributes: Optional[Any] = None) -> int: ...
    def get(self, ids: Any) -> Tuple[Any, List[Optional[Dict[str, Any]]]]: ...
    def delete(self, ids: Any) -> int: ...
    def compact(self, *, min_train_per_list: int = 39, retrain: bool = False) -> Optional[Dict[str, Any]]: ...
    def gc(self, *, retention_secs: float = 3600.0) -> Dict[str, Any]: ...
    def refresh(self) -> None: ...
    @property
    def base_uri(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def log_position(self) -> Optional[int]: ...
    @property
    def unindexed(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def nlist(self) -> int: ...
    @property
    def uri(self) -> str: ...
    @property
    def last_stats(self) -> Optional[Dict[str, Any]]: ...
