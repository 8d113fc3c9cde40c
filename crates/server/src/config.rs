//! Server configuration in ZooKeeper's `zoo.cfg` format.
//!
//! `key=value` lines, `#` comments. The keys Roost acts on are parsed and
//! checked, and an invalid value is an error naming its key. Honesty about
//! the rest: a key ZooKeeper knows that Roost does not act on is named in one
//! warning at start ([`NOT_ACTED_ON`]); a key that asks for protection Roost
//! does not have yet (TLS, SASL, enforced authentication, audit logs) stops
//! the server with an error naming it, rather than leave a user less safe
//! than they asked; an unknown key is a warning (as ZooKeeper turns it into
//! an ignored system property). ZooKeeper system properties may be written
//! as keys, with or without their `zookeeper.` prefix
//! (`zookeeper.extendedTypesEnabled=true`, `DigestAuthenticationProvider.superDigest=...`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use roost_proto::frame::{DEFAULT_MAX_FRAME_BYTES, FOUR_LETTER_WORDS};

/// The `dynamicConfigFile` a zoo.cfg names, if any.
fn dynamic_config_file(text: &str) -> Option<PathBuf> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .find(|(key, _)| key.trim() == "dynamicConfigFile")
        .map(|(_, value)| PathBuf::from(value.trim()))
}

/// A configuration problem, naming the key and value at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("line {line}: expected key=value, got {text:?}")]
    Syntax { line: usize, text: String },
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("{key} is set but {feature} is not supported yet; remove it to run without")]
    Unsupported { key: String, feature: &'static str },
}

/// One `server.N=host:peerPort:electionPort[:observer|:participant][;clientPort]` line.
pub type PeerSpec = roost_core::quorum::ServerSpec;

/// Everything `roost server` reads from its config.
#[derive(Debug, Clone)]
pub struct Config {
    pub tick_time_ms: u64,
    pub client_port: u16,
    pub client_port_address: IpAddr,
    /// `clientPort` was set; otherwise the server's own `server.N` line may
    /// give it (`...;[host:]port`), as in ZooKeeper 3.5+.
    pub client_port_given: bool,
    pub data_dir: PathBuf,
    /// Where the transaction log goes (defaults to `data_dir`).
    pub data_log_dir: Option<PathBuf>,
    /// Connections per client IP; 0 means unlimited.
    pub max_client_cnxns: usize,
    pub min_session_timeout_ms: Option<u64>,
    pub max_session_timeout_ms: Option<u64>,
    /// Four-letter words that are answered; others get "not in the whitelist".
    pub four_letter_words: Vec<String>,
    pub super_digest: Option<String>,
    pub extended_types_enabled: bool,
    pub eager_acl_check: bool,
    pub reconfig_enabled: bool,
    /// `readonlymode.enabled`: outside the quorum, serve reads to clients
    /// that allow it (`canBeReadOnly`) instead of refusing every client.
    pub read_only_enabled: bool,
    pub container_check_interval_ms: u64,
    pub container_max_per_minute: usize,
    /// Largest frame payload accepted from a client (`jute.maxbuffer`).
    pub max_frame_bytes: usize,
    /// Requests a connection may have in flight before we stop reading it.
    pub max_outstanding_per_connection: usize,
    /// Requests in flight server-wide before connections with requests in
    /// flight stop reading (`globalOutstandingLimit`, scaled as ZooKeeper
    /// does: see [`Config::global_outstanding_limit`]).
    pub global_outstanding_limit: usize,
    /// Bytes of replies and events one connection may leave unread before it
    /// is closed (Roost's bound; ZooKeeper has none).
    pub max_pending_bytes_per_connection: usize,
    /// Watches one connection may hold (Roost's bound; ZooKeeper has none).
    pub max_watches_per_connection: usize,
    pub snap_count: u64,
    /// Log bytes between snapshots (`snapSizeLimitInKb`; 0 or less: no limit).
    pub snap_size_limit_bytes: u64,
    pub snap_retain_count: usize,
    /// Size of each preallocated log segment (`preAllocSize`, given in KiB).
    pub prealloc_bytes: u64,
    pub force_sync: bool,
    pub sync_limit: u64,
    pub servers: Vec<PeerSpec>,
    /// The zoo.cfg this was read from: `reconfig` writes the new membership
    /// beside it, as `<file>.dynamic.<version>`, as ZooKeeper does.
    pub config_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tick_time_ms: 2000,
            client_port: 2181,
            client_port_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            client_port_given: false,
            data_dir: PathBuf::from("roost-data"),
            data_log_dir: None,
            max_client_cnxns: 60,
            min_session_timeout_ms: None,
            max_session_timeout_ms: None,
            four_letter_words: vec!["srvr".to_string()],
            super_digest: None,
            extended_types_enabled: false,
            eager_acl_check: false,
            reconfig_enabled: false,
            read_only_enabled: false,
            container_check_interval_ms: 60_000,
            container_max_per_minute: 10_000,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_outstanding_per_connection: 1000,
            global_outstanding_limit: 1000,
            max_pending_bytes_per_connection: 16 << 20,
            max_watches_per_connection: 1_000_000,
            snap_count: 100_000,
            snap_size_limit_bytes: 4 << 30,
            snap_retain_count: 3,
            prealloc_bytes: 64 << 20,
            force_sync: true,
            sync_limit: 5,
            servers: Vec::new(),
            config_file: None,
        }
    }
}

