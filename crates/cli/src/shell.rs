//! `roost shell`: zkCli's commands over roost-client. Interactive with line
//! editing, history and znode-path completion on a terminal; one command
//! from the arguments; or a script from stdin. `--json` prints one JSON
//! object per command for programs.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use roost_client::{
    acl, Acl, AddWatchMode, Client, ClientOptions, CreateMode, Error, ErrorCode, Id, Stat,
    WatcherType,
};
use serde_json::{json, Value};

#[derive(Args)]
pub struct ShellArgs {
    /// host:port[,host:port...][/chroot]
    #[arg(long, default_value = "127.0.0.1:2181")]
    server: String,
    /// Print one JSON object per command.
    #[arg(long)]
    json: bool,
    /// Session timeout in milliseconds.
    #[arg(long, default_value_t = 30000)]
    timeout: u64,
    /// A command to run instead of a session (e.g. `ls /`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// What a command printed, for people (`text`) and programs (`json`).
struct Output {
    text: String,
    json: Value,
}

impl Output {
    fn new(text: impl Into<String>, json: Value) -> Output {
        Output {
            text: text.into(),
            json,
        }
    }

    fn empty() -> Output {
        Output::new("", json!({}))
    }
}

struct Shell {
    server: String,
    timeout: Duration,
    client: Option<Client>,
    history: Vec<String>,
    json: bool,
}

pub fn run(args: ShellArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut shell = Shell {
        server: args.server.clone(),
        timeout: Duration::from_millis(args.timeout),
        client: None,
        history: Vec::new(),
        json: args.json,
    };
    runtime.block_on(shell.connect(&args.server))?;
    if !args.command.is_empty() {
        let ok = shell.execute_line(&runtime, &args.command.join(" "));
        runtime.block_on(shell.close());
        std::process::exit(if ok { 0 } else { 1 });
    }
    let ok = if std::io::stdin().is_terminal() {
        shell.interactive(&runtime)?;
        true
    } else {
        let mut all_ok = true;
        for line in std::io::stdin().lock().lines() {
            all_ok &= shell.execute_line(&runtime, &line?);
        }
        all_ok
    };
    runtime.block_on(shell.close());
    std::process::exit(if ok { 0 } else { 1 });
}

impl Shell {
    async fn connect(&mut self, server: &str) -> anyhow::Result<()> {
        self.close().await;
        let options = ClientOptions {
            session_timeout: self.timeout,
            ..ClientOptions::default()
        };
        let client = Client::connect_with(server, options)
            .await
            .with_context(|| format!("cannot connect to {server}"))?;
        self.server = server.to_string();
        self.client = Some(client);
        Ok(())
    }

    async fn close(&mut self) {
        if let Some(client) = self.client.take() {
            client.close().await;
        }
    }

