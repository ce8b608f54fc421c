//! Index names and the URIs that may be added at run time. Names end up in
//! URLs, logs and metric labels, so only a plain, short alphabet passes;
//! URIs are checked after decoding and, for local files, after resolving.

/// Accepts names of ASCII letters, digits, `-`, `_` and `.`, at most
/// `max_len` bytes, not starting with `.` (so never `.` or `..`).
pub fn validate_name(name: &str, max_len: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > max_len {
        return Err(format!("the name is {} bytes long, the limit is {max_len}", name.len()));
    }
    if name.contains("..") {
        return Err("the name contains `..`".into());
    }
    if name.starts_with('.') {
        return Err("the name starts with `.`".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(if c.is_control() {
            format!("the name contains the control character {:?}", c)
        } else {
            format!("the name contains {c:?}; use letters, digits, `-`, `_` and `.`")
        });
    }
    Ok(())
}

/// Why a run-time URI is refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UriRefused {
    /// Not under an allowed prefix, or malformed: a 403. The message never
    /// lists the prefixes.
    #[error("{0}")]
    NotAllowed(String),
    /// A local path under an allowed prefix with nothing there: a 404.
    #[error("no file at the URI")]
    Missing,
}

/// Accepts a URI for run-time addition when it is under one of `prefixes`
/// (on a `/` boundary: `s3://b/idx` admits `s3://b/idx/a.faiss`, never
/// `s3://b/idx-private/a.faiss`), and returns the URI to open.
///
/// The check is made on what the store will read, not on the raw text:
/// - no `.` or `..` segment, encoded or not, and no encoded `/`, `\`, `.`
///   or `%` (which `file://` URLs and stores decode into path syntax);
/// - a `file://` URI or a plain path is resolved, symlinks included, and
///   must stay under the resolved prefix; the resolved path is what opens,
///   so a link swapped after the check cannot redirect it.
pub fn check_uri_allowed(uri: &str, prefixes: &[String]) -> Result<String, UriRefused> {
    let refuse = |reason: &str| Err(UriRefused::NotAllowed(reason.to_string()));
    if prefixes.is_empty() {
        return refuse("adding indexes at run time is disabled (set allowed_uri_prefixes in the config)");
    }
    if uri.chars().any(char::is_control) {
        return refuse("the URI contains control characters");
    }
    let lower = uri.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", "%25"].iter().any(|e| lower.contains(e)) {
        return refuse("the URI encodes `/`, `\\`, `.` or `%`; write them plainly");
    }
    let decoded = percent_encoding::percent_decode_str(uri).decode_utf8_lossy();
    if decoded.chars().any(char::is_control) {
        return refuse("the URI contains control characters");
    }
    let path_part = decoded.split_once("://").map_or(&*decoded, |(_, rest)| rest);
    if path_part.split(['/', '\\']).any(|seg| seg == ".." || seg == ".") {
        return refuse("the URI contains a `.` or `..` segment");
    }
    let Some(prefix) = prefixes.iter().find(|p| is_under(uri, p)) else {
        return refuse("the URI is not under an allowed prefix");
    };
    match local_path(uri) {
        None => Ok(uri.to_string()),
        Some(path) => resolve_under(&path, prefix, uri),
    }
}

/// The filesystem path of a `file://` URI or a plain path; `None` for a
/// store URI.
fn local_path(uri: &str) -> Option<std::path::PathBuf> {
    if !uri.contains("://") {
        return Some(uri.into());
    }
    let url = url::Url::parse(uri).ok()?;
    (url.scheme() == "file").then(|| url.to_file_path().ok()).flatten()
}

/// `path` with symlinks resolved, when it stays under `prefix` resolved
/// too; as a `file://` URI when `uri` was one.
fn resolve_under(path: &std::path::Path, prefix: &str, uri: &str) -> Result<String, UriRefused> {
    let not_allowed = || UriRefused::NotAllowed("the URI is not under an allowed prefix".into());
    let root = local_path(prefix)
        .and_then(|p| std::fs::canonicalize(p).ok())
        .ok_or_else(not_allowed)?;
    let resolved = std::fs::canonicalize(path).map_err(|_| UriRefused::Missing)?;
    if !resolved.starts_with(&root) {
        return Err(not_allowed());
    }
    if uri.contains("://") {
        let url = url::Url::from_file_path(&resolved).map_err(|()| not_allowed())?;
        Ok(url.to_string())
    } else {
        Ok(resolved.to_string_lossy().into_owned())
    }
}

