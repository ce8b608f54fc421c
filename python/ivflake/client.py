"""An HTTP client for ``ivflake serve``, returning what `Index.search` returns.

    client = ivflake.Client("http://127.0.0.1:8080", token=None)
    D, I = client.index("products").search(xq, 10, nprobe=16)

Query vectors go as a raw little-endian float32 body (no JSON encoding of
floats), with the options in the query string; a search with an attribute
filter, attributes to return or more than `QUERY_STRING_IDS` filter ids goes
as one JSON body instead (a URI holds a few kilobytes; the server takes
`limits.max_filter_ids` ids in a body). A 503 (the server is at its
in-flight limit, or the index is being reloaded) is retried after its
``Retry-After``, a bounded number of times. Every failure is an
`IvflakeError`: a server that cannot be reached is `ServerUnreachable`.
A token sent in clear text (``http://`` to a host that is not loopback) draws
an `InsecureTokenWarning`, and redirects are refused rather than followed.
Only the standard library and numpy are used.
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ivflake._ivflake import (
    CorruptIndex,
    DeadlineExceeded,
    IndexChanged,
    IndexNotFound,
    IvflakeError,
    UnsupportedIndex,
)

# Error codes of the server's JSON error body, mapped to the exceptions the
# in-process `Index` raises for the same condition.
_ERRORS = {
    "invalid_argument": ValueError,
    "invalid_uri": ValueError,
    "not_found": IndexNotFound,
    "index_object_missing": IndexNotFound,
    "index_corrupt": CorruptIndex,
    "unsupported_index": UnsupportedIndex,
    "deadline_exceeded": DeadlineExceeded,
    "index_changed": IndexChanged,
}


# Filter ids that still go in the query string: about 7 KB of URI.
QUERY_STRING_IDS = 1000


class ServerUnreachable(IvflakeError):
    """No answer from the server: refused, reset, timed out or not resolvable."""


class InsecureTokenWarning(UserWarning):
    """A `Client` token will travel in clear text: ``http://`` to a host that is not loopback."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Hands a 3xx back as an HTTPError instead of following it.

    ``ivflake serve`` never redirects, so one comes from something in
    between. Following it would send the token to wherever it points (urllib
    keeps the Authorization header across hosts and from https to http) and
    would turn a search's POST into a GET without its body. Dropping the
    header instead would only trade that for a puzzling 401 from the other
    end; refusing names the URL to use.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


# Proxies and HTTPS as `urllib.request.urlopen` has them, redirects refused.
_OPENER = urllib.request.build_opener(_RefuseRedirects)


