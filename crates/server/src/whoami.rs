//! whoAmI's answer: the caller's identities, in the order ZooKeeper lists
//! them (it iterates a Java `ConcurrentHashMap`, so clients see that order).

use roost_core::acl;
use roost_proto::{ClientInfo, Id};

/// whoAmI's list, in the order ZooKeeper iterates its identity set (a Java
/// `ConcurrentHashMap` of 16 bins keyed by `Id.hashCode`).
pub(crate) fn client_infos(identities: &[Id]) -> Vec<ClientInfo> {
    let mut ordered: Vec<(usize, usize, &Id)> = identities
        .iter()
        .enumerate()
        .map(|(i, id)| (java_set_bin(id), i, id))
        .collect();
    ordered.sort_by_key(|(bin, insertion, _)| (*bin, *insertion));
    ordered
        .into_iter()
        .map(|(_, _, id)| ClientInfo {
            auth_scheme: id.scheme.clone(),
            user: acl::user_name(id),
        })
        .collect()
}

fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32))
}

fn java_set_bin(id: &Id) -> usize {
    let hash = 37i32
        .wrapping_mul(
            37i32
                .wrapping_mul(17)
                .wrapping_add(java_string_hash(&id.scheme)),
        )
        .wrapping_add(java_string_hash(&id.id));
    let spread = (hash ^ ((hash as u32) >> 16) as i32) & 0x7fff_ffff;
    (spread & 15) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whoami_order_matches_zookeeper() {
        // From the wire corpus: digest before ip for bob:pw from 127.0.0.1.
        let ids = vec![
            Id::new("ip", "127.0.0.1"),
            Id::new("digest", acl::digest_id(b"bob:pw")),
        ];
        let infos = client_infos(&ids);
        assert_eq!(infos[0].auth_scheme, "digest");
        assert_eq!(infos[0].user, "bob");
        assert_eq!(infos[1].user, "127.0.0.1");
        let ids = vec![
            Id::new("ip", "127.0.0.1"),
            Id::new("digest", acl::digest_id(b"no-colon-here")),
        ];
        assert_eq!(client_infos(&ids)[0].user, "no-colon-here");
    }

    #[test]
    fn java_string_hash_matches_known_values() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
    }
}
