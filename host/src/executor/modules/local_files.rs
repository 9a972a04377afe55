//! The controller files a script may name (copy and template sources, fetch destinations, the
//! files action plugins are handed): only beneath the job's directories (the script's, its
//! scratch), and every one opened beneath its directory by the kernel ([`crate::beneath`]), so a
//! symbolic link or `..` can never lead a module out of them, whatever the script arranged in
//! its scratch directory before or during the call.

use crate::beneath::{Dir, Kind};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where modules may read and write files on the controller (the EE) itself: `copy src=`,
/// `template src=` and `fetch dest=`. Scripts are untrusted, so the EE's own files are off limits.
#[derive(Debug, Clone, Default)]
pub struct LocalFiles {
    /// Relative local paths are resolved against this directory (the script's).
    pub base: PathBuf,
    /// Directories local sources may come from.
    pub read_roots: Vec<PathBuf>,
    /// Directories local destinations may go to.
    pub write_roots: Vec<PathBuf>,
    /// Holds the script still while a path in its directories is handed to another program
    /// (which opens it itself, so it cannot be opened beneath here).
    pub gate: std::sync::Arc<crate::sandbox::gate::GuestGate>,
}

/// A controller path a script named, placed beneath one of the job's directories: every use of
/// it opens it beneath that directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPath {
    root: PathBuf,
    rel: PathBuf,
}

impl LocalFiles {
    /// `path` (relative ones against `base`) as a path beneath one of `roots`, by its text:
    /// `..` and links are then resolved by the kernel, beneath that root, at each use.
    fn locate(
        &self,
        path: &str,
        base: &Path,
        roots: &[PathBuf],
        what: &str,
    ) -> Result<LocalPath, String> {
        let p = Path::new(path);
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        };
        let normal = crate::unpack::normalize(&joined).unwrap_or(joined);
        for root in roots {
            let real = root.canonicalize().ok();
            for r in std::iter::once(root).chain(real.as_ref()) {
                if let Ok(rel) = normal.strip_prefix(r) {
                    return Ok(LocalPath {
                        root: r.clone(),
                        rel: rel.to_path_buf(),
                    });
                }
            }
        }
        Err(format!(
            "{what} {path} is outside the directories this job may use on the controller ({})",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// Where Ansible's `_find_needle` looks for a controller file of `kind` (`files`, ...):
    /// `<script dir>/<kind>/<path>`, then `<script dir>/<path>`; an absolute path as given.
    pub fn needle_candidates(&self, kind: &str, path: &str) -> Vec<PathBuf> {
        if Path::new(path).is_absolute() {
            vec![PathBuf::from(path)]
        } else {
            vec![self.base.join(kind).join(path), self.base.join(path)]
        }
    }

    /// The first of [`LocalFiles::needle_candidates`] that is there, with where the script may
    /// read it (Ok), or why it may not (Err, so the call fails saying so rather than reporting
    /// it missing); None when no candidate is there.
    fn first_needle(&self, kind: &str, path: &str) -> Option<(PathBuf, Result<LocalPath, String>)> {
        for candidate in self.needle_candidates(kind, path) {
            let found = match self.readable(&candidate.to_string_lossy()) {
                Ok(local) => match local.metadata() {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Ok(_) => Ok(local),
                    Err(e) => Err(format!("{}: {e}", candidate.display())),
                },
                Err(why) if candidate.symlink_metadata().is_ok() => Err(why),
                Err(_) => continue,
            };
            return Some((candidate, found));
        }
        None
    }

    /// Ansible's `_find_needle`: the first candidate that is there (see `first_needle`).
    pub fn found_needle(&self, kind: &str, path: &str) -> Option<Result<LocalPath, String>> {
        self.first_needle(kind, path).map(|(_, found)| found)
    }

    /// Ansible's `_find_needle` for a native module's source: the first of
    /// [`LocalFiles::needle_candidates`] that is there, else `path` as given (whose reading
    /// then fails with the reason).
    pub fn find_needle(&self, kind: &str, path: &str) -> String {
        self.first_needle(kind, path).map_or_else(
            || path.to_string(),
            |(c, _)| c.to_string_lossy().into_owned(),
        )
    }

    /// A local file or directory to read (copy/template sources).
    pub fn readable(&self, path: &str) -> Result<LocalPath, String> {
        let mut roots = self.read_roots.clone();
        roots.extend(self.write_roots.iter().cloned());
        self.locate(path, &self.base, &roots, "source")
    }

    /// Where relative destinations go: the first writable root (the job's scratch dir).
    pub fn write_base(&self) -> PathBuf {
        self.write_roots
            .first()
            .cloned()
            .unwrap_or_else(|| self.base.clone())
    }

    /// A local path to write (fetch destinations); relative paths land in the scratch dir.
    pub fn writable(&self, path: &str) -> Result<LocalPath, String> {
        self.locate(path, &self.write_base(), &self.write_roots, "destination")
    }
}

impl LocalPath {
    /// The path as a script would name it (the directory joined with the path below it).
    pub fn path(&self) -> PathBuf {
        self.root.join(&self.rel)
    }

    /// The last component's name (empty for a directory of the job itself).
    pub fn file_name(&self) -> OsString {
        self.rel.file_name().map(OsString::from).unwrap_or_default()
    }

    /// The entry `name` inside this directory.
    pub fn join(&self, name: impl AsRef<Path>) -> LocalPath {
        LocalPath {
            root: self.root.clone(),
            rel: self.rel.join(name),
        }
    }

    fn dir(&self) -> std::io::Result<Dir> {
        Dir::open(&self.root)
    }

    /// The whole file.
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        self.dir()?.read(&self.rel)
    }

    /// Its metadata (a link beneath the directory followed).
    pub fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.dir()?.metadata(&self.rel)
    }

