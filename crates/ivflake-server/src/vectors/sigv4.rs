//! Server-side check of AWS Signature Version 4 for the S3 Vectors-compatible API.
//!
//! Owns one thing: deciding whether a request's `Authorization: AWS4-HMAC-SHA256 ...` header
//! was produced by one of our access keys for this request. It does not cover presigned URLs
//! (query-string auth, `X-Amz-Signature=`), SigV4a (`AWS4-ECDSA-P256-SHA256`), session tokens
//! as credentials, the `Date` header instead of `x-amz-date`, nor unsigned or streaming
//! payloads: all of those are refused.
//!
//! The expected signature comes from the `aws-sigv4` crate, fed exactly the headers named in
//! the client's SignedHeaders. It reproduces botocore's canonical request: the path is
//! normalised and then percent-encoded again (so `/tags/arn%3Aaws...` is signed as
//! `/tags/arn%253Aaws...`), the query is sorted, and the payload hash is the body's SHA-256.
//!
//! Algorithm per AWS's documentation, "Signature Version 4 for API requests" and "Create a
//! signed AWS API request" (AWS Identity and Access Management User Guide).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http::{HeaderMap, Method, Uri};
use subtle::ConstantTimeEq;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";

/// One access key the server accepts. The secret is never printed by `Debug`.
#[derive(Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a request was refused. Messages are meant for an `AccessDeniedException` body: they
/// name what is wrong, never a secret or the signature we expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("missing Authorization header (presigned URLs are not supported)")]
    MissingAuthorization,
    #[error("malformed Authorization header: {0}")]
    MalformedAuthorization(&'static str),
    #[error("unsupported signing algorithm: only AWS4-HMAC-SHA256 is accepted")]
    UnsupportedAlgorithm,
    #[error("the access key id in the credential scope is unknown")]
    UnknownAccessKey,
    #[error("the credential scope must be for region '{region}' and service '{service}'")]
    WrongScope { region: String, service: String },
    #[error("missing x-amz-date header")]
    MissingDate,
    #[error("malformed x-amz-date header: expected the form YYYYMMDDTHHMMSSZ")]
    MalformedDate,
    #[error("request time is outside the allowed window of {window_secs} seconds around the server time")]
    OutsideSkewWindow { window_secs: u64 },
    #[error("unsigned or streaming payloads are not supported: sign the SHA-256 of the body")]
    UnsignedPayload,
    #[error("the request signature we calculated does not match the signature you provided")]
    SignatureMismatch,
}

/// Verifies SigV4 Authorization headers against a fixed set of keys, region and service.
pub struct Verifier {
    // Credentials redacts the secret in Debug and zeroizes it on drop.
    keys: Vec<Credentials>,
    region: String,
    service: String,
    max_skew: Duration,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.access_key_id()).collect();
        f.debug_struct("Verifier")
            .field("key_ids", &ids)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("max_skew", &self.max_skew)
            .finish()
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
struct Authorization<'a> {
    key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

impl Verifier {
    pub fn new(keys: Vec<AccessKey>, region: &str, service: &str, max_skew: Duration) -> Self {
        let keys = keys
            .into_iter()
            .map(|k| Credentials::new(k.id, k.secret, None, None, "ivflake-server"))
            .collect();
        Self {
            keys,
            region: region.to_owned(),
            service: service.to_owned(),
            max_skew,
        }
    }

    /// Returns the id of the key that signed the request, or why it is refused.
    /// `uri` is the request target as received (origin-form is fine; the host comes from the
    /// signed `host` header), `body` the full body as received.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<&str, Refused> {
        let auth = headers
            .get(http::header::AUTHORIZATION)
            .ok_or(Refused::MissingAuthorization)?;
        let auth = auth
            .to_str()
            .map_err(|_| Refused::MalformedAuthorization("not visible ASCII"))?;
        let auth = parse_authorization(auth)?;

        if auth.region != self.region || auth.service != self.service {
            return Err(Refused::WrongScope {
                region: self.region.clone(),
                service: self.service.clone(),
            });
        }

        let amz_date = headers.get(X_AMZ_DATE).ok_or(Refused::MissingDate)?;
        let amz_date = amz_date.to_str().map_err(|_| Refused::MalformedDate)?;
        let signed_at = parse_amz_date(amz_date).ok_or(Refused::MalformedDate)?;
        if auth.date != &amz_date[..8] {
            return Err(Refused::MalformedAuthorization(
                "the credential scope date is not the date of x-amz-date",
            ));
        }
        let skew = now
            .duration_since(signed_at)
            .or_else(|_| signed_at.duration_since(now))
            .unwrap_or(Duration::MAX);
        if skew > self.max_skew {
            return Err(Refused::OutsideSkewWindow {
                window_secs: self.max_skew.as_secs(),
            });
        }

        let creds = self.find_key(auth.key_id).ok_or(Refused::UnknownAccessKey)?;

