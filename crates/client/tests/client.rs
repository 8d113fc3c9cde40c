//! roost-client's operations, watches and session handling, against Roost
//! and (where installed) Apache ZooKeeper.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use roost_client::*;
use roost_tests::proxy::Link;

#[test]
fn crud_errors_sequential_and_stats() {
    on_each_server(|addr| async move {
        let zk = connect(&addr).await;
        let root = root("crud");
        assert_eq!(zk.create(&root, b"r", CreateMode::Persistent).await?, root);
        let node = format!("{root}/a");
        zk.create(&node, b"v1", CreateMode::Persistent).await?;
        assert_eq!(
            zk.create(&node, b"x", CreateMode::Persistent).await,
            Err(Error::Zk(ErrorCode::NodeExists))
        );
        let (data, stat) = zk.get_data(&node).await?;
        assert_eq!((data.as_slice(), stat.version), (&b"v1"[..], 0));
        let stat = zk.set_data(&node, b"v2", Some(0)).await?;
        assert_eq!(stat.version, 1);
        assert_eq!(
            zk.set_data(&node, b"v3", Some(0)).await,
            Err(Error::Zk(ErrorCode::BadVersion))
        );
        assert_eq!(
            zk.get_data(&format!("{root}/none")).await,
            Err(Error::Zk(ErrorCode::NoNode))
        );
        assert_eq!(zk.exists(&format!("{root}/none")).await?, None);
        assert_eq!(
            zk.delete(&root, None).await,
            Err(Error::Zk(ErrorCode::NotEmpty))
        );
        let first = zk
            .create(&format!("{root}/s-"), b"", CreateMode::PersistentSequential)
            .await?;
        let second = zk
            .create(&format!("{root}/s-"), b"", CreateMode::PersistentSequential)
            .await?;
        assert!(first.ends_with("s-0000000001"), "{first}");
        assert!(second.ends_with("s-0000000002"), "{second}");
        assert_eq!(
            zk.get_children(&root).await?,
            ["a", "s-0000000001", "s-0000000002"]
        );
        assert_eq!(zk.get_all_children_number(&root).await?, 3);
        let eph = zk
            .create(&format!("{root}/e"), b"", CreateMode::Ephemeral)
            .await?;
        assert_eq!(zk.get_ephemerals(&root).await?, vec![eph.clone()]);
        let (_, stat) = zk
            .create_with(
                &format!("{root}/c"),
                b"",
                &acl::open(),
                CreateMode::Container,
                None,
            )
            .await?;
        assert!(stat.czxid > 0);
        assert!(matches!(
            zk.create(&format!("{root}/bad/"), b"", CreateMode::Persistent)
                .await,
            Err(Error::BadArguments(_))
        ));
        zk.delete_all(&root).await?;
        assert_eq!(zk.exists(&root).await?, None);
        zk.close().await;
        assert_eq!(zk.state(), SessionState::Closed);
        assert_eq!(zk.exists("/").await, Err(Error::Closed));
        Ok(())
    });
}

#[test]
fn chroot_multi_and_multi_read() {
    on_each_server(|addr| async move {
        let plain = connect(&addr).await;
        let root = root("chroot");
        plain.create(&root, b"", CreateMode::Persistent).await?;
        let zk = connect(&format!("{addr}{root}")).await;
        let results = zk
            .multi(vec![
                Op::create("/x", b"1".to_vec(), CreateMode::Persistent),
                Op::create("/y", b"2".to_vec(), CreateMode::Persistent),
                Op::set_data("/x", b"3".to_vec(), Some(0)),
                Op::check("/y", 0),
            ])
            .await?;
        assert!(matches!(&results[0], OpResult::Create(p, _) if p == "/x"));
        assert!(matches!(&results[2], OpResult::SetData(s) if s.version == 1));
        assert_eq!(plain.get_data(&format!("{root}/x")).await?.0, b"3");
        // All or nothing: the failing check undoes the delete before it.
        let failed = zk
            .multi(vec![Op::delete("/x", None), Op::check("/y", 7)])
            .await;
        assert_eq!(
            failed,
            Err(Error::Multi {
                index: 1,
                code: ErrorCode::BadVersion
            })
        );
        assert!(zk.exists("/x").await?.is_some());
        let reads = zk
            .multi_read(vec![
                ReadOp::GetData("/x".into()),
                ReadOp::GetChildren("/".into()),
                ReadOp::GetData("/missing".into()),
            ])
            .await?;
        assert!(matches!(&reads[0], ReadResult::Data(d, _) if d == b"3"));
        assert_eq!(reads[1], ReadResult::Children(vec!["x".into(), "y".into()]));
        assert_eq!(reads[2], ReadResult::Error(ErrorCode::NoNode));
        zk.sync("/").await?;
        plain.delete_all(&root).await?;
        Ok(())
    });
}

