//! The application's handle: every ZooKeeper 3.9 operation as an async method.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use roost_proto::{
    Acl, AddWatchMode, AddWatchRequest, AuthPacket, CheckVersionRequest, ClientInfo, CreateMode,
    CreateRequest, DeleteRequest, ErrorCode, MultiOp, MultiResult, OpCode, PathRequest,
    PathWatchRequest, ReconfigRequest, Request, Response, SetAclRequest, SetDataRequest, Stat,
    WatcherType, WatchesRequest,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::connect_string::ConnectString;
use crate::session::{Call, Command, Reply, Session, SessionState, Settings, Shared};
use crate::watches::{Registration, Watch, WatchStream};
use crate::{acl, path, Error, Result};

/// How a [`Client`] connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Requested session timeout; the server bounds it (2-20 ticks).
    pub session_timeout: Duration,
    /// How long [`Client::connect_with`] waits for the first session.
    pub connect_timeout: Duration,
    /// Credentials sent on connect and on every reconnect: (scheme, auth).
    pub auth: Vec<(String, Vec<u8>)>,
    /// Largest reply accepted (ZooKeeper's jute.maxbuffer, plus headers).
    pub max_frame_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(15),
            auth: Vec::new(),
            max_frame_bytes: 16 * 1024 * 1024,
        }
    }
}

/// One operation of a [`Client::multi`] transaction.
#[derive(Debug, Clone)]
pub enum Op {
    Create {
        path: String,
        data: Vec<u8>,
        acl: Vec<Acl>,
        mode: CreateMode,
    },
    Delete {
        path: String,
        version: Option<i32>,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    },
    Check {
        path: String,
        version: i32,
    },
}

impl Op {
    /// A create with the open ACL.
    pub fn create(path: impl Into<String>, data: impl Into<Vec<u8>>, mode: CreateMode) -> Op {
        Op::Create {
            path: path.into(),
            data: data.into(),
            acl: acl::open(),
            mode,
        }
    }

    pub fn delete(path: impl Into<String>, version: Option<i32>) -> Op {
        Op::Delete {
            path: path.into(),
            version,
        }
    }

    pub fn set_data(path: impl Into<String>, data: impl Into<Vec<u8>>, version: Option<i32>) -> Op {
        Op::SetData {
            path: path.into(),
            data: data.into(),
            version,
        }
    }

    pub fn check(path: impl Into<String>, version: i32) -> Op {
        Op::Check {
            path: path.into(),
            version,
        }
    }
}

/// The result of one successful operation of a multi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The created path (chroot removed) and its Stat.
    Create(String, Stat),
    Delete,
    SetData(Stat),
    Check,
}

/// One read of a [`Client::multi_read`].
#[derive(Debug, Clone)]
pub enum ReadOp {
    GetData(String),
    GetChildren(String),
}

/// The outcome of one read of a multiRead: each read fails or succeeds alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    Data(Vec<u8>, Stat),
    Children(Vec<String>),
    Error(ErrorCode),
}

