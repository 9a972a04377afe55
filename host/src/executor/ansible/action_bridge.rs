//! ansible-core's own action plugins (`script`, `unarchive` and `assemble` of controller files,
//! `uri` with a `src`, `reboot`), run in the helper with every touch of the host or of controller
//! files asked of us: the plugin's commands run over the host's connection (through become, in a
//! terminal where Ansible's `ssh -tt` would be), its uploads go through the command's stdin, its
//! modules run as ours do (resident runner, this version's parsing), and the controller files it
//! looks for are found where the script may read them and staged into a private directory, which
//! is all it can transfer. So its checks, messages and result shapes are the EE's version's own.

use super::{AnsibleModules, Caller, helper::Event, remote_tmp, strings};
use crate::executor::connection::{Connection, Unreachable};
use crate::executor::modules::{LocalFiles, ModuleCtx, failed, obj};
use base64::Engine;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// The action plugins run this way (the helper keeps the same list).
pub(super) const BRIDGED: &[&str] = &[
    "ansible.builtin.script",
    "ansible.builtin.unarchive",
    "ansible.builtin.assemble",
    "ansible.builtin.uri",
    "ansible.builtin.reboot",
];

fn b64(data: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(data))
}

fn unb64(v: Option<&Value>) -> Option<Vec<u8>> {
    v.and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
}