    /// Whether it exists (beneath its directory).
    pub fn exists(&self) -> bool {
        self.metadata().is_ok()
    }

    /// Whether it is a directory (beneath its directory).
    pub fn is_dir(&self) -> bool {
        self.metadata().is_ok_and(|m| m.is_dir())
    }

    /// Whether it is a regular file (beneath its directory).
    pub fn is_file(&self) -> bool {
        self.metadata().is_ok_and(|m| m.is_file())
    }

    /// Whether it is itself a symbolic link.
    pub fn is_link(&self) -> bool {
        self.dir()
            .and_then(|d| d.is_link(&self.rel))
            .unwrap_or(false)
    }

    /// A link's target, as written in the link.
    pub fn read_link(&self) -> std::io::Result<PathBuf> {
        self.dir()?.read_link(&self.rel)
    }

    /// Its entries, sorted by name, links not followed.
    pub fn entries(&self) -> std::io::Result<Vec<(OsString, Kind)>> {
        self.dir()?.dir(&self.rel)?.entries()
    }

    /// Create or replace the file with `data`.
    pub fn write(&self, data: &[u8]) -> std::io::Result<()> {
        self.dir()?.write(&self.rel, data)
    }

    /// Create the directories above it that are missing, each inside its directory.
    pub fn create_parents(&self) -> std::io::Result<()> {
        match self.rel.parent() {
            Some(parent) => self.dir()?.create_dir_all(parent),
            None => Ok(()),
        }
    }

    /// Refused when it, or the directory it would be made in, leads out of its directory (for
    /// paths handed to another program, which opens them itself: synchronize's rsync).
    pub fn stays_beneath(&self) -> Result<(), String> {
        let dir = self.dir().map_err(|e| e.to_string())?;
        let leads_out = |rel: &Path| {
            dir.metadata(rel)
                .is_err_and(|e| crate::beneath::is_outside(&e))
        };
        let parent = self.rel.parent().unwrap_or(Path::new(""));
        if leads_out(&self.rel) || leads_out(parent) {
            return Err(format!(
                "{} is outside the directories this job may use on the controller: it leads out \
                 of {} through '..' or a symbolic link",
                self.path().display(),
                self.root.display()
            ));
        }
        Ok(())
    }
}