/// A ZooKeeper session. Cheap to clone; all clones share the session, which
/// ends when [`Client::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl Client {
    /// Connects with default options and waits for the session.
    pub async fn connect(connect_string: &str) -> Result<Client> {
        Client::connect_with(connect_string, ClientOptions::default()).await
    }

    /// Connects and waits until the session is established (or fails with
    /// ConnectionLoss after `connect_timeout`).
    pub async fn connect_with(connect_string: &str, options: ClientOptions) -> Result<Client> {
        let connect = ConnectString::parse(connect_string)?;
        let (state, mut state_rx) = watch::channel(SessionState::Connecting);
        let (transitions, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            connect,
            session_id: AtomicI64::new(0),
            negotiated_timeout_ms: AtomicI64::new(0),
            state,
            transitions,
        });
        let (commands, receiver) = mpsc::channel(4096);
        let settings = Settings {
            session_timeout_ms: options.session_timeout.as_millis().min(i32::MAX as u128) as i32,
            max_frame_bytes: options.max_frame_bytes,
        };
        tokio::spawn(Session::new(shared.clone(), settings, receiver).run());
        let client = Client { commands, shared };
        let connected = tokio::time::timeout(
            options.connect_timeout,
            state_rx.wait_for(|s| *s == SessionState::Connected || s.is_terminal()),
        )
        .await
        .ok()
        .and_then(|state| state.ok().map(|s| *s));
        match connected {
            Some(SessionState::Connected) => {}
            Some(SessionState::Expired) => return Err(Error::Zk(ErrorCode::SessionExpired)),
            Some(SessionState::AuthFailed) => return Err(Error::Zk(ErrorCode::AuthFailed)),
            Some(_) => return Err(Error::Closed),
            None => {
                client.close().await;
                return Err(Error::Zk(ErrorCode::ConnectionLoss));
            }
        }
        for (scheme, auth) in options.auth {
            client.add_auth(&scheme, &auth).await?;
        }
        Ok(client)
    }

    /// The current session state.
    pub fn state(&self) -> SessionState {
        *self.shared.state.borrow()
    }

    /// Every state transition from now on, in order.
    pub fn state_changes(&self) -> broadcast::Receiver<SessionState> {
        self.shared.transitions.subscribe()
    }

    /// Waits until the session is connected (or can never be again).
    pub async fn wait_connected(&self) -> Result<()> {
        let mut rx = self.shared.state.subscribe();
        let state = *rx
            .wait_for(|s| *s == SessionState::Connected || s.is_terminal())
            .await
            .map_err(|_| Error::Closed)?;
        match state {
            SessionState::Connected => Ok(()),
            SessionState::Expired => Err(Error::Zk(ErrorCode::SessionExpired)),
            SessionState::AuthFailed => Err(Error::Zk(ErrorCode::AuthFailed)),
            _ => Err(Error::Closed),
        }
    }

    pub fn session_id(&self) -> i64 {
        self.shared.session_id.load(Ordering::Relaxed)
    }

    /// The session timeout the server granted.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(
            self.shared
                .negotiated_timeout_ms
                .load(Ordering::Relaxed)
                .max(0) as u64,
        )
    }

    /// Ends the session (its ephemeral nodes go at once) and waits for it.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn call(&self, request: Request, watch: Option<(String, Registration)>) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Call(Call {
                request,
                watch,
                reply: tx,
            }))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Calls and turns an error code into `Err`.
    async fn call_ok(
        &self,
        request: Request,
        watch: Option<(String, Registration)>,
    ) -> Result<Option<Response>> {
        let reply = self.call(request, watch).await?;
        match reply.err {
            ErrorCode::Ok => Ok(reply.body),
            code => Err(Error::Zk(code)),
        }
    }

    fn server_path(&self, client_path: &str) -> Result<String> {
        path::validate(client_path)?;
        Ok(self.shared.connect.server_path(client_path))
    }

    fn client_path(&self, server_path: &str) -> String {
        self.shared.connect.client_path(server_path)
    }

    /// Creates a node with the open ACL; returns its path (with the
    /// sequence suffix for sequential modes).
    pub async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        self.create_with(path, data, &acl::open(), mode, None)
            .await
            .map(|(path, _)| path)
    }

    /// create2 / createContainer / createTTL: any ACL and mode; `ttl` is
    /// required for the TTL modes. Returns the path and the new node's Stat.
    pub async fn create_with(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
        ttl: Option<Duration>,
    ) -> Result<(String, Stat)> {
        let ttl_mode = matches!(
            mode,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        );
        if ttl_mode != ttl.is_some() {
            return Err(Error::BadArguments(
                "a TTL is given with, and only with, the TTL create modes".into(),
            ));
        }
        let opcode = match mode {
            CreateMode::Container => OpCode::CreateContainer,
            _ if ttl_mode => OpCode::CreateTtl,
            _ => OpCode::Create2,
        };
        let request = Request::Create {
            opcode,
            request: CreateRequest {
                path: self.server_path(path)?,
                data: Some(Bytes::copy_from_slice(data)),
                acl: acl.to_vec(),
                flags: mode.code(),
                ttl: ttl.map_or(-1, |t| t.as_millis() as i64),
            },
        };
        match self.call_ok(request, None).await? {
            Some(Response::Create2(path, stat)) => Ok((self.client_path(&path), stat)),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a node; `version` None matches any version.
    pub async fn delete(&self, path: &str, version: Option<i32>) -> Result<()> {
        let request = Request::Delete(DeleteRequest {
            path: self.server_path(path)?,
            version: version.unwrap_or(-1),
        });
        self.call_ok(request, None).await.map(|_| ())
    }

    pub async fn exists(&self, path: &str) -> Result<Option<Stat>> {
        self.exists_inner(path, None).await
    }

    /// exists, leaving a watch that fires on the node's creation, deletion
    /// or data change.
    pub async fn exists_w(&self, path: &str) -> Result<(Option<Stat>, Watch)> {
        let (tx, rx) = oneshot::channel();
        let stat = self
            .exists_inner(path, Some(Registration::Exists(tx)))
            .await?;
        Ok((stat, Watch(rx)))
    }

    async fn exists_inner(&self, path: &str, watch: Option<Registration>) -> Result<Option<Stat>> {
        let server_path = self.server_path(path)?;
        let request = Request::Exists(PathWatchRequest {
            path: server_path.clone(),
            watch: watch.is_some(),
        });
        let reply = self.call(request, watch.map(|w| (server_path, w))).await?;
        match (reply.err, reply.body) {
            (ErrorCode::Ok, Some(Response::Stat(stat))) => Ok(Some(stat)),
            (ErrorCode::NoNode, _) => Ok(None),
            (ErrorCode::Ok, other) => Err(unexpected(other)),
            (code, _) => Err(Error::Zk(code)),
        }
    }

    /// The node's data (empty for null data) and Stat.
    pub async fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        self.get_data_inner(path, None).await
    }

    /// getData, leaving a watch for the node's next change or deletion.
    pub async fn get_data_w(&self, path: &str) -> Result<(Vec<u8>, Stat, Watch)> {
        let (tx, rx) = oneshot::channel();
        let (data, stat) = self
            .get_data_inner(path, Some(Registration::Data(tx)))
            .await?;
        Ok((data, stat, Watch(rx)))
    }

    async fn get_data_inner(
        &self,
        path: &str,
        watch: Option<Registration>,
    ) -> Result<(Vec<u8>, Stat)> {
        let server_path = self.server_path(path)?;
        let request = Request::GetData(PathWatchRequest {
            path: server_path.clone(),
            watch: watch.is_some(),
        });
        match self
            .call_ok(request, watch.map(|w| (server_path, w)))
            .await?
        {
            Some(Response::GetData(data, stat)) => {
                Ok((data.map(|d| d.to_vec()).unwrap_or_default(), stat))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Replaces the data; `version` None matches any version.
    pub async fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<Stat> {
        let request = Request::SetData(SetDataRequest {
            path: self.server_path(path)?,
            data: Some(Bytes::copy_from_slice(data)),
            version: version.unwrap_or(-1),
        });
        match self.call_ok(request, None).await? {
            Some(Response::Stat(stat)) => Ok(stat),
            other => Err(unexpected(other)),
        }
    }

    /// Changes the ensemble's membership (ZooKeeper 3.5+): servers
    /// `joining` (`server.N=host:peer:election[:role];[host:]clientPort`,
    /// comma-separated) and `leaving` (ids), or all `new_members` at once;
    /// `from_config` guards against a concurrent change (BadVersion).
    /// Returns the new `/zookeeper/config` and its Stat.
    pub async fn reconfig(
        &self,
        joining: Option<&str>,
        leaving: Option<&str>,
        new_members: Option<&str>,
        from_config: Option<i64>,
    ) -> Result<(Vec<u8>, Stat)> {
        let request = Request::Reconfig(ReconfigRequest {
            joining_servers: joining.map(Into::into),
            leaving_servers: leaving.map(Into::into),
            new_members: new_members.map(Into::into),
            cur_config_id: from_config.unwrap_or(-1),
        });
        match self.call_ok(request, None).await? {
            Some(Response::GetData(data, stat)) => {
                Ok((data.map(|d| d.to_vec()).unwrap_or_default(), stat))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Child names, sorted.
    pub async fn get_children(&self, path: &str) -> Result<Vec<String>> {
        self.get_children2(path).await.map(|(children, _)| children)
    }

    /// Child names (sorted) and the parent's Stat.
    pub async fn get_children2(&self, path: &str) -> Result<(Vec<String>, Stat)> {
        self.get_children_inner(path, None).await
    }

    /// getChildren, leaving a watch for the next change of the child list
    /// or the node's deletion.
    pub async fn get_children_w(&self, path: &str) -> Result<(Vec<String>, Stat, Watch)> {
        let (tx, rx) = oneshot::channel();
        let (children, stat) = self
            .get_children_inner(path, Some(Registration::Children(tx)))
            .await?;
        Ok((children, stat, Watch(rx)))
    }

    async fn get_children_inner(
        &self,
        path: &str,
        watch: Option<Registration>,
    ) -> Result<(Vec<String>, Stat)> {
        let server_path = self.server_path(path)?;
        let request = Request::GetChildren2(PathWatchRequest {
            path: server_path.clone(),
            watch: watch.is_some(),
        });
        match self
            .call_ok(request, watch.map(|w| (server_path, w)))
            .await?
        {
            Some(Response::Children2(mut children, stat)) => {
                children.sort();
                Ok((children, stat))
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat)> {
        let request = Request::GetAcl(PathRequest {
            path: self.server_path(path)?,
        });
        match self.call_ok(request, None).await? {
            Some(Response::GetAcl(acl, stat)) => Ok((acl, stat)),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces the ACL; `aversion` None matches any ACL version.
    pub async fn set_acl(&self, path: &str, acl: &[Acl], aversion: Option<i32>) -> Result<Stat> {
        let request = Request::SetAcl(SetAclRequest {
            path: self.server_path(path)?,
            acl: acl.to_vec(),
            version: aversion.unwrap_or(-1),
        });
        match self.call_ok(request, None).await? {
            Some(Response::Stat(stat)) => Ok(stat),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until the server this session is connected to has caught up
    /// with the leader (reads after it see every write acknowledged before).
    pub async fn sync(&self, path: &str) -> Result<()> {
        let request = Request::Sync(PathRequest {
            path: self.server_path(path)?,
        });
        self.call_ok(request, None).await.map(|_| ())
    }

    /// All or nothing: either every op is applied, or none is and the error
    /// names the first op that failed.
    pub async fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        let mut wire = Vec::with_capacity(ops.len());
        for op in ops {
            wire.push(match op {
                Op::Create {
                    path,
                    data,
                    acl,
                    mode,
                } => MultiOp::Create {
                    opcode: if mode == CreateMode::Container {
                        OpCode::CreateContainer
                    } else {
                        OpCode::Create2
                    },
                    request: CreateRequest {
                        path: self.server_path(&path)?,
                        data: Some(Bytes::from(data)),
                        acl,
                        flags: mode.code(),
                        ttl: -1,
                    },
                },
                Op::Delete { path, version } => MultiOp::Delete(DeleteRequest {
                    path: self.server_path(&path)?,
                    version: version.unwrap_or(-1),
                }),
                Op::SetData {
                    path,
                    data,
                    version,
                } => MultiOp::SetData(SetDataRequest {
                    path: self.server_path(&path)?,
                    data: Some(Bytes::from(data)),
                    version: version.unwrap_or(-1),
                }),
                Op::Check { path, version } => MultiOp::Check(CheckVersionRequest {
                    path: self.server_path(&path)?,
                    version,
                }),
            });
        }
        let count = wire.len();
        let reply = self.call(Request::Multi(Ok(wire)), None).await?;
        let results = match reply.body {
            Some(Response::Multi(results)) => results,
            None if reply.err != ErrorCode::Ok => return Err(Error::Zk(reply.err)),
            None if count == 0 => Vec::new(),
            other => return Err(unexpected(other)),
        };
        if let Some((index, code)) = results.iter().enumerate().find_map(|(i, r)| match r {
            MultiResult::Error(code) if *code != ErrorCode::Ok => Some((i, *code)),
            _ => None,
        }) {
            return Err(Error::Multi { index, code });
        }
        results
            .into_iter()
            .map(|r| match r {
                MultiResult::Create2(path, stat) => {
                    Ok(OpResult::Create(self.client_path(&path), stat))
                }
                MultiResult::Create(path) => {
                    Ok(OpResult::Create(self.client_path(&path), Stat::default()))
                }
                MultiResult::Delete => Ok(OpResult::Delete),
                MultiResult::SetData(stat) => Ok(OpResult::SetData(stat)),
                MultiResult::Check => Ok(OpResult::Check),
                other => Err(Error::BadArguments(format!(
                    "unexpected multi result {other:?}"
                ))),
            })
            .collect()
    }

    /// Several reads in one round trip, from one consistent state; each
    /// read succeeds or fails on its own.
    pub async fn multi_read(&self, ops: Vec<ReadOp>) -> Result<Vec<ReadResult>> {
        let mut wire = Vec::with_capacity(ops.len());
        for op in ops {
            wire.push(match op {
                ReadOp::GetData(path) => MultiOp::GetData(PathWatchRequest {
                    path: self.server_path(&path)?,
                    watch: false,
                }),
                ReadOp::GetChildren(path) => MultiOp::GetChildren(PathWatchRequest {
                    path: self.server_path(&path)?,
                    watch: false,
                }),
            });
        }
        match self.call_ok(Request::MultiRead(Ok(wire)), None).await? {
            Some(Response::Multi(results)) => Ok(results
                .into_iter()
                .map(|r| match r {
                    MultiResult::GetData(data, stat) => {
                        ReadResult::Data(data.map(|d| d.to_vec()).unwrap_or_default(), stat)
                    }
                    MultiResult::GetChildren(mut children) => {
                        children.sort();
                        ReadResult::Children(children)
                    }
                    MultiResult::Error(code) => ReadResult::Error(code),
                    _ => ReadResult::Error(ErrorCode::MarshallingError),
                })
                .collect()),
            None => Ok(Vec::new()),
            other => Err(unexpected(other)),
        }
    }

    /// A persistent watch on `path` (recursive: on its whole subtree), as a
    /// stream of events; it survives reconnections and lasts until
    /// [`Client::remove_watches`] or the end of the session.
    pub async fn add_watch(&self, path: &str, mode: AddWatchMode) -> Result<WatchStream> {
        let server_path = self.server_path(path)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let registration = Registration::Persistent {
            recursive: mode == AddWatchMode::PersistentRecursive,
            events: tx,
        };
        let request = Request::AddWatch(AddWatchRequest {
            path: server_path.clone(),
            mode: mode.code(),
        });
        self.call_ok(request, Some((server_path, registration)))
            .await?;
        Ok(WatchStream(rx))
    }

    /// Removes this session's watches of `kind` on `path` (NoWatcher if none).
    pub async fn remove_watches(&self, path: &str, kind: WatcherType) -> Result<()> {
        let server_path = self.server_path(path)?;
        let request = Request::RemoveWatches(WatchesRequest {
            path: server_path.clone(),
            watch_type: kind.code(),
        });
        self.call_ok(request, Some((server_path, Registration::Forget(kind))))
            .await
            .map(|_| ())
    }

    /// This session's ephemeral nodes whose path starts with `prefix`.
    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>> {
        let request = Request::GetEphemerals(PathRequest {
            path: self.server_path(prefix)?,
        });
        match self.call_ok(request, None).await? {
            Some(Response::Ephemerals(paths)) => {
                let mut paths: Vec<String> = paths.iter().map(|p| self.client_path(p)).collect();
                paths.sort();
                Ok(paths)
            }
            None => Ok(Vec::new()),
            other => Err(unexpected(other)),
        }
    }

    /// The number of nodes below `path`.
    pub async fn get_all_children_number(&self, path: &str) -> Result<i32> {
        let request = Request::GetAllChildrenNumber(PathRequest {
            path: self.server_path(path)?,
        });
        match self.call_ok(request, None).await? {
            Some(Response::AllChildrenNumber(n)) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// The identities this session is authenticated as.
    pub async fn who_am_i(&self) -> Result<Vec<ClientInfo>> {
        match self.call_ok(Request::WhoAmI, None).await? {
            Some(Response::WhoAmI(infos)) => Ok(infos),
            None => Ok(Vec::new()),
            other => Err(unexpected(other)),
        }
    }

    /// Adds credentials (e.g. `digest`, `user:password`) to this session;
    /// they are re-sent after every reconnect. AuthFailed ends the session.
    pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<()> {
        let request = Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: scheme.to_string(),
            auth: Bytes::copy_from_slice(auth),
        });
        self.call_ok(request, None).await.map(|_| ())
    }

    /// Creates `path` and any missing ancestors (persistent, open ACL).
    pub async fn ensure_path(&self, path: &str) -> Result<()> {
        path::validate(path)?;
        if path == "/" || self.exists(path).await?.is_some() {
            return Ok(());
        }
        let mut prefix = String::new();
        for segment in path[1..].split('/') {
            prefix.push('/');
            prefix.push_str(segment);
            match self.create(&prefix, b"", CreateMode::Persistent).await {
                Ok(_) | Err(Error::Zk(ErrorCode::NodeExists)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `path` and every node below it, breadth first (parents before their
    /// children). NoNode if `path` does not exist; nodes deleted while the
    /// tree is walked are left out.
    pub async fn subtree(&self, path: &str) -> Result<Vec<String>> {
        let mut order = vec![path.to_string()];
        let mut next = 0;
        while next < order.len() {
            let current = order[next].clone();
            next += 1;
            match self.get_children(&current).await {
                Ok(children) => order.extend(children.iter().map(|c| path::join(&current, c))),
                Err(Error::Zk(ErrorCode::NoNode)) if next > 1 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(order)
    }

    /// Deletes `path` and everything below it (like zkCli's deleteall).
    /// Nodes created concurrently below it may make this fail with NotEmpty.
    pub async fn delete_all(&self, path: &str) -> Result<()> {
        let order = match self.subtree(path).await {
            Ok(order) => order,
            Err(Error::Zk(ErrorCode::NoNode)) => return Ok(()),
            Err(e) => return Err(e),
        };
        for node in order.iter().rev() {
            match self.delete(node, None).await {
                Ok(()) | Err(Error::Zk(ErrorCode::NoNode)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn unexpected(body: Option<Response>) -> Error {
    Error::BadArguments(format!("unexpected reply body {body:?}"))
}
