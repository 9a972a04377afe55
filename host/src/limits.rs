//! Process limits. A job holds one descriptor per connected host, and containers commonly start
//! with a soft `RLIMIT_NOFILE` of 1,024 under a much higher hard limit: like Go's runtime and
//! many servers, we raise the soft limit to the hard one at start, so a large inventory is not
//! cut short by a default nobody chose.

/// Raise the soft descriptor limit to the hard limit (capped by the kernel's `nr_open`); the
/// soft limit now in force, which is the job's descriptor budget.
pub fn raise_nofile() -> u64 {
    let Some(mut lim) = nofile() else {
        return 0;
    };
    let mut want = lim.rlim_max;
    if want == libc::RLIM_INFINITY
        && let Some(nr_open) = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    {
        want = nr_open;
    }
    if want > lim.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard one
        // is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = want;
        }
    }
    lim.rlim_cur
}

/// The soft descriptor limit in force now.
pub fn current_nofile() -> u64 {
    nofile().map_or(0, |l| l.rlim_cur)
}

/// The descriptor limits in force (soft and hard).
fn nofile() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// A size or count cap from the environment variable `var` (a positive integer), else `default`:
/// the caps on untrusted input (inventories, YAML) are the admin's to move.
pub fn env_cap(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let budget = super::raise_nofile();
        let lim = super::nofile().expect("getrlimit");
        assert_eq!(lim.rlim_cur, budget);
        assert!(lim.rlim_max == libc::RLIM_INFINITY || lim.rlim_cur == lim.rlim_max);
    }
}