/// Keys ZooKeeper knows that Roost reads without acting on them (named in a
/// warning at start). Their absence of effect is harmless: a tuning knob, a
/// feature Roost does differently, or one not built yet that protects nothing.
pub const NOT_ACTED_ON: &[&str] = &[
    "clientPortListenBacklog",
    "localSessionsEnabled",
    "localSessionsUpgradingEnabled",
    "observerMasterPort",
    "connectToLearnerMasterLimit",
    "electionAlg",
    "quorumListenOnAllIPs",
    "peerType",
    "syncEnabled",
    "standaloneEnabled",
    "sslQuorumReloadCertFiles",
    "quorum.cnxn.threads.size",
    "metricsProvider.className",
    "metricsProvider.exportJvmInfo",
    "metricsProvider.httpHost",
    "metricsProvider.httpPort",
    "multiAddress.enabled",
    "multiAddress.reachabilityCheckTimeoutMs",
    "multiAddress.reachabilityCheckEnabled",
    "oraclePath",
    "admin.enableServer",
    "admin.serverAddress",
    "admin.serverPort",
    "admin.idleTimeout",
    "admin.commandURL",
    "serverCnxnFactory",
    "maxResponseCacheSize",
    "maxGetChildrenResponseCacheSize",
    "commitLogCount",
    "txnLogSizeLimitInKb",
    "digest.enabled",
    "skipACL",
    "enforce.auth.schemes",
    "DigestAuthenticationProvider.digestAlg",
    "leaderServes",
    "cnxTimeout",
    "fsync.warningthresholdms",
    "znode.container.maxNeverUsedIntervalMs",
    "autopurge.purgeInterval",
    "initLimit",
    "version",
];

/// The feature a key asks for that Roost does not have yet, if setting it
/// to `value` would leave the user less safe than they asked.
fn asks_for_unbuilt_protection(key: &str, value: &str) -> Option<&'static str> {
    let enabled = matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "yes");
    match key {
        "secureClientPort" | "secureClientPortAddress" => Some("TLS"),
        k if k.starts_with("ssl.") => Some("TLS"),
        "sslQuorum" | "portUnification" | "client.portUnification" if enabled => Some("TLS"),
        k if k.starts_with("quorum.auth.") && enabled => Some("quorum SASL authentication"),
        k if k.starts_with("authProvider.") && !value.contains("DigestAuthenticationProvider") => {
            Some("that authentication provider")
        }
        "enforce.auth.enabled" if enabled => Some("enforced authentication"),
        "sessionRequireClientSASLAuth" if enabled => Some("SASL"),
        "requireClientAuthScheme" => Some("SASL"),
        "audit.enable" if enabled => Some("audit logging"),
        _ => None,
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not a valid number"))
}

/// ZooKeeper reads booleans with `Boolean.parseBoolean`-like leniency, but a
/// typo silently meaning "false" hides mistakes: accept true/false/yes/no.
fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(invalid(key, value, "expected true/false or yes/no")),
    }
}

