//! The host side of the WIT imports: what the guest's `ftl2` package can ask of the world.
//!
//! Module calls are submitted (each becomes a task in the AWX tree at once, in submission order),
//! run concurrently on the tokio runtime by the executor, and reported back through `wait` as
//! each finishes. Secrets named by the script are filled in here, after the sandbox boundary,
//! and scrubbed from whatever comes back.

use super::StopFlag;
use super::output::OutputSink;
use crate::executor::modules::obj;
use crate::executor::{CallOptions, Executor, Progress};
use crate::tree::{EventTree, HostOutcome, HostStatus, TaskInfo};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything the imports need, owned by the store.
pub struct Bridge {
    /// The job's execution engine.
    pub executor: Arc<Executor>,
    /// The AWX event tree.
    pub tree: Arc<Mutex<EventTree>>,
    /// Script output and custom events go here (capped).
    pub output: Arc<OutputSink>,
    /// Where module calls run.
    pub runtime: tokio::runtime::Handle,
    /// `job.info-json`.
    pub job_info: Value,
    /// The job's defaults for check mode and diff.
    pub defaults: CallOptions,
    /// Name of the play an `automation()` block opens when it gives none.
    pub play_name: String,
    /// Values for secret names (from the job's credentials); never sent to the guest.
    pub secrets: BTreeMap<String, String>,
    /// Cancel / timeout requests.
    pub stop: Arc<StopFlag>,
    /// `--tags`/`--skip-tags`: which of the script's tagged calls run.
    selection: crate::tags::Selection,
    next_id: u64,
    /// Values of the secrets the script has used so far: scrubbed from every later result too.
    used_secrets: Vec<String>,
    done_tx: mpsc::Sender<(u64, String)>,
    done_rx: mpsc::Receiver<(u64, String)>,
}

