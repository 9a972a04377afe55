//! The job's budget of open SSH connections. Each open connection holds a descriptor (its
//! socket), and a job may target more hosts than the process may hold descriptors: so an open
//! connection takes a slot, a host that needs one when none is free closes the connection idle
//! the longest (no call in progress on its host) and takes its slot, and when every connection
//! is busy the call waits for one to go idle. Running out of slots therefore slows a job down;
//! it never makes a host look unreachable.

use super::ssh::SshConnection;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Descriptors kept for everything but SSH sockets (the stream, logs, artifacts, the module
/// helper, local commands), plus an eighth of the limit.
const RESERVED: u64 = 32;

/// Open SSH connections of one job, bounded.
pub struct Pool {
    slots: Arc<Semaphore>,
    budget: usize,
    members: Mutex<Vec<Weak<SshConnection>>>,
    /// Told when a slot is given back or a connection goes idle.
    changed: Notify,
}

/// A slot held by an open connection; given back (and waiters told) when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    pool: Arc<Pool>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.changed.notify_waiters();
    }
}

impl Pool {
    /// A pool of `budget` slots (at least one).
    pub fn new(budget: usize) -> Arc<Pool> {
        let budget = budget.max(1);
        Arc::new(Pool {
            slots: Arc::new(Semaphore::new(budget)),
            budget,
            members: Mutex::new(Vec::new()),
            changed: Notify::new(),
        })
    }

    /// The job's pool: what the descriptor limit in force leaves for sockets, or
    /// `FTL2_MAX_CONNECTIONS` when that is lower.
    pub fn for_job() -> Arc<Pool> {
        let soft = crate::limits::current_nofile();
        let by_limit = soft.saturating_sub(RESERVED + soft / 8).max(1);
        let by_limit = usize::try_from(by_limit).unwrap_or(usize::MAX);
        let cap = crate::limits::env_cap("FTL2_MAX_CONNECTIONS", usize::MAX);
        let budget = by_limit.min(cap);
        crate::debugln!("connection budget: {budget} (descriptor limit {soft})");
        Pool::new(budget)
    }

    /// How many connections may be open at once.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Count `conn` among the connections that may be closed to free a slot.
    pub(super) fn register(&self, conn: &Arc<SshConnection>) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.retain(|w| w.strong_count() > 0);
        members.push(Arc::downgrade(conn));
    }

    /// Tell waiters that a connection went idle (its slot may now be taken over).
    pub(super) fn went_idle(&self) {
        self.changed.notify_waiters();
    }

    /// A slot for `me`: a free one, else the one of the connection idle the longest (closed
    /// for it), else the first to come free.
    pub(super) async fn acquire(self: &Arc<Self>, me: &SshConnection) -> Slot {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
                return Slot {
                    _permit: permit,
                    pool: Arc::clone(self),
                };
            }
            if self.close_least_recently_used(me) {
                continue;
            }
            changed.await;
        }
    }

    /// Close the open connection idle the longest, other than `me`; whether one was closed.
    fn close_least_recently_used(&self, me: &SshConnection) -> bool {
        let mut idle: Vec<Arc<SshConnection>> = self
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|c| !std::ptr::eq(c.as_ref(), me) && c.is_open_and_idle())
            .collect();
        idle.sort_by_key(|c| c.last_used());
        idle.iter().any(|c| c.close_if_idle())
    }
}