fn parse_peer(key: &str, value: &str) -> Result<PeerSpec, ConfigError> {
    let id = parse_num::<u64>(key, key.trim_start_matches("server."))?;
    if !(1..=255).contains(&id) {
        // The id is the top byte of session ids, as in ZooKeeper.
        return Err(invalid(key, value, "server ids run from 1 to 255"));
    }
    PeerSpec::parse(id, value).map_err(|reason| invalid(key, value, reason))
}

impl Config {
    /// `/zookeeper/config` as ZooKeeper writes it for a static ensemble:
    /// one `server.N=host:peer:election:role[;client]` line per member, then
    /// `version=0`. Empty when standalone (a single server line included,
    /// as ZooKeeper runs one standalone).
    pub fn membership_text(&self) -> String {
        if !self.is_ensemble() {
            return String::new();
        }
        roost_core::quorum::QuorumConfig::new(self.servers.iter().cloned(), 0).render()
    }

    /// The configuration `roost server` uses with no config file: standalone on
    /// 2181 with a local data folder and every four-letter word enabled.
    pub fn standalone_default() -> Self {
        Config {
            four_letter_words: FOUR_LETTER_WORDS.iter().map(|w| w.to_string()).collect(),
            ..Config::default()
        }
    }

    /// Reads a `zoo.cfg` file; relative `dataDir`s are taken as given (like ZooKeeper).
    pub fn load(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let (mut config, warnings) = Config::parse(&text)?;
        config.config_file = Some(path.to_path_buf());
        if let Some(dynamic) = dynamic_config_file(&text) {
            config.read_dynamic_file(&dynamic)?;
        }
        Ok((config, warnings))
    }

