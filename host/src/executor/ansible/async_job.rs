//! Ansible's `async`/`poll`: the module is started in the background on the host by
//! ansible-core's own `async_wrapper`, from files in a remote temp dir, exactly as
//! `_execute_module(wrap_async=True)` of the EE's version lays them out (the helper records what
//! it would upload and run); with `poll`, we wait for it as TaskExecutor does, asking the
//! `async_status` module every `poll` seconds until it finishes or the `async` limit passes.

use super::{AnsibleModules, Caller, action_is_plain};
use crate::executor::connection::Unreachable;
use crate::executor::modules::{ModuleCtx, failed, obj, quote};
use serde_json::{Map, Value, json};

/// `async`/`poll` of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Async {
    /// Most seconds the job may run (`async`).
    pub limit: u64,
    /// Seconds between status checks; 0: start it and return at once (`poll`).
    pub poll: u64,
}

/// What a polled async job reports while it runs and when it ends (`runner_on_async_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncEvent {
    /// Still running after a poll.
    Poll,
    /// Finished, and did not fail.
    Ok,
    /// Failed, or did not finish in time.
    Failed,
}

impl AnsibleModules {
    /// Run `module` as a task with `async`/`poll` does.
    pub async fn run_async(
        &self,
        module: &str,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
        opts: Async,
    ) -> Result<Map<String, Value>, Unreachable> {
        // Boxed, as `run` is, so that a host's call does not carry this path's state inline.
        Box::pin(self.run_async_inline(module, args, ctx, opts)).await
    }

