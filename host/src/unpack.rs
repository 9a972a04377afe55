//! Unpacking the job's zip into the private data dir, safely.
//!
//! ansible-runner extracts whatever it is sent: entries with `../` land outside the directory, a
//! zipped symlink is followed when a later entry writes through it, and a few MB can inflate to
//! gigabytes. We restore what AWX relies on (unix modes, so `inventory/hosts` stays executable;
//! symlinks; mtimes, which the fact cache compares) and refuse everything else with a clear error.

use anyhow::{Context, Result, anyhow, bail};
use chrono::TimeZone;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

/// Limits on what a received zip may unpack to; configurable through the environment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest total of uncompressed bytes (`FTL2_UNZIP_MAX_BYTES`, default 1 GiB).
    pub max_total_bytes: u64,
    /// Largest uncompressed/compressed ratio for any entry over 1 MiB (`FTL2_UNZIP_MAX_RATIO`, default 200).
    pub max_ratio: u64,
    /// Largest number of entries (`FTL2_UNZIP_MAX_ENTRIES`, default 100000).
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_total_bytes: 1 << 30,
            max_ratio: 200,
            max_entries: 100_000,
        }
    }
}

impl Limits {
    /// The defaults, overridden by `FTL2_UNZIP_MAX_BYTES`, `FTL2_UNZIP_MAX_RATIO`, `FTL2_UNZIP_MAX_ENTRIES`.
    pub fn from_env() -> Result<Limits> {
        let mut l = Limits::default();
        if let Some(v) = env_u64("FTL2_UNZIP_MAX_BYTES")? {
            l.max_total_bytes = v;
        }
        if let Some(v) = env_u64("FTL2_UNZIP_MAX_RATIO")? {
            l.max_ratio = v;
        }
        if let Some(v) = env_u64("FTL2_UNZIP_MAX_ENTRIES")? {
            l.max_entries = v as usize;
        }
        Ok(l)
    }
}

fn env_u64(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("{name}={v:?} is not a whole number")),
        Err(_) => Ok(None),
    }
}

/// Entries under this size are exempt from the ratio check (small text compresses very well).
const RATIO_EXEMPT_BYTES: u64 = 1 << 20;
const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;
const S_IFDIR: u32 = 0o040000;

