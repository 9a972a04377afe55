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
    /// Hosts waiting for a slot, and slots of connections closed for them that are on their
    /// way back (a closed session gives its slot back once it has ended): a waiter closes
    /// another connection only when no slot is already coming for it.
    waits: Mutex<Waits>,
}

#[derive(Default)]
struct Waits {
    waiting: usize,
    returning: usize,
}

/// A slot held by an open connection; given back (and waiters told) when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    pool: Arc<Pool>,
    /// Closed to free it for a waiting host: counted as on its way back until dropped.
    returning: std::sync::atomic::AtomicBool,
}

impl Slot {
    /// This slot's connection is being closed for a waiting host.
    pub(super) fn mark_returning(&self) {
        if !self
            .returning
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.pool.waits().returning += 1;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.returning.load(std::sync::atomic::Ordering::SeqCst) {
            let mut w = self.pool.waits();
            w.returning = w.returning.saturating_sub(1);
        }
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
            waits: Mutex::new(Waits::default()),
        })
    }

    fn waits(&self) -> std::sync::MutexGuard<'_, Waits> {
        self.waits.lock().unwrap_or_else(|e| e.into_inner())
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
        let slot = |permit| Slot {
            _permit: permit,
            pool: Arc::clone(self),
            returning: Default::default(),
        };
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return slot(permit);
        }
        self.waits().waiting += 1;
        // Counted out however the wait ends (a call given up on drops this future).
        struct Waiting<'a>(&'a Pool);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.waits().waiting -= 1;
            }
        }
        let _waiting = Waiting(self);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
                return slot(permit);
            }
            // Close one only when fewer slots are on their way back than hosts wait for them.
            let close = {
                let w = self.waits();
                w.returning < w.waiting
            };
            if close {
                self.close_least_recently_used(me);
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
