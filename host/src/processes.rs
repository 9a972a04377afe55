//! The processes a job leaves behind. The worker adopts orphans (`PR_SET_CHILD_SUBREAPER`), so
//! everything a job started, directly or not (a module's background process, the resident
//! module runner of the local connection, the original runner's ansible-playbook), stays below
//! it and is ended when the job ends or is canceled: nothing keeps running on the execution node.

use crate::logln;
use std::time::Duration;

/// Make orphaned descendants our children instead of init's, so they can still be found.
pub fn adopt_orphans() {
    // SAFETY: prctl(2) with PR_SET_CHILD_SUBREAPER only changes this process's own attribute.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// End every process below us: SIGTERM, then SIGKILL after a grace period. They are not reaped
/// here: some are children tokio still owns (and will wait for), and reaping those would let
/// their pids be reused under it; the exited ones are zombies only until the worker exits.
pub async fn end_all_below_us() {
    let pids: Vec<i32> = below(std::process::id())
        .into_iter()
        .map(|p| p as i32)
        .collect();
    if pids.is_empty() {
        return;
    }
    logln!("ending processes the job left behind: {pids:?}");
    // SAFETY: kill(2) on processes below us.
    terminate(
        &pids,
        |p, sig| unsafe { libc::kill(p, sig) },
        |p| proc_stat(p as u32).is_some_and(|(state, _)| state != "Z"),
    )
    .await;
}

/// SIGTERM each of `targets`, give them two seconds to go, then SIGKILL those still `alive`.
async fn terminate(targets: &[i32], send: impl Fn(i32, i32) -> i32, alive: impl Fn(i32) -> bool) {
    for t in targets {
        send(*t, libc::SIGTERM);
    }
    for _ in 0..20 {
        if !targets.iter().any(|t| alive(*t)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in targets.iter().filter(|t| alive(**t)) {
        send(*t, libc::SIGKILL);
    }
}

/// The state letter and parent pid of `pid`, from `/proc/<pid>/stat` ("pid (comm) state ppid
/// ..."; comm may hold spaces and parentheses).
fn proc_stat(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.to_string();
    Some((state, fields.next()?.parse().ok()?))
}

/// Reap exited children we adopted, so none stays a zombie.
fn reap() {
    // SAFETY: waitpid(2) on any child, without blocking.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// The process groups of every process below `pid` (from /proc), other than our own group.
pub fn groups_below(pid: u32) -> Vec<i32> {
    let below = below(pid);
    // SAFETY: getpgid(2) only reads; a pid that is gone answers -1.
    let ours = unsafe { libc::getpgid(0) };
    let mut groups: Vec<i32> = below
        .iter()
        .map(|p| unsafe { libc::getpgid(*p as i32) })
        .filter(|g| *g > 1 && *g != ours)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// Every process below `pid` (children, their children, ...), from /proc.
pub fn below(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Some(p) = entry.file_name().to_str().and_then(|n| n.parse().ok())
                && let Some((_, ppid)) = proc_stat(p)
            {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut below = vec![pid];
    let mut i = 0;
    while i < below.len() {
        let parent = below[i];
        below.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    below.remove(0);
    below
}

/// End what is left of the process groups: SIGTERM, then SIGKILL after a
/// grace period, so a canceled job leaves nothing running on the execution node.
pub async fn end_groups(groups: &[i32]) {
    // SAFETY: killpg(2) on groups that were below our child; signal 0 only probes.
    let alive = |g: i32| unsafe { libc::killpg(g, 0) } == 0;
    let left: Vec<i32> = groups.iter().copied().filter(|g| alive(*g)).collect();
    if left.is_empty() {
        return;
    }
    logln!("ending process groups left behind: {left:?}");
    // SAFETY: killpg(2) on groups that were below our child.
    terminate(&left, |g, sig| unsafe { libc::killpg(g, sig) }, alive).await;
    reap();
}
