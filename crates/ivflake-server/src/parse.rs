//! Search request bodies → one [`Batch`], whichever the encoding (JSON, or
//! raw little-endian float32 with its shape and options in the query string).
//! Every count a client controls (rows, values per row, filter ids) is
//! checked as it is read, so no allocation is sized by an unchecked number
//! and a body past a limit stops being parsed at the first value too many.

use std::fmt;

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{header, HeaderMap, Uri};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use ivflake::{AttributeFilter, FilterLimits, FilterParser, IdFilterSpec};

use crate::api::BinarySearchParams;

/// A request the server refuses before any search runs.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A value is wrong; `field` is the request field (or JSON path) at fault.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("send application/json or application/octet-stream (raw little-endian float32)")]
    UnsupportedMediaType,
    /// The blocking task parsing a large body died (a fault, not the client's).
    #[error("parsing the request failed: {reason}")]
    ParserFailed { reason: String },
}

impl RequestError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The header giving the row count of a binary search body.
pub const ROWS_HEADER: &str = "x-ivflake-rows";
/// Bodies above this are parsed on the blocking pool: about a millisecond of
/// JSON parsing, the most a tokio worker should spend on one request.
const INLINE_PARSE_BYTES: usize = 1 << 20;

/// What a search request may hold: the index's dimension and the limits.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub d: usize,
    pub max_rows: usize,
    pub max_filter_ids: usize,
    /// Bounds on the attribute filter, checked as it is read.
    pub filter_limits: FilterLimits,
}

/// One parsed search request, whichever encoding it came in. `vectors` holds
/// `rows × d` finite values; the filter holds at most `max_filter_ids` ids.
#[derive(Debug)]
pub struct Batch {
    pub vectors: Vec<f32>,
    pub rows: usize,
    pub k: Option<usize>,
    pub nprobe: Option<usize>,
    pub k_factor: Option<f32>,
    pub filter: Option<IdFilterSpec>,
    /// The attribute filter, parsed within `Shape::filter_limits`; checked
    /// against the index's attributes when the search runs (errors name its
    /// JSON path).
    pub attribute_filter: Option<AttributeFilter>,
    pub return_attributes: Vec<String>,
    pub allow_partial: bool,
    pub timeout_ms: Option<u64>,
}

pub enum BodyKind {
    Json,
    Binary,
}

/// JSON unless the body says it is raw floats; a missing Content-Type is read as JSON.
pub fn content_type(headers: &HeaderMap) -> Result<BodyKind, RequestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "application/octet-stream" => Ok(BodyKind::Binary),
        _ => Err(RequestError::UnsupportedMediaType),
    }
}

pub async fn parse_json(body: Bytes, shape: Shape) -> Result<Batch, RequestError> {
    let batch = if body.len() > INLINE_PARSE_BYTES {
        tokio::task::spawn_blocking(move || decode_request(&body, shape))
            .await
            .map_err(|e| RequestError::ParserFailed { reason: e.to_string() })??
    } else {
        decode_request(&body, shape)?
    };
    check_rows(batch.rows, shape.max_rows)?;
    check_finite(&batch.vectors, shape.d)?;
    Ok(batch)
}

/// A JSON search request. A refused attribute filter is reported by the
/// filter parser, with the JSON path and the limit it went past.
fn decode_request(body: &[u8], shape: Shape) -> Result<Batch, RequestError> {
    let mut filter = AttributeFilterSeed::new(&shape.filter_limits);
    decode(
        body,
        RequestSeed {
            shape,
            filter: &mut filter,
        },
    )
    .map_err(|e| {
        if !filter.failed {
            return e;
        }
        match filter.parser.error(&e) {
            ivflake::Error::InvalidFilter { path, reason } => RequestError::invalid(path, reason),
            other => RequestError::invalid("attribute_filter", other.to_string()),
        }
    })
}