class Client:
    """A connection to an ``ivflake serve`` at `url` (``http://host:port``).

    `token` is sent as ``Authorization: Bearer`` (the server's
    ``IVFLAKE_API_TOKEN``). A 503 is retried up to `max_retries` times, each
    after the server's ``Retry-After`` capped at `max_retry_wait` seconds.
    `timeout` bounds each HTTP request, in seconds.

    A `token` over ``http://`` to a host other than localhost, 127.0.0.0/8 or
    ::1 warns with `InsecureTokenWarning`: anyone on the path can read it.
    Redirects are refused (`IvflakeError` naming the ``Location``), never
    followed with the token.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        *,
        max_retries: int = 3,
        max_retry_wait: float = 5.0,
        timeout: float = 60.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {url!r}")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.url = url.rstrip("/")
        self.token = token
        if token and _sends_in_clear_text(self.url):
            warnings.warn(
                f"ivflake.Client sends its token in clear text to {self.url}: "
                "use https://, or a loopback address for a server on this machine",
                InsecureTokenWarning,
                stacklevel=2,
            )
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ivflake.Client({self.url!r})"

    def index(self, name: str) -> "RemoteIndex":
        """A handle on the served index `name` (no request is made)."""
        return RemoteIndex(self, name)

    def indexes(self) -> List[Dict[str, Any]]:
        """What the server serves: name, type, d, metric, ntotal, nlist, version... per index."""
        return self._request("GET", "/v1/indexes")["indexes"]

    def _request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        content_type: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        attempt = 0
        while True:
            request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
            try:
                with _OPENER.open(request, timeout=timeout or self.timeout) as response:
                    return json.load(response)
            except urllib.error.HTTPError as e:
                payload = e.read()
                if 300 <= e.code < 400:
                    raise IvflakeError(
                        f"HTTP {e.code}: {self.url + path} redirects to {e.headers.get('Location')!r}; "
                        "ivflake.Client follows no redirects (its token would go along): "
                        "give the server's own URL"
                    ) from None
                if e.code == 503 and attempt < self.max_retries:
                    attempt += 1
                    time.sleep(_retry_after(e.headers.get("Retry-After"), self.max_retry_wait))
                    continue
                raise _error(e.code, payload) from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise ServerUnreachable(
                    f"cannot reach the ivflake server at {self.url}: {reason} (is `ivflake serve` running there?)"
                ) from e


class RemoteIndex:
    """An index served by ``ivflake serve``, searched like `ivflake.Index`."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name
        self._path = "/v1/indexes/" + urllib.parse.quote(name, safe="")

    def __repr__(self) -> str:
        return f"ivflake.RemoteIndex({self.client.url!r}, {self.name!r})"

    def info(self) -> Dict[str, Any]:
        """The server's status of this index (type, d, metric, ntotal, nlist, version, residency...)."""
        return self.client._request("GET", self._path)

    def search(
        self,
        xq: Any,
        k: int,
        *,
        nprobe: Optional[int] = None,
        filter: Optional[Mapping[str, Any]] = None,
        ids: Optional[Sequence[int]] = None,
        attribute_filter: Optional[Mapping[str, Any]] = None,
        return_attributes: Optional[Sequence[str]] = None,
        allow_partial: bool = False,
        timeout: Optional[float] = None,
        k_factor: Optional[float] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """`(D, I)` for `xq` (n × d, or one vector), as `ivflake.Index.search` returns them.

        The keywords are `Index.search`'s: `filter` takes the same forms
        (``{"allow": ids}``, ``{"deny": ids}``, ``{"range": [start, end]}``),
        `attribute_filter` the same S3 Vectors filter. `return_attributes`
        names attribute columns to fetch for each hit: they are left in
        `last_attributes`, one list of dicts per query. When `nprobe` is
        None the server's default for the index applies (its
        ``defaults.nprobe`` or the index's ``nprobe``), which is one setting
        for all its clients; `Index` uses the nprobe stored in the file.
        """
        xq = np.ascontiguousarray(xq, dtype="<f4")
        if xq.ndim == 1:
            xq = xq.reshape(1, -1)
        if xq.ndim != 2:
            raise ValueError(f"xq must be a 2-D array (n, d) or one 1-D vector, not {xq.ndim}-D")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, not {k!r}")
        query: Dict[str, Any] = {"rows": xq.shape[0], "d": xq.shape[1], "k": int(k)}
        if nprobe is not None:
            if isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)) or nprobe < 1:
                raise ValueError(f"nprobe must be a positive integer, not {nprobe!r}")
            query["nprobe"] = int(nprobe)
        if allow_partial:
            query["allow_partial"] = "true"
        if timeout is not None:
            if not timeout > 0:
                raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
            query["timeout_ms"] = max(1, int(timeout * 1000))
        if k_factor is not None:
            if isinstance(k_factor, bool) or not isinstance(k_factor, (int, float, np.integer, np.floating)) or not k_factor >= 1:
                raise ValueError(f"k_factor must be a number of at least 1, not {k_factor!r}")
            query["k_factor"] = float(k_factor)
        spec = _filter_spec(filter, ids)
        many_ids = spec is not None and spec[0] in ("allow", "deny") and len(spec[1]) > QUERY_STRING_IDS
        if attribute_filter is not None or return_attributes or many_ids:
            body: Dict[str, Any] = {"vectors": xq.tolist(), "k": query["k"]}
            for key in ("nprobe", "timeout_ms", "k_factor"):
                if key in query:
                    body[key] = query[key]
            if allow_partial:
                body["allow_partial"] = True
            if spec is not None:
                kind, value = spec
                body["filter"] = {kind: value} if kind != "range" else {"range": {"start": value[0], "end": value[1]}}
            if attribute_filter is not None:
                body["attribute_filter"] = attribute_filter
            if return_attributes:
                body["return_attributes"] = list(return_attributes)
            response = self.client._request(
                "POST", self._path + "/search", body=json.dumps(body).encode(), content_type="application/json"
            )
        else:
            query.update(_filter_params(spec))
            path = self._path + "/search?" + urllib.parse.urlencode(query)
            response = self.client._request(
                "POST", path, body=xq.tobytes(), content_type="application/octet-stream"
            )
        self.last_stats: Optional[Dict[str, Any]] = response.get("stats")
        results = response["results"]
        self.last_attributes: Optional[List[List[Dict[str, Any]]]] = (
            [r.get("attributes") for r in results] if return_attributes else None
        )
        k_out = int(response.get("k", k))
        distances = np.array(
            [[np.nan if v is None else v for v in r["distances"]] for r in results], dtype="float32"
        ).reshape(len(results), k_out)
        labels = np.array([r["ids"] for r in results], dtype="int64").reshape(len(results), k_out)
        return distances, labels

    def upsert(self, xb: Any, ids: Sequence[int], attributes: Optional[Sequence[Mapping[str, Any]]] = None) -> int:
        """Writes the rows of `xb` under `ids` to a writable index (``writable
        = true``), replacing ids present (vector and attributes: one dict per
        id); returns the log position once the write is durable. Needs the
        write or admin token."""
        xb = np.ascontiguousarray(xb, dtype="<f4")
        if xb.ndim == 1:
            xb = xb.reshape(1, -1)
        ids = [int(i) for i in ids]
        if xb.ndim != 2 or xb.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} ids for vectors of shape {xb.shape}")
        request: Dict[str, Any] = {"ids": ids, "vectors": xb.tolist()}
        if attributes is not None:
            request["attributes"] = [dict(a) for a in attributes]
        body = json.dumps(request).encode()
        response = self.client._request("POST", self._path + "/upsert", body=body, content_type="application/json")
        return int(response["log_position"])

    def delete(self, ids: Sequence[int]) -> int:
        """Deletes `ids` from a writable index; returns the log position."""
        body = json.dumps({"ids": [int(i) for i in ids]}).encode()
        response = self.client._request("POST", self._path + "/delete", body=body, content_type="application/json")
        return int(response["log_position"])

    def get(self, ids: Sequence[int]) -> List[Optional[Dict[str, Any]]]:
        """Each id's kept row of a writable index, ``{"id", "vector",
        "attributes"}``, or None where the index does not hold the id."""
        body = json.dumps({"ids": [int(i) for i in ids]}).encode()
        return self.client._request("POST", self._path + "/get", body=body, content_type="application/json")["rows"]

    def compact(self) -> Optional[Dict[str, Any]]:
        """Folds a writable index's log into a new base; what it did, or None."""
        return self.client._request("POST", self._path + "/compact", body=b"{}", content_type="application/json")[
            "compacted"
        ]


