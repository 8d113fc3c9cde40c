//! The ensemble's membership as ZooKeeper writes it in `/zookeeper/config`
//! and in zoo.cfg: `server.N=host:peerPort:electionPort[:role][;client]`
//! lines, then `version=<hex>`. One parser and one renderer for the config
//! file, the config node and `reconfig`, so all three agree byte for byte.

use std::collections::BTreeMap;

use roost_proto::{ErrorCode, ReconfigRequest};

/// One server of the ensemble (a `server.N=...` line's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub id: u64,
    pub host: String,
    pub peer_port: u16,
    pub election_port: u16,
    /// Observers replicate and serve, never vote.
    pub observer: bool,
    /// `host:port` of its client port, if given (a bare port means `0.0.0.0`).
    pub client_address: Option<String>,
}

impl ServerSpec {
    /// Reads `host:peerPort:electionPort[:observer|:participant][;[host:]clientPort]`.
    pub fn parse(id: u64, spec: &str) -> Result<ServerSpec, String> {
        let mut halves = spec.splitn(2, ';');
        let address = halves.next().unwrap_or_default().trim();
        let client_address = match halves.next().map(str::trim) {
            None | Some("") => None,
            Some(client) => Some(parse_client(client)?),
        };
        let (host, rest) = split_host(address)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (ports, role) = match parts.as_slice() {
            [peer, election] => ((*peer, *election), None),
            [peer, election, role] => ((*peer, *election), Some(role.trim())),
            _ => return Err("expected host:peerPort:electionPort[:observer|:participant]".into()),
        };
        let observer = match role.map(str::to_ascii_lowercase).as_deref() {
            None | Some("participant") => false,
            Some("observer") => true,
            Some(other) => return Err(format!("unknown role {other:?}")),
        };
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port"))
        };
        let (peer_port, election_port) = (port(ports.0)?, port(ports.1)?);
        if peer_port == election_port {
            return Err("the peer and election ports must differ".into());
        }
        Ok(ServerSpec {
            id,
            host: host.to_string(),
            peer_port,
            election_port,
            observer,
            client_address,
        })
    }

    /// `host:peerPort`, where peers reach this server.
    pub fn peer_address(&self) -> String {
        format!("{}:{}", bracketed(&self.host), self.peer_port)
    }

    /// The line's value as ZooKeeper writes it (role always spelled out).
    pub fn render(&self) -> String {
        let role = if self.observer {
            "observer"
        } else {
            "participant"
        };
        let mut out = format!(
            "{}:{}:{}:{role}",
            bracketed(&self.host),
            self.peer_port,
            self.election_port
        );
        if let Some(client) = &self.client_address {
            out.push(';');
            out.push_str(client);
        }
        out
    }

    fn same_address_as(&self, other: &ServerSpec) -> bool {
        let ports = [self.peer_port, self.election_port];
        self.host == other.host
            && (ports.contains(&other.peer_port) || ports.contains(&other.election_port))
    }
}

/// `[v6]:rest` or `host:rest`.
fn split_host(address: &str) -> Result<(&str, &str), String> {
    if let Some(v6) = address.strip_prefix('[') {
        let (host, rest) = v6.split_once("]:").ok_or("unterminated [ in the host")?;
        return Ok((host, rest));
    }
    address
        .split_once(':')
        .ok_or_else(|| "expected host:peerPort:electionPort".to_string())
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `port` or `host:port`, as `host:port` (ZooKeeper's default host: 0.0.0.0).
fn parse_client(client: &str) -> Result<String, String> {
    let (host, port) = match client.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (host.trim(), port),
        _ => ("0.0.0.0", client),
    };
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| format!("{port:?} is not a client port"))?;
    Ok(format!("{host}:{port}"))
}

/// The whole membership and its version (the zxid of the reconfig that made
/// it; 0 for the configuration read from zoo.cfg).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumConfig {
    pub servers: BTreeMap<u64, ServerSpec>,
    pub version: i64,
}

impl QuorumConfig {
    pub fn new(servers: impl IntoIterator<Item = ServerSpec>, version: i64) -> Self {
        QuorumConfig {
            servers: servers.into_iter().map(|s| (s.id, s)).collect(),
            version,
        }
    }