    /// The server lines of a `dynamicConfigFile` (ZooKeeper 3.5+ keeps the
    /// membership there rather than in zoo.cfg).
    fn read_dynamic_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if !self.servers.is_empty() {
            return Err(invalid(
                "dynamicConfigFile",
                &path.display().to_string(),
                "zoo.cfg has server lines too: keep them in one place",
            ));
        }
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((key, value)) if key.trim().starts_with("server.") => {
                    self.servers.push(parse_peer(key.trim(), value.trim())?)
                }
                // ZooKeeper ignores the version here (it is in the file's name).
                Some((key, _)) if key.trim() == "version" => {}
                _ => {
                    return Err(invalid(
                        "dynamicConfigFile",
                        line,
                        "expected server.N=... lines only",
                    ))
                }
            }
        }
        self.validate()
    }

    /// Parses `zoo.cfg` text; returns the config and the warnings to log.
    pub fn parse(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let mut entries = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
                return Err(ConfigError::Syntax {
                    line: index + 1,
                    text: raw.to_string(),
                });
            };
            entries.insert(key.trim().to_string(), value.trim().to_string());
        }
        let mut config = Config::default();
        let mut warnings = Vec::new();
        let mut not_acted_on: Vec<String> = Vec::new();
        for (key, value) in &entries {
            let bare = key.strip_prefix("zookeeper.").unwrap_or(key);
            match bare {
                "tickTime" => config.tick_time_ms = parse_num(key, value)?,
                "clientPort" => {
                    config.client_port = parse_num(key, value)?;
                    config.client_port_given = true;
                }
                "clientPortAddress" => {
                    config.client_port_address = value
                        .parse()
                        .map_err(|_| invalid(key, value, "not an IP address"))?
                }
                "dataDir" => config.data_dir = PathBuf::from(value),
                "dataLogDir" => config.data_log_dir = Some(PathBuf::from(value)),
                "maxClientCnxns" => config.max_client_cnxns = parse_num(key, value)?,
                "minSessionTimeout" => config.min_session_timeout_ms = Some(parse_num(key, value)?),
                "maxSessionTimeout" => config.max_session_timeout_ms = Some(parse_num(key, value)?),
                "4lw.commands.whitelist" => {
                    config.four_letter_words = parse_whitelist(key, value, &mut warnings)?
                }
                "DigestAuthenticationProvider.superDigest" => {
                    if !value.contains(':') {
                        return Err(invalid(
                            key,
                            value,
                            "expected user:base64(sha1(user:password))",
                        ));
                    }
                    config.super_digest = Some(value.clone())
                }
                "extendedTypesEnabled" => config.extended_types_enabled = parse_bool(key, value)?,
                "enableEagerACLCheck" => config.eager_acl_check = parse_bool(key, value)?,
                "reconfigEnabled" => config.reconfig_enabled = parse_bool(key, value)?,
                "readonlymode.enabled" => config.read_only_enabled = parse_bool(key, value)?,
                "znode.container.checkIntervalMs" => {
                    config.container_check_interval_ms = parse_num(key, value)?
                }
                "znode.container.maxPerMinute" => {
                    config.container_max_per_minute = parse_num(key, value)?
                }
                "jute.maxbuffer" => {
                    let bytes: usize = parse_num(key, value)?;
                    if bytes == 0 || bytes > 1 << 30 {
                        return Err(invalid(key, value, "must be between 1 and 1073741824"));
                    }
                    config.max_frame_bytes = bytes
                }
                "maxOutstandingPerConnection" => {
                    config.max_outstanding_per_connection = parse_num(key, value)?
                }
                "globalOutstandingLimit" => {
                    let limit: i64 = parse_num(key, value)?;
                    // ZooKeeper treats a limit below 1 as no throttling at all.
                    config.global_outstanding_limit = usize::try_from(limit)
                        .ok()
                        .filter(|l| *l > 0)
                        .unwrap_or(usize::MAX)
                }
                "maxPendingBytesPerConnection" => {
                    let bytes: usize = parse_num(key, value)?;
                    if bytes < 64 << 10 {
                        return Err(invalid(key, value, "must be at least 65536"));
                    }
                    config.max_pending_bytes_per_connection = bytes
                }
                "maxWatchesPerConnection" => {
                    config.max_watches_per_connection = parse_num(key, value)?
                }
                "snapCount" => config.snap_count = parse_num::<u64>(key, value)?.max(2),
                "snapSizeLimitInKb" => {
                    let kib: i64 = parse_num(key, value)?;
                    config.snap_size_limit_bytes =
                        u64::try_from(kib).unwrap_or(0).saturating_mul(1024)
                }
                "preAllocSize" => {
                    let kib: u64 = parse_num(key, value)?;
                    if !(64..=4 << 20).contains(&kib) {
                        return Err(invalid(key, value, "must be between 64 and 4194304 (KiB)"));
                    }
                    config.prealloc_bytes = kib << 10
                }
                "autopurge.snapRetainCount" => {
                    config.snap_retain_count = parse_num::<usize>(key, value)?.max(3)
                }
                "forceSync" => config.force_sync = parse_bool(key, value)?,
                "syncLimit" => config.sync_limit = parse_num(key, value)?,
                k if k.starts_with("server.") => config.servers.push(parse_peer(key, value)?),
                // Read by `Config::load`, which knows where files are.
                "dynamicConfigFile" => {}
                k if k.starts_with("group.") || k.starts_with("weight.") => warnings.push(format!(
                    "{key}: hierarchical quorums are not supported; ignored"
                )),
                k if asks_for_unbuilt_protection(k, value).is_some() => {
                    return Err(ConfigError::Unsupported {
                        key: key.clone(),
                        feature: asks_for_unbuilt_protection(k, value).unwrap_or("it"),
                    })
                }
                k if NOT_ACTED_ON.contains(&k)
                    || k.starts_with("quorum.auth.")
                    || k.starts_with("authProvider.")
                    || matches!(
                        k,
                        "sslQuorum"
                            | "portUnification"
                            | "client.portUnification"
                            | "enforce.auth.enabled"
                            | "sessionRequireClientSASLAuth"
                            | "audit.enable"
                    ) =>
                {
                    not_acted_on.push(key.clone())
                }
                _ => warnings.push(format!("unknown config key {key}={value}; ignored")),
            }
        }
        config.validate()?;
        if !not_acted_on.is_empty() {
            warnings.push(format!(
                "keys ZooKeeper knows that Roost reads but does not act on (ignored): {}",
                not_acted_on.join(", ")
            ));
        }
        Ok((config, warnings))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.tick_time_ms == 0 {
            return Err(invalid("tickTime", "0", "must be positive"));
        }
        let (min, max) = self.session_timeout_bounds_ms();
        if min > max {
            return Err(invalid(
                "minSessionTimeout",
                &min.to_string(),
                format!("must not exceed maxSessionTimeout ({max})"),
            ));
        }
        Ok(())
    }

    /// The server-wide request budget, scaled as ZooKeeper scales it: a
    /// voting member of an ensemble of more than two voters takes
    /// `globalOutstandingLimit / (voters - 1)`; observers and standalone
    /// servers take it whole.
    pub fn global_outstanding_limit(&self) -> usize {
        let voters = self.servers.iter().filter(|s| !s.observer).count();
        let observer = self
            .my_id()
            .ok()
            .flatten()
            .and_then(|id| self.servers.iter().find(|s| s.id == id))
            .is_some_and(|me| me.observer);
        if voters > 2 && !observer {
            self.global_outstanding_limit / (voters - 1)
        } else {
            self.global_outstanding_limit
        }
    }

    /// minSessionTimeout and maxSessionTimeout, defaulting to 2 and 20 ticks.
    pub fn session_timeout_bounds_ms(&self) -> (u64, u64) {
        (
            self.min_session_timeout_ms.unwrap_or(2 * self.tick_time_ms),
            self.max_session_timeout_ms
                .unwrap_or(20 * self.tick_time_ms),
        )
    }

    /// The session timeout granted for a requested one.
    pub fn negotiate_timeout_ms(&self, requested_ms: i32) -> i32 {
        let (min, max) = self.session_timeout_bounds_ms();
        let granted = (requested_ms.max(0) as u64).clamp(min, max);
        i32::try_from(granted).unwrap_or(i32::MAX)
    }

    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_time_ms)
    }

    /// How long a server of an ensemble keeps its clients while it knows no
    /// leader: `syncLimit` ticks (ZooKeeper's follower gives up on its
    /// leader after as long), at most 2 s so clients move before their
    /// sessions expire.
    pub fn quorum_loss_grace(&self) -> Duration {
        (self.tick() * self.sync_limit.max(1) as u32).min(Duration::from_secs(2))
    }

    /// More than one server: sessions may move between servers.
    pub fn is_ensemble(&self) -> bool {
        self.servers.len() > 1
    }

    /// This server's id in an ensemble: `dataDir/myid`, as in ZooKeeper;
    /// `None` when standalone (no `server.N` lines).
    pub fn my_id(&self) -> Result<Option<u64>, ConfigError> {
        if self.servers.is_empty() {
            return Ok(None);
        }
        let path = self.data_dir.join("myid");
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let id = text
            .trim()
            .parse::<u64>()
            .map_err(|_| invalid("myid", text.trim(), "not a server id"))?;
        if !self.servers.iter().any(|s| s.id == id) {
            return Err(invalid(
                "myid",
                &id.to_string(),
                "no server.N line with this id",
            ));
        }
        Ok(Some(id))
    }

    /// Without `clientPort`, listens where this server's own `server.N` line
    /// says (`;host:port`), as ZooKeeper 3.5+ does with a dynamic-style config.
    pub fn adopt_own_client_address(&mut self, my_id: u64) {
        if self.client_port_given {
            return;
        }
        let Some(client) = self
            .servers
            .iter()
            .find(|s| s.id == my_id)
            .and_then(|s| s.client_address.as_deref())
        else {
            return;
        };
        let Some((host, port)) = client.rsplit_once(':') else {
            return;
        };
        if let Ok(port) = port.parse() {
            self.client_port = port;
        }
        // A host name, or the wildcard, keeps clientPortAddress as it is.
        if let Ok(address) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            if !address.is_unspecified() {
                self.client_port_address = address;
            }
        }
    }

    /// Where the transaction log lives.
    pub fn log_dir(&self) -> &Path {
        self.data_log_dir.as_deref().unwrap_or(&self.data_dir)
    }
}

