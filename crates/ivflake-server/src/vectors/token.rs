//! Pagination tokens: what a listing or query page needs to go on, signed
//! with the server's key (HMAC-SHA256) so a client can neither forge nor
//! alter one, and stamped with an expiry. A token is bound to the request
//! it continues (the operation and a digest of what must stay the same),
//! so one cannot be replayed against another index or query.
//!
//! Replicas that should accept each other's tokens share the key
//! (`vectors.token_key_env`); otherwise each server draws its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{S3vError, S3vResult};

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct TokenKey {
    key: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// The request's binding: operation and digest.
    b: String,
    /// Where to go on from.
    p: String,
    /// Expiry, seconds since the Unix epoch.
    e: u64,
}

/// A digest of what a follow-up request must repeat (hex, 16 bytes).
pub fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl TokenKey {
    pub fn new(key: Vec<u8>, ttl: Duration) -> Self {
        Self { key, ttl }
    }

    /// A fresh random key.
    pub fn random(ttl: Duration) -> Self {
        let key: [u8; 32] = rand::random();
        Self::new(key.to_vec(), ttl)
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(payload);
        mac
    }

    /// A token to continue from `position` a request bound by `binding`.
    pub fn issue(&self, binding: &str, position: &str) -> String {
        let payload = serde_json::to_vec(&Payload {
            b: binding.to_string(),
            p: position.to_string(),
            e: now() + self.ttl.as_secs(),
        })
        .unwrap_or_default();
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(tag))
    }

    /// The position a token continues from, when it is this server's,
    /// unaltered, unexpired and bound to `binding`.
    pub fn redeem(&self, member: &str, token: &str, binding: &str) -> S3vResult<String> {
        let refuse = |why: &str| S3vError::invalid(member, why.to_string());
        let (payload, tag) = token
            .split_once('.')
            .ok_or_else(|| refuse("not a token this server issued"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| refuse("not a token this server issued"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| refuse("not a token this server issued"))?;
        // verify_slice compares in constant time.
        self.mac(&payload)
            .verify_slice(&tag)
            .map_err(|_| refuse("the token was altered, or issued by another server"))?;
        let payload: Payload =
            serde_json::from_slice(&payload).map_err(|_| refuse("not a token this server issued"))?;
        if payload.e < now() {
            return Err(refuse("the token expired; start the listing or query again"));
        }
        if payload.b != binding {
            return Err(refuse(
                "the token belongs to another request: a follow-up page must repeat the first request's members",
            ));
        }
        Ok(payload.p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_refuses_tampering_expiry_and_other_requests() {
        let key = TokenKey::random(Duration::from_secs(60));
        let token = key.issue("ListVectors/b/i", "42");
        assert_eq!(key.redeem("nextToken", &token, "ListVectors/b/i").unwrap(), "42");
        // Another request, another server, an altered payload.
        assert!(key.redeem("nextToken", &token, "ListVectors/b/j").is_err());
        let other = TokenKey::random(Duration::from_secs(60));
        assert!(other.redeem("nextToken", &token, "ListVectors/b/i").is_err());
        let (payload, tag) = token.split_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let at = raw.iter().position(|&b| b == b'4').unwrap();
        raw[at] = b'9';
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&raw));
        let err = key.redeem("nextToken", &forged, "ListVectors/b/i").unwrap_err();
        assert!(err.message.contains("altered"), "{}", err.message);
        // An expired token (ttl 0 and a clock past it).
        let expired = TokenKey::new(vec![7; 32], Duration::ZERO);
        let t = expired.issue("x", "1");
        std::thread::sleep(Duration::from_millis(1100));
        assert!(expired
            .redeem("nextToken", &t, "x")
            .unwrap_err()
            .message
            .contains("expired"));
    }
}