    /// Reads `/zookeeper/config`'s text; `None` if it is not one.
    pub fn parse(text: &str) -> Option<QuorumConfig> {
        let mut config = QuorumConfig::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=')?;
            if key == "version" {
                config.version = i64::from_str_radix(value.trim(), 16).ok()?;
            } else {
                let id = key.strip_prefix("server.")?.parse().ok()?;
                config
                    .servers
                    .insert(id, ServerSpec::parse(id, value).ok()?);
            }
        }
        Some(config)
    }

    /// As ZooKeeper writes it: one line per server by id, then the version in hex.
    pub fn render(&self) -> String {
        let mut text = self.render_servers();
        text.push_str(&format!("version={:x}", self.version));
        text
    }

    /// The server lines alone (a dynamic config file: its name holds the version).
    pub fn render_servers(&self) -> String {
        self.servers
            .values()
            .map(|server| format!("server.{}={}\n", server.id, server.render()))
            .collect()
    }

    pub fn voters(&self) -> impl Iterator<Item = &ServerSpec> {
        self.servers.values().filter(|s| !s.observer)
    }

    pub fn observers(&self) -> impl Iterator<Item = &ServerSpec> {
        self.servers.values().filter(|s| s.observer)
    }

    /// The membership `request` asks for, checked as ZooKeeper's
    /// `PrepRequestProcessor` does (without its quorum and ACL checks, which
    /// need the leader and the caller): BadVersion for a stale `fromConfig`,
    /// BadArguments for a malformed or unusable membership, MarshallingError
    /// for an id that is not a number (ZooKeeper fails to parse it).
    pub fn reconfigured(&self, request: &ReconfigRequest) -> Result<QuorumConfig, ErrorCode> {
        if request.cur_config_id != -1 && request.cur_config_id != self.version {
            return Err(ErrorCode::BadVersion);
        }
        let next = match &request.new_members {
            Some(members) => Self::bulk(members)?,
            None => self.incremental(
                request.joining_servers.as_deref(),
                request.leaving_servers.as_deref(),
            )?,
        };
        // As ZooKeeper with standaloneEnabled (its default): an ensemble
        // keeps at least two voters.
        if next.voters().count() < 2 {
            return Err(ErrorCode::BadArguments);
        }
        Ok(next)
    }

    fn incremental(
        &self,
        joining: Option<&str>,
        leaving: Option<&str>,
    ) -> Result<QuorumConfig, ErrorCode> {
        let mut servers = self.servers.clone();
        for id in list(leaving) {
            let id: u64 = id.parse().map_err(|_| ErrorCode::MarshallingError)?;
            servers.remove(&id);
        }
        for joiner in list(joining) {
            let (key, spec) = match joiner.split('=').collect::<Vec<_>>().as_slice() {
                [key, spec] => (key.trim(), spec.trim()),
                _ => return Err(ErrorCode::BadArguments),
            };
            let id: u64 = key[key.rfind('.').map_or(0, |i| i + 1)..]
                .parse()
                .map_err(|_| ErrorCode::MarshallingError)?;
            let server = ServerSpec::parse(id, spec).map_err(|_| ErrorCode::BadArguments)?;
            // A joiner names its client port too (ZooKeeper: "at least 3 ports").
            if server.client_address.is_none() {
                return Err(ErrorCode::BadArguments);
            }
            if servers
                .values()
                .any(|other| other.id != id && server.same_address_as(other))
            {
                return Err(ErrorCode::BadArguments);
            }
            servers.insert(id, server);
        }
        Ok(QuorumConfig {
            servers,
            version: self.version,
        })
    }

    /// A whole new membership: `server.N=spec` entries separated by commas or newlines.
    fn bulk(members: &str) -> Result<QuorumConfig, ErrorCode> {
        let mut servers = BTreeMap::new();
        for entry in members.split([',', '\n']).map(str::trim) {
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let (key, value) = entry
                .split_once(['=', ':'])
                .ok_or(ErrorCode::BadArguments)?;
            let key = key.trim();
            if key == "version" {
                continue;
            }
            let id = key
                .strip_prefix("server.")
                .ok_or(ErrorCode::BadArguments)?
                .parse::<u64>()
                .map_err(|_| ErrorCode::MarshallingError)?;
            let server = ServerSpec::parse(id, value).map_err(|_| ErrorCode::BadArguments)?;
            servers.insert(id, server);
        }
        Ok(QuorumConfig {
            servers,
            version: 0,
        })
    }
}

