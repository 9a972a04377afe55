//! `worker --worker-info`: the capacity report Receptor's health check hands to AWX.
//!
//! AWX YAML-parses it and needs `runner_version` (a string), `mem_in_bytes` and `cpu_count`; the
//! `uuid` identifies the node and must survive restarts, so it lives in `~/.ansible_runner_uuid`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The ansible-runner version whose worker protocol we speak.
pub const RUNNER_VERSION: &str = "2.4.3";

/// Render the report exactly like ansible-runner: a sorted one-line YAML flow map, then a blank line.
pub fn render() -> String {
    let mut errors: Vec<String> = Vec::new();
    let cpu = cpu_count();
    let mem = match mem_in_bytes() {
        Ok(m) => m.to_string(),
        Err(e) => {
            errors.push(e);
            "null".into()
        }
    };
    let uuid = match uuid_file()
        .map_err(|e| e.to_string())
        .and_then(|p| ensure_uuid(&p))
    {
        Ok(u) => u,
        Err(e) => {
            errors.push(format!("Could not find or create the node uuid: {e}"));
            "null".into()
        }
    };
    let errors = errors
        .iter()
        .map(|e| yaml_quote(e))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{{cpu_count: {cpu}, errors: [{errors}], mem_in_bytes: {mem}, runner_version: {RUNNER_VERSION}, uuid: {uuid}}}\n\n"
    )
}

fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''").replace('\n', " "))
}

/// CPUs this process may use, as Python's `multiprocessing.cpu_count()` reports them.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Total memory in bytes, from `/proc/meminfo` like ansible-runner (via sysinfo).
pub fn mem_in_bytes() -> Result<u64, String> {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    match sys.total_memory() {
        0 => Err("The /proc/meminfo file could not found, memory capacity undiscoverable.".into()),
        n => Ok(n),
    }
}

fn uuid_file() -> Result<PathBuf, &'static str> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".ansible_runner_uuid"))
        .ok_or("HOME is not set")
}

/// Read the node uuid from `path`, or create it (mode 0600, no newline).
pub fn ensure_uuid(path: &Path) -> Result<String, String> {
    if path.exists() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(text.trim().to_string());
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(id.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_persists_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".ansible_runner_uuid");
        let a = ensure_uuid(&p).unwrap();
        assert_eq!(ensure_uuid(&p).unwrap(), a);
        assert_eq!(fs::read_to_string(&p).unwrap(), a);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
