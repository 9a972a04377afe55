//! Ansible's `copy` action plugin, ported for one file (`content`, or a `src` file the script may
//! read), for the calls the native copy does not handle (`validate`, `directory_mode`,
//! `attributes`, SELinux contexts, ...): the same steps as the plugin's `_copy_file`. stat the
//! destination (sha1); if it differs, upload the file into the remote temp dir and run the real
//! `copy` module on it (which validates, backs up and moves it into place); if not, run the real
//! `file` module for the attributes. The argument splits and the result's last touches come from
//! the EE's own plugin code through the helper, so they are that version's.

use super::{AnsibleModules, Caller, remote_tmp};
use crate::executor::connection::Unreachable;
use crate::executor::modules::{ModuleCtx, failed, obj};
use serde_json::{Map, Value, json};

/// Largest file Ansible diffs (`MAX_FILE_SIZE_FOR_DIFF`'s default).
const MAX_DIFF: u64 = 104_448;

/// The template action's rendering options, with the value our renderer always uses (None: we
/// support none but the default, which is not given).
const TEMPLATE_RENDERING: &[(&str, Option<Value>)] = &[
    ("newline_sequence", None),
    ("block_start_string", None),
    ("block_end_string", None),
    ("variable_start_string", None),
    ("variable_end_string", None),
    ("comment_start_string", None),
    ("comment_end_string", None),
    ("trim_blocks", Some(Value::Bool(true))),
    ("lstrip_blocks", Some(Value::Bool(false))),
    ("output_encoding", None),
];

/// Whether a copy's `src` is a directory of the controller (where the plugin's `_find_needle`
/// finds it: the script's `files/`, then beside the script), or is not there at all; not the
/// host's, not `content`.
fn copies_a_directory_or_nothing(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> bool {
    let remote = args
        .get("remote_src")
        .and_then(crate::boolean::ansible_bool)
        .unwrap_or(false);
    let Some(src) = args
        .get("src")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return false;
    };
    if remote || args.get("content").is_some_and(|c| !c.is_null()) {
        return false;
    }
    match ctx.local.found_needle("files", src) {
        Some(Ok(found)) => found.is_dir(),
        Some(Err(_)) => false,
        None => true,
    }
}

/// A template rendered here, handed to the copy steps as the plugin hands its temp file.
#[derive(Default)]
struct Rendered {
    data: Vec<u8>,
    /// Where the plugin would have written it (shown as the source).
    path: String,
    /// The template's file name.
    basename: String,
}

