//! The `[vectors]` settings: the Amazon S3 Vectors API (`crate::vectors`)
//! over a root prefix, its access keys, and how its indexes are built.

use serde::Deserialize;

use super::Secret;

/// Where the S3 Vectors API keeps its buckets, and how it runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VectorsConfig {
    /// The root prefix (`s3://bucket/prefix`, `file:///…` or a directory)
    /// under which each vector bucket is a prefix. Unset: the API is off.
    pub root: Option<String>,
    /// The region and account in ARNs.
    pub region: String,
    pub account: String,
    /// Verify SigV4 signatures. False (`--no-auth`) accepts unsigned
    /// requests and gives every request the admin scope: local use only.
    pub auth: bool,
    /// Access keys whose signatures are accepted.
    pub access_keys: Vec<AccessKeyConfig>,
    /// How far a request's `x-amz-date` may be from the server's clock.
    pub clock_skew_s: u64,
    /// The variable holding the key pagination tokens are signed with;
    /// replicas sharing it accept each other's tokens. Unset or empty: a
    /// random key per process.
    pub token_key_env: String,
    /// How long a pagination token is good for.
    pub token_ttl_s: u64,
    /// `auto`, or the Faiss factory every index trains at its first
    /// compaction. `auto`: `IVF{n},{codec}` with n the power of two nearest
    /// 4·√(vectors), at most vectors/39, at least 1.
    pub factory: String,
    /// The codec `auto` builds: `auto` is `Flat` up to 32 dimensions (a
    /// vector is at most 128 bytes: exact, and a list's fetch costs its
    /// round trip, not its bytes) and `SQ8` above (4× smaller, recall close
    /// to exact); or one of Faiss's, e.g. `PQ32x4fs`.
    pub codec: String,
    /// Lists a query probes; 0: nlist/8, at least 16 (all lists below that).
    pub nprobe: usize,
    /// An index compacts in the background once this many written vectors
    /// are unindexed; 0 never.
    pub compact_unindexed_entries: u64,
    /// Indexes held open at once (headers in memory); the least recently
    /// used is closed past it.
    pub max_open_indexes: u64,
    /// Metadata columns an index may grow (each filterable key, per value type).
    pub max_metadata_columns: usize,
    /// How stale another replica's writes may be in a query, in ms.
    pub staleness_ms: u64,
    /// Euclidean indexes return the squared L2 distance (Faiss's own, and
    /// what S3 Vectors is reported to return; AWS documents no formula);
    /// false returns the L2 distance.
    pub euclidean_squared: bool,
}

/// One access key: the id, its scope, and the variable holding its secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    pub id: String,
    /// `admin` (everything), `write` (vectors in and out) or `search` (reads).
    #[serde(default = "admin")]
    pub scope: String,
    /// The environment variable holding the secret (never the secret itself).
    pub secret_env: String,
    #[serde(skip)]
    pub secret: Option<Secret>,
}

fn admin() -> String {
    "admin".into()
}

/// The variables an access key is read from when none is configured.
pub const DEFAULT_KEY_ID_ENV: &str = "IVFLAKE_VECTORS_ACCESS_KEY_ID";
pub const DEFAULT_SECRET_ENV: &str = "IVFLAKE_VECTORS_SECRET_ACCESS_KEY";

impl Default for VectorsConfig {
    fn default() -> Self {
        Self {
            root: None,
            region: "us-east-1".into(),
            account: "000000000000".into(),
            auth: true,
            access_keys: Vec::new(),
            clock_skew_s: 300,
            token_key_env: "IVFLAKE_VECTORS_TOKEN_KEY".into(),
            token_ttl_s: 3600,
            factory: "auto".into(),
            codec: "auto".into(),
            nprobe: 0,
            compact_unindexed_entries: 100_000,
            max_open_indexes: 256,
            max_metadata_columns: 1024,
            staleness_ms: 1000,
            euclidean_squared: true,
        }
    }
}

impl VectorsConfig {
    /// Reads each access key's secret from its variable; with none
    /// configured, one admin key from the default variables.
    pub fn resolve_env(&mut self) {
        if self.access_keys.is_empty() {
            if let Ok(id) = std::env::var(DEFAULT_KEY_ID_ENV) {
                self.access_keys.push(AccessKeyConfig {
                    id,
                    scope: admin(),
                    secret_env: DEFAULT_SECRET_ENV.into(),
                    secret: None,
                });
            }
        }
        for key in &mut self.access_keys {
            if key.secret.is_none() {
                if let Ok(s) = std::env::var(&key.secret_env) {
                    let s = s.trim();
                    if !s.is_empty() {
                        key.secret = Some(Secret::new(s));
                    }
                }
            }
        }
    }

    /// Every error names its key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let Some(root) = &self.root else { return Ok(()) };
        if root.is_empty() {
            return Err(("vectors.root".into(), "must not be empty".into()));
        }
        if self.auth && self.access_keys.is_empty() {
            return Err((
                "vectors.access_keys".into(),
                format!(
                    "the S3 Vectors API verifies signatures and no access key is configured: add \
                     [[vectors.access_keys]], set {DEFAULT_KEY_ID_ENV} and {DEFAULT_SECRET_ENV}, or turn auth off \
                     (--no-auth, local use only)"
                ),
            ));
        }
        for (i, key) in self.access_keys.iter().enumerate() {
            if !matches!(key.scope.as_str(), "admin" | "write" | "search") {
                return Err((
                    format!("vectors.access_keys[{i}].scope"),
                    format!("must be admin, write or search, got {:?}", key.scope),
                ));
            }
            if self.auth && key.secret.is_none() {
                return Err((
                    format!("vectors.access_keys[{i}].secret_env"),
                    format!("the variable {} holds no secret", key.secret_env),
                ));
            }
        }
        if self.account.len() != 12 || !self.account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(("vectors.account".into(), "must be 12 digits".into()));
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(("vectors.region".into(), "must be a-z, 0-9 and '-'".into()));
        }
        if self.token_ttl_s == 0 {
            return Err(("vectors.token_ttl_s".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    /// The factory an index of `d` dimensions with `n` vectors trains.
    pub fn factory_for(&self, d: usize, n: u64) -> String {
        if self.factory != "auto" {
            return self.factory.clone();
        }
        let target = 4.0 * (n as f64).sqrt();
        let mut nlist = 1u64;
        while (nlist * 2) as f64 <= target * std::f64::consts::SQRT_2 {
            nlist *= 2;
        }
        let nlist = nlist.min((n / 39).max(1)).max(1);
        // The largest power of two under the cap.
        let nlist = 1u64 << (63 - nlist.leading_zeros());
        let codec = match self.codec.as_str() {
            "auto" if d <= 32 => "Flat",
            "auto" => "SQ8",
            other => other,
        };
        format!("IVF{nlist},{codec}")
    }

    /// The lists a query of an index with `nlist` lists probes.
    pub fn nprobe_for(&self, nlist: usize) -> usize {
        if self.nprobe > 0 {
            return self.nprobe.min(nlist.max(1));
        }
        (nlist / 8).max(16).min(nlist.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_factory_follows_the_vector_count() {
        let c = VectorsConfig::default();
        assert_eq!(c.factory_for(64, 20_000), "IVF512,SQ8");
        assert_eq!(c.factory_for(768, 1_000_000), "IVF4096,SQ8");
        assert_eq!(c.factory_for(16, 100), "IVF2,Flat");
        assert_eq!(c.factory_for(64, 10), "IVF1,SQ8");
        assert_eq!(c.nprobe_for(512), 64);
        assert_eq!(c.nprobe_for(8), 8);
    }
}
