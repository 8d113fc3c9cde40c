//! The recipes users reach for in kazoo and Curator. Each module documents
//! its guarantee and what happens when a session or a process dies.

pub mod barrier;
pub mod counter;
pub mod election;
pub mod lock;
pub mod party;
pub mod queue;
pub mod semaphore;
pub mod tree_cache;
pub mod watchers;

pub use barrier::{Barrier, DoubleBarrier};
pub use counter::Counter;
pub use election::{Election, LeaderLatch};
pub use lock::{Lock, LockKind};
pub use party::Party;
pub use queue::{LockingQueue, Queue, Taken};
pub use semaphore::Semaphore;
pub use tree_cache::TreeCache;
pub use watchers::{ChildrenWatch, DataWatch};