        // Only the client's SignedHeaders go in, so aws-sigv4 signs exactly those (it adds
        // x-amz-date and, if absent, host; both must therefore be in the list).
        let mut signed: Vec<(&str, &str)> = Vec::new();
        let (mut has_host, mut has_date, mut has_sha256) = (false, false, false);
        for name in auth.signed_headers.split(';') {
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(Refused::MalformedAuthorization(
                    "SignedHeaders must be lowercase names separated by ';'",
                ));
            }
            has_host |= name == "host";
            has_date |= name == X_AMZ_DATE;
            has_sha256 |= name == X_AMZ_CONTENT_SHA256;
            for value in headers.get_all(name) {
                let value = value
                    .to_str()
                    .map_err(|_| Refused::MalformedAuthorization("a signed header is not ASCII"))?;
                signed.push((name, value));
            }
        }
        if !has_host || !has_date || !headers.contains_key(http::header::HOST) {
            return Err(Refused::MalformedAuthorization(
                "SignedHeaders must include host and x-amz-date",
            ));
        }
        // The payload hash is always the body's own: a declared hash other than a SHA-256
        // (UNSIGNED-PAYLOAD, STREAMING-...) would leave the body unauthenticated.
        if let Some(declared) = headers.get(X_AMZ_CONTENT_SHA256) {
            let declared = declared.as_bytes();
            if declared.len() != 64 || !declared.iter().all(u8::is_ascii_hexdigit) {
                return Err(Refused::UnsignedPayload);
            }
        }

        let mut settings = SigningSettings::default();
        // Sign what the client listed, including headers aws-sigv4 leaves out when it signs
        // (user-agent, transfer-encoding, ...).
        settings.excluded_headers = None;
        if has_sha256 {
            // aws-sigv4 then signs x-amz-content-sha256 as the SHA-256 of `body`, so a header
            // that does not hash the body fails the comparison.
            settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
        }
        let identity = creds.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(auth.region)
            .name(auth.service)
            .time(signed_at)
            .settings(settings)
            .build()
            .map_err(|_| Refused::MalformedAuthorization("cannot build signing parameters"))?;
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let request = SignableRequest::new(method.as_str(), target, signed.into_iter(), SignableBody::Bytes(body))
            .map_err(|_| Refused::MalformedAuthorization("the request cannot be canonicalised"))?;
        let output =
            sign(request, &params.into()).map_err(|_| Refused::MalformedAuthorization("a signed header is invalid"))?;

        if bool::from(output.signature().as_bytes().ct_eq(auth.signature.as_bytes())) {
            Ok(creds.access_key_id())
        } else {
            Err(Refused::SignatureMismatch)
        }
    }

    /// Looks at every key without stopping at a match, so timing does not tell which ids exist.
    fn find_key(&self, id: &str) -> Option<&Credentials> {
        let mut found = None;
        for key in &self.keys {
            let same = bool::from(key.access_key_id().as_bytes().ct_eq(id.as_bytes()));
            if same && found.is_none() {
                found = Some(key);
            }
        }
        found
    }
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, Refused> {
    let (algorithm, rest) = value
        .split_once(' ')
        .ok_or(Refused::MalformedAuthorization("no algorithm"))?;
    if algorithm != ALGORITHM {
        return Err(Refused::UnsupportedAlgorithm);
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part
            .trim()
            .split_once('=')
            .ok_or(Refused::MalformedAuthorization("expected key=value"))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(Refused::MalformedAuthorization("unknown component")),
        };
        if slot.replace(val).is_some() {
            return Err(Refused::MalformedAuthorization("repeated component"));
        }
    }
    let credential = credential.ok_or(Refused::MalformedAuthorization("missing Credential"))?;
    let signed_headers = signed_headers.ok_or(Refused::MalformedAuthorization("missing SignedHeaders"))?;
    let signature = signature.ok_or(Refused::MalformedAuthorization("missing Signature"))?;

    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope[..] else {
        return Err(Refused::MalformedAuthorization(
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if key_id.is_empty() || terminator != "aws4_request" || date.len() != 8 {
        return Err(Refused::MalformedAuthorization(
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    }
    if signature.len() != 64
        || !signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Refused::MalformedAuthorization(
            "Signature must be 64 lowercase hex digits",
        ));
    }
    Ok(Authorization {
        key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// Parses `YYYYMMDDTHHMMSSZ` (UTC), as SigV4 puts in `x-amz-date`.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(4, 6)?, num(6, 8)?);
    let (hour, minute, second) = (num(9, 11)?, num(11, 13)?, num(13, 15)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if year < 1970 || !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    if day == 0 || day > month_days[(month - 1) as usize] {
        return None;
    }
    // Days since 1970-01-01 (H. Hinnant's days_from_civil, years counted from March).
    let y = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (y / 400, y % 400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + hour * 3_600 + minute * 60 + second))
}

#[cfg(test)]
mod tests;