/// Whether `uri` is `prefix` itself or inside it, on a path-segment boundary.
fn is_under(uri: &str, prefix: &str) -> bool {
    match uri.strip_prefix(prefix) {
        _ if prefix.is_empty() => false,
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["demo", "a.b-c_d", "X9"] {
            assert!(validate_name(ok, 64).is_ok(), "{ok}");
        }
        for bad in [
            "", "..", "a..b", ".hidden", "a/b", "a\\b", "a\nb", "a\u{7f}", "é", "a b",
        ] {
            assert!(validate_name(bad, 64).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"a".repeat(65), 64).is_err());
    }

    #[test]
    fn uri_prefixes() {
        let p = vec!["s3://bucket/indexes/".to_string()];
        assert!(check_uri_allowed("s3://bucket/indexes/a.faiss", &p).is_ok());
        assert!(check_uri_allowed("s3://bucket/other/a.faiss", &p).is_err());
        assert!(check_uri_allowed("s3://bucket/indexes/../secret", &p).is_err());
        assert!(check_uri_allowed("s3://bucket/indexes/%2E%2E/secret", &p).is_err());
        assert!(check_uri_allowed("s3://bucket/indexes/a.faiss", &[]).is_err());
        // Without a trailing slash the prefix still ends at a segment boundary.
        let p = vec!["s3://b/idx".to_string()];
        assert!(check_uri_allowed("s3://b/idx/a.faiss", &p).is_ok());
        assert!(check_uri_allowed("s3://b/idx", &p).is_ok());
        assert!(check_uri_allowed("s3://b/idx-private/a.faiss", &p).is_err());
        assert!(check_uri_allowed("s3://b/idx.faiss", &p).is_err());
        assert!(check_uri_allowed("s3://b/a.faiss", &["".to_string()]).is_err());
        // Encoded path syntax is refused in every scheme.
        let p = vec!["s3://bucket/indexes/".to_string()];
        for bad in [
            "s3://bucket/indexes/..%2F..%2Fsecret",
            "s3://bucket/indexes/%2e%2E/secret",
            "s3://bucket/indexes/.%2E/secret",
            "s3://bucket/indexes/%252E%252E/secret",
            "s3://bucket/indexes/./a.faiss",
            "s3://bucket/indexes/a\\..\\..\\b",
            "s3://bucket/indexes/%00a",
        ] {
            assert!(
                matches!(check_uri_allowed(bad, &p), Err(UriRefused::NotAllowed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            check_uri_allowed("s3://bucket/indexes/a%20b.faiss", &p).unwrap(),
            "s3://bucket/indexes/a%20b.faiss"
        );
    }

    /// A `file://` prefix holds against `%2F`, `%2E%2E` and `..` escapes and
    /// symlinks out of it; what is admitted opens by its resolved path.
    #[test]
    fn file_prefixes_hold_after_resolving() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("indexes");
        let secret = root.path().join("secret");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(allowed.join("a.faiss"), b"x").unwrap();
        std::fs::write(secret.join("x.index"), b"x").unwrap();
        std::os::unix::fs::symlink(&secret, allowed.join("link")).unwrap();
        std::os::unix::fs::symlink(secret.join("x.index"), allowed.join("b.faiss")).unwrap();
        let url = |p: &std::path::Path| url::Url::from_file_path(p).unwrap().to_string();
        let prefixes = vec![format!("{}/", url(&allowed))];
        let base = url(&allowed);
        for escape in [
            format!("{base}/..%2F..%2Fsecret%2Fx.index"),
            format!("{base}/%2E%2E/secret/x.index"),
            format!("{base}/../secret/x.index"),
            format!("{base}/link/x.index"),
            format!("{base}/b.faiss"),
        ] {
            assert!(
                matches!(check_uri_allowed(&escape, &prefixes), Err(UriRefused::NotAllowed(_))),
                "{escape}"
            );
        }
        let ok = check_uri_allowed(&format!("{base}/a.faiss"), &prefixes).unwrap();
        assert_eq!(ok, url(&allowed.canonicalize().unwrap().join("a.faiss")));
        assert!(matches!(
            check_uri_allowed(&format!("{base}/none.faiss"), &prefixes),
            Err(UriRefused::Missing)
        ));
        // Plain paths are resolved the same way.
        let plain = vec![format!("{}/", allowed.display())];
        assert!(check_uri_allowed(&format!("{}/a.faiss", allowed.display()), &plain).is_ok());
        assert!(matches!(
            check_uri_allowed(&format!("{}/link/x.index", allowed.display()), &plain),
            Err(UriRefused::NotAllowed(_))
        ));
    }
}
