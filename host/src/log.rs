//! Diagnostic logging to a file, never to stdout or stderr.
//!
//! In worker mode stdout is the protocol and stderr is merged into it downstream, so `--logfile`
//! (or `FTL2_LOG_FILE`) is the only place diagnostics may go; without one, logging is off.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

static SINK: OnceLock<Mutex<File>> = OnceLock::new();
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Open the log file (appending). Errors are ignored: a bad log path must not fail a job.
/// `debug` (`--debug`) adds a line per host per module call and per SSH connection.
pub fn init(path: Option<&Path>, debug: bool) {
    DEBUG.store(debug, Ordering::Relaxed);
    let env_path = std::env::var_os("FTL2_LOG_FILE");
    let Some(path) = path.or(env_path.as_deref().map(Path::new)) else {
        return;
    };
    if let Ok(f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = SINK.set(Mutex::new(f));
    }
}

/// Append one timestamped line to the log file, if there is one.
pub fn write(args: std::fmt::Arguments<'_>) {
    if let Some(sink) = SINK.get()
        && let Ok(mut f) = sink.lock()
    {
        let _ = writeln!(
            f,
            "{} {}",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            args
        );
    }
}

/// Whether `--debug` asked for the per-call lines (and there is a file to write them to).
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed) && SINK.get().is_some()
}

/// Log a formatted line to the log file (no-op without one).
#[macro_export]
macro_rules! logln {
    ($($t:tt)*) => { $crate::log::write(format_args!($($t)*)) };
}

/// Log a formatted line only under `--debug` (arguments are not evaluated otherwise).
#[macro_export]
macro_rules! debugln {
    ($($t:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::write(format_args!($($t)*))
        }
    };
}
