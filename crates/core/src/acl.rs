//! Access control: ZooKeeper's schemes (world, auth, digest, ip, super), the
//! permission check, and the "fixup" that validates and expands ACLs on create
//! and setACL.
//!
//! A caller is described by its identities (`Id`s): `ip:<address>` from the
//! connection, `digest:<user>:<hash>` per successful digest auth, and `super:`
//! when the credentials match the configured super digest. Identities are
//! decided by the server that holds the connection and travel in each log
//! entry, so every replica checks ACLs the same way.

use base64::Engine;
use roost_proto::{perms, Acl, ErrorCode, Id};
use sha1::{Digest, Sha1};
use std::borrow::Cow;

/// `world:anyone` with every permission (`ZooDefs.Ids.OPEN_ACL_UNSAFE`).
pub fn open_acl() -> Vec<Acl> {
    vec![Acl::new(perms::ALL, "world", "anyone")]
}

/// `world:anyone` read-only (`ZooDefs.Ids.READ_ACL_UNSAFE`).
pub fn read_acl() -> Vec<Acl> {
    vec![Acl::new(perms::READ, "world", "anyone")]
}

/// Whether identities `ids` are granted `perm` by `acl`. An empty ACL grants
/// everything, and a `super` identity passes every check (as in ZooKeeper).
pub fn is_allowed(acl: &[Acl], perm: i32, ids: &[Id]) -> bool {
    if acl.is_empty() || ids.iter().any(|id| id.scheme == "super") {
        return true;
    }
    acl.iter().filter(|a| a.perms & perm != 0).any(|a| {
        (a.id.scheme == "world" && a.id.id == "anyone")
            || ids
                .iter()
                .filter(|caller| caller.scheme == a.id.scheme)
                .any(|caller| matches(&a.id.scheme, &caller.id, &a.id.id))
    })
}

/// `Ok` when allowed, else NoAuth.
pub fn check(acl: &[Acl], perm: i32, ids: &[Id]) -> Result<(), ErrorCode> {
    if is_allowed(acl, perm, ids) {
        Ok(())
    } else {
        Err(ErrorCode::NoAuth)
    }
}

/// Whether a caller identity `id` matches an ACL expression of `scheme`.
fn matches(scheme: &str, id: &str, expr: &str) -> bool {
    match scheme {
        "digest" => id == expr,
        "ip" => ip_matches(id, expr),
        _ => false,
    }
}

/// Whether a scheme authenticates users (ZooKeeper's `isAuthenticated`):
/// only such identities replace the `auth` pseudo-scheme.
fn is_authenticated_scheme(scheme: &str) -> bool {
    scheme == "digest"
}

/// Validates an ACL for create/setACL and expands `auth` entries into the
/// caller's authenticated identities (`PrepRequestProcessor.fixupACL`).
pub fn fixup<'a>(acl: &'a [Acl], ids: &[Id]) -> Result<Cow<'a, [Acl]>, ErrorCode> {
    // Almost every create carries a valid list with no duplicates and no
    // `auth` entry: it is used as it came, with no copy.
    let distinct = acl.iter().enumerate().all(|(i, a)| !acl[..i].contains(a));
    if !acl.is_empty() && distinct && acl.iter().all(is_valid_as_given) {
        return Ok(Cow::Borrowed(acl));
    }
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    if unique.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::with_capacity(unique.len());
    for a in unique {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => out.push(a.clone()),
            "auth" => {
                let mut any = false;
                for caller in ids.iter().filter(|i| is_authenticated_scheme(&i.scheme)) {
                    any = true;
                    out.push(Acl {
                        perms: a.perms,
                        id: caller.clone(),
                    });
                }
                if !any {
                    return Err(ErrorCode::InvalidAcl);
                }
            }
            "digest" if is_valid_digest_id(&a.id.id) => out.push(a.clone()),
            "ip" if is_valid_ip_expr(&a.id.id) => out.push(a.clone()),
            _ => return Err(ErrorCode::InvalidAcl),
        }
    }
    Ok(Cow::Owned(out))
}

/// Whether an entry is kept as it is (not `auth`, which names the caller).
fn is_valid_as_given(a: &Acl) -> bool {
    match a.id.scheme.as_str() {
        "world" => a.id.id == "anyone",
        "digest" => is_valid_digest_id(&a.id.id),
        "ip" => is_valid_ip_expr(&a.id.id),
        _ => false,
    }
}

/// Java's `id.split(":").length == 2`: trailing empty parts are dropped first.
fn is_valid_digest_id(id: &str) -> bool {
    id.trim_end_matches(':').split(':').count() == 2
}

