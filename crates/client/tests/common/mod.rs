//! Runs each test against Roost and, where it is installed, Apache ZooKeeper.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use roost_client::{Client, ClientOptions};
use roost_tests::proxy::Link;
use roost_tests::servers::{zookeeper_installed, RoostServer, ZooKeeper};

/// Both servers run with tickTime=200 so sessions can be short (>= 400 ms).
pub fn on_each_server<F, Fut>(test: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let roost = RoostServer::start_with(|c| c.tick_time_ms = 200).expect("start roost");
    runtime
        .block_on(test(roost.addr.to_string()))
        .expect("against Roost");
    drop(roost);
    if zookeeper_installed() && std::env::var_os("ROOST_SKIP_ZOOKEEPER").is_none() {
        let zk = ZooKeeper::start(&["tickTime=200"]).expect("start ZooKeeper");
        runtime
            .block_on(test(zk.addr.to_string()))
            .expect("against Apache ZooKeeper");
    }
}

pub async fn connect(addr: &str) -> Client {
    Client::connect(addr).await.expect("connect")
}

/// A client with a short session, connected through a relay that can be cut.
pub async fn connect_via(link: &Link, session: Duration) -> Client {
    let options = ClientOptions {
        session_timeout: session,
        ..ClientOptions::default()
    };
    Client::connect_with(&link.listen.to_string(), options)
        .await
        .expect("connect through the relay")
}

/// A fresh test root per run, so runs on one server do not collide.
pub fn root(name: &str) -> String {
    format!("/{name}-{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}