impl Bridge {
    /// A bridge with an empty completion queue.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        executor: Arc<Executor>,
        tree: Arc<Mutex<EventTree>>,
        output: Arc<OutputSink>,
        runtime: tokio::runtime::Handle,
        job_info: Value,
        defaults: CallOptions,
        play_name: String,
        secrets: BTreeMap<String, String>,
        stop: Arc<StopFlag>,
        selection: crate::tags::Selection,
    ) -> Bridge {
        let (done_tx, done_rx) = mpsc::channel();
        Bridge {
            executor,
            tree,
            output,
            runtime,
            job_info,
            defaults,
            play_name,
            secrets,
            stop,
            selection,
            next_id: 1,
            used_secrets: Vec::new(),
            done_tx,
            done_rx,
        }
    }

    /// Start one module call; returns its id.
    pub fn submit(
        &mut self,
        target: String,
        module: String,
        args_json: &str,
        options_json: &str,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let args = match serde_json::from_str::<Value>(args_json) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let options = match serde_json::from_str::<Value>(options_json) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let tx = self.done_tx.clone();
        let controller = options.get("controller").and_then(Value::as_bool) == Some(true);
        let listed = if controller {
            self.executor.controller_hosts(&target)
        } else {
            self.executor.list_hosts(&target)
        };
        let hosts = match listed {
            Ok(h) => h,
            Err(e) => {
                self.warn(&format!("invalid host pattern {target:?}: {e:#}"));
                let _ = tx.send((id, "[]".into()));
                return id;
            }
        };
        if hosts.is_empty() {
            self.warn(&format!(
                "Could not match supplied host pattern, ignoring: {target}"
            ));
            let _ = tx.send((id, "[]".into()));
            return id;
        }
        let (shown_args, real_args, missing) = self.resolve_secrets(&args);
        let opts = CallOptions {
            check_mode: self.defaults.check_mode
                || options
                    .get("check_mode")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            diff: self.defaults.diff
                || options
                    .get("diff")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            become_: options.get("become").and_then(Value::as_bool),
            become_user: options
                .get("become_user")
                .and_then(Value::as_str)
                .map(String::from),
            no_log: options
                .get("no_log")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            // Ansible's `async`/`poll` (poll defaults to DEFAULT_POLL_INTERVAL, 15 s).
            asynchronous: options
                .get("async")
                .and_then(Value::as_u64)
                .filter(|&limit| limit > 0)
                .map(|limit| crate::executor::ansible::Async {
                    limit,
                    poll: options.get("poll").and_then(Value::as_u64).unwrap_or(15),
                }),
            changed_when: options.get("changed_when").and_then(Value::as_bool),
            failed_when: options.get("failed_when").and_then(Value::as_bool),
            vars: match options.get("vars") {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            },
        };
        let name = options
            .get("name")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| module.clone());
        // `_tags`: run only if the job's --tags/--skip-tags select the call, as Ansible's rules.
        let call_tags: Vec<String> = match options.get("tags") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        let selected = self.selection.runs(&call_tags);
        let info = TaskInfo {
            name,
            action: module.clone(),
            resolved_action: if module.contains('.') {
                module.clone()
            } else {
                format!("ansible.builtin.{module}")
            },
            args: shown_args,
            ignore_errors: options
                .get("ignore_errors")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            no_log: options
                .get("no_log")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            path: options
                .get("task_path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        };
        let task = self
            .tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .task_start(info);
        let executor = Arc::clone(&self.executor);
        let tree = Arc::clone(&self.tree);
        let scrub = self.used_secrets.clone();
        self.runtime.spawn(async move {
            let progress: Arc<dyn Progress> = Arc::new(crate::tree::TaskProgress {
                tree: Arc::clone(&tree),
                task,
                scrub: scrub.clone(),
            });
            let results = if !selected {
                // Not selected by the job's tags: every host reports it skipped, nothing runs.
                let skipped = crate::executor::modules::obj(serde_json::json!({
                    "changed": false, "skipped": true,
                    "skip_reason": "not selected by the job's tags",
                }));
                without_running(&hosts, progress.as_ref(), HostStatus::Skipped, &skipped)
            } else if let Some(name) = missing {
                let msg = format!(
                    "secret {name} is not available to this job (no credential provides it)"
                );
                let failed = crate::executor::modules::failed(msg);
                without_running(&hosts, progress.as_ref(), HostStatus::Failed, &failed)
            } else {
                executor
                    .run(&hosts, &module, &real_args, &opts, Arc::clone(&progress))
                    .await
            };
            tree.lock()
                .unwrap_or_else(|e| e.into_inner())
                .task_end(task);
            let list: Vec<Value> = results
                .into_iter()
                .map(|(host, o)| {
                    let mut res = o.result;
                    res.remove(crate::tree::DEPRECATION_LINES); // display only
                    scrub_map(&mut res, &scrub);
                    json!({"host": host, "status": o.status.as_str(), "result": res})
                })
                .collect();
            let _ = tx.send((id, Value::Array(list).to_string()));
        });
        id
    }

    /// Completions finished so far; blocks up to `timeout_ms` for the first one. Errors when the
    /// job is canceled or out of time, which traps the guest.
    pub fn wait(&mut self, timeout_ms: u64) -> Result<Vec<(u64, String)>, String> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms.min(1 << 40));
        let mut out = Vec::new();
        loop {
            while let Ok(c) = self.done_rx.try_recv() {
                out.push(c);
            }
            if !out.is_empty() {
                return Ok(out);
            }
            if let Some(why) = self.stop.reason() {
                return Err(why.to_string());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(out);
            }
            let slice = (deadline - now).min(Duration::from_millis(50));
            if let Ok(c) = self.done_rx.recv_timeout(slice) {
                out.push(c);
            }
        }
    }

    /// A warning line in the job output.
    pub fn warn(&self, msg: &str) {
        self.tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .warning(msg);
    }

    /// A custom event from the script, shown as a line of output (never a new event type).
    pub fn custom_event(&self, event_json: &str) {
        let text = match serde_json::from_str::<Value>(event_json) {
            Ok(Value::Object(m)) => m
                .get("msg")
                .or_else(|| m.get("stdout"))
                .or_else(|| m.get("message"))
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| crate::pyjson::to_string(&Value::Object(m))),
            Ok(other) => other.to_string(),
            Err(_) => event_json.to_string(),
        };
        for line in text.lines() {
            self.output.line(line);
        }
    }

    /// Replace `{"__ftl2_secret__": NAME}` markers: the shown args get `********`, the real ones
    /// the value: the job's credential's, else the one the script itself had in its environment
    /// when it declared the secret (`"__ftl2_value__"`; the script knows it already, and it is
    /// scrubbed from output like any other). Returns the first secret name with no value, if any.
    fn resolve_secrets(
        &mut self,
        args: &Map<String, Value>,
    ) -> (Map<String, Value>, Map<String, Value>, Option<String>) {
        let mut missing = None;
        let mut shown = Value::Object(args.clone());
        let mut real = Value::Object(args.clone());
        replace_markers(&mut shown, &mut |_, _| Some("********".into()));
        let mut used = Vec::new();
        replace_markers(&mut real, &mut |name, own| match self
            .secrets
            .get(name)
            .map(String::as_str)
            .or(own)
        {
            Some(v) => {
                used.push(v.to_string());
                Some(v.to_string())
            }
            None => {
                missing.get_or_insert_with(|| name.to_string());
                None
            }
        });
        for v in used {
            // Too short a value would scrub ordinary text; it is still never shown in args.
            if v.len() >= 4 && !self.used_secrets.contains(&v) {
                self.used_secrets.push(v);
            }
        }
        (obj(shown), obj(real), missing)
    }
}

