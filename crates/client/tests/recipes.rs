//! Recipes under contention and failure, against Roost and (where installed)
//! Apache ZooKeeper.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use roost_client::recipes::*;
use roost_client::*;
use roost_tests::proxy::Link;

/// Tracks how many holders are inside a critical section at once.
#[derive(Default)]
struct Occupancy {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Occupancy {
    fn enter(&self) -> usize {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        now
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

#[test]
fn a_lock_excludes_many_contenders_and_fencing_tokens_grow() {
    on_each_server(|addr| async move {
        let path = root("lock");
        let inside = Arc::new(Occupancy::default());
        let tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let (addr, path, inside, tokens) =
                (addr.clone(), path.clone(), inside.clone(), tokens.clone());
            tasks.push(tokio::spawn(async move {
                let zk = connect(&addr).await;
                let mut lock = Lock::new(&zk, &path, &format!("worker-{worker}"));
                for _ in 0..5 {
                    let token = lock.acquire().await?;
                    assert_eq!(inside.enter(), 1, "two holders at once");
                    tokens.lock().unwrap().push(token);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    inside.leave();
                    lock.release().await?;
                }
                zk.close().await;
                Ok::<_, Error>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        assert_eq!(inside.peak(), 1);
        // Tokens were handed out in increasing order.
        let tokens = tokens.lock().unwrap().clone();
        assert_eq!(tokens.len(), 40);
        assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
        let zk = connect(&addr).await;
        assert!(zk.get_children(&path).await?.is_empty());
        zk.delete_all(&path).await?;
        Ok(())
    });
}

#[test]
fn readers_share_writers_are_exclusive_and_readers_wait_only_for_earlier_writers() {
    on_each_server(|addr| async move {
        let path = root("rwlock");
        let readers = Arc::new(Occupancy::default());
        let writers = Arc::new(Occupancy::default());
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let (addr, path, readers, writers) =
                (addr.clone(), path.clone(), readers.clone(), writers.clone());
            tasks.push(tokio::spawn(async move {
                let zk = connect(&addr).await;
                for round in 0..4 {
                    if (worker + round) % 4 == 0 {
                        let mut lock = Lock::write(&zk, &path, "writer");
                        lock.acquire().await?;
                        assert_eq!(writers.enter(), 1);
                        assert_eq!(
                            readers.now.load(Ordering::SeqCst),
                            0,
                            "reader inside with a writer"
                        );
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        writers.leave();
                        lock.release().await?;
                    } else {
                        let mut lock = Lock::read(&zk, &path, "reader");
                        lock.acquire().await?;
                        readers.enter();
                        assert_eq!(
                            writers.now.load(Ordering::SeqCst),
                            0,
                            "writer inside with a reader"
                        );
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        readers.leave();
                        lock.release().await?;
                    }
                }
                zk.close().await;
                Ok::<_, Error>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        assert_eq!(writers.peak(), 1);
        assert!(readers.peak() > 1, "readers never overlapped");

        // A reader behind a held read lock gets in at once; behind a waiting
        // writer it waits.
        let zk = connect(&addr).await;
        let mut first = Lock::read(&zk, &path, "r1");
        first.acquire().await?;
        let mut second = Lock::read(&zk, &path, "r2");
        assert!(second
            .acquire_timeout(Duration::from_secs(2))
            .await?
            .is_some());
        second.release().await?;
        let writer_client = connect(&addr).await;
        let writer_path = path.clone();
        let writer = tokio::spawn(async move {
            let mut lock = Lock::write(&writer_client, &writer_path, "w");
            lock.acquire().await?;
            lock.release().await?;
            Ok::<_, Error>(())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut third = Lock::read(&zk, &path, "r3");
        assert_eq!(
            third.acquire_timeout(Duration::from_millis(300)).await?,
            None
        );
        first.release().await?;
        writer.await??;
        zk.delete_all(&path).await?;
        Ok(())
    });
}

#[test]
fn a_lock_is_released_when_its_holder_session_expires() {
    on_each_server(|addr| async move {
        let target: SocketAddr = addr.parse()?;
        let link = Link::start(target)?;
        let holder = connect_via(&link, Duration::from_millis(1200)).await;
        let path = root("expiry-lock");
        let mut held = Lock::new(&holder, &path, "doomed");
        let doomed_token = held.acquire().await?;
        let zk = connect(&addr).await;
        let mut waiting = Lock::new(&zk, &path, "survivor");
        assert_eq!(
            waiting.acquire_timeout(Duration::from_millis(200)).await?,
            None
        );
        link.cut();
        let token = tokio::time::timeout(Duration::from_secs(20), waiting.acquire()).await??;
        assert!(token > doomed_token);
        waiting.release().await?;
        zk.delete_all(&path).await?;
        Ok(())
    });
}

#[test]
fn leadership_passes_on_when_the_leader_dies() {
    on_each_server(|addr| async move {
        let path = root("election");
        let mut clients = Vec::new();
        let mut latches = Vec::new();
        for i in 0..3 {
            let zk = connect(&addr).await;
            latches.push(LeaderLatch::new(&zk, &path, &format!("c{i}")));
            clients.push(zk);
        }
        let first = latches[0].await_leadership().await?;
        assert!(latches[0].has_leadership());
        let mut second = latches.remove(1);
        let waiter = tokio::spawn(async move {
            let token = second.await_leadership().await?;
            Ok::<_, Error>((second, token))
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "two leaders at once");
        assert_eq!(latches[0].participants().await?, ["c0", "c1"]);
        // The leader's process dies: its session ends, the next one leads.
        clients[0].close().await;
        let (second, token) = tokio::time::timeout(Duration::from_secs(10), waiter).await???;
        assert!(second.has_leadership() && token > first);
        let (third, third_path) = (clients[2].clone(), path.clone());
        let ran = tokio::spawn(async move {
            Election::run(&third, &third_path, "c2", |_| async { 42 }).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!ran.is_finished(), "ran while another contender led");
        clients[1].close().await;
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), ran).await???,
            42
        );
        clients[2].delete_all(&path).await?;
        Ok(())
    });
}

#[test]
fn locking_queue_items_are_consumed_exactly_once_with_consumers_dying_mid_item() {
    on_each_server(|addr| async move {
        let path = root("lqueue");
        let results = format!("{path}-results");
        let zk = connect(&addr).await;
        zk.ensure_path(&results).await?;
        let producer = LockingQueue::new(&zk, &path, "producer");
        let items: Vec<Vec<u8>> = (0..60).map(|i| format!("item-{i}").into_bytes()).collect();
        producer.put_all(&items, 100).await?;
        assert_eq!(producer.len().await?, 60);

        // A consumer takes an item and dies before consuming it.
        let doomed = connect(&addr).await;
        let mut dying = LockingQueue::new(&doomed, &path, "doomed");
        let abandoned = dying.take(Duration::from_secs(5)).await?.expect("an item");
        doomed.close().await;

        let mut tasks = Vec::new();
        for worker in 0..4 {
            let (addr, path, results) = (addr.clone(), path.clone(), results.clone());
            tasks.push(tokio::spawn(async move {
                let zk = connect(&addr).await;
                let mut queue = LockingQueue::new(&zk, &path, &format!("w{worker}"));
                let mut done = Vec::new();
                while let Some(item) = queue.take(Duration::from_millis(500)).await? {
                    let result = format!("{results}/{}", String::from_utf8_lossy(&item.data));
                    queue
                        .consume_with(vec![Op::create(
                            result,
                            b"ok".to_vec(),
                            CreateMode::Persistent,
                        )])
                        .await?;
                    done.push(item.name);
                }
                zk.close().await;
                Ok::<_, Error>(done)
            }));
        }
        let mut consumed = Vec::new();
        for task in tasks {
            consumed.extend(task.await??);
        }
        consumed.sort();
        let before = consumed.len();
        consumed.dedup();
        assert_eq!(before, consumed.len(), "an item was consumed twice");
        assert_eq!(consumed.len(), 60);
        assert!(consumed.contains(&abandoned.name));
        assert_eq!(zk.get_children(&results).await?.len(), 60);
        assert_eq!(producer.len().await?, 0);

        // A consumer that lost its claim cannot commit.
        producer.put(b"late", 1).await?;
        let mut queue = LockingQueue::new(&zk, &path, "checker");
        let item = queue.take(Duration::from_secs(5)).await?.expect("item");
        zk.delete(&format!("{path}/taken/{}", item.name), None)
            .await?;
        let outcome = queue
            .consume_with(vec![Op::create(
                format!("{results}/late"),
                b"x".to_vec(),
                CreateMode::Persistent,
            )])
            .await;
        assert_eq!(
            outcome,
            Err(Error::Multi {
                index: 0,
                code: ErrorCode::NoNode
            })
        );
        assert_eq!(zk.exists(&format!("{results}/late")).await?, None);
        zk.delete_all(&path).await?;
        zk.delete_all(&results).await?;
        Ok(())
    });
}

#[test]
fn counters_are_exact_under_contention() {
    on_each_server(|addr| async move {
        let path = root("counter");
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (addr, path) = (addr.clone(), path.clone());
            tasks.push(tokio::spawn(async move {
                let zk = connect(&addr).await;
                let counter = Counter::new(&zk, &path);
                for _ in 0..20 {
                    counter.add(1).await?;
                }
                zk.close().await;
                Ok::<_, Error>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let zk = connect(&addr).await;
        assert_eq!(Counter::new(&zk, &path).value().await?, 120);
        assert_eq!(Counter::new(&zk, &path).add(-20).await?, 100);
        zk.delete(&path, None).await?;
        Ok(())
    });
}

#[test]
fn queues_barriers_semaphores_parties_and_caches() {
    on_each_server(|addr| async move {
        let base = root("misc");
        let zk = connect(&addr).await;

        let queue = Queue::new(&zk, &format!("{base}/queue"));
        queue.put(b"a").await?;
        queue.put(b"b").await?;
        assert_eq!(queue.get().await?.as_deref(), Some(&b"a"[..]));
        assert_eq!(
            queue.take(Duration::from_secs(1)).await?.as_deref(),
            Some(&b"b"[..])
        );
        assert_eq!(queue.take(Duration::from_millis(200)).await?, None);

        let barrier = Barrier::new(&zk, &format!("{base}/barrier"));
        barrier.create().await?;
        assert!(!barrier.wait(Duration::from_millis(200)).await?);
        let lowering = {
            let other = connect(&addr).await;
            let path = format!("{base}/barrier");
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Barrier::new(&other, &path).remove().await
            })
        };
        assert!(barrier.wait(Duration::from_secs(5)).await?);
        lowering.await??;

        let mut entering = Vec::new();
        for _ in 0..3 {
            let (addr, path) = (addr.clone(), format!("{base}/double"));
            entering.push(tokio::spawn(async move {
                let zk = connect(&addr).await;
                let barrier = DoubleBarrier::new(&zk, &path, 3);
                barrier.enter().await?;
                barrier.leave().await?;
                zk.close().await;
                Ok::<_, Error>(())
            }));
        }
        for task in entering {
            tokio::time::timeout(Duration::from_secs(10), task).await???;
        }

        let holders = Arc::new(Occupancy::default());
        let mut leases = Vec::new();
        for i in 0..5 {
            let (addr, path, holders) = (addr.clone(), format!("{base}/sem"), holders.clone());
            leases.push(tokio::spawn(async move {
                let zk = connect(&addr).await;
                let mut sem = Semaphore::new(&zk, &path, &format!("s{i}"), 2);
                sem.acquire().await?;
                assert!(holders.enter() <= 2, "more than 2 leases");
                tokio::time::sleep(Duration::from_millis(50)).await;
                holders.leave();
                sem.release().await?;
                zk.close().await;
                Ok::<_, Error>(())
            }));
        }
        for task in leases {
            task.await??;
        }
        assert_eq!(holders.peak(), 2);

        let member = connect(&addr).await;
        let mut party = Party::new(&member, &format!("{base}/party"), "m1");
        party.join().await?;
        let watcher = Party::new(&zk, &format!("{base}/party"), "observer");
        assert_eq!(watcher.members().await?, ["m1"]);
        member.close().await;
        assert!(watcher.members().await?.is_empty());

        let cache_root = format!("{base}/cache");
        zk.ensure_path(&cache_root).await?;
        let cache = TreeCache::start(&zk, &cache_root).await?;
        let mut data_watch = DataWatch::new(&zk, &format!("{cache_root}/a"));
        assert_eq!(data_watch.next().await, Some(None));
        zk.create(&format!("{cache_root}/a"), b"1", CreateMode::Persistent)
            .await?;
        zk.create(&format!("{cache_root}/a/b"), b"2", CreateMode::Persistent)
            .await?;
        let seen = data_watch.next().await.flatten().map(|(d, _)| d);
        assert_eq!(seen.as_deref(), Some(&b"1"[..]));
        cache.synced().await?;
        assert_eq!(
            cache.get(&format!("{cache_root}/a/b")).map(|(d, _)| d),
            Some(b"2".to_vec())
        );
        assert_eq!(cache.children(&cache_root), ["a"]);
        zk.delete_all(&format!("{cache_root}/a")).await?;
        cache.synced().await?;
        assert_eq!(cache.paths(), vec![cache_root]);
        zk.delete_all(&base).await?;
        Ok(())
    });
}
