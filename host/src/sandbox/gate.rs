//! Holding the script still. A few host operations hand a path in the script's scratch directory
//! to another program that opens it itself (synchronize's rsync), so it cannot be opened beneath
//! scratch the way every other controller file is (`crate::beneath`). While such an operation
//! checks the path and runs, the host holds the script: no wasm runs, so the script cannot swap
//! a directory for a link between the check and the use. The script parks at its next epoch tick
//! (every 20 ms) or is already parked while it waits for call results.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Shared by the sandbox thread (which parks) and the host operations (which hold). Until
/// [`GuestGate::start`] there is no script (ad hoc commands): holds do not wait.
#[derive(Debug)]
pub struct GuestGate {
    state: Mutex<State>,
    wake: Condvar,
}

impl Default for GuestGate {
    fn default() -> GuestGate {
        GuestGate {
            state: Mutex::new(State {
                holds: 0,
                parked: true,
                finished: true,
            }),
            wake: Condvar::new(),
        }
    }
}

#[derive(Debug)]
struct State {
    /// Host operations holding the script.
    holds: usize,
    /// The script runs no wasm now (parked, waiting for results, or not running at all).
    parked: bool,
    /// The script has ended (or never started): nothing to hold.
    finished: bool,
}

/// The script is running; dropping this says it has ended.
#[must_use]
pub struct Running(Arc<GuestGate>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// A hold on the script; it runs again when every hold is dropped.
#[must_use]
pub struct Hold(Arc<GuestGate>);

impl Drop for Hold {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        s.holds -= 1;
        self.0.wake.notify_all();
    }
}

impl GuestGate {
    /// Hold the script still; resolves once no wasm runs (at most an epoch tick later).
    pub async fn hold(self: &Arc<Self>) -> Hold {
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.holds += 1;
        }
        let hold = Hold(Arc::clone(self));
        loop {
            {
                let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if s.parked || s.finished {
                    return hold;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Sandbox thread, between wasm instructions: park while a hold is on, or until `abort`
    /// says the job is ending.
    pub fn checkpoint(&self, abort: impl Fn() -> bool) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.holds > 0 && !abort() {
            s.parked = true;
            s = self
                .wake
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.parked = false;
    }

    /// Sandbox thread: `wait` runs no wasm, so the script counts as parked meanwhile; before
    /// going back to wasm it parks while a hold is on.
    pub fn parked_while<T>(&self, wait: impl FnOnce() -> T, abort: impl Fn() -> bool) -> T {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).parked = true;
        let out = wait();
        self.checkpoint(abort);
        out
    }

    /// The script starts running wasm; it has ended when the guard is dropped (also on a
    /// panic), so no hold waits for a script that is gone.
    pub fn running(self: &Arc<Self>) -> Running {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.finished = false;
        s.parked = false;
        Running(Arc::clone(self))
    }

    fn finish(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.finished = true;
        s.parked = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[test]
    fn a_hold_waits_for_the_script_to_park_and_keeps_it_parked() {
        let gate = Arc::new(GuestGate::default());
        let steps = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let running = gate.running();
        let (g, n, s) = (Arc::clone(&gate), Arc::clone(&steps), Arc::clone(&stop));
        let script = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                n.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
                g.checkpoint(|| false);
            }
            drop(running);
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let hold = gate.hold().await;
            let before = steps.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(
                steps.load(Ordering::SeqCst),
                before,
                "the script ran while held"
            );
            drop(hold);
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(
                steps.load(Ordering::SeqCst) > before,
                "the script stayed held"
            );
        });
        stop.store(true, Ordering::SeqCst);
        script.join().unwrap();
        // A finished script is held at once.
        rt.block_on(async { drop(gate.hold().await) });
    }
}