    fn interactive(&mut self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let mut editor =
            rustyline::Editor::<PathCompleter, rustyline::history::DefaultHistory>::new()?;
        editor.set_helper(Some(PathCompleter {
            client: self.client.clone(),
            handle: runtime.handle().clone(),
        }));
        loop {
            let prompt = format!(
                "[roost: {}({}) {}] ",
                self.server,
                self.client
                    .as_ref()
                    .map_or("CLOSED".to_string(), |c| format!("{:?}", c.state())
                        .to_uppercase()),
                self.history.len()
            );
            match editor.readline(&prompt) {
                Ok(line) => {
                    let _ = editor.add_history_entry(line.as_str());
                    let quit = matches!(line.trim(), "quit" | "exit");
                    self.execute_line(runtime, &line);
                    if quit {
                        return Ok(());
                    }
                    if let Some(helper) = editor.helper_mut() {
                        helper.client = self.client.clone();
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(rustyline::error::ReadlineError::Eof) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs one line; prints its output or error. `false` on an error.
    fn execute_line(&mut self, runtime: &tokio::runtime::Runtime, line: &str) -> bool {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return true;
        }
        self.history.push(line.to_string());
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        match runtime.block_on(self.execute(&words)) {
            Ok(output) => {
                if self.json {
                    let mut object = json!({ "command": line, "ok": true });
                    merge(&mut object, output.json);
                    println!("{object}");
                } else if !output.text.is_empty() {
                    println!("{}", output.text.trim_end_matches('\n'));
                }
                true
            }
            Err(message) => {
                if self.json {
                    println!(
                        "{}",
                        json!({ "command": line, "ok": false, "error": message })
                    );
                } else {
                    eprintln!("{message}");
                }
                false
            }
        }
    }

    async fn execute(&mut self, words: &[String]) -> Result<Output, String> {
        let (name, rest) = words.split_first().ok_or("empty command")?;
        let (flags, args) = split_flags(rest);
        let flag = |f: &str| flags.iter().any(|(k, _)| k == f);
        let flag_value = |f: &str| {
            flags
                .iter()
                .find(|(k, _)| k == f)
                .and_then(|(_, v)| v.clone())
        };
        match name.as_str() {
            "connect" => {
                let server = args.first().ok_or("usage: connect host:port")?;
                self.connect(server).await.map_err(|e| format!("{e:#}"))?;
                return Ok(Output::new("", json!({ "server": server })));
            }
            "close" => {
                self.close().await;
                return Ok(Output::empty());
            }
            "quit" | "exit" => return Ok(Output::empty()),
            "history" => {
                let text: Vec<String> = self
                    .history
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("{i} - {l}"))
                    .collect();
                return Ok(Output::new(
                    text.join("\n"),
                    json!({ "history": self.history }),
                ));
            }
            "version" => {
                let version = format!("roost shell {}", env!("CARGO_PKG_VERSION"));
                return Ok(Output::new(version.clone(), json!({ "version": version })));
            }
            "help" => return Ok(Output::new(HELP, json!({ "help": HELP }))),
            _ => {}
        }
        let zk = self
            .client
            .clone()
            .ok_or("not connected (use connect host:port)")?;
        let path_arg = |i: usize| -> Result<String, String> {
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("{name}: a path is required\n{}", usage(name)))
        };
        match name.as_str() {
            "ls" => {
                let path = args.first().cloned().unwrap_or_else(|| "/".into());
                if flag("R") {
                    let all = zk.subtree(&path).await.map_err(|e| explain(e, &path))?;
                    return Ok(Output::new(all.join("\n"), json!({ "paths": all })));
                }
                let (children, stat) = if flag("w") {
                    let (c, s, _watch) = zk
                        .get_children_w(&path)
                        .await
                        .map_err(|e| explain(e, &path))?;
                    (c, s)
                } else {
                    zk.get_children2(&path)
                        .await
                        .map_err(|e| explain(e, &path))?
                };
                let mut text = format!("[{}]", children.join(", "));
                if flag("s") {
                    text.push('\n');
                    text.push_str(&format_stat(&stat));
                }
                Ok(Output::new(
                    text,
                    json!({ "children": children, "stat": stat_json(&stat) }),
                ))
            }
            "create" => {
                let path = path_arg(0)?;
                let data = args.get(1).cloned().unwrap_or_default();
                let ttl = flag_value("t")
                    .map(|t| t.parse::<u64>())
                    .transpose()
                    .map_err(|_| "-t needs milliseconds")?;
                let mode = match (flag("e"), flag("s"), flag("c"), ttl.is_some()) {
                    (_, _, true, _) => CreateMode::Container,
                    (true, true, _, _) => CreateMode::EphemeralSequential,
                    (true, false, _, _) => CreateMode::Ephemeral,
                    (false, true, _, true) => CreateMode::PersistentSequentialWithTtl,
                    (false, false, _, true) => CreateMode::PersistentWithTtl,
                    (false, true, _, false) => CreateMode::PersistentSequential,
                    (false, false, _, false) => CreateMode::Persistent,
                };
                let acl = match args.get(2) {
                    Some(text) => parse_acl(text)?,
                    None => acl::open(),
                };
                let (created, stat) = zk
                    .create_with(
                        &path,
                        data.as_bytes(),
                        &acl,
                        mode,
                        ttl.map(Duration::from_millis),
                    )
                    .await
                    .map_err(|e| explain(e, &path))?;
                Ok(Output::new(
                    format!("Created {created}"),
                    json!({ "path": created, "stat": stat_json(&stat) }),
                ))
            }
            "get" => {
                let path = path_arg(0)?;
                let (data, stat) = if flag("w") {
                    let (d, s, _watch) =
                        zk.get_data_w(&path).await.map_err(|e| explain(e, &path))?;
                    (d, s)
                } else {
                    zk.get_data(&path).await.map_err(|e| explain(e, &path))?
                };
                let shown = if stat.data_length == 0 && data.is_empty() {
                    "null".to_string()
                } else {
                    String::from_utf8_lossy(&data).into_owned()
                };
                let mut text = shown.clone();
                if flag("s") {
                    text.push('\n');
                    text.push_str(&format_stat(&stat));
                }
                Ok(Output::new(
                    text,
                    json!({ "data": shown, "stat": stat_json(&stat) }),
                ))
            }
            "set" => {
                let path = path_arg(0)?;
                let data = args.get(1).cloned().unwrap_or_default();
                let version = parse_version(flag_value("v"))?;
                let stat = zk
                    .set_data(&path, data.as_bytes(), version)
                    .await
                    .map_err(|e| explain(e, &path))?;
                let text = if flag("s") {
                    format_stat(&stat)
                } else {
                    String::new()
                };
                Ok(Output::new(text, json!({ "stat": stat_json(&stat) })))
            }
            "delete" => {
                let path = path_arg(0)?;
                let version = parse_version(flag_value("v"))?;
                zk.delete(&path, version)
                    .await
                    .map_err(|e| explain(e, &path))?;
                Ok(Output::empty())
            }
            "deleteall" => {
                let path = path_arg(0)?;
                zk.delete_all(&path).await.map_err(|e| explain(e, &path))?;
                Ok(Output::empty())
            }
            "stat" => {
                let path = path_arg(0)?;
                let stat = if flag("w") {
                    zk.exists_w(&path).await.map_err(|e| explain(e, &path))?.0
                } else {
                    zk.exists(&path).await.map_err(|e| explain(e, &path))?
                };
                let stat = stat.ok_or_else(|| explain(Error::Zk(ErrorCode::NoNode), &path))?;
                Ok(Output::new(
                    format_stat(&stat),
                    json!({ "stat": stat_json(&stat) }),
                ))
            }
            "getAcl" => {
                let path = path_arg(0)?;
                let (acl, stat) = zk.get_acl(&path).await.map_err(|e| explain(e, &path))?;
                let mut text: Vec<String> = acl
                    .iter()
                    .map(|a| format!("'{},'{}\n: {}", a.id.scheme, a.id.id, perms_text(a.perms)))
                    .collect();
                if flag("s") {
                    text.push(format_stat(&stat));
                }
                let list: Vec<Value> = acl
                    .iter()
                    .map(|a| json!({ "scheme": a.id.scheme, "id": a.id.id, "perms": perms_text(a.perms) }))
                    .collect();
                Ok(Output::new(
                    text.join("\n"),
                    json!({ "acl": list, "stat": stat_json(&stat) }),
                ))
            }
            "setAcl" => {
                let path = path_arg(0)?;
                let acl = parse_acl(
                    args.get(1)
                        .ok_or("usage: setAcl [-s] [-v version] [-R] path acl")?,
                )?;
                let version = parse_version(flag_value("v"))?;
                let targets = if flag("R") {
                    zk.subtree(&path).await.map_err(|e| explain(e, &path))?
                } else {
                    vec![path.clone()]
                };
                let mut last = None;
                for target in &targets {
                    let v = if target == &path { version } else { None };
                    last = Some(
                        zk.set_acl(target, &acl, v)
                            .await
                            .map_err(|e| explain(e, target))?,
                    );
                }
                let text = match (flag("s"), &last) {
                    (true, Some(stat)) => format_stat(stat),
                    _ => String::new(),
                };
                Ok(Output::new(text, json!({ "paths": targets })))
            }
            "addauth" => {
                let scheme = args.first().ok_or("usage: addauth scheme auth")?;
                let auth = args.get(1).cloned().unwrap_or_default();
                zk.add_auth(scheme, auth.as_bytes())
                    .await
                    .map_err(|e| explain(e, ""))?;
                Ok(Output::empty())
            }
            "sync" => {
                let path = path_arg(0)?;
                zk.sync(&path).await.map_err(|e| explain(e, &path))?;
                Ok(Output::new("Sync is OK", json!({})))
            }
            "getEphemerals" => {
                let path = args.first().cloned().unwrap_or_else(|| "/".into());
                let paths = zk
                    .get_ephemerals(&path)
                    .await
                    .map_err(|e| explain(e, &path))?;
                Ok(Output::new(
                    format!("[{}]", paths.join(", ")),
                    json!({ "paths": paths }),
                ))
            }
            "getAllChildrenNumber" => {
                let path = path_arg(0)?;
                let n = zk
                    .get_all_children_number(&path)
                    .await
                    .map_err(|e| explain(e, &path))?;
                Ok(Output::new(n.to_string(), json!({ "count": n })))
            }
            "whoami" => {
                let infos = zk.who_am_i().await.map_err(|e| explain(e, ""))?;
                let mut text = vec!["Auth scheme: User".to_string()];
                text.extend(
                    infos
                        .iter()
                        .map(|i| format!("{}: {}", i.auth_scheme, i.user)),
                );
                let list: Vec<Value> = infos
                    .iter()
                    .map(|i| json!({ "scheme": i.auth_scheme, "user": i.user }))
                    .collect();
                Ok(Output::new(text.join("\n"), json!({ "identities": list })))
            }
            "addWatch" => {
                let path = path_arg(0)?;
                let mode = match flag_value("m").as_deref() {
                    None | Some("PERSISTENT_RECURSIVE") => AddWatchMode::PersistentRecursive,
                    Some("PERSISTENT") => AddWatchMode::Persistent,
                    Some(other) => return Err(format!("unknown watch mode {other}")),
                };
                let mut stream = zk
                    .add_watch(&path, mode)
                    .await
                    .map_err(|e| explain(e, &path))?;
                tokio::spawn(async move {
                    while let Some(event) = stream.next().await {
                        eprintln!(
                            "WATCHER::\n\nWatchedEvent state:{:?} type:{:?} path:{}",
                            event.state, event.event_type, event.path
                        );
                    }
                });
                Ok(Output::empty())
            }
            "removewatches" => {
                let path = path_arg(0)?;
                let kind = if flag("c") {
                    WatcherType::Children
                } else if flag("d") {
                    WatcherType::Data
                } else {
                    WatcherType::Any
                };
                zk.remove_watches(&path, kind)
                    .await
                    .map_err(|e| explain(e, &path))?;
                Ok(Output::empty())
            }
            "config" => {
                let (data, stat) = zk
                    .get_data("/zookeeper/config")
                    .await
                    .map_err(|e| explain(e, "/zookeeper/config"))?;
                let mut text = String::from_utf8_lossy(&data).into_owned();
                if flag("s") {
                    text.push('\n');
                    text.push_str(&format_stat(&stat));
                }
                Ok(Output::new(text.clone(), json!({ "config": text })))
            }
            "reconfig" => {
                let members = match (flag_value("members"), flag_value("file")) {
                    (Some(members), _) => Some(members),
                    (None, Some(file)) => Some(
                        std::fs::read_to_string(&file)
                            .map_err(|e| format!("cannot read {file}: {e}"))?,
                    ),
                    (None, None) => None,
                };
                let (joining, leaving) = (flag_value("add"), flag_value("remove"));
                if members.is_none() && joining.is_none() && leaving.is_none() {
                    return Err(usage("reconfig"));
                }
                let from_config = flag_value("v")
                    .map(|v| {
                        i64::from_str_radix(v.trim_start_matches("0x"), 16)
                            .map_err(|_| format!("version {v} is not a hex number"))
                    })
                    .transpose()?;
                let (data, stat) = zk
                    .reconfig(
                        joining.as_deref(),
                        leaving.as_deref(),
                        members.as_deref(),
                        from_config,
                    )
                    .await
                    .map_err(|e| explain(e, "/zookeeper/config"))?;
                let config = String::from_utf8_lossy(&data).into_owned();
                let mut text = format!("Committed new configuration:\n{config}");
                if flag("s") {
                    text.push('\n');
                    text.push_str(&format_stat(&stat));
                }
                Ok(Output::new(text, json!({ "config": config })))
            }
            other => Err(format!("unknown command {other}\n{HELP}")),
        }
    }
}

const HELP: &str = "ZooKeeper -server host:port cmd args
\taddauth scheme auth
\taddWatch [-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is PERSISTENT_RECURSIVE
\tclose
\tconfig [-s]
\tconnect host:port
\tcreate [-s] [-e] [-c] [-t ttl] path [data] [acl]
\tdelete [-v version] path
\tdeleteall path
\tgetAcl [-s] path
\tgetAllChildrenNumber path
\tget [-s] [-w] path
\tgetEphemerals path
\thistory
\tls [-s] [-w] [-R] path
\tquit
\treconfig [-s] [-v version] [[-file path] | [-members serverID=host:port1:port2;port3[,...]*]] | [-add serverId=host:port1:port2;port3[,...]]* [-remove serverId[,...]*]
\tremovewatches path [-c|-d|-a]
\tset [-s] [-v version] path data
\tsetAcl [-s] [-v version] [-R] path acl
\tstat [-w] path
\tsync path
\tversion
\twhoami";

fn usage(name: &str) -> String {
    HELP.lines()
        .find(|l| l.trim_start().starts_with(name))
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

/// Splits `-x` flags (and `-v N`, `-t N`, `-m M` values) from arguments.
fn split_flags(words: &[String]) -> (Vec<(String, Option<String>)>, Vec<String>) {
    let mut flags = Vec::new();
    let mut args = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        if let Some(name) = word
            .strip_prefix('-')
            .filter(|n| !n.is_empty() && !word.starts_with("/"))
        {
            if matches!(
                name,
                "v" | "t" | "m" | "add" | "remove" | "members" | "file"
            ) {
                flags.push((name.to_string(), words.get(i + 1).cloned()));
                i += 2;
                continue;
            }
            for c in name.chars() {
                flags.push((c.to_string(), None));
            }
        } else {
            args.push(word.clone());
        }
        i += 1;
    }
    (flags, args)
}

fn parse_version(value: Option<String>) -> Result<Option<i32>, String> {
    value
        .map(|v| {
            v.parse::<i32>()
                .map_err(|_| format!("version {v} is not a number"))
        })
        .transpose()
}

/// `scheme:id:perms[,scheme:id:perms...]`, perms as letters `cdrwa`.
fn parse_acl(text: &str) -> Result<Vec<Acl>, String> {
    text.split(',')
        .map(|entry| {
            let (rest, perms) = entry.rsplit_once(':').ok_or(format!("bad ACL {entry}"))?;
            let (scheme, id) = rest.split_once(':').ok_or(format!("bad ACL {entry}"))?;
            let mut bits = 0;
            for c in perms.chars() {
                bits |= match c {
                    'r' => roost_client::perms::READ,
                    'w' => roost_client::perms::WRITE,
                    'c' => roost_client::perms::CREATE,
                    'd' => roost_client::perms::DELETE,
                    'a' => roost_client::perms::ADMIN,
                    _ => return Err(format!("bad permission {c} in {entry}")),
                };
            }
            Ok(Acl {
                perms: bits,
                id: Id::new(scheme, id),
            })
        })
        .collect()
}

fn perms_text(perms: i32) -> String {
    [
        (roost_client::perms::CREATE, 'c'),
        (roost_client::perms::DELETE, 'd'),
        (roost_client::perms::READ, 'r'),
        (roost_client::perms::WRITE, 'w'),
        (roost_client::perms::ADMIN, 'a'),
    ]
    .iter()
    .filter(|(bit, _)| perms & bit != 0)
    .map(|(_, c)| *c)
    .collect()
}

/// zkCli's wording for the common errors.
fn explain(error: Error, path: &str) -> String {
    match error.code() {
        ErrorCode::NoNode => format!("Node does not exist: {path}"),
        ErrorCode::NodeExists => format!("Node already exists: {path}"),
        ErrorCode::BadVersion => format!("version No is not valid : {path}"),
        ErrorCode::NotEmpty => format!("Node not empty: {path}"),
        ErrorCode::NoAuth => format!("Insufficient permission : {path}"),
        _ => format!("{error}"),
    }
}

fn format_stat(stat: &Stat) -> String {
    format!(
        "cZxid = 0x{:x}\nctime = {}\nmZxid = 0x{:x}\nmtime = {}\npZxid = 0x{:x}\n\
         cversion = {}\ndataVersion = {}\naclVersion = {}\nephemeralOwner = 0x{:x}\n\
         dataLength = {}\nnumChildren = {}",
        stat.czxid,
        java_date(stat.ctime),
        stat.mzxid,
        java_date(stat.mtime),
        stat.pzxid,
        stat.cversion,
        stat.version,
        stat.aversion,
        stat.ephemeral_owner,
        stat.data_length,
        stat.num_children
    )
}

fn stat_json(stat: &Stat) -> Value {
    json!({
        "czxid": stat.czxid, "mzxid": stat.mzxid, "ctime": stat.ctime, "mtime": stat.mtime,
        "version": stat.version, "cversion": stat.cversion, "aversion": stat.aversion,
        "ephemeralOwner": stat.ephemeral_owner, "dataLength": stat.data_length,
        "numChildren": stat.num_children, "pzxid": stat.pzxid,
    })
}

/// Java's `Date.toString()` in UTC: `Sat Nov 21 16:00:00 UTC 2026`.
fn java_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {year}",
        DAYS[weekday as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        target.extend(extra);
    }
}

/// Completes znode paths by asking the server for the parent's children.
struct PathCompleter {
    client: Option<Client>,
    handle: tokio::runtime::Handle,
}

impl rustyline::completion::Completer for PathCompleter {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let start = line[..pos].rfind(' ').map_or(0, |i| i + 1);
        let word = &line[start..pos];
        let Some(client) = &self.client else {
            return Ok((start, Vec::new()));
        };
        if !word.starts_with('/') {
            return Ok((start, Vec::new()));
        }
        let (parent, prefix) = match word.rfind('/') {
            Some(0) => ("/", &word[1..]),
            Some(i) => (&word[..i], &word[i + 1..]),
            None => return Ok((start, Vec::new())),
        };
        let children = self
            .handle
            .block_on(client.get_children(parent))
            .unwrap_or_default();
        let candidates = children
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .map(|c| roost_client::path::join(parent, &c))
            .collect();
        Ok((start, candidates))
    }
}

impl rustyline::hint::Hinter for PathCompleter {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for PathCompleter {}
impl rustyline::validate::Validator for PathCompleter {}
impl rustyline::Helper for PathCompleter {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_like_java() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(1_795_276_800_000), "Sat Nov 21 16:00:00 UTC 2026");
    }

    #[test]
    fn flags_and_acls() {
        let words: Vec<String> = ["-s", "-v", "3", "/a", "data"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, args) = split_flags(&words);
        assert_eq!(flags, [("s".into(), None), ("v".into(), Some("3".into()))]);
        assert_eq!(args, ["/a", "data"]);
        let acl = parse_acl("world:anyone:cdrwa,digest:u:x=:r").unwrap();
        assert_eq!(acl[0].perms, roost_client::perms::ALL);
        assert_eq!(acl[1].id.id, "u:x=");
        assert_eq!(perms_text(roost_client::perms::ALL), "cdrwa");
    }
}