    async fn run_async_inline(
        &self,
        module: &str,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
        opts: Async,
    ) -> Result<Map<String, Value>, Unreachable> {
        let helper = match self.helper().await {
            Ok(h) => h,
            Err(why) => {
                return Ok(failed(format!(
                    "ftl2-runner cannot run '{module}' asynchronously: async needs the EE's \
                     ansible-core ({why})"
                )));
            }
        };
        let (interpreter, discovered) = self.interpreter(ctx, &helper).await?;
        let tmpdir = match self.make_tmpdir(&helper, ctx).await? {
            Ok(d) => d,
            Err(failure) => return Ok(failure),
        };
        let text = |m: &Map<String, Value>, k: &str| {
            m.get(k).and_then(Value::as_str).unwrap_or("").to_string()
        };
        let req = json!({
            "op": "async_build", "module": module, "args": args, "interpreter": interpreter,
            "check_mode": ctx.check_mode, "diff": ctx.diff, "no_log": ctx.no_log,
            "verbosity": self.verbosity, "host": ctx.host, "async_val": opts.limit,
            "tmpdir": tmpdir,
        });
        let plan = match helper.request(req).await {
            Ok(p) => p,
            Err(msg) => {
                super::remote_tmp::remove(ctx, &tmpdir).await?;
                return Ok(failed(msg));
            }
        };
        let resolved = text(&plan, "resolved");
        if let Some(action) = plan.get("action_plugin").and_then(Value::as_str)
            && !action_is_plain(action, args)
        {
            super::remote_tmp::remove(ctx, &tmpdir).await?;
            return Ok(failed(format!(
                "{resolved} needs Ansible's controller-side action plugin {action} for these \
                 arguments, which ftl2-runner does not run asynchronously; nothing was changed on \
                 the host"
            )));
        }
        use base64::Engine;
        let mut paths = Vec::new();
        for f in plan
            .get("files")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let path = f.get("path").and_then(Value::as_str).unwrap_or("");
            let data = base64::engine::general_purpose::STANDARD
                .decode(f.get("data").and_then(Value::as_str).unwrap_or(""))
                .unwrap_or_default();
            if let Err(why) = super::remote_tmp::put(ctx, path, &data).await? {
                super::remote_tmp::remove(ctx, &tmpdir).await?;
                return Ok(failed(why));
            }
            paths.push(quote(path));
        }
        let _ = ctx
            .sh(&format!("chmod u+x {}", paths.join(" ")), None)
            .await?;
        let launched = ctx.sh(&text(&plan, "command"), None).await?;
        let profile = plan.get("profile").cloned().unwrap_or(Value::Null);
        let used = text(&plan, "interpreter");
        let (mut result, mut warnings) = match self
            .parse(&helper, &resolved, &launched, &used, &profile, ctx.no_log)
            .await
        {
            Ok(r) => r,
            Err(msg) => return Ok(failed(msg)),
        };
        let mut all = super::strings(plan.get("warnings"));
        all.append(&mut warnings);
        super::add_warnings(&mut result, all);
        // As _execute_module with wrap_async: "for backwards compat".
        result.insert("changed".into(), json!(true));
        if discovered {
            super::note_discovered(&mut result, &interpreter);
        }
        let failed_start = result.get("failed").and_then(Value::as_bool) == Some(true)
            || result.get("skipped").and_then(Value::as_bool) == Some(true);
        if opts.poll == 0 || failed_start {
            return Ok(result);
        }
        let async_dir = text(&plan, "async_dir");
        Ok(self
            .poll(&result, &async_dir, opts, ctx)
            .await?
            .unwrap_or_else(failed))
    }

    /// TaskExecutor's `_poll_async_result`: status every `poll` seconds until finished or the
    /// limit passes; then the status file is cleaned up (finished) or the task fails.
    async fn poll(
        &self,
        started: &Map<String, Value>,
        async_dir: &str,
        opts: Async,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Result<Map<String, Value>, String>, Unreachable> {
        let Some(jid) = started.get("ansible_job_id").and_then(Value::as_str) else {
            return Ok(Err("No job id was returned by the async task".into()));
        };
        // Expanded on the host once, not on every status check.
        let async_dir = super::remote_tmp::expand_user(ctx, async_dir).await?;
        let async_dir = async_dir.as_str();
        let mut time_left = opts.limit as i64;
        let mut status = Map::new();
        while time_left > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(opts.poll)).await;
            status = match self.async_status(jid, "status", async_dir, ctx).await? {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            };
            if flag(&status, "finished") || flag(&status, "failed") || flag(&status, "skipped") {
                break;
            }
            time_left -= opts.poll as i64;
            (ctx.on_async)(AsyncEvent::Poll, &status);
        }
        if !flag(&status, "finished") {
            let result = obj(json!({
                "failed": true,
                "async_result": status,
                "msg": format!("async task did not complete within the requested time - {}s", opts.limit),
                "changed": false,
            }));
            (ctx.on_async)(AsyncEvent::Failed, &result);
            return Ok(Ok(result));
        }
        let _ = self.async_status(jid, "cleanup", async_dir, ctx).await?;
        let event = if flag(&status, "failed") {
            AsyncEvent::Failed
        } else {
            AsyncEvent::Ok
        };
        (ctx.on_async)(event, &status);
        Ok(Ok(status))
    }

    /// Ansible's `async_status` action: the module, given the async dir (already expanded on the
    /// host, for the become user), inside the version's own action result.
    pub(super) async fn async_status(
        &self,
        jid: &str,
        mode: &str,
        dir: &str,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Result<Map<String, Value>, String>, Unreachable> {
        let helper = match self.helper().await {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let args = obj(json!({"jid": jid, "mode": mode, "_async_dir": dir}));
        let module_result = self
            .run_module("ansible.legacy.async_status", &args, ctx, Caller::Port)
            .await?;
        let answer = helper
            .request(json!({
                "op": "async_status", "jid": jid, "mode": mode, "async_dir": dir,
                "module_result": module_result, "check_mode": ctx.check_mode,
            }))
            .await;
        Ok(match answer.map(|mut m| m.remove("result")) {
            Ok(Some(Value::Object(r))) => Ok(r),
            Ok(_) => Err("the module helper returned no async_status result".into()),
            Err(e) => Err(e),
        })
    }

    /// The user-facing `async_status` module (its action plugin, ported).
    pub(super) async fn async_status_action(
        &self,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Map<String, Value>, Unreachable> {
        let Some(jid) = args.get("jid").and_then(Value::as_str) else {
            return Ok(failed("missing required arguments: jid"));
        };
        let mode = args.get("mode").and_then(Value::as_str).unwrap_or("status");
        if !matches!(mode, "status" | "cleanup") {
            return Ok(failed(format!(
                "value of mode must be one of: status, cleanup, got: {mode}"
            )));
        }
        if let Some(k) = args.keys().find(|k| !matches!(k.as_str(), "jid" | "mode")) {
            return Ok(failed(format!(
                "Unsupported parameters for (async_status) module: {k}. Supported parameters \
                 include: jid, mode."
            )));
        }
        let dir = match self.helper().await {
            Ok(h) => h
                .request(json!({"op": "async_dir"}))
                .await
                .ok()
                .and_then(|m| m.get("async_dir").and_then(Value::as_str).map(String::from))
                .unwrap_or_else(|| "~/.ansible_async".into()),
            Err(e) => return Ok(failed(e)),
        };
        let dir = super::remote_tmp::expand_user(ctx, &dir).await?;
        Ok(self
            .async_status(jid, mode, &dir, ctx)
            .await?
            .unwrap_or_else(failed))
    }
}

/// A result flag that is set: `true`, or 2.15's `1`.
fn flag(result: &Map<String, Value>, key: &str) -> bool {
    match result.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}
