//! The job's artifact directory (`artifacts/<ident>/`) and the zip of it that ends the stream.
//!
//! Layout and modes follow ansible-runner: files 0600, directories 0700, `rc` and `status` without
//! a newline, `command` as JSON. The zip carries unix modes in `external_attr` (the peer would
//! otherwise extract mode 000) and, like ansible-runner's own worker, an empty `job_events/`: the
//! peer rebuilds the event files from the event lines, so sending them twice only doubles the stream.

use anyhow::{Context, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;

/// The artifact directory of one job.
pub struct ArtifactDir {
    /// `<private data dir>/artifacts/<ident>`.
    pub path: PathBuf,
}

impl ArtifactDir {
    /// Create `artifacts/<ident>/` and its `job_events/` under the private data dir.
    pub fn create(pdd: &Path, ident: &str) -> Result<ArtifactDir> {
        let path = pdd.join("artifacts").join(ident);
        let events = path.join("job_events");
        fs::create_dir_all(&events).with_context(|| {
            format!("cannot create the artifact directory {}", events.display())
        })?;
        for dir in [&path, &events] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
        }
        Ok(ArtifactDir { path })
    }

    /// Write one artifact file (mode 0600).
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<()> {
        write_private_file(&self.path.join(name), contents)
            .with_context(|| format!("cannot write artifact {name}"))
    }

    /// Create an empty artifact file opened for appending (mode 0600), e.g. `stdout`.
    pub fn create_appendable(&self, name: &str) -> Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(self.path.join(name))
            .with_context(|| format!("cannot create artifact {name}"))
    }

    /// Zip the directory into a temporary file, ready to stream (without the event files).
    pub fn zip(&self) -> Result<tempfile::NamedTempFile> {
        zip_dir(&self.path, true)
    }
}

/// Zip `dir` into a temporary file with modes, times and symlinks kept; `skip_job_events`
/// leaves out the files under a top-level `job_events/` (the peer rebuilds them).
pub fn zip_dir(dir: &Path, skip_job_events: bool) -> Result<tempfile::NamedTempFile> {
    let tmp = tempfile::NamedTempFile::new().context("cannot create a temporary file for a zip")?;
    let mut zip = zip::ZipWriter::new(tmp.reopen()?);
    add_dir(&mut zip, dir, Path::new(""), skip_job_events)
        .with_context(|| format!("cannot zip {}", dir.display()))?;
    zip.finish()
        .with_context(|| format!("cannot finish the zip of {}", dir.display()))?;
    Ok(tmp)
}

/// Write `contents` to `path` with mode 0600, replacing what was there.
pub fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

fn options_for(md: &fs::Metadata) -> SimpleFileOptions {
    let mut opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(md.mode() & 0o7777);
    // Zip times are DOS local time, as ansible-runner's zipfile writes them.
    let local =
        chrono::DateTime::from_timestamp(md.mtime(), 0).map(|t| t.with_timezone(&chrono::Local));
    let dos = local.and_then(|t| {
        use chrono::{Datelike, Timelike};
        zip::DateTime::from_date_and_time(
            t.year().try_into().ok()?,
            t.month() as u8,
            t.day() as u8,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
        )
        .ok()
    });
    if let Some(t) = dos {
        opts = opts.last_modified_time(t);
    }
    opts
}

fn add_dir(
    zip: &mut zip::ZipWriter<File>,
    dir: &Path,
    rel: &Path,
    skip_job_events: bool,
) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = rel.join(entry.file_name());
        let name_str = name.to_string_lossy().into_owned();
        let md = fs::symlink_metadata(&path)?;
        let ft = md.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&path)?;
            zip.add_symlink(name_str, target.to_string_lossy(), options_for(&md))?;
        } else if ft.is_dir() {
            zip.add_directory(format!("{name_str}/"), options_for(&md))?;
            if skip_job_events && rel.as_os_str().is_empty() && entry.file_name() == "job_events" {
                continue; // the peer rebuilds these from the event lines
            }
            add_dir(zip, &path, &name, skip_job_events)?;
        } else if ft.is_file() {
            zip.start_file(name_str, options_for(&md))?;
            io::copy(&mut File::open(&path)?, zip)?;
        }
        // Pipes and sockets are skipped, as ansible-runner skips them.
    }
    Ok(())
}
