//! Index names and the URIs that may be added at run time. Names end up in
//! URLs, logs and metric labels, so only a plain, short alphabet passes.

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

/// Accepts a URI for run-time addition when it is under one of `prefixes`
/// (on a `/` boundary: `s3://b/idx` admits `s3://b/idx/a.faiss`, never
/// `s3://b/idx-private/a.faiss`) and has no `..` segment that could climb out.
pub fn check_uri_allowed(uri: &str, prefixes: &[String]) -> Result<(), String> {
    if prefixes.is_empty() {
        return Err("adding indexes at run time is disabled (set allowed_uri_prefixes in the config)".into());
    }
    if uri.chars().any(char::is_control) {
        return Err("the URI contains control characters".into());
    }
    let lower = uri.to_ascii_lowercase();
    let encoded_dots = ["%2e%2e", ".%2e", "%2e."].iter().any(|d| lower.contains(d));
    if encoded_dots || lower.split(['/', '\\']).any(|seg| seg == "..") {
        return Err("the URI contains a `..` segment".into());
    }
    if !prefixes.iter().any(|p| is_under(uri, p)) {
        return Err(format!(
            "the URI is not under an allowed prefix ({})",
            prefixes.join(", ")
        ));
    }
    Ok(())
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
    }
}