/// Parses JSON with `seed` (or `PhantomData::<T>` for a plain
/// `Deserialize` type), naming the request field at fault when a value is wrong.
pub fn decode<'de, S: DeserializeSeed<'de>>(body: &'de [u8], seed: S) -> Result<S::Value, RequestError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let parsed = seed.deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track));
    let value = match parsed {
        Ok(value) => value,
        Err(inner) => {
            let path = track.path().to_string();
            return Err(if inner.is_data() && path != "." {
                RequestError::invalid(top_field(&path), format!("at {path}: {inner}"))
            } else if inner.is_data() {
                RequestError::invalid("body", inner.to_string())
            } else {
                RequestError::invalid("body", format!("malformed JSON: {inner}"))
            });
        }
    };
    de.end()
        .map_err(|e| RequestError::invalid("body", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// The top-level request field a serde path such as `vectors[3][1]` starts with.
fn top_field(path: &str) -> &str {
    path.split(['.', '['])
        .next()
        .filter(|s| !s.is_empty() && *s != "?")
        .unwrap_or("body")
}

fn check_rows(rows: usize, max_rows: usize) -> Result<(), RequestError> {
    if rows == 0 {
        return Err(RequestError::invalid(
            "vectors",
            "the batch is empty; send at least one vector",
        ));
    }
    if rows > max_rows {
        return Err(RequestError::invalid("vectors", too_many_rows(max_rows)));
    }
    Ok(())
}

fn too_many_rows(max_rows: usize) -> String {
    format!("more than the limit of {max_rows} vectors per request")
}

/// serde_json reads a too-large number such as 1e39 into f32 as infinity;
/// every non-finite value is refused here, before the library sees it.
fn check_finite(vectors: &[f32], d: usize) -> Result<(), RequestError> {
    if let Some(pos) = vectors.iter().position(|v| !v.is_finite()) {
        let (i, j) = (pos / d.max(1), pos % d.max(1));
        return Err(RequestError::invalid(
            "vectors",
            format!(
                "vectors[{i}][{j}] is {}, not a finite float32 (values beyond ±3.4e38 overflow float32)",
                vectors[pos]
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum RequestField {
    Vectors,
    K,
    Nprobe,
    KFactor,
    Filter,
    AttributeFilter,
    ReturnAttributes,
    AllowPartial,
    TimeoutMs,
}

const REQUEST_FIELDS: &[&str] = &[
    "vectors",
    "k",
    "nprobe",
    "k_factor",
    "filter",
    "attribute_filter",
    "return_attributes",
    "allow_partial",
    "timeout_ms",
];

/// Reads a `SearchRequest` object straight into a [`Batch`].
struct RequestSeed<'a> {
    shape: Shape,
    filter: &'a mut AttributeFilterSeed,
}

/// Reads `attribute_filter` (or `null`) straight into an [`AttributeFilter`],
/// within the limits, and remembers whether that is where the parse failed.
struct AttributeFilterSeed {
    parser: FilterParser,
    failed: bool,
}

impl AttributeFilterSeed {
    fn new(limits: &FilterLimits) -> Self {
        Self {
            parser: FilterParser::new("attribute_filter", limits),
            failed: false,
        }
    }
}

impl<'de> DeserializeSeed<'de> for &mut AttributeFilterSeed {
    type Value = Option<AttributeFilter>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let read = deserializer.deserialize_option(&mut *self);
        self.failed = read.is_err();
        read
    }
}

impl<'de> Visitor<'de> for &mut AttributeFilterSeed {
    type Value = Option<AttributeFilter>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an attribute filter object or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        (&mut self.parser).deserialize(deserializer).map(Some)
    }
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = Batch;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Batch, D::Error> {
        deserializer.deserialize_struct("SearchRequest", REQUEST_FIELDS, self)
    }
}

/// Refuses a field given twice, before its value is read.
fn first<T, E: de::Error>(slot: &Option<T>, field: &'static str) -> Result<(), E> {
    match slot {
        Some(_) => Err(E::duplicate_field(field)),
        None => Ok(()),
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = Batch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a search request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Batch, A::Error> {
        let shape = self.shape;
        let mut vectors = None;
        let mut k: Option<Option<usize>> = None;
        let mut nprobe: Option<Option<usize>> = None;
        let mut k_factor: Option<Option<f32>> = None;
        let mut filter: Option<Option<IdFilterSpec>> = None;
        let mut attribute_filter: Option<Option<AttributeFilter>> = None;
        let mut return_attributes: Option<Option<Vec<String>>> = None;
        let mut allow_partial: Option<bool> = None;
        let mut timeout_ms: Option<Option<u64>> = None;
        while let Some(field) = map.next_key::<RequestField>()? {
            match field {
                RequestField::Vectors => {
                    first(&vectors, "vectors")?;
                    vectors = Some(map.next_value_seed(VectorsSeed(shape))?);
                }
                RequestField::K => {
                    first(&k, "k")?;
                    k = Some(map.next_value()?);
                }
                RequestField::Nprobe => {
                    first(&nprobe, "nprobe")?;
                    nprobe = Some(map.next_value()?);
                }
                RequestField::KFactor => {
                    first(&k_factor, "k_factor")?;
                    k_factor = Some(map.next_value()?);
                }
                RequestField::Filter => {
                    first(&filter, "filter")?;
                    filter = Some(map.next_value_seed(FilterSeed(shape.max_filter_ids))?);
                }
                RequestField::AttributeFilter => {
                    first(&attribute_filter, "attribute_filter")?;
                    attribute_filter = Some(map.next_value_seed(&mut *self.filter)?);
                }
                RequestField::ReturnAttributes => {
                    first(&return_attributes, "return_attributes")?;
                    return_attributes = Some(map.next_value()?);
                }
                RequestField::AllowPartial => {
                    first(&allow_partial, "allow_partial")?;
                    allow_partial = Some(map.next_value()?);
                }
                RequestField::TimeoutMs => {
                    first(&timeout_ms, "timeout_ms")?;
                    timeout_ms = Some(map.next_value()?);
                }
            }
        }
        let (vectors, rows) = vectors.ok_or_else(|| de::Error::missing_field("vectors"))?;
        Ok(Batch {
            vectors,
            rows,
            k: k.flatten(),
            nprobe: nprobe.flatten(),
            k_factor: k_factor.flatten(),
            filter: filter.flatten(),
            attribute_filter: attribute_filter.flatten(),
            return_attributes: return_attributes.flatten().unwrap_or_default(),
            allow_partial: allow_partial.unwrap_or(false),
            timeout_ms: timeout_ms.flatten(),
        })
    }
}

/// `[[f32; d], ...]` → row-major values and the row count; stops at the
/// first row too many or the first row of the wrong length.
struct VectorsSeed(Shape);

impl<'de> DeserializeSeed<'de> for VectorsSeed {
    type Value = (Vec<f32>, usize);

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for VectorsSeed {
    type Value = (Vec<f32>, usize);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of at most {} vectors", self.0.max_rows)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Shape { d, max_rows, .. } = self.0;
        // Grows with the values actually read, so it is bounded by the body.
        let mut values = Vec::new();
        let mut rows = 0;
        while seq.next_element_seed(RowSeed { d, out: &mut values })?.is_some() {
            rows += 1;
            if rows > max_rows {
                return Err(de::Error::custom(too_many_rows(max_rows)));
            }
        }
        Ok((values, rows))
    }
}

/// One vector, appended to `out`; exactly `d` numbers.
struct RowSeed<'a> {
    d: usize,
    out: &'a mut Vec<f32>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a vector of {} numbers", self.d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let start = self.out.len();
        while let Some(value) = seq.next_element::<f32>()? {
            if self.out.len() - start == self.d {
                return Err(de::Error::custom(format!(
                    "more than d = {} values; the index has d = {}",
                    self.d, self.d
                )));
            }
            self.out.push(value);
        }
        let n = self.out.len() - start;
        if n != self.d {
            return Err(de::Error::custom(format!("{n} values; the index has d = {}", self.d)));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum FilterKind {
    Allow,
    Deny,
    Range,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeBounds {
    start: i64,
    end: i64,
}

/// `null` or `{"allow": [..]} | {"deny": [..]} | {"range": {"start", "end"}}`,
/// with at most `.0` ids.
struct FilterSeed(usize);

impl<'de> DeserializeSeed<'de> for FilterSeed {
    type Value = Option<IdFilterSpec>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for FilterSeed {
    type Value = Option<IdFilterSpec>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a filter: {\"allow\": [...]}, {\"deny\": [...]} or {\"range\": {\"start\", \"end\"}}")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(kind) = map.next_key::<FilterKind>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        let spec = match kind {
            FilterKind::Allow => IdFilterSpec::Allow(map.next_value_seed(IdsSeed(self.0))?),
            FilterKind::Deny => IdFilterSpec::Deny(map.next_value_seed(IdsSeed(self.0))?),
            FilterKind::Range => {
                let RangeBounds { start, end } = map.next_value()?;
                IdFilterSpec::Range { start, end }
            }
        };
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a filter has exactly one of allow, deny and range"));
        }
        Ok(Some(spec))
    }
}

/// An array of at most `.0` ids.
struct IdsSeed(usize);

impl<'de> DeserializeSeed<'de> for IdsSeed {
    type Value = Vec<i64>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Vec<i64>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for IdsSeed {
    type Value = Vec<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of at most {} ids", self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<i64>, A::Error> {
        let mut ids = Vec::new();
        while let Some(id) = seq.next_element::<i64>()? {
            if ids.len() == self.0 {
                return Err(de::Error::custom(too_many_ids(self.0)));
            }
            ids.push(id);
        }
        Ok(ids)
    }
}

fn too_many_ids(max: usize) -> String {
    format!("more than the limit of {max} ids")
}

/// A binary body: `rows × d` little-endian float32, with the shape and the
/// search options in the query string (and `rows` perhaps in a header).
pub fn parse_binary(uri: &Uri, headers: &HeaderMap, body: &[u8], shape: Shape) -> Result<Batch, RequestError> {
    let d = shape.d;
    let Query(params) =
        Query::<BinarySearchParams>::try_from_uri(uri).map_err(|e| RequestError::invalid("query", e.body_text()))?;
    let header_rows = match headers.get(ROWS_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| RequestError::invalid("rows", format!("the {ROWS_HEADER} header is not a number")))?,
        ),
    };
    let rows = match (params.rows, header_rows) {
        (Some(a), Some(b)) if a != b => {
            return Err(RequestError::invalid(
                "rows",
                format!("the query says rows={a} but the {ROWS_HEADER} header says {b}"),
            ))
        }
        (Some(r), _) | (None, Some(r)) => r,
        (None, None) => {
            return Err(RequestError::invalid(
                "rows",
                format!("a binary body needs its shape: give ?rows=N or the {ROWS_HEADER} header"),
            ))
        }
    };
    if let Some(given) = params.d {
        if given != d {
            return Err(RequestError::invalid(
                "d",
                format!("the body has d = {given}; the index has d = {d}"),
            ));
        }
    }
    check_rows(rows, shape.max_rows)?;
    let expected = rows.checked_mul(d).and_then(|n| n.checked_mul(4));
    if expected != Some(body.len()) {
        return Err(RequestError::invalid(
            "body",
            format!(
                "{} bytes is not rows × d × 4 = {rows} × {d} × 4 bytes of float32",
                body.len()
            ),
        ));
    }
    let filter = query_filter(&params, shape.max_filter_ids)?;
    let vectors: Vec<f32> = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    check_finite(&vectors, d)?;
    Ok(Batch {
        vectors,
        rows,
        k: params.k,
        nprobe: params.nprobe,
        k_factor: params.k_factor,
        filter,
        // Attribute filters are JSON: they go in a JSON body.
        attribute_filter: None,
        return_attributes: Vec::new(),
        allow_partial: params.allow_partial.unwrap_or(false),
        timeout_ms: params.timeout_ms,
    })
}

/// The filter of a binary search: `?allow=1,2,3`, `?deny=...` or `?range=start,end`.
fn query_filter(params: &BinarySearchParams, max_ids: usize) -> Result<Option<IdFilterSpec>, RequestError> {
    let spec = match (&params.allow, &params.deny, &params.range) {
        (None, None, None) => return Ok(None),
        (Some(list), None, None) => IdFilterSpec::Allow(parse_ids(list, max_ids)?),
        (None, Some(list), None) => IdFilterSpec::Deny(parse_ids(list, max_ids)?),
        (None, None, Some(range)) => {
            let bounds = range
                .split_once(',')
                .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
            let Some((start, end)) = bounds else {
                return Err(RequestError::invalid("filter", "range is not start,end (two integers)"));
            };
            IdFilterSpec::Range { start, end }
        }
        _ => {
            return Err(RequestError::invalid(
                "filter",
                "give at most one of allow, deny and range",
            ))
        }
    };
    Ok(Some(spec))
}

/// A comma-separated id list, refused at the first id past `max_ids`.
fn parse_ids(list: &str, max_ids: usize) -> Result<Vec<i64>, RequestError> {
    let mut ids = Vec::new();
    for part in list.split(',') {
        if ids.len() == max_ids {
            return Err(RequestError::invalid("filter", too_many_ids(max_ids)));
        }
        let id = part
            .trim()
            .parse()
            .map_err(|_| RequestError::invalid("filter", format!("{part:?} is not an integer id")))?;
        ids.push(id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_error::ApiError;
    use axum::http::StatusCode;

    const SHAPE: Shape = Shape {
        d: 2,
        max_rows: 3,
        max_filter_ids: 4,
        filter_limits: FilterLimits {
            max_depth: 3,
            max_conditions: 4,
            max_in_values: 5,
            max_total_values: 8,
            max_string_bytes: 16,
        },
    };

    /// Refusals as the client sees them.
    fn json(body: &str) -> Result<Batch, ApiError> {
        let batch = decode_request(body.as_bytes(), SHAPE)?;
        check_rows(batch.rows, SHAPE.max_rows)?;
        Ok(batch)
    }

    fn refusal(body: &str) -> (String, String) {
        let e = json(body).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{e}");
        (e.field.unwrap_or_default(), e.message)
    }

    /// The attribute filter is typed as it is read, and each limit stops the
    /// parse with the JSON path of the value past it.
    #[test]
    fn attribute_filters_are_bounded_as_they_are_read() {
        let b = json(r#"{"vectors": [[1, 2]], "attribute_filter": {"genre": {"$in": ["a", "b"]}}}"#).unwrap();
        assert!(b.attribute_filter.is_some());
        let b = json(r#"{"vectors": [[1, 2]], "attribute_filter": null}"#).unwrap();
        assert!(b.attribute_filter.is_none());

        let (field, message) = refusal(r#"{"vectors": [[1, 2]], "attribute_filter": {"t": {"$in": [1,2,3,4,5,6]}}}"#);
        assert_eq!(field, "attribute_filter.t.$in");
        assert!(message.contains("max_in_values = 5"), "{message}");
        let deep =
            r#"{"vectors": [[1, 2]], "attribute_filter": {"$and": [{"$and": [{"$and": [{"$and": [{"a": 1}]}]}]}]}}"#;
        let (field, message) = refusal(deep);
        assert!(field.starts_with("attribute_filter.$and[0]"), "{field}");
        assert!(message.contains("max_depth = 3"), "{message}");
        let (field, message) =
            refusal(r#"{"vectors": [[1, 2]], "attribute_filter": {"t": "a-string-of-over-16-bytes"}}"#);
        assert_eq!(field, "attribute_filter.t");
        assert!(message.contains("max_string_bytes = 16"), "{message}");
        // Bad JSON inside the filter names the filter, not the body.
        let (field, _) = refusal(r#"{"vectors": [[1, 2]], "attribute_filter": {"t": {"$in": [1,]}}}"#);
        assert!(field.starts_with("attribute_filter"), "{field}");
        // A refusal elsewhere in the body is not blamed on the filter.
        let (field, _) = refusal(r#"{"attribute_filter": {"t": 1}, "vectors": [[1, 2, 3]]}"#);
        assert_eq!(field, "vectors");
    }

    fn field(body: &str) -> String {
        let e = json(body).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{e}");
        e.field.unwrap_or_default()
    }

    #[test]
    fn reads_a_request() {
        let b =
            json(r#"{"vectors": [[1, 2], [3, 4]], "k": 5, "filter": {"allow": [7, 8]}, "timeout_ms": null}"#).unwrap();
        assert_eq!((b.rows, b.vectors, b.k), (2, vec![1.0, 2.0, 3.0, 4.0], Some(5)));
        assert!(matches!(b.filter, Some(IdFilterSpec::Allow(ids)) if ids == [7, 8]));
        assert!(json(r#"{"vectors": [[1, 2]], "filter": null}"#)
            .unwrap()
            .filter
            .is_none());
    }

    #[test]
    fn limits_stop_the_parse() {
        assert_eq!(field(r#"{"vectors": [[1,2],[1,2],[1,2],[1,2]]}"#), "vectors");
        assert_eq!(field(r#"{"vectors": [[1,2,3]]}"#), "vectors");
        assert_eq!(field(r#"{"vectors": [[1]]}"#), "vectors");
        assert_eq!(field(r#"{"vectors": []}"#), "vectors");
        assert_eq!(
            field(r#"{"vectors": [[1,2]], "filter": {"deny": [1,2,3,4,5]}}"#),
            "filter"
        );
        assert_eq!(
            field(r#"{"vectors": [[1,2]], "filter": {"allow": [1], "deny": [2]}}"#),
            "filter"
        );
        assert_eq!(field(r#"{"vectors": [[1,2]], "vectors": [[1,2]]}"#), "body");
        assert_eq!(field(r#"{"k": 3}"#), "body");
        assert_eq!(field(r#"{"vectors": [[1,2]], "k": -1}"#), "k");
    }

    #[test]
    fn query_filters() {
        let p = |q: &str| -> BinarySearchParams { Query::try_from_uri(&format!("/s?{q}").parse().unwrap()).unwrap().0 };
        assert!(matches!(query_filter(&p("allow=1,2"), 4), Ok(Some(IdFilterSpec::Allow(ids))) if ids == [1, 2]));
        assert!(matches!(
            query_filter(&p("range=5,9"), 4),
            Ok(Some(IdFilterSpec::Range { start: 5, end: 9 }))
        ));
        assert!(query_filter(&p("deny=1,2,3,4,5"), 4).is_err());
        assert!(query_filter(&p("allow=1&deny=2"), 4).is_err());
        assert!(query_filter(&p("allow=x"), 4).is_err());
        assert!(query_filter(&p("range=5"), 4).is_err());
    }
}