/// Extract `zip` over the directory `root` (created if missing), as ansible-runner does but safely.
pub fn unpack<R: Read + Seek>(zip: R, root: &Path, limits: Limits) -> Result<()> {
    let mut archive =
        zip::ZipArchive::new(zip).context("the received data is not a valid zip file")?;
    if archive.len() > limits.max_entries {
        bail!(
            "the zip has {} entries, over the limit of {}",
            archive.len(),
            limits.max_entries
        );
    }
    fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let root = root
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", root.display()))?;

    // Check the declared sizes first, so a bomb is refused before anything is written.
    let mut declared: u64 = 0;
    for i in 0..archive.len() {
        let f = archive.by_index_raw(i)?;
        declared = declared.saturating_add(f.size());
        let ratio_bad = f.size() > RATIO_EXEMPT_BYTES
            && f.size() / f.compressed_size().max(1) > limits.max_ratio;
        if ratio_bad {
            bail!(
                "zip entry {:?} inflates {} bytes to {} (ratio over {}): refusing a likely zip bomb",
                f.name(),
                f.compressed_size(),
                f.size(),
                limits.max_ratio
            );
        }
    }
    if declared > limits.max_total_bytes {
        bail!(
            "the zip unpacks to {declared} bytes, over the limit of {} bytes (FTL2_UNZIP_MAX_BYTES)",
            limits.max_total_bytes
        );
    }

    let mut budget = limits.max_total_bytes;
    let mut dirs: Vec<(PathBuf, u32, Option<SystemTime>)> = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name().to_string();
        let rel = safe_relative_path(&name)?;
        if rel.as_os_str().is_empty() {
            continue; // "./" or similar: the root itself
        }
        let mode = entry.unix_mode();
        let mtime = entry.last_modified().and_then(dos_time_as_local);
        let is_symlink = mode.is_some_and(|m| m & S_IFMT == S_IFLNK);
        let is_dir = !is_symlink && (entry.is_dir() || mode.is_some_and(|m| m & S_IFMT == S_IFDIR));
        let out = root.join(&rel);
        ensure_parents(&root, &rel)?;

        if is_dir {
            match fs::symlink_metadata(&out) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => {
                    remove_non_dir(&out)?;
                    create_dir(&out)?;
                }
                Err(_) => create_dir(&out)?,
            }
            dirs.push((out, mode.unwrap_or(0o755), mtime));
            continue;
        }

        // Never write through what is already there: replace symlinks, pipes and files alike.
        match fs::symlink_metadata(&out) {
            Ok(md) if md.is_dir() => {
                bail!(
                    "zip entry {name:?} is a file but {} is a directory",
                    out.display()
                )
            }
            Ok(_) => remove_non_dir(&out)?,
            Err(_) => {}
        }

        if is_symlink {
            let mut target = String::new();
            (&mut entry)
                .take(4096)
                .read_to_string(&mut target)
                .with_context(|| format!("reading the target of symlink {name:?}"))?;
            check_symlink_target(&root, &rel, &target)
                .with_context(|| format!("zip entry {name:?} is a symlink to {target:?}"))?;
            std::os::unix::fs::symlink(&target, &out)
                .with_context(|| format!("cannot create symlink {}", out.display()))?;
            continue;
        }

        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let copied = io::copy(&mut (&mut entry).take(budget.saturating_add(1)), &mut file)
            .with_context(|| format!("cannot unpack zip entry {name:?}"))?;
        if copied > budget {
            bail!(
                "the zip unpacks to more than {} bytes (FTL2_UNZIP_MAX_BYTES): refusing a likely zip bomb",
                limits.max_total_bytes
            );
        }
        budget -= copied;
        file.flush()?;
        // Modes as sent (inventory scripts stay executable), minus setuid/setgid/sticky bits.
        let perms = mode.map(|m| m & 0o777).unwrap_or(0o644);
        file.set_permissions(fs::Permissions::from_mode(perms))
            .with_context(|| format!("cannot set the mode of {}", out.display()))?;
        if let Some(t) = mtime {
            let _ = file.set_modified(t);
        }
    }
    // Directory modes last, so a read-only directory does not block its own entries; keep the
    // owner's rwx so the job (and `--delete`) can still use and remove it.
    for (dir, mode, mtime) in dirs.into_iter().rev() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode((mode & 0o777) | 0o700));
        if let (Some(t), Ok(f)) = (mtime, File::open(&dir)) {
            let _ = f.set_modified(t);
        }
    }
    Ok(())
}

/// The entry name as a relative path, or an error if it is absolute or climbs out with `..`.
fn safe_relative_path(name: &str) -> Result<PathBuf> {
    if name.contains('\0') || name.contains('\\') {
        bail!("zip entry {name:?} has a forbidden character");
    }
    let path = Path::new(name);
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                bail!(
                    "zip entry {name:?} is an absolute path: refusing to write outside the private data dir"
                )
            }
            Component::ParentDir => {
                bail!(
                    "zip entry {name:?} climbs out with '..': refusing to write outside the private data dir"
                )
            }
        }
    }
    Ok(rel)
}

/// Create the parent directories of `rel` under `root`, refusing to pass through a symlink.
fn ensure_parents(root: &Path, rel: &Path) -> Result<()> {
    let mut cur = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for part in parent.components() {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_symlink() => bail!(
                "zip entry {} would be written through the symlink {}",
                rel.display(),
                cur.display()
            ),
            Ok(md) if md.is_dir() => {}
            Ok(_) => bail!(
                "zip entry {} needs {} to be a directory",
                rel.display(),
                cur.display()
            ),
            Err(_) => create_dir(&cur)?,
        }
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir(path).with_context(|| format!("cannot create directory {}", path.display()))
}

fn remove_non_dir(path: &Path) -> Result<()> {
    fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))
}