#[test]
fn one_shot_and_persistent_watches() {
    on_each_server(|addr| async move {
        let zk = connect(&addr).await;
        let other = connect(&addr).await;
        let root = root("watch");
        let (stat, created) = zk.exists_w(&root).await?;
        assert!(stat.is_none());
        other.create(&root, b"", CreateMode::Persistent).await?;
        let event = created.wait().await?;
        assert_eq!(
            (event.event_type, event.path.as_str()),
            (EventType::NodeCreated, root.as_str())
        );
        let (_, _, changed) = zk.get_data_w(&root).await?;
        let (_, _, children) = zk.get_children_w(&root).await?;
        // On its own session: ZooKeeper 3.8 lets a persistent watch swallow a
        // one-shot watch of the same connection on the same path (fixed in 3.9).
        let observer = connect(&addr).await;
        let mut recursive = observer
            .add_watch(&root, AddWatchMode::PersistentRecursive)
            .await?;
        other.set_data(&root, b"x", None).await?;
        assert_eq!(changed.wait().await?.event_type, EventType::NodeDataChanged);
        let child = format!("{root}/kid");
        other.create(&child, b"", CreateMode::Persistent).await?;
        assert_eq!(
            children.wait().await?.event_type,
            EventType::NodeChildrenChanged
        );
        other.set_data(&child, b"y", None).await?;
        // The recursive watch saw the root change, the child's creation and
        // its change (not the child-list change), in order.
        let mut seen = Vec::new();
        for _ in 0..3 {
            let event = tokio::time::timeout(Duration::from_secs(5), recursive.next())
                .await?
                .expect("event");
            seen.push((event.event_type, event.path));
        }
        assert_eq!(
            seen,
            [
                (EventType::NodeDataChanged, root.clone()),
                (EventType::NodeCreated, child.clone()),
                (EventType::NodeDataChanged, child.clone()),
            ]
        );
        observer.remove_watches(&root, WatcherType::Any).await?;
        assert_eq!(
            observer.remove_watches(&root, WatcherType::Any).await,
            Err(Error::Zk(ErrorCode::NoWatcher))
        );
        assert_eq!(recursive.next().await, None);
        other.delete_all(&root).await?;
        Ok(())
    });
}

#[test]
fn digest_auth_and_acls() {
    on_each_server(|addr| async move {
        let owner = connect(&addr).await;
        owner.add_auth("digest", b"alice:secret").await?;
        let root = root("acl");
        let acl = vec![Acl::new(
            perms::ALL,
            "digest",
            acl::digest_id("alice", "secret"),
        )];
        owner
            .create_with(&root, b"private", &acl, CreateMode::Persistent, None)
            .await?;
        let stranger = connect(&addr).await;
        assert_eq!(
            stranger.get_data(&root).await,
            Err(Error::Zk(ErrorCode::NoAuth))
        );
        let who = owner.who_am_i().await?;
        assert!(
            who.iter()
                .any(|c| c.auth_scheme == "digest" && c.user == "alice"),
            "{who:?}"
        );
        assert_eq!(owner.get_acl(&root).await?.0, acl);
        owner.delete(&root, None).await?;
        Ok(())
    });
}

#[test]
fn a_dropped_connection_keeps_the_session_its_ephemerals_and_its_watches() {
    on_each_server(|addr| async move {
        let target: SocketAddr = addr.parse()?;
        let link = Link::start(target)?;
        let zk = connect_via(&link, Duration::from_secs(6)).await;
        let other = connect(&addr).await;
        let root = root("reconnect");
        other.create(&root, b"", CreateMode::Persistent).await?;
        let eph = zk
            .create(&format!("{root}/eph"), b"", CreateMode::Ephemeral)
            .await?;
        let (_, _, watch) = zk.get_data_w(&root).await?;
        let session = zk.session_id();
        let mut states = zk.state_changes();

        link.cut();
        // Changed while the client is away: setWatches2 delivers it after.
        other.set_data(&root, b"while away", None).await?;
        assert_eq!(states.recv().await?, SessionState::Disconnected);
        link.heal();
        loop {
            if states.recv().await? == SessionState::Connected {
                break;
            }
        }
        assert_eq!(zk.session_id(), session);
        let event = tokio::time::timeout(Duration::from_secs(5), watch.wait()).await??;
        assert_eq!(event.event_type, EventType::NodeDataChanged);
        assert!(other.exists(&eph).await?.is_some());
        zk.close().await;
        other.delete_all(&root).await?;
        Ok(())
    });
}

#[test]
fn an_expired_session_is_reported_and_final() {
    on_each_server(|addr| async move {
        let target: SocketAddr = addr.parse()?;
        let link = Link::start(target)?;
        let zk = connect_via(&link, Duration::from_millis(1200)).await;
        let other = connect(&addr).await;
        let root = root("expire");
        other.create(&root, b"", CreateMode::Persistent).await?;
        let eph = zk
            .create(&format!("{root}/eph"), b"", CreateMode::Ephemeral)
            .await?;
        let (_, watch) = zk.exists_w(&eph).await?;
        link.cut();
        // The server expires the session once its timeout passes.
        let gone = async {
            while other.exists(&eph).await?.is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<_, Error>(())
        };
        tokio::time::timeout(Duration::from_secs(20), gone).await??;
        link.heal();
        let event = tokio::time::timeout(Duration::from_secs(10), watch.wait()).await??;
        assert_eq!(
            (event.event_type, event.state),
            (EventType::None, KeeperState::Expired)
        );
        assert_eq!(zk.state(), SessionState::Expired);
        assert_eq!(
            zk.exists("/").await,
            Err(Error::Zk(ErrorCode::SessionExpired))
        );
        other.delete_all(&root).await?;
        Ok(())
    });
}