fn parse_whitelist(
    key: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, ConfigError> {
    let mut words = Vec::new();
    for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if word == "*" {
            return Ok(FOUR_LETTER_WORDS.iter().map(|w| w.to_string()).collect());
        }
        if !FOUR_LETTER_WORDS.contains(&word) {
            warnings.push(format!("{key}: unknown four-letter word {word:?}"));
            continue;
        }
        words.push(word.to_string());
    }
    // ZooKeeper always answers srvr: zkServer.sh status depends on it.
    if !words.iter().any(|w| w == "srvr") {
        words.push("srvr".to_string());
    }
    if words.is_empty() {
        return Err(invalid(key, value, "no four-letter words"));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zookeeper_keys_and_properties() {
        let (config, warnings) = Config::parse(
            "# comment\n\
             tickTime=1000\nclientPort=2999\ndataDir=/tmp/zk\nmaxClientCnxns=0\n\
             4lw.commands.whitelist=ruok, stat\n\
             zookeeper.extendedTypesEnabled=true\n\
             DigestAuthenticationProvider.superDigest=super:abc=\n\
             jute.maxbuffer=2048\nserver.1=127.0.0.1:2888:3888\nserver.2=h:1:2:observer;2181\n\
             mystery=1\n",
        )
        .unwrap();
        assert_eq!(config.tick_time_ms, 1000);
        assert_eq!(config.client_port, 2999);
        assert_eq!(config.max_client_cnxns, 0);
        assert_eq!(config.four_letter_words, ["ruok", "stat", "srvr"]);
        assert!(config.extended_types_enabled);
        assert_eq!(config.super_digest.as_deref(), Some("super:abc="));
        assert_eq!(config.max_frame_bytes, 2048);
        assert_eq!(config.session_timeout_bounds_ms(), (2000, 20000));
        assert_eq!(config.servers.len(), 2);
        assert!(config.servers[1].observer);
        assert_eq!(
            config.membership_text(),
            "server.1=127.0.0.1:2888:3888:participant\n\
             server.2=h:1:2:observer;0.0.0.0:2181\nversion=0",
            "a bare client port is rendered with ZooKeeper's default host"
        );
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("mystery"));
    }

    #[test]
    fn invalid_values_name_their_key() {
        let err = Config::parse("tickTime=fast\n").unwrap_err().to_string();
        assert!(err.contains("tickTime") && err.contains("fast"), "{err}");
        let err = Config::parse("forceSync=maybe\n").unwrap_err().to_string();
        assert!(err.contains("forceSync"), "{err}");
        let err = Config::parse("minSessionTimeout=9000\nmaxSessionTimeout=100\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("minSessionTimeout"), "{err}");
    }

    #[test]
    fn keys_asking_for_protection_roost_lacks_stop_the_server() {
        for (line, feature) in [
            ("secureClientPort=2281", "TLS"),
            ("ssl.keyStore.location=/etc/zk/keystore.jks", "TLS"),
            ("zookeeper.ssl.quorum.trustStore.location=/x", "TLS"),
            ("sslQuorum=true", "TLS"),
            ("quorum.auth.enableSasl=true", "quorum SASL authentication"),
            (
                "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
                "that authentication provider",
            ),
            ("enforce.auth.enabled=true", "enforced authentication"),
            ("sessionRequireClientSASLAuth=true", "SASL"),
            ("audit.enable=true", "audit logging"),
        ] {
            let err = Config::parse(line).unwrap_err();
            let key = line.split('=').next().unwrap();
            assert!(
                matches!(&err, ConfigError::Unsupported { key: k, feature: f } if k == key && *f == feature),
                "{line}: {err}"
            );
            let message = err.to_string();
            assert!(
                message.contains(key) && message.contains("not supported yet"),
                "{message}"
            );
        }
    }

    #[test]
    fn keys_roost_does_not_act_on_are_named_in_one_warning() {
        let (_, warnings) = Config::parse(
            "sslQuorum=false\naudit.enable=false\nadmin.serverPort=8081\n\
             authProvider.1=org.apache.zookeeper.server.auth.DigestAuthenticationProvider\n\
             localSessionsEnabled=true\nsnapSizeLimitInKb=1024\nglobalOutstandingLimit=10\n",
        )
        .unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        for key in [
            "sslQuorum",
            "audit.enable",
            "admin.serverPort",
            "authProvider.1",
            "localSessionsEnabled",
        ] {
            assert!(warnings[0].contains(key), "{key} missing: {}", warnings[0]);
        }
        // Keys Roost acts on are not in it.
        assert!(!warnings[0].contains("snapSizeLimitInKb"));
        assert!(!warnings[0].contains("globalOutstandingLimit"));
    }

    #[test]
    fn the_global_request_budget_is_scaled_like_zookeepers() {
        let (standalone, _) = Config::parse("globalOutstandingLimit=1200\n").unwrap();
        assert_eq!(standalone.global_outstanding_limit(), 1200);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("myid"), "1\n").unwrap();
        let ensemble = |servers: &str| {
            let text = format!("dataDir={}\n{servers}", dir.path().display());
            Config::parse(&text).unwrap().0.global_outstanding_limit()
        };
        let three = "server.1=h:1:2\nserver.2=h:3:4\nserver.3=h:5:6\n";
        assert_eq!(ensemble(three), 500);
        let five = format!("{three}server.4=h:7:8\nserver.5=h:9:10\n");
        assert_eq!(ensemble(&five), 250);
        // Observers do not count, and an observer takes the whole budget.
        let with_observer = format!("{three}server.4=h:7:8:observer\n");
        assert_eq!(ensemble(&with_observer), 500);
        let observer = "server.1=h:1:2:observer\nserver.2=h:3:4\nserver.3=h:5:6\nserver.4=h:7:8\n";
        assert_eq!(ensemble(observer), 1000);
        let (unlimited, _) = Config::parse("globalOutstandingLimit=0\n").unwrap();
        assert_eq!(unlimited.global_outstanding_limit(), usize::MAX);
    }

    #[test]
    fn timeouts_are_clamped_to_the_negotiable_range() {
        let config = Config::default();
        assert_eq!(config.negotiate_timeout_ms(100), 4000);
        assert_eq!(config.negotiate_timeout_ms(30000), 30000);
        assert_eq!(config.negotiate_timeout_ms(1_000_000), 40000);
    }

    #[test]
    fn the_membership_may_come_from_a_dynamic_config_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("myid"), "2\n").unwrap();
        let dynamic = dir.path().join("zoo.cfg.dynamic.100000000");
        std::fs::write(
            &dynamic,
            "server.1=127.0.0.1:2888:3888:participant;0.0.0.0:2181\n\
             server.2=127.0.0.1:2889:3889:participant;0.0.0.0:2182\n\
             server.3=127.0.0.1:2890:3890:observer;0.0.0.0:2183\n",
        )
        .unwrap();
        let cfg = dir.path().join("zoo.cfg");
        let static_part = format!(
            "dataDir={}\ndynamicConfigFile={}\n",
            dir.path().display(),
            dynamic.display()
        );
        std::fs::write(&cfg, &static_part).unwrap();
        let (config, warnings) = Config::load(&cfg).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.servers.len(), 3);
        assert!(config.servers[2].observer);
        assert_eq!(config.my_id().unwrap(), Some(2));
        assert_eq!(config.config_file.as_deref(), Some(cfg.as_path()));
        // Server lines in both places are refused rather than merged.
        std::fs::write(&cfg, format!("{static_part}server.4=h:1:2\n")).unwrap();
        assert!(Config::load(&cfg).is_err());
    }

    #[test]
    fn without_client_port_the_own_server_line_gives_it() {
        let (mut config, _) =
            Config::parse("server.1=h:1:2;2999\nserver.2=h:3:4;127.0.0.2:3000\n").unwrap();
        config.adopt_own_client_address(2);
        assert_eq!(config.client_port, 3000);
        assert_eq!(config.client_port_address.to_string(), "127.0.0.2");
        config.adopt_own_client_address(1);
        assert_eq!(config.client_port, 2999);
        let (mut given, _) = Config::parse("clientPort=2181\nserver.1=h:1:2;2999\n").unwrap();
        given.adopt_own_client_address(1);
        assert_eq!(given.client_port, 2181, "clientPort wins");
    }
}
