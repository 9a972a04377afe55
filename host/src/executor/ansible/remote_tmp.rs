//! Ansible's remote temp dir, for the actions that need files on the host (async, copy): made
//! with the `mkdtemp` command of the EE's ansible-core (its `remote_tmp`, its naming), as the
//! become user when the call becomes (so the files need no permission fix-ups for it), filled
//! through the command's stdin, and removed afterwards; and `~` in remote paths, expanded there.

use super::AnsibleModules;
use super::helper::Helper;
use crate::executor::connection::Unreachable;
use crate::executor::modules::{ModuleCtx, failed, quote};
use serde_json::{Map, Value, json};

impl AnsibleModules {
    /// Make the remote temp dir: its path, or the failed result Ansible's `_make_tmp_path` gives.
    pub(super) async fn make_tmpdir(
        &self,
        helper: &Helper,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Result<String, Map<String, Value>>, Unreachable> {
        let mk = match helper.request(json!({"op": "mkdtemp"})).await {
            Ok(m) => m,
            Err(msg) => return Ok(Err(failed(msg))),
        };
        let text = |k: &str| mk.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (mkdir, basefile) = (text("command"), text("basefile"));
        let out = ctx.sh(&mkdir, None).await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let tmpdir = stdout
            .trim()
            .split_once(&format!("{basefile}="))
            .map(|(_, p)| p.lines().last().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        if out.rc != 0 || !tmpdir.starts_with('/') {
            return Ok(Err(failed(format!(
                "Failed to create temporary directory. In some cases, you may have been able to \
                 authenticate and did not have permissions on the target directory. Consider \
                 changing the remote tmp path in ansible.cfg to a path rooted in \"/tmp\". Failed \
                 command was: {mkdir}, exited with result {}{}",
                out.rc,
                if stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!(", stdout output: {}", stdout.trim())
                }
            ))));
        }
        Ok(Ok(tmpdir))
    }
}

/// Write `data` to `path` on the host (through become when the call uses it); why not, if it
/// failed.
pub(super) async fn put(
    ctx: &ModuleCtx<'_>,
    path: &str,
    data: &[u8],
) -> Result<Result<(), String>, Unreachable> {
    let out = ctx
        .sh(&format!("cat > {}", quote(path)), Some(data))
        .await?;
    if out.rc != 0 {
        return Ok(Err(format!(
            "failed to transfer {path} to the host: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(Ok(()))
}

/// Remove the temp dir (errors do not matter: it is ours and temporary).
pub(super) async fn remove(ctx: &ModuleCtx<'_>, tmpdir: &str) -> Result<(), Unreachable> {
    ctx.sh(&format!("rm -f -r {}", quote(tmpdir)), None).await?;
    Ok(())
}

/// `_remote_expand_user`: a leading `~` or `~user` expanded on the host (for the become user
/// when the call becomes); anything else, or a failed expansion, as given.
pub(super) async fn expand_user(ctx: &ModuleCtx<'_>, path: &str) -> Result<String, Unreachable> {
    let Some(rest) = path.strip_prefix('~') else {
        return Ok(path.to_string());
    };
    let (user, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Ok(path.to_string());
    }
    let out = ctx.sh(&format!("echo ~{user}"), None).await?;
    let home = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.rc != 0 || !home.starts_with('/') {
        return Ok(path.to_string());
    }
    Ok(format!("{home}{tail}"))
}