def _filter_spec(filter: Optional[Mapping[str, Any]], ids: Optional[Sequence[int]]) -> Optional[Tuple[str, Any]]:
    """The id filter as ``("allow" | "deny", [ids])`` or ``("range", (start, end))``."""
    if filter is not None and ids is not None:
        raise ValueError("pass ids= or filter=, not both")
    if ids is not None:
        filter = {"allow": ids}
    if filter is None:
        return None
    usage = 'filter must be {"allow": ids}, {"deny": ids} or {"range": [start, end]}'
    if not isinstance(filter, Mapping) or len(filter) != 1:
        raise ValueError(usage)
    (kind, value), = filter.items()
    if kind in ("allow", "deny"):
        ids_array = np.asarray(value)
        if ids_array.ndim != 1 or (ids_array.size and ids_array.dtype.kind not in "iu"):
            raise ValueError(f"filter {kind} must be a 1-D sequence of integer ids")
        return kind, [int(i) for i in ids_array]
    if kind == "range":
        if isinstance(value, Mapping):
            start, end = value["start"], value["end"]
        else:
            start, end = value
        return "range", (int(start), int(end))
    raise ValueError(f"unknown filter {kind!r}; {usage}")


def _filter_params(spec: Optional[Tuple[str, Any]]) -> Dict[str, str]:
    """The id filter in a binary search's query string."""
    if spec is None:
        return {}
    kind, value = spec
    if kind == "range":
        return {"range": f"{value[0]},{value[1]}"}
    return {kind: ",".join(str(i) for i in value)}


def _sends_in_clear_text(url: str) -> bool:
    """Whether `url` is plain http to a host other than this machine's loopback.

    Names are not resolved: only ``localhost`` (and ``*.localhost``, which
    RFC 6761 reserves for loopback) and loopback addresses count.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _retry_after(header: Optional[str], cap: float) -> float:
    try:
        wait = float(header) if header is not None else 1.0
    except ValueError:
        wait = 1.0
    return max(0.0, min(wait, cap))


def _error(status: int, payload: bytes) -> Exception:
    try:
        detail = json.loads(payload)["error"]
        code, message = detail.get("code", ""), detail.get("message", "")
    except (ValueError, KeyError, TypeError):
        code, message = "", payload.decode("utf-8", "replace")[:500]
    kind = _ERRORS.get(code, IvflakeError)
    return kind(f"HTTP {status} {code}: {message}".rstrip(": "))