/// ZooKeeper's `StringUtils.split(s, ",")`: trimmed, empty parts dropped.
fn list(value: Option<&str>) -> impl Iterator<Item = &str> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> QuorumConfig {
        QuorumConfig::parse(
            "server.1=127.0.0.1:2888:3888:participant;0.0.0.0:2181\n\
             server.2=127.0.0.1:2889:3889:participant;0.0.0.0:2182\n\
             server.3=127.0.0.1:2890:3890:participant;0.0.0.0:2183\n\
             version=0",
        )
        .unwrap()
    }

    fn request(joining: Option<&str>, leaving: Option<&str>, new: Option<&str>) -> ReconfigRequest {
        ReconfigRequest {
            joining_servers: joining.map(Into::into),
            leaving_servers: leaving.map(Into::into),
            new_members: new.map(Into::into),
            cur_config_id: -1,
        }
    }

    #[test]
    fn specs_render_as_zookeeper_writes_them() {
        let spec = ServerSpec::parse(100, "0.0.0.0:1234:2345:observer;3456").unwrap();
        assert_eq!(spec.render(), "0.0.0.0:1234:2345:observer;0.0.0.0:3456");
        let spec = ServerSpec::parse(1, "[::1]:2888:3888;localhost:2181").unwrap();
        assert_eq!(spec.render(), "[::1]:2888:3888:participant;localhost:2181");
        assert_eq!(spec.peer_address(), "[::1]:2888");
        assert!(ServerSpec::parse(1, "h:1:1").is_err());
        assert!(ServerSpec::parse(1, "h:1:2:leader").is_err());
        assert_eq!(three().render().lines().count(), 4);
        assert_eq!(QuorumConfig::parse(&three().render()), Some(three()));
    }

    #[test]
    fn incremental_changes_add_replace_and_remove() {
        let joined = three()
            .reconfigured(&request(
                Some(
                    "server.4=127.0.0.1:2891:3891:observer;2184, server.5=127.0.0.1:2892:3892;2185",
                ),
                Some("3"),
                None,
            ))
            .unwrap();
        let ids: Vec<_> = joined.servers.keys().copied().collect();
        assert_eq!(ids, [1, 2, 4, 5]);
        assert!(joined.servers[&4].observer && !joined.servers[&5].observer);
        // A participant becomes an observer by joining again with that role.
        let demoted = joined
            .reconfigured(&request(
                Some("server.5=127.0.0.1:2892:3892:observer;2185"),
                None,
                None,
            ))
            .unwrap();
        assert!(demoted.servers[&5].observer);
        // Only one voter would be left.
        assert_eq!(
            demoted.reconfigured(&request(None, Some("2"), None)),
            Err(ErrorCode::BadArguments)
        );
    }

    #[test]
    fn bad_requests_get_zookeepers_codes() {
        let config = three();
        let bad = |joining, leaving| config.reconfigured(&request(joining, leaving, None));
        assert_eq!(bad(Some("some thing"), None), Err(ErrorCode::BadArguments));
        assert_eq!(
            bad(Some("server.4=h:1:2"), None),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            bad(Some("server.4=127.0.0.1:2888:3999;2184"), None),
            Err(ErrorCode::BadArguments),
            "a port another server uses"
        );
        assert_eq!(
            bad(Some("server.x=h:1:2;3"), None),
            Err(ErrorCode::MarshallingError)
        );
        assert_eq!(bad(None, Some("x")), Err(ErrorCode::MarshallingError));
        let stale = ReconfigRequest {
            cur_config_id: 7,
            ..request(None, Some("3"), None)
        };
        assert_eq!(config.reconfigured(&stale), Err(ErrorCode::BadVersion));
    }

    #[test]
    fn a_bulk_change_replaces_the_membership() {
        let next = three()
            .reconfigured(&request(
                None,
                None,
                Some("server.1=127.0.0.1:2888:3888;2181,server.5=127.0.0.1:2895:3895;2185"),
            ))
            .unwrap();
        let ids: Vec<_> = next.servers.keys().copied().collect();
        assert_eq!(ids, [1, 5]);
        assert_eq!(
            three().reconfigured(&request(
                None,
                None,
                Some("server.1=127.0.0.1:2888:3888;2181")
            )),
            Err(ErrorCode::BadArguments)
        );
    }
}
