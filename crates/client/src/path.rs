//! Client-side path checks (the server checks too; this gives a clear error
//! before a round trip) and helpers.

use crate::Error;

/// Rejects what ZooKeeper's PathUtils rejects: relative paths, empty
/// segments, a trailing slash, `.`/`..` segments and NUL characters.
pub fn validate(path: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::BadArguments(format!("invalid path {path:?}: {why}")));
    if !path.starts_with('/') {
        return bad("must start with /");
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return bad("must not end with /");
    }
    for segment in path[1..].split('/') {
        match segment {
            "" => return bad("empty segment"),
            "." | ".." => return bad("relative segment"),
            s if s.contains('\0') => return bad("NUL character"),
            _ => {}
        }
    }
    Ok(())
}

/// `parent/child`.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// The parent of a path (`/` for top-level nodes).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(at) => &path[..at],
    }
}

/// The last segment of a path.
pub fn name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The 10-digit sequence suffix of a sequential node's name, if any.
pub fn sequence(name: &str) -> Option<i64> {
    let digits = name.get(name.len().checked_sub(10)?..)?;
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert!(validate("/a/b").is_ok());
        assert!(validate("/").is_ok());
        assert!(validate("a").is_err());
        assert!(validate("/a/").is_err());
        assert!(validate("/a/../b").is_err());
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(name("/a/b"), "b");
        assert_eq!(sequence("x__lock__0000000012"), Some(12));
        assert_eq!(sequence("short"), None);
    }
}