/// A symlink at `rel` pointing at `target` must resolve inside `root`.
fn check_symlink_target(root: &Path, rel: &Path, target: &str) -> Result<()> {
    if target.is_empty() || target.contains('\0') {
        bail!("the symlink target is empty or invalid");
    }
    let t = Path::new(target);
    let joined = if t.is_absolute() {
        t.to_path_buf()
    } else {
        root.join(rel.parent().unwrap_or(Path::new(""))).join(t)
    };
    let normal = normalize(&joined).ok_or_else(|| anyhow!("it points above /"))?;
    if !normal.starts_with(root) {
        bail!("it points outside the private data dir: refusing it");
    }
    // If the target exists, also check where it really leads (through other symlinks).
    if let Ok(real) = normal.canonicalize()
        && !real.starts_with(root)
    {
        bail!(
            "it resolves to {} outside the private data dir: refusing it",
            real.display()
        );
    }
    Ok(())
}

/// Lexically resolve `.` and `..` in an absolute path; `None` if it climbs above `/`. Also used
/// to check controller-side destinations before any directory for them exists.
pub fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() || out.as_os_str().is_empty() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// A zip timestamp is DOS local time without a zone; read it as local time like ansible-runner.
fn dos_time_as_local(t: zip::DateTime) -> Option<SystemTime> {
    let date = chrono::NaiveDate::from_ymd_opt(t.year() as i32, t.month() as u32, t.day() as u32)?;
    let naive = date.and_hms_opt(t.hour() as u32, t.minute() as u32, t.second() as u32)?;
    let local = chrono::Local.from_local_datetime(&naive).earliest()?;
    Some(local.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use zip::write::SimpleFileOptions;

    fn build(entries: &[(&str, u32, &[u8])]) -> Cursor<Vec<u8>> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, mode, data) in entries {
            let opts = SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode);
            if mode & S_IFMT == S_IFLNK {
                w.add_symlink(*name, std::str::from_utf8(data).unwrap(), opts)
                    .unwrap();
            } else if name.ends_with('/') {
                w.add_directory(*name, opts).unwrap();
            } else {
                w.start_file(*name, opts).unwrap();
                w.write_all(data).unwrap();
            }
        }
        let mut c = w.finish().unwrap();
        c.set_position(0);
        c
    }

    #[test]
    fn modes_and_inner_symlinks_are_restored() {
        let dir = tempfile::tempdir().unwrap();
        let z = build(&[
            ("inventory/", 0o755, b""),
            ("inventory/hosts", 0o700, b"#!/bin/sh\n"),
            ("env/extravars", 0o600, b"a: 1\n"),
            ("project/link", S_IFLNK | 0o777, b"../env/extravars"),
        ]);
        unpack(z, dir.path(), Limits::default()).unwrap();
        let mode = |p: &str| {
            fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("inventory/hosts"), 0o700);
        assert_eq!(mode("env/extravars"), 0o600);
        assert_eq!(
            fs::read_link(dir.path().join("project/link")).unwrap(),
            Path::new("../env/extravars")
        );
    }

    #[test]
    fn escapes_are_refused() {
        for entries in [
            vec![("../evil", 0o644u32, &b"x"[..])],
            vec![("/tmp/evil", 0o644, b"x")],
            vec![("project/out", S_IFLNK | 0o777, b"/etc")],
            vec![("project/out", S_IFLNK | 0o777, b"../../etc")],
        ] {
            let dir = tempfile::tempdir().unwrap();
            let err =
                unpack(build(&entries), &dir.path().join("pdd"), Limits::default()).unwrap_err();
            assert!(format!("{err:#}").contains("refusing"), "{err:#}");
        }
    }

    #[test]
    fn writing_through_a_preexisting_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let pdd = dir.path().join("pdd");
        fs::create_dir_all(&pdd).unwrap();
        std::os::unix::fs::symlink(outside.path(), pdd.join("project")).unwrap();
        let err = unpack(
            build(&[("project/x", 0o644, b"x")]),
            &pdd,
            Limits::default(),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("through the symlink"),
            "{err:#}"
        );
        assert!(!outside.path().join("x").exists());
    }

    #[test]
    fn bombs_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let zeros = vec![0u8; 8 << 20];
        let err = unpack(
            build(&[("big", 0o644, &zeros)]),
            dir.path(),
            Limits::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("zip bomb"), "{err:#}");
        assert!(!dir.path().join("big").exists());
        let small = Limits {
            max_total_bytes: 1000,
            ..Limits::default()
        };
        let err = unpack(build(&[("a", 0o644, &[1u8; 2000])]), dir.path(), small).unwrap_err();
        assert!(format!("{err:#}").contains("over the limit"), "{err:#}");
    }
}
