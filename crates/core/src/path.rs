//! Znode paths: ZooKeeper's validation rules and parent/child splitting.
//!
//! The root is `/`. A path's parent is everything before its last `/`, with
//! `""` standing for the root as in ZooKeeper (so `/a` has parent `/`).

/// The paths ZooKeeper reserves for itself; deleting them is BadArguments.
pub const ZOOKEEPER: &str = "/zookeeper";
pub const QUOTA: &str = "/zookeeper/quota";
pub const CONFIG: &str = "/zookeeper/config";

/// Whether `path` is one of the nodes that always exist and may not be deleted.
pub fn is_special(path: &str) -> bool {
    matches!(path, "/" | ZOOKEEPER | QUOTA | CONFIG)
}

/// ZooKeeper's `PathUtils.validatePath`: absolute, no empty or relative
/// segments, no trailing slash (except the root), no control or private-use
/// characters.
pub fn is_valid(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    if path.len() == 1 {
        return true;
    }
    if bytes.last() == Some(&b'/') {
        return false;
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return false;
        }
    }
    !path.chars().any(is_forbidden_char)
}

/// Characters `PathUtils` rejects. Java compares UTF-16 units: surrogates
/// (U+D800..U+DFFF) stand for every character outside the BMP, so those are
/// refused too, as are U+E000..U+F8FF and U+FFF0..U+FFFF.
fn is_forbidden_char(c: char) -> bool {
    let c = c as u32;
    c == 0
        || (0x01..=0x1f).contains(&c)
        || (0x7f..=0x9f).contains(&c)
        || (0xd800..=0xf8ff).contains(&c)
        || (0xfff0..=0xffff).contains(&c)
        || c > 0xffff
}

/// Splits `path` at its last `/` into (parent, child name). The root's
/// children have parent `/`. `None` when there is no `/` at all.
pub fn split(path: &str) -> Option<(&str, &str)> {
    let slash = path.rfind('/')?;
    let parent = if slash == 0 { "/" } else { &path[..slash] };
    Some((parent, &path[slash + 1..]))
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// `path` and each of its ancestors up to the root, nearest first.
pub fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = if current == "/" || current.is_empty() {
            None
        } else {
            split(current).map(|(parent, _)| parent)
        };
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_path_utils() {
        for ok in [
            "/",
            "/a",
            "/a/b",
            "/a.b",
            "/..a",
            "/a/...",
            "/zoo keeper",
            "/ünï",
        ] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "//",
            "/a/",
            "/a//b",
            "/.",
            "/..",
            "/a/./b",
            "/a/../b",
            "/a\0b",
            "/a\u{1}",
            "/\u{7f}",
            "/\u{e000}",
            "/\u{1f600}",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn split_and_ancestors() {
        assert_eq!(split("/a"), Some(("/", "a")));
        assert_eq!(split("/a/b"), Some(("/a", "b")));
        assert_eq!(split("/a/"), Some(("/a", "")));
        assert_eq!(split("rel"), None);
        let chain: Vec<_> = self_and_ancestors("/a/b/c").collect();
        assert_eq!(chain, ["/a/b/c", "/a/b", "/a", "/"]);
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/a", "x"), "/a/x");
    }
}
