//! Executable inventories: AWX's inventory script, read without running it, and other scripts,
//! run with `--list` only where the admin allows it.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::path::Path;

/// Whether the EE's admin allows running executable inventories that are not AWX's script.
pub(super) fn scripts_allowed() -> bool {
    std::env::var("FTL2_ALLOW_INVENTORY_SCRIPTS").is_ok_and(|v| crate::boolean::is_true_word(&v))
}

/// Run `<script> --list` (60 s at most) and parse its JSON, as Ansible's script plugin does.
pub(super) fn run_inventory_script(path: &Path) -> Result<Value> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(path)
        .arg("--list")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", path.display()))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut out = Vec::new();
    let mut stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_end(&mut out);
        out
    });
    loop {
        if let Some(status) = child.try_wait()? {
            let out = reader.join().unwrap_or_default();
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                bail!(
                    "`{} --list` failed ({status}): {}",
                    path.display(),
                    err.trim()
                );
            }
            return serde_json::from_slice(&out)
                .map_err(|e| anyhow!("`{} --list` printed invalid JSON: {e}", path.display()));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("`{} --list` did not finish within 60 s", path.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The JSON inside AWX's inventory script, read without executing it.
///
/// AWX writes exactly `#! /usr/bin/env python3`, a coding line, and `print('<json>')` where the
/// JSON is Python's repr of a string: printable ASCII, single-quoted, `\\` and `\'` escaped.
pub fn awx_script_json(text: &str) -> Result<Value> {
    let lines: Vec<&str> = text.lines().collect();
    let body = lines
        .iter()
        .find(|l| l.starts_with("print('"))
        .ok_or_else(|| anyhow!("an executable inventory that is not AWX's inventory script (no print('...') line); refusing to run it"))?;
    let inner = body
        .strip_prefix("print('")
        .and_then(|b| b.strip_suffix("')"))
        .ok_or_else(|| anyhow!("the print('...') line of the inventory script is malformed"))?;
    let mut json = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => json.push('\\'),
                Some('\'') => json.push('\''),
                Some(other) => bail!("unexpected escape \\{other} in the inventory script"),
                None => bail!("dangling backslash in the inventory script"),
            }
        } else {
            json.push(c);
        }
    }
    serde_json::from_str(&json).map_err(|e| anyhow!("the inventory script's JSON is invalid: {e}"))
}