/// Replace each secret marker in `v` by what `f(name, the script's own value)` gives.
fn replace_markers(v: &mut Value, f: &mut dyn FnMut(&str, Option<&str>) -> Option<String>) {
    match v {
        Value::Object(m) => {
            let own = m.get("__ftl2_value__");
            if let Some(Value::String(name)) = m.get("__ftl2_secret__")
                && (m.len() == 1 || (m.len() == 2 && matches!(own, Some(Value::String(_)))))
            {
                let own = own.and_then(Value::as_str).map(str::to_string);
                let name = name.clone();
                *v = f(&name, own.as_deref())
                    .map(Value::String)
                    .unwrap_or(Value::Null);
                return;
            }
            for x in m.values_mut() {
                replace_markers(x, f);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace_markers(x, f)),
        _ => {}
    }
}

/// Every host's outcome for a call that does not run (not selected, or refused before it could).
fn without_running(
    hosts: &[String],
    progress: &dyn Progress,
    status: HostStatus,
    result: &Map<String, Value>,
) -> Vec<(String, HostOutcome)> {
    let mut out = Vec::new();
    for h in hosts {
        progress.host_start(h);
        let outcome = HostOutcome {
            status,
            result: result.clone(),
            start: crate::events::timestamp(),
            end: crate::events::timestamp(),
            duration: 0.0,
            remote_addr: h.clone(),
        };
        progress.host_done(h, &outcome);
        out.push((h.clone(), outcome));
    }
    out
}

/// [`scrub_value`] over every value of a result.
pub fn scrub_map(m: &mut Map<String, Value>, secrets: &[String]) {
    for v in m.values_mut() {
        scrub_value(v, secrets);
    }
}

/// Replace every occurrence of a secret value in the strings of `v`.
pub fn scrub_value(v: &mut Value, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    match v {
        Value::String(s) => {
            for sec in secrets {
                if s.contains(sec.as_str()) {
                    *s = s.replace(sec.as_str(), "********");
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| scrub_value(x, secrets)),
        Value::Object(m) => m.values_mut().for_each(|x| scrub_value(x, secrets)),
        _ => {}
    }
}
