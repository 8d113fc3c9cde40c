//! ACL helpers (ZooDefs.Ids and the digest scheme).

use base64::Engine;
use roost_proto::{perms, Acl};
use sha1::{Digest, Sha1};

/// `world:anyone` with every permission (ZooDefs.Ids.OPEN_ACL_UNSAFE).
pub fn open() -> Vec<Acl> {
    vec![Acl::new(perms::ALL, "world", "anyone")]
}

/// `world:anyone` read-only (ZooDefs.Ids.READ_ACL_UNSAFE).
pub fn read_only() -> Vec<Acl> {
    vec![Acl::new(perms::READ, "world", "anyone")]
}

/// Every permission for the session's authenticated identities
/// (ZooDefs.Ids.CREATOR_ALL_ACL).
pub fn creator_all() -> Vec<Acl> {
    vec![Acl::new(perms::ALL, "auth", "")]
}

/// The `digest` id for `user:password`: `user:base64(sha1(user:password))`,
/// as stored in ACLs (the session authenticates with the plain text).
pub fn digest_id(user: &str, password: &str) -> String {
    let hash = Sha1::digest(format!("{user}:{password}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn digest_matches_zookeeper() {
        // DigestAuthenticationProvider.generateDigest("super:test")
        assert_eq!(
            super::digest_id("super", "test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
    }
}