impl AnsibleModules {
    /// Run the action plugin `plugin` (one of [`BRIDGED`]) for a call of `module`.
    pub(super) async fn bridged_action(
        &self,
        plugin: &str,
        module: &str,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Map<String, Value>, Unreachable> {
        let helper = match self.helper().await {
            Ok(h) => h,
            Err(why) => {
                return Ok(failed(format!(
                    "ftl2-runner cannot run {module}: it needs Ansible's action plugin {plugin}, \
                     and {why}"
                )));
            }
        };
        let staging = match tempfile::Builder::new().prefix("ftl2-stage-").tempdir() {
            Ok(d) => d,
            Err(e) => {
                return Ok(failed(format!(
                    "cannot make a staging directory on the controller for {module}: {e}"
                )));
            }
        };
        let connection = match ctx.conn {
            Connection::Local(_) => "local",
            Connection::Ssh(_) => "ssh",
        };
        let req = json!({
            "op": "action_run", "action": plugin, "module": module, "args": args,
            "connection": connection, "staging": staging.path(), "host": ctx.host,
            "check_mode": ctx.check_mode, "diff": ctx.diff, "no_log": ctx.no_log,
            "verbosity": self.verbosity,
        });
        let mut session = match helper.session(req).await {
            Ok(s) => s,
            Err(why) => return Ok(failed(why)),
        };
        let mut staged = 0;
        loop {
            match session.next().await {
                Event::Call(call) => {
                    let answer = match self.answer(&call, ctx, staging.path(), &mut staged).await {
                        Ok(a) => a,
                        // The plugin decides (reboot waits for the host to come back).
                        Err(Unreachable(msg)) => obj(json!({ "unreachable": msg })),
                    };
                    session.reply(&call, answer).await;
                }
                Event::Done(Ok(mut m)) => {
                    if let Some(Value::String(msg)) = m.remove("unreachable") {
                        return Err(Unreachable(msg));
                    }
                    let mut result = match m.remove("result") {
                        Some(Value::Object(r)) => r,
                        _ => failed(format!("the action plugin {plugin} returned no result")),
                    };
                    super::add_warnings(&mut result, strings(m.get("warnings")));
                    return Ok(result);
                }
                Event::Done(Err(msg)) => return Ok(failed(msg)),
            }
        }
    }

    /// Do what the plugin asked (`what`): its answer's fields.
    async fn answer(
        &self,
        call: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
        staging: &Path,
        staged: &mut usize,
    ) -> Result<Map<String, Value>, Unreachable> {
        let text = |k: &str| call.get(k).and_then(Value::as_str).unwrap_or("");
        Ok(match text("what") {
            "exec" => {
                let stdin = unb64(call.get("in_data"));
                let tty = call.get("tty").and_then(Value::as_bool) == Some(true)
                    && stdin.is_none()
                    && matches!(ctx.conn, Connection::Ssh(_));
                let out = if tty {
                    ctx.conn
                        .exec_in_terminal(text("cmd"), ctx.become_.as_ref())
                        .await?
                } else {
                    ctx.sh(text("cmd"), stdin.as_deref()).await?
                };
                obj(json!({"rc": out.rc, "stdout": b64(&out.stdout), "stderr": b64(&out.stderr)}))
            }
            "put" => {
                let data = unb64(call.get("data")).unwrap_or_default();
                match remote_tmp::put(ctx, text("path"), &data).await? {
                    Ok(()) => Map::new(),
                    Err(why) => obj(json!({ "error": why })),
                }
            }
            "module" => {
                let args = match call.get("args") {
                    Some(Value::Object(a)) => a.clone(),
                    _ => Map::new(),
                };
                // Boxed: run_module may itself run a bridged action (never for a Port caller).
                let result =
                    Box::pin(self.run_module(text("module"), &args, ctx, Caller::Port)).await?;
                obj(json!({ "result": result }))
            }
            "find" => {
                *staged += 1;
                find(
                    ctx.local,
                    text("kind"),
                    text("path"),
                    &staging.join(staged.to_string()),
                )
            }
            "reset" => {
                ctx.conn.reset().await;
                Map::new()
            }
            other => obj(json!({
                "error": format!("ftl2-runner does not do '{other}' for action plugins")
            })),
        })
    }
}

/// Ansible's `_find_needle` over the files the script may read: `<script dir>/<kind>/<path>`,
/// then `<script dir>/<path>` (an absolute path as given). The first that exists is copied into
/// `into` (a directory: its regular files, as `assemble` reads them), and the copy is what the
/// plugin gets; else the places searched.
fn find(local: &LocalFiles, kind: &str, path: &str, into: &Path) -> Map<String, Value> {
    let candidates: Vec<PathBuf> = if Path::new(path).is_absolute() {
        vec![PathBuf::from(path)]
    } else {
        vec![local.base.join(kind).join(path), local.base.join(path)]
    };
    let Some(found) = candidates.iter().find(|c| c.exists()) else {
        let searched: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
        return obj(json!({ "searched": searched }));
    };
    match stage(local, found, into) {
        Ok(p) => obj(json!({ "path": p })),
        Err(why) => obj(json!({ "error": why })),
    }
}

/// Copy a readable file, or a directory's readable regular files, into `into`.
fn stage(local: &LocalFiles, found: &Path, into: &Path) -> Result<PathBuf, String> {
    let real = local.readable(&found.to_string_lossy())?;
    let name = real.file_name().unwrap_or_default();
    let dest = into.join(name);
    let copy_err =
        |e: std::io::Error| format!("cannot stage {} for the action: {e}", real.display());
    std::fs::create_dir_all(into).map_err(copy_err)?;
    if real.is_dir() {
        std::fs::create_dir(&dest).map_err(copy_err)?;
        for entry in std::fs::read_dir(&real).map_err(copy_err)? {
            let entry = entry.map_err(copy_err)?.path();
            let file = local.readable(&entry.to_string_lossy())?;
            if file.is_file() {
                let target = dest.join(entry.file_name().unwrap_or_default());
                std::fs::copy(&file, target).map_err(copy_err)?;
            }
        }
    } else {
        std::fs::copy(&real, &dest).map_err(copy_err)?;
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> LocalFiles {
        LocalFiles {
            base: dir.join("scripts"),
            read_roots: vec![dir.join("scripts").canonicalize().unwrap()],
            write_roots: vec![],
        }
    }

    #[test]
    fn needles_are_looked_for_as_ansible_does_and_only_readable_ones_are_staged() {
        let dir = tempfile::tempdir().unwrap();
        let scripts = dir.path().join("scripts");
        std::fs::create_dir_all(scripts.join("files/frags")).unwrap();
        std::fs::write(scripts.join("files/a.sh"), "files/").unwrap();
        std::fs::write(scripts.join("a.sh"), "top").unwrap();
        std::fs::write(scripts.join("b.sh"), "b").unwrap();
        std::fs::write(scripts.join("files/frags/1"), "one").unwrap();
        std::fs::write(dir.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), scripts.join("link")).unwrap();
        let local = files(dir.path());
        let stage_dir = dir.path().join("stage");
        let got = |m: Map<String, Value>| m.get("path").and_then(Value::as_str).map(PathBuf::from);

        let a = got(find(&local, "files", "a.sh", &stage_dir.join("1"))).unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "files/");
        assert!(a.starts_with(&stage_dir));
        let b = got(find(&local, "files", "b.sh", &stage_dir.join("2"))).unwrap();
        assert_eq!(std::fs::read_to_string(b).unwrap(), "b");
        let frags = got(find(&local, "files", "frags", &stage_dir.join("3"))).unwrap();
        assert_eq!(std::fs::read_to_string(frags.join("1")).unwrap(), "one");

        let missing = find(&local, "files", "nope.sh", &stage_dir.join("4"));
        assert_eq!(
            missing["searched"],
            json!([
                scripts.join("files/nope.sh").display().to_string(),
                scripts.join("nope.sh").display().to_string()
            ])
        );
        let outside = find(&local, "files", "link", &stage_dir.join("5"));
        assert!(
            outside["error"].as_str().unwrap().contains("outside"),
            "{outside:?}"
        );
        let absolute = find(
            &local,
            "files",
            &dir.path().join("secret").to_string_lossy(),
            &stage_dir.join("6"),
        );
        assert!(absolute.contains_key("error"), "{absolute:?}");
    }
}
