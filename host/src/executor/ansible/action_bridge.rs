//! ansible-core's own action plugins (`script`, `unarchive` and `assemble` of controller files,
//! `uri` with a `src`, `reboot`), run in the helper with every touch of the host or of controller
//! files asked of us: the plugin's commands run over the host's connection (through become, in a
//! terminal where Ansible's `ssh -tt` would be), its uploads go through the command's stdin, its
//! modules run as ours do (resident runner, this version's parsing), and the controller files it
//! looks for are found where the script may read them and staged into a private directory, which
//! is all it can transfer. So its checks, messages and result shapes are the EE's version's own.

use super::{AnsibleModules, Caller, helper::Event, remote_tmp, strings};
use crate::beneath::Kind as Entry;
use crate::executor::connection::{Connection, Unreachable};
use crate::executor::modules::{LocalFiles, LocalPath, ModuleCtx, failed, obj};
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
    // A copy of a directory with what the native copy does not handle (the copy port takes
    // one file or `content`).
    "ansible.builtin.copy",
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
                    let answer = match self
                        .answer(&call, ctx, staging.path(), &mut staged, plugin, args)
                        .await
                    {
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
        plugin: &str,
        args: &Map<String, Value>,
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
                // copy walks a directory's whole tree, following links unless told not to.
                let tree = (plugin == "ansible.builtin.copy").then(|| {
                    args.get("local_follow")
                        .and_then(crate::boolean::ansible_bool)
                        .unwrap_or(true)
                });
                find(
                    ctx.local,
                    text("kind"),
                    text("path"),
                    &staging.join(staged.to_string()),
                    tree,
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
fn find(
    local: &LocalFiles,
    kind: &str,
    path: &str,
    into: &Path,
    tree: Option<bool>,
) -> Map<String, Value> {
    let Some(found) = local.found_needle(kind, path) else {
        // An absolute path is checked, not searched for: Ansible lists no places then.
        let searched: Vec<String> = if Path::new(path).is_absolute() {
            Vec::new()
        } else {
            let candidates = local.needle_candidates(kind, path);
            candidates.iter().map(|c| c.display().to_string()).collect()
        };
        return obj(json!({ "searched": searched }));
    };
    let staged = found.and_then(|found| match tree {
        Some(follow) => stage_tree(&found, into, follow),
        None => stage(&found, into),
    });
    match staged {
        Ok(p) => obj(json!({ "path": p })),
        Err(why) => obj(json!({ "error": why })),
    }
}

/// The message for a file that could not be staged.
fn stage_error(p: &Path, e: std::io::Error) -> String {
    format!("cannot stage {} for the action: {e}", p.display())
}

/// Copy `from` (read beneath its directory) to the new file `to`, its permission bits kept.
fn stage_file(from: &LocalPath, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let data = from.read().map_err(|e| stage_error(&from.path(), e))?;
    std::fs::write(to, data).map_err(|e| stage_error(to, e))?;
    if let Ok(m) = from.metadata() {
        let mode = m.permissions().mode() & 0o7777;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
            .map_err(|e| stage_error(to, e))?;
    }
    Ok(())
}

/// Copy a readable file, or a directory's readable regular files, into `into`.
fn stage(found: &LocalPath, into: &Path) -> Result<PathBuf, String> {
    let dest = into.join(found.file_name());
    std::fs::create_dir_all(into).map_err(|e| stage_error(&found.path(), e))?;
    if found.is_dir() {
        std::fs::create_dir(&dest).map_err(|e| stage_error(&dest, e))?;
        for (name, _) in found.entries().map_err(|e| stage_error(&found.path(), e))? {
            let file = found.join(&name);
            if file.is_file() {
                stage_file(&file, &dest.join(&name))?;
            }
        }
    } else {
        stage_file(found, &dest)?;
    }
    Ok(dest)
}

/// Most directory levels a staged tree may have (a circular link followed ends here).
const MAX_DEPTH: usize = 64;

/// Copy a readable file, or a directory's whole tree, into `into` as the copy plugin's walk
/// should see it: with `follow` (its `local_follow`, on by default) a link to a file or a
/// directory the script may read becomes what it points to, and a link to something missing
/// stays a link; without, links stay links (their text is all the plugin sends). A link
/// leading outside the script's directory is an error naming it, never followed.
fn stage_tree(found: &LocalPath, into: &Path, follow: bool) -> Result<PathBuf, String> {
    let dest = into.join(found.file_name());
    std::fs::create_dir_all(into).map_err(|e| stage_error(&found.path(), e))?;
    if found.is_dir() {
        copy_tree(found, &dest, follow, 0)?;
    } else {
        stage_file(found, &dest)?;
    }
    Ok(dest)
}

fn copy_tree(dir: &LocalPath, dest: &Path, follow: bool, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "cannot stage {} for the action: more than {MAX_DEPTH} directory levels (a circular link?)",
            dir.path().display()
        ));
    }
    std::fs::create_dir(dest).map_err(|e| stage_error(dest, e))?;
    for (name, kind) in dir.entries().map_err(|e| stage_error(&dir.path(), e))? {
        let from = dir.join(&name);
        let to = dest.join(&name);
        match kind {
            Entry::Link => {
                let target = from.read_link().map_err(|e| stage_error(&from.path(), e))?;
                let broken = from
                    .metadata()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
                if !follow || broken {
                    std::os::unix::fs::symlink(&target, &to).map_err(|e| stage_error(&to, e))?;
                    continue;
                }
                let meta = from.metadata().map_err(|why| {
                    format!(
                        "copy with local_follow=yes would follow {}: {why}",
                        from.path().display()
                    )
                })?;
                if meta.is_dir() {
                    copy_tree(&from, &to, follow, depth + 1)?;
                } else if meta.is_file() {
                    stage_file(&from, &to)?;
                }
            }
            Entry::Dir => copy_tree(&from, &to, follow, depth + 1)?,
            Entry::File => stage_file(&from, &to)?,
            Entry::Other => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> LocalFiles {
        LocalFiles {
            base: dir.join("scripts"),
            read_roots: vec![dir.join("scripts").canonicalize().unwrap()],
            write_roots: vec![],
            ..LocalFiles::default()
        }
    }

    #[test]
    fn native_sources_are_looked_for_as_ansible_finds_needles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("scripts/templates")).unwrap();
        std::fs::write(dir.path().join("scripts/templates/t.j2"), "in templates").unwrap();
        std::fs::write(dir.path().join("scripts/t.j2"), "beside").unwrap();
        std::fs::write(dir.path().join("scripts/only.j2"), "beside").unwrap();
        let local = files(dir.path());
        let read = |kind: &str, p: &str| {
            String::from_utf8(
                local
                    .readable(&local.find_needle(kind, p))
                    .unwrap()
                    .read()
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(read("templates", "t.j2"), "in templates");
        assert_eq!(read("files", "t.j2"), "beside");
        assert_eq!(read("templates", "only.j2"), "beside");
        assert_eq!(local.find_needle("templates", "missing.j2"), "missing.j2");
    }

    #[test]
    fn a_copied_tree_follows_only_links_the_script_may_read() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("scripts/files/tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("a.txt"), "a").unwrap();
        std::fs::write(tree.join("sub/b.txt"), "b").unwrap();
        std::os::unix::fs::symlink("a.txt", tree.join("inner")).unwrap();
        std::os::unix::fs::symlink("sub", tree.join("subdir")).unwrap();
        std::fs::write(dir.path().join("secret"), "no").unwrap();
        let local = files(dir.path());
        let got = |m: Map<String, Value>| m.get("path").and_then(Value::as_str).map(PathBuf::from);
        let staged = got(find(
            &local,
            "files",
            "tree",
            &dir.path().join("s1"),
            Some(true),
        ))
        .unwrap();
        assert_eq!(std::fs::read_to_string(staged.join("inner")).unwrap(), "a");
        assert!(!staged.join("inner").is_symlink());
        assert_eq!(
            std::fs::read_to_string(staged.join("subdir/b.txt")).unwrap(),
            "b"
        );
        // A link out of what the script may read is never followed ...
        std::os::unix::fs::symlink(dir.path().join("secret"), tree.join("out")).unwrap();
        let refused = find(&local, "files", "tree", &dir.path().join("s2"), Some(true));
        assert!(
            refused["error"]
                .as_str()
                .unwrap()
                .contains("local_follow=yes would follow"),
            "{refused:?}"
        );
        // ... without local_follow it stays a link, its text all the plugin sends.
        let staged = got(find(
            &local,
            "files",
            "tree",
            &dir.path().join("s3"),
            Some(false),
        ))
        .unwrap();
        assert_eq!(
            std::fs::read_link(staged.join("out")).unwrap(),
            dir.path().join("secret")
        );
        assert_eq!(
            std::fs::read_link(staged.join("inner")).unwrap(),
            PathBuf::from("a.txt")
        );
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

        let a = got(find(&local, "files", "a.sh", &stage_dir.join("1"), None)).unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "files/");
        assert!(a.starts_with(&stage_dir));
        let b = got(find(&local, "files", "b.sh", &stage_dir.join("2"), None)).unwrap();
        assert_eq!(std::fs::read_to_string(b).unwrap(), "b");
        let frags = got(find(&local, "files", "frags", &stage_dir.join("3"), None)).unwrap();
        assert_eq!(std::fs::read_to_string(frags.join("1")).unwrap(), "one");

        let missing = find(&local, "files", "nope.sh", &stage_dir.join("4"), None);
        assert_eq!(
            missing["searched"],
            json!([
                scripts.join("files/nope.sh").display().to_string(),
                scripts.join("nope.sh").display().to_string()
            ])
        );
        let outside = find(&local, "files", "link", &stage_dir.join("5"), None);
        assert!(
            outside["error"].as_str().unwrap().contains("outside"),
            "{outside:?}"
        );
        let absolute = find(
            &local,
            "files",
            &dir.path().join("secret").to_string_lossy(),
            &stage_dir.join("6"),
            None,
        );
        assert!(absolute.contains_key("error"), "{absolute:?}");
    }
}