/// The digest identity for `user:password` credentials: `user:base64(sha1(credentials))`.
pub fn digest_id(credentials: &[u8]) -> String {
    let text = String::from_utf8_lossy(credentials);
    let user = text.split(':').next().unwrap_or_default();
    let hash = Sha1::digest(text.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The identities a digest auth packet adds: `super:` first when the digest
/// equals the configured super digest, then the digest identity itself.
pub fn digest_identities(credentials: &[u8], super_digest: Option<&str>) -> Vec<Id> {
    let digest = digest_id(credentials);
    let mut ids = Vec::with_capacity(2);
    if super_digest == Some(digest.as_str()) {
        ids.push(Id::new("super", ""));
    }
    ids.push(Id::new("digest", digest));
    ids
}

/// The user name whoAmI reports for an identity.
pub fn user_name(id: &Id) -> String {
    match id.scheme.as_str() {
        "digest" => id.id.split(':').next().unwrap_or_default().to_string(),
        _ => id.id.clone(),
    }
}

/// Parses an address the way ZooKeeper's IP provider does: dotted IPv4
/// (decimal parts, leading zeros allowed) or IPv6.
fn parse_addr(addr: &str) -> Option<Vec<u8>> {
    if addr.contains(':') {
        return addr
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|a| a.octets().to_vec());
    }
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    parts
        .iter()
        .map(|p| p.parse::<u16>().ok().filter(|v| *v <= 255).map(|v| v as u8))
        .collect()
}

/// Parses `address[/bits]` into the address bytes and the prefix length.
fn parse_ip_expr(expr: &str) -> Option<(Vec<u8>, usize)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (expr, None),
    };
    let bytes = parse_addr(addr)?;
    let max_bits = bytes.len() * 8;
    let bits = match bits {
        Some(b) => b.parse::<usize>().ok().filter(|b| *b <= max_bits)?,
        None => max_bits,
    };
    Some((bytes, bits))
}

fn is_valid_ip_expr(expr: &str) -> bool {
    parse_ip_expr(expr).is_some()
}

fn masked(mut bytes: Vec<u8>, bits: usize) -> Vec<u8> {
    for (i, b) in bytes.iter_mut().enumerate() {
        let keep = bits.saturating_sub(i * 8).min(8);
        *b &= (0xffu16 << (8 - keep)) as u8;
    }
    bytes
}

fn ip_matches(client: &str, expr: &str) -> bool {
    let Some((acl_addr, bits)) = parse_ip_expr(expr) else {
        return false;
    };
    let Some(client_addr) = parse_addr(client) else {
        return false;
    };
    client_addr.len() == acl_addr.len() && masked(client_addr, bits) == masked(acl_addr, bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[(&str, &str)]) -> Vec<Id> {
        list.iter().map(|(s, i)| Id::new(*s, *i)).collect()
    }

    #[test]
    fn digest_matches_zookeeper_generate_digest() {
        // Documented example: super:admin hashes to this (ZooKeeper admin guide).
        assert_eq!(
            digest_id(b"super:admin"),
            "super:xQJmxLMiHGwaqBvst5y6rkB6HQs="
        );
        assert_eq!(
            digest_id(b"no-colon-here").split(':').next(),
            Some("no-colon-here")
        );
    }

    #[test]
    fn world_digest_ip_and_super_checks() {
        let acl = vec![
            Acl::new(perms::READ, "world", "anyone"),
            Acl::new(perms::ALL, "digest", "bob:hash"),
            Acl::new(perms::WRITE, "ip", "10.1.0.0/16"),
        ];
        let anon = ids(&[("ip", "127.0.0.1")]);
        assert!(is_allowed(&acl, perms::READ, &anon));
        assert!(!is_allowed(&acl, perms::WRITE, &anon));
        assert!(is_allowed(
            &acl,
            perms::WRITE,
            &ids(&[("ip", "10.1.200.3")])
        ));
        assert!(!is_allowed(&acl, perms::WRITE, &ids(&[("ip", "10.2.0.1")])));
        assert!(is_allowed(
            &acl,
            perms::ADMIN,
            &ids(&[("digest", "bob:hash")])
        ));
        assert!(is_allowed(&acl, perms::ADMIN, &ids(&[("super", "")])));
        assert!(is_allowed(&[], perms::ADMIN, &anon));
    }

    #[test]
    fn fixup_expands_auth_and_rejects_invalid() {
        let caller = ids(&[("ip", "127.0.0.1"), ("digest", "bob:h")]);
        let auth = [Acl::new(31, "auth", "")];
        let out = fixup(&auth, &caller).unwrap();
        assert_eq!(*out, [Acl::new(31, "digest", "bob:h")]);
        // A valid list with no auth entry is used as given; duplicates go.
        let open = [Acl::new(31, "world", "anyone")];
        assert!(matches!(fixup(&open, &caller), Ok(Cow::Borrowed(_))));
        let twice = [open[0].clone(), open[0].clone()];
        assert_eq!(*fixup(&twice, &caller).unwrap(), open);
        let anon = ids(&[("ip", "127.0.0.1")]);
        assert_eq!(
            fixup(&[Acl::new(31, "auth", "")], &anon),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(fixup(&[], &anon), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup(&[Acl::new(31, "world", "x")], &anon),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup(&[Acl::new(31, "digest", "nocolon")], &anon),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup(&[Acl::new(31, "ip", "1.2.3.4/33")], &anon),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup(&[Acl::new(31, "bogus", "x")], &anon),
            Err(ErrorCode::InvalidAcl)
        );
        let dup = vec![
            Acl::new(31, "world", "anyone"),
            Acl::new(31, "world", "anyone"),
        ];
        assert_eq!(fixup(&dup, &anon).unwrap().len(), 1);
    }

    #[test]
    fn super_digest_adds_super_identity() {
        let sup = digest_id(b"super:admin");
        let got = digest_identities(b"super:admin", Some(&sup));
        assert_eq!(got[0], Id::new("super", ""));
        assert_eq!(got[1], Id::new("digest", sup));
    }
}
