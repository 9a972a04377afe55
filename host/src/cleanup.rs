//! `worker cleanup`: the periodic removal of old private data dirs AWX runs on execution nodes.
//!
//! We do what the flags mean rather than what ansible-runner 2.4.3 does: its live-job check is
//! inverted (it skips dead jobs and deletes live ones), and AWX's `--exclude-strings="a b"`
//! arrives as one argument, which it then never matches. AWX greps the last line for
//! `(changed: True)`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// The `worker cleanup` options.
#[derive(Debug, Clone)]
pub struct CleanupArgs {
    /// `--file-pattern`: glob of private data dirs.
    pub file_pattern: Option<String>,
    /// `--exclude-strings`: keep dirs whose path contains any of these.
    pub exclude_strings: Vec<String>,
    /// `--remove-images`: image tags to untag.
    pub remove_images: Vec<String>,
    /// `--grace-period`: minutes since last modification during which a dir is kept.
    pub grace_period: u64,
    /// `--image-prune`.
    pub image_prune: bool,
    /// `--process-isolation-executable` (podman or docker).
    pub process_isolation_executable: String,
}

/// Directories a pattern must never reach.
const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/dev", "/home", "/lib", "/mnt", "/proc", "/run", "/sys", "/usr", "/boot", "/etc",
    "/opt", "/sbin", "/tmp", "/var",
];

/// Run the cleanup; prints its report on stdout and returns the exit code.
pub fn run(args: &CleanupArgs) -> i32 {
    // One argument may hold several words (AWX quotes the whole list), and the help text promises commas.
    let excludes: Vec<String> = args
        .exclude_strings
        .iter()
        .flat_map(|s| s.split(|c: char| c.is_whitespace() || c == ','))
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let mut dir_ct = 0;
    let mut image_ct = 0;
    let mut pruned = false;

    if let Some(pattern) = &args.file_pattern {
        let matches = match glob::glob(pattern) {
            Ok(paths) => paths.filter_map(Result::ok).collect::<Vec<_>>(),
            Err(e) => {
                eprintln!("Invalid --file-pattern {pattern:?}: {e}");
                return 1;
            }
        };
        let bad: Vec<String> = matches
            .iter()
            .filter(|p| is_system_dir(p))
            .map(|p| p.display().to_string())
            .collect();
        if !bad.is_empty() {
            eprintln!(
                "Provided pattern could result in deleting system folders:\n{}\nRefusing to continue for user system safety.",
                bad.join(" ")
            );
            return 1;
        }
        let grace = Duration::from_secs(args.grace_period.saturating_mul(60));
        for dir in matches {
            let shown = dir.to_string_lossy();
            if excludes.iter().any(|e| shown.contains(e.as_str())) {
                continue;
            }
            if args.grace_period > 0 && modified_within(&dir, grace) {
                continue;
            }
            if job_is_alive(&dir) {
                println!("Excluding running project {shown} from cleanup");
                continue;
            }
            let removed = if dir.is_dir() {
                std::fs::remove_dir_all(&dir)
            } else {
                std::fs::remove_file(&dir)
            };
            match removed {
                Ok(()) => dir_ct += 1,
                Err(e) => println!("Could not remove {shown}: {e}"),
            }
        }
        if dir_ct > 0 {
            println!("Removed {dir_ct} private data dir(s) in pattern {pattern}");
        }
    }

    let exe = &args.process_isolation_executable;
    if !args.remove_images.is_empty() {
        for tag in &args.remove_images {
            let out = if exe.ends_with("podman") {
                Command::new(exe).args(["untag", tag]).output()
            } else {
                Command::new(exe).args(["rmi", tag, "-f"]).output()
            };
            match out {
                Ok(o) if o.status.success() => image_ct += 1,
                Ok(o) => println!(
                    "Could not remove image {tag}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => println!("Could not run {exe} to remove image {tag}: {e}"),
            }
        }
        if image_ct > 0 {
            println!("Removed {image_ct} image(s)");
        }
    }

    if args.image_prune {
        match Command::new(exe).args(["image", "prune", "-f"]).output() {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let text = text.trim();
                pruned = !text.is_empty() && text != "Total reclaimed space: 0B";
                if pruned {
                    println!("Pruned images");
                }
            }
            Ok(o) => println!(
                "Could not prune images: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => println!("Could not run {exe} to prune images: {e}"),
        }
    }

    let changed = dir_ct > 0 || image_ct > 0 || pruned;
    println!("(changed: {})", if changed { "True" } else { "False" });
    0
}

fn is_system_dir(p: &Path) -> bool {
    let resolved = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let tmp = std::env::temp_dir();
    SYSTEM_DIRS
        .iter()
        .map(PathBuf::from)
        .chain([tmp.clone(), tmp.canonicalize().unwrap_or(tmp)])
        .any(|s| s == p || s == resolved || s.canonicalize().is_ok_and(|c| c == resolved))
}

fn modified_within(p: &Path, grace: Duration) -> bool {
    let Ok(md) = std::fs::metadata(p) else {
        return false;
    };
    let Ok(mtime) = md.modified() else {
        return false;
    };
    SystemTime::now()
        .duration_since(mtime)
        .map(|age| age < grace)
        .unwrap_or(true)
}

/// A job is alive when its private data dir holds a `pid` file naming a running process.
fn job_is_alive(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("pid")) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists; it sends nothing.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
