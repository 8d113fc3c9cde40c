//! `host:port,host:port/chroot`, as every ZooKeeper client accepts it.

use crate::Error;

/// The servers to try, in order, and the chroot every path is relative to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectString {
    pub hosts: Vec<String>,
    /// `None`, or a path like `/app` (no trailing slash) prefixed to every path.
    pub chroot: Option<String>,
}

impl ConnectString {
    pub fn parse(text: &str) -> Result<ConnectString, Error> {
        let (hosts_part, chroot) = match text.find('/') {
            Some(at) => (&text[..at], Some(&text[at..])),
            None => (text, None),
        };
        let hosts: Vec<String> = hosts_part
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains(':') {
                    h.to_string()
                } else {
                    format!("{h}:2181")
                }
            })
            .collect();
        if hosts.is_empty() {
            return Err(Error::BadArguments(format!("no server in {text:?}")));
        }
        let chroot = match chroot {
            None | Some("/") => None,
            Some(path) => {
                crate::path::validate(path)?;
                Some(path.trim_end_matches('/').to_string())
            }
        };
        Ok(ConnectString { hosts, chroot })
    }

    /// The server-side path of a client path.
    pub fn server_path(&self, path: &str) -> String {
        match &self.chroot {
            None => path.to_string(),
            Some(root) if path == "/" => root.clone(),
            Some(root) => format!("{root}{path}"),
        }
    }

    /// The client-side path of a server path (unchanged outside the chroot).
    pub fn client_path(&self, path: &str) -> String {
        match &self.chroot {
            None => path.to_string(),
            Some(root) => match path.strip_prefix(root.as_str()) {
                Some("") => "/".to_string(),
                Some(rest) if rest.starts_with('/') => rest.to_string(),
                _ => path.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_default_port_and_chroot() {
        let cs = ConnectString::parse("a:1,b, c:3/app/x").unwrap();
        assert_eq!(cs.hosts, ["a:1", "b:2181", "c:3"]);
        assert_eq!(cs.chroot.as_deref(), Some("/app/x"));
        assert_eq!(cs.server_path("/"), "/app/x");
        assert_eq!(cs.server_path("/n"), "/app/x/n");
        assert_eq!(cs.client_path("/app/x/n"), "/n");
        assert_eq!(cs.client_path("/app/x"), "/");
        assert_eq!(cs.client_path("/app/xy"), "/app/xy");
        assert_eq!(ConnectString::parse("h:1/").unwrap().chroot, None);
        assert!(ConnectString::parse("/app").is_err());
        assert!(ConnectString::parse("h:1/bad/").is_err());
        assert!(ConnectString::parse("h:1/a//b").is_err());
    }
}
