//! AWX ad hoc commands: kwargs `module` + `module_args` on the host pattern from `env/cmdline`,
//! run straight through the engine (no script), with `ansible`'s ad hoc output.

use crate::executor::modules::LocalFiles;
use crate::executor::{CallOptions, Progress};
use crate::job::{JobSettings, KeyValueError};
use crate::job_run::{engine, fail_early, hosts_outcome, warn_unhonoured};
use crate::outcome::{Outcome, RC_CANCELED};
use crate::sandbox::{StopFlag, StopReason};
use crate::tree::{EventTree, TaskInfo, TaskProgress};
use crate::writer::StreamWriter;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};

/// Modules whose arguments are a free-form command line.
const FREE_FORM: &[&str] = &["command", "shell", "raw", "script"];

/// Parse `module_args` as Ansible does: free form for command-like modules, JSON/YAML if it
/// looks like a mapping, otherwise `k=v` pairs (shell-quoted).
pub fn parse_args(module: &str, text: &str) -> Result<Map<String, Value>, String> {
    let short = module.rsplit('.').next().unwrap_or(module);
    let mut args = Map::new();
    if text.trim().is_empty() {
        return Ok(args);
    }
    if FREE_FORM.contains(&short) {
        args.insert("_raw_params".into(), Value::String(text.to_string()));
        return Ok(args);
    }
    let t = text.trim_start();
    if t.starts_with('{') {
        return match crate::yaml::parse(text) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(format!("module arguments {text:?} are not a valid mapping")),
        };
    }
    crate::job::key_values(text).map_err(|e| match e {
        KeyValueError::UnbalancedQuotes => {
            format!("unbalanced quotes in module arguments {text:?}")
        }
        KeyValueError::NotKeyValue(w) => format!(
            "this module ({module}) does not support free-form arguments: {w:?} is not key=value"
        ),
    })
}

/// Run the ad hoc command; returns the job outcome (rc 0, 2 failed hosts, 4 unreachable).
pub async fn run(job: &JobSettings, writer: &Arc<StreamWriter>, stop: Arc<StopFlag>) -> Outcome {
    let module = job.module.clone().unwrap_or_default();
    let Some(pattern) = job.host_pattern.clone() else {
        return fail_early(
            writer,
            "ERROR! an ad hoc command needs a host pattern (none in kwargs or env/cmdline)".into(),
        );
    };
    let args = match parse_args(&module, job.module_args.as_deref().unwrap_or("")) {
        Ok(a) => a,
        Err(e) => return fail_early(writer, format!("ERROR! {e}")),
    };
    let project = job.private_data_dir.join("project");
    let base = if project.is_dir() {
        project
    } else {
        job.private_data_dir.clone()
    };
    let base = base.canonicalize().unwrap_or(base);
    let local = LocalFiles {
        base: base.clone(),
        read_roots: vec![base],
        write_roots: Vec::new(),
        ..LocalFiles::default()
    };
    let executor = match engine(job, local) {
        Ok(e) => e,
        Err(why) => return fail_early(writer, why),
    };
    let tree = Arc::new(Mutex::new(EventTree::new(
        Arc::clone(writer),
        "__adhoc_playbook__",
        job.display_style(true),
    )));
    let unhonoured = job.cmdline.unhonoured(true);
    warn_unhonoured(&tree, &unhonoured);
    let hosts = match executor.list_hosts(&pattern) {
        Ok(h) => h,
        Err(e) => {
            return fail_early(
                writer,
                format!("ERROR! invalid host pattern {pattern:?}: {e:#}"),
            );
        }
    };
    if hosts.is_empty() {
        let mut t = tree.lock().unwrap_or_else(|e| e.into_inner());
        t.warning(&format!(
            "Could not match supplied host pattern, ignoring: {pattern}"
        ));
        t.warning("No hosts matched, nothing to do");
        return Outcome {
            status: "successful",
            rc: 0,
            explanation: None,
        };
    }
    let info = TaskInfo {
        name: module.clone(),
        action: module.clone(),
        resolved_action: if module.contains('.') {
            module.clone()
        } else {
            format!("ansible.builtin.{module}")
        },
        args: Map::new(),
        ignore_errors: false,
        no_log: false,
        path: String::new(),
    };
    let task = tree
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .task_start(info);
    let progress: Arc<dyn Progress> = Arc::new(TaskProgress {
        tree: Arc::clone(&tree),
        task,
        scrub: Vec::new(),
    });
    let opts = CallOptions {
        check_mode: job.cmdline.check,
        diff: job.cmdline.diff,
        // `-B N [-P M]`: Ansible's async (poll defaults to DEFAULT_POLL_INTERVAL, 15 s); -P
        // without -B changes nothing, as in Ansible.
        asynchronous: job
            .cmdline
            .background
            .filter(|&limit| limit > 0)
            .map(|limit| crate::executor::ansible::Async {
                limit,
                poll: job.cmdline.poll.unwrap_or(15),
            }),
        ..Default::default()
    };
    let run = executor.run(&hosts, &module, &args, &opts, progress);
    tokio::pin!(run);
    let stopped = loop {
        tokio::select! {
            _ = &mut run => break None,
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                if let Some(r) = stop.reason() {
                    break Some(r);
                }
            }
        }
    };
    let mut t = tree.lock().unwrap_or_else(|e| e.into_inner());
    t.task_end(task);
    let by_hosts = hosts_outcome(&t);
    t.finish();
    match stopped {
        Some(StopReason::Canceled) => Outcome {
            status: "canceled",
            rc: RC_CANCELED,
            explanation: None,
        },
        Some(StopReason::ScratchFull) | Some(StopReason::Timeout) => Outcome {
            status: "timeout",
            rc: RC_CANCELED,
            explanation: Some("Job terminated due to timeout.".into()),
        },
        None => by_hosts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn module_args_like_ansible() {
        assert_eq!(
            parse_args("command", "echo a=b").unwrap()["_raw_params"],
            json!("echo a=b")
        );
        let a = parse_args("file", "path=/tmp/x state='touch'").unwrap();
        assert_eq!(
            (a["path"].clone(), a["state"].clone()),
            (json!("/tmp/x"), json!("touch"))
        );
        assert_eq!(
            parse_args("copy", "{\"content\": \"x\", \"dest\": \"/y\"}").unwrap()["dest"],
            json!("/y")
        );
        assert!(
            parse_args("file", "just words")
                .unwrap_err()
                .contains("free-form")
        );
        assert!(parse_args("ping", "").unwrap().is_empty());
    }
}