impl AnsibleModules {
    /// Run `copy` as its action plugin does, for one file.
    pub(super) async fn copy_action(
        &self,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Map<String, Value>, Unreachable> {
        if copies_a_directory_or_nothing(args, ctx) {
            // A tree: the EE's own plugin walks it (staged), every touch of the host ours; a
            // source that is not there: the plugin says where it looked.
            return self
                .bridged_action("ansible.builtin.copy", "copy", args, ctx)
                .await;
        }
        let result = self.copy_steps(args, ctx, None).await?;
        Ok(self.copy_finish(args, result, ctx).await)
    }

    /// Run `template` as its action plugin does: render (natively), then the copy action on the
    /// rendered file, with the template-only options taken out.
    pub(super) async fn template_action(
        &self,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Map<String, Value>, Unreachable> {
        for (opt, default) in TEMPLATE_RENDERING {
            if let Some(v) = args.get(*opt).filter(|v| !v.is_null())
                && Some(v) != default.as_ref()
            {
                return Ok(failed(format!(
                    "ftl2-runner's template renderer does not support {opt}={v}; nothing was \
                     changed on the host"
                )));
            }
        }
        let text = |k: &str| args.get(k).and_then(Value::as_str).map(String::from);
        let (Some(src), Some(dest)) = (text("src"), text("dest")) else {
            return Ok(self
                .action_error("fail", "src and dest are required", ctx)
                .await);
        };
        let managed = self.managed().await;
        let (local, rendered) =
            match crate::executor::modules::render_file(&src, &dest, ctx, &managed) {
                Ok(r) => r,
                Err(msg) => {
                    let msg = crate::executor::modules::template_failure(msg, ctx).await;
                    return Ok(failed(msg));
                }
            };
        let basename = local.file_name().to_string_lossy().into_owned();
        let mut new_args = args.clone();
        for (opt, _) in TEMPLATE_RENDERING {
            new_args.remove(*opt);
        }
        let mode = match text("mode").as_deref() {
            Some("preserve") => local_mode(&local).map(Value::String).unwrap_or(Value::Null),
            _ => args.get("mode").cloned().unwrap_or(Value::Null),
        };
        new_args.insert("mode".into(), mode);
        // The plugin writes the rendered text to `<local tmp>/tmpXXXXXXXX/<template name>`.
        let local_tmp = match self.helper().await {
            Ok(h) => h
                .request(json!({"op": "copy_args", "args": {}}))
                .await
                .ok()
                .and_then(|m| {
                    m.get("content_file")
                        .and_then(Value::as_str)
                        .and_then(|f| f.rsplit_once('/').map(|(d, _)| d.to_string()))
                })
                .unwrap_or_default(),
            Err(e) => return Ok(failed(e)),
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let result_file = format!("{local_tmp}/tmp{}/{basename}", &id[..8]);
        new_args.insert("src".into(), json!(result_file));
        new_args.insert("dest".into(), json!(dest));
        new_args.insert(
            "follow".into(),
            json!(
                args.get("follow")
                    .and_then(crate::boolean::ansible_bool)
                    .unwrap_or(false)
            ),
        );
        let rendered = Rendered {
            data: rendered.into_bytes(),
            path: result_file,
            basename,
        };
        let result = self.copy_steps(&new_args, ctx, Some(rendered)).await?;
        Ok(self.copy_finish(&new_args, result, ctx).await)
    }

    /// The copy plugin's _ensure_invocation and TaskExecutor's defaults, as this version has them.
    async fn copy_finish(
        &self,
        args: &Map<String, Value>,
        result: Map<String, Value>,
        ctx: &ModuleCtx<'_>,
    ) -> Map<String, Value> {
        let finished = match self.helper().await {
            Ok(h) => h
                .request(json!({
                    "op": "copy_finish", "args": args, "result": result, "no_log": ctx.no_log,
                    "check_mode": ctx.check_mode, "diff": ctx.diff,
                }))
                .await
                .ok()
                .and_then(|mut m| match m.remove("result") {
                    Some(Value::Object(r)) => Some(r),
                    _ => None,
                }),
            Err(_) => None,
        };
        finished.unwrap_or(result)
    }

    async fn copy_steps(
        &self,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
        rendered: Option<Rendered>,
    ) -> Result<Map<String, Value>, Unreachable> {
        for internal in ["_original_basename", "_diff_peek"] {
            if args.get(internal).is_some_and(|v| !v.is_null()) {
                return Ok(self
                    .action_error(
                        "fail",
                        &format!("Invalid parameter specified: \"{internal}\""),
                        ctx,
                    )
                    .await);
            }
        }
        let text = |k: &str| args.get(k).and_then(Value::as_str).map(String::from);
        let flag = |k: &str, default: bool| {
            args.get(k)
                .and_then(crate::boolean::ansible_bool)
                .unwrap_or(default)
        };
        let src = text("src").filter(|s| !s.is_empty());
        let content = args.get("content").filter(|v| !v.is_null());
        let dest = text("dest").unwrap_or_default();
        let problem = if src.is_none() && content.is_none() {
            Some("src (or content) is required")
        } else if dest.is_empty() {
            Some("dest is required")
        } else if src.is_some() && content.is_some() {
            Some("src and content are mutually exclusive")
        } else if content.is_some() && dest.ends_with('/') {
            Some("can not use content with a dir as dest")
        } else {
            None
        };
        if let Some(msg) = problem {
            return Ok(obj(json!({"failed": true, "msg": msg})));
        }
        if flag("remote_src", false) {
            return self
                .run_module("ansible.legacy.copy", args, ctx, Caller::Port)
                .await;
        }
        // The bytes to copy, where they come from (for the result and the diff), their name.
        let (data, source, source_rel, local_mode) = match (content, &src) {
            _ if rendered.is_some() => {
                let r = rendered.unwrap_or_default();
                (r.data, r.path, r.basename, None)
            }
            (Some(c), _) => {
                let data = match c {
                    Value::String(s) => s.clone().into_bytes(),
                    Value::Object(_) | Value::Array(_) => crate::pyjson::to_vec(c),
                    Value::Bool(b) => if *b { "True" } else { "False" }.into(),
                    other => other.to_string().into_bytes(),
                };
                // The plugin writes content to a local file (never here: the name is the version's)
                // and reports it as the source; its name is the uploaded file's basename.
                (data, String::new(), String::new(), None)
            }
            (None, Some(s)) => {
                let path = match ctx.local.readable(s) {
                    Ok(p) => p,
                    Err(why) => {
                        return Ok(failed(format!("could not find src={s}, {why}")));
                    }
                };
                let data = match path.read() {
                    Ok(d) => d,
                    Err(e) => return Ok(failed(format!("could not find src={s}, {e}"))),
                };
                let mode = local_mode(&path);
                let rel = path.file_name().to_string_lossy().into_owned();
                let path = path.path();
                (data, path.to_string_lossy().into_owned(), rel, mode)
            }
            (None, None) => unreachable!("checked above"),
        };
        if flag("decrypt", true) && data.starts_with(b"$ANSIBLE_VAULT;") {
            return Ok(failed(
                "ftl2-runner cannot decrypt Ansible vault files; give the script the value as a \
                 secret instead",
            ));
        }
        let helper = match self.helper().await {
            Ok(h) => h,
            Err(e) => return Ok(failed(e)),
        };
        let splits = match helper
            .request(json!({"op": "copy_args", "args": args}))
            .await
        {
            Ok(m) => m,
            Err(e) => return Ok(failed(e)),
        };
        let split = |k: &str| match splits.get(k) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let (source, source_rel) = if content.is_some() {
            let file = splits
                .get("content_file")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let rel = file.rsplit('/').next().unwrap_or("").to_string();
            (file, rel)
        } else {
            (source, source_rel)
        };
        let dest = remote_tmp::expand_user(ctx, &dest).await?;
        let force = flag("force", true);
        let follow = flag("follow", false);
        let mut dest_file = if dest.ends_with('/') {
            format!("{dest}{source_rel}")
        } else {
            dest.clone()
        };
        let mut result = obj(json!({"diff": []}));
        let mut stat = match self.remote_stat(&dest_file, follow, force, ctx).await? {
            Ok(s) => s,
            Err(failure) => return Ok(failure),
        };
        let is = |s: &Map<String, Value>, k: &str| s.get(k).and_then(Value::as_bool) == Some(true);
        if is(&stat, "exists") && is(&stat, "isdir") {
            if content.is_some() {
                result.insert("failed".into(), json!(true));
                result.insert(
                    "msg".into(),
                    json!("can not use content with a dir as dest"),
                );
                return Ok(result);
            }
            dest_file = format!("{}/{source_rel}", dest.trim_end_matches('/'));
            stat = match self.remote_stat(&dest_file, follow, force, ctx).await? {
                Ok(s) => s,
                Err(failure) => return Ok(failure),
            };
        }
        if is(&stat, "exists") && !force {
            // The plugin skips the file; the task reports what it was given.
            let mut r = Map::new();
            r.insert("dest".into(), json!(dest));
            r.insert("src".into(), json!(source));
            r.insert("changed".into(), json!(false));
            return Ok(r);
        }
        let local_checksum = crate::executor::modules::checksum_bytes(&data);
        let remote_checksum = stat.get("checksum").and_then(Value::as_str).unwrap_or("");
        let preserve = text("mode").as_deref() == Some("preserve");
        let module_return = if local_checksum != remote_checksum {
            if ctx.diff {
                let diff = self
                    .diff_data(&dest_file, &source, content.is_some(), &data, ctx)
                    .await?;
                if let Some(Value::Array(list)) = result.get_mut("diff") {
                    list.push(Value::Object(diff));
                }
            }
            if ctx.check_mode {
                result.insert("changed".into(), json!(true));
                return Ok(result);
            }
            let tmpdir = match self.make_tmpdir(&helper, ctx).await? {
                Ok(d) => d,
                Err(failure) => return Ok(failure),
            };
            let name = splits
                .get("tmp_source")
                .and_then(Value::as_str)
                .unwrap_or(".source");
            let mut tmp_src = format!("{tmpdir}/{name}");
            if splits.get("suffix").and_then(Value::as_bool) == Some(true)
                && let Some(ext) = std::path::Path::new(&dest_file).extension()
            {
                tmp_src.push('.');
                tmp_src.push_str(&ext.to_string_lossy());
            }
            if let Err(why) = remote_tmp::put(ctx, &tmp_src, &data).await? {
                remote_tmp::remove(ctx, &tmpdir).await?;
                return Ok(failed(why));
            }
            let mut module_args = split("copy_args");
            module_args.insert("src".into(), json!(tmp_src));
            module_args.insert("dest".into(), json!(dest));
            module_args.insert("_original_basename".into(), json!(source_rel));
            module_args.insert("follow".into(), json!(follow));
            if args.get("checksum").is_none_or(|v| v.is_null()) {
                module_args.insert("checksum".into(), json!(local_checksum));
            }
            if preserve && let Some(m) = &local_mode {
                module_args.insert("mode".into(), json!(m));
            }
            let r = self
                .run_module("ansible.legacy.copy", &module_args, ctx, Caller::Port)
                .await;
            remote_tmp::remove(ctx, &tmpdir).await?;
            r?
        } else {
            let mut dest = dest.clone();
            if follow {
                let nofollow = match self.remote_stat(&dest_file, false, false, ctx).await? {
                    Ok(s) => s,
                    Err(failure) => return Ok(failure),
                };
                if is(&nofollow, "islnk")
                    && let Some(Value::String(target)) = nofollow.get("lnk_source")
                {
                    dest = target.clone();
                }
            }
            let mut module_args = split("file_args");
            module_args.insert("dest".into(), json!(dest));
            module_args.insert("_original_basename".into(), json!(source_rel));
            module_args.insert("recurse".into(), json!(false));
            module_args.insert("state".into(), json!("file"));
            module_args.remove("src");
            if preserve && let Some(m) = &local_mode {
                module_args.insert("mode".into(), json!(m));
            }
            self.run_module("ansible.legacy.file", &module_args, ctx, Caller::Port)
                .await?
        };
        let mut module_return = module_return;
        if module_return
            .get("checksum")
            .is_none_or(|v| v.is_null() || v == "")
        {
            module_return.insert("checksum".into(), json!(local_checksum));
        }
        let failed_now = module_return.get("failed").and_then(Value::as_bool) == Some(true);
        for (k, v) in module_return {
            result.insert(k, v);
        }
        if !failed_now && result.contains_key("path") && !result.contains_key("dest") {
            let path = result["path"].clone();
            result.insert("dest".into(), path);
        }
        Ok(result)
    }

    /// `_execute_remote_stat`: the stat module's `stat` (checksum "1" for a missing file).
    async fn remote_stat(
        &self,
        path: &str,
        follow: bool,
        checksum: bool,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Result<Map<String, Value>, Map<String, Value>>, Unreachable> {
        let args = obj(json!({
            "path": path, "follow": follow, "get_checksum": checksum, "checksum_algorithm": "sha1",
        }));
        let r = self
            .run_module("ansible.legacy.stat", &args, ctx, Caller::Port)
            .await?;
        if r.get("failed").and_then(Value::as_bool) == Some(true) {
            let msg = ["module_stderr", "module_stdout", "msg"]
                .iter()
                .find_map(|k| r.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
                .unwrap_or("");
            return Ok(Err(self
                .action_error(
                    "fail",
                    &format!("Failed to get information on remote file ({path}): {msg}"),
                    ctx,
                )
                .await));
        }
        let mut stat = match r.get("stat") {
            Some(Value::Object(s)) => s.clone(),
            _ => Map::new(),
        };
        if stat.get("exists").and_then(Value::as_bool) != Some(true) {
            stat.insert("checksum".into(), json!("1"));
        }
        stat.entry("checksum").or_insert(json!(""));
        Ok(Ok(stat))
    }

    /// `_get_diff_data`: what the destination holds now (peeked with the file module, read with
    /// slurp) against what the copy will write.
    async fn diff_data(
        &self,
        dest: &str,
        source: &str,
        from_content: bool,
        data: &[u8],
        ctx: &ModuleCtx<'_>,
    ) -> Result<Map<String, Value>, Unreachable> {
        let mut diff = Map::new();
        let peek = self
            .run_module(
                "ansible.legacy.file",
                &obj(json!({"path": dest, "_diff_peek": true})),
                ctx,
                Caller::Port,
            )
            .await?;
        if peek.get("failed").and_then(Value::as_bool) == Some(true) {
            return Ok(diff);
        }
        if peek.get("rc").and_then(Value::as_i64).unwrap_or(0) == 0 {
            let size = peek.get("size").and_then(Value::as_u64).unwrap_or(0);
            match peek.get("state").and_then(Value::as_str) {
                None | Some("absent") => {
                    diff.insert("before".into(), json!(""));
                }
                _ if peek.get("appears_binary").and_then(Value::as_bool) == Some(true) => {
                    diff.insert("dst_binary".into(), json!(1));
                }
                _ if size > MAX_DIFF => {
                    diff.insert("dst_larger".into(), json!(MAX_DIFF));
                }
                _ => {
                    let slurped = self
                        .run_module(
                            "ansible.legacy.slurp",
                            &obj(json!({"path": dest})),
                            ctx,
                            Caller::Port,
                        )
                        .await?;
                    if let Some(Value::String(b64)) = slurped.get("content") {
                        use base64::Engine;
                        let before = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .unwrap_or_default();
                        diff.insert("before_header".into(), json!(dest));
                        diff.insert("before".into(), json!(String::from_utf8_lossy(&before)));
                    }
                }
            }
            if data.len() as u64 > MAX_DIFF {
                diff.insert("src_larger".into(), json!(MAX_DIFF));
            } else if data.contains(&0) {
                diff.insert("src_binary".into(), json!(1));
            } else {
                let header = if from_content { dest } else { source };
                diff.insert("after_header".into(), json!(header));
                diff.insert("after".into(), json!(String::from_utf8_lossy(data)));
            }
        }
        Ok(diff)
    }
}

/// A controller file's mode as the plugins give it for `mode: preserve` (`0644`).
fn local_mode(path: &crate::executor::modules::LocalPath) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = path.metadata().ok()?.permissions().mode();
    Some(format!("0{:03o}", mode & 0o7777))
}
