//! The AWX event tree: playbook -> play -> task -> host events, with the default callback's text,
//! the per-host stats and the PLAY RECAP.
//!
//! AWX's output view is only valid when each event's parent is the open event one level up, so
//! module calls that overlap in time (`asyncio.gather`) are written as contiguous per-task
//! blocks: the earliest open task streams live; a later task's events wait in a buffer until
//! every earlier task has finished, then follow in one piece.

use crate::display::{self, Style, banner};
use crate::events::Event;
use crate::pyjson;
use crate::writer::StreamWriter;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// How a host's run of a module ended, in Ansible's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStatus {
    /// Ran, nothing changed.
    Ok,
    /// Ran and changed something.
    Changed,
    /// The module failed.
    Failed,
    /// The host could not be reached.
    Unreachable,
    /// The module decided not to run.
    Skipped,
}

impl HostStatus {
    /// The status word the guest sees.
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Ok => "ok",
            HostStatus::Changed => "changed",
            HostStatus::Failed => "failed",
            HostStatus::Unreachable => "unreachable",
            HostStatus::Skipped => "skipped",
        }
    }

    /// Derive the status from a module result the way Ansible does.
    pub fn from_result(res: &Map<String, Value>) -> HostStatus {
        let flag = |k: &str| res.get(k).and_then(Value::as_bool).unwrap_or(false);
        if flag("unreachable") {
            HostStatus::Unreachable
        } else if flag("failed") {
            HostStatus::Failed
        } else if flag("skipped") {
            HostStatus::Skipped
        } else if flag("changed") {
            HostStatus::Changed
        } else {
            HostStatus::Ok
        }
    }
}

/// What a task is, for its banner and `event_data`.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// Display name (`TASK [name]`).
    pub name: String,
    /// The module as called (`ping`, `ansible.builtin.command`).
    pub action: String,
    /// The fully qualified module (`ansible.builtin.ping`).
    pub resolved_action: String,
    /// The arguments as shown (already censored when `no_log`).
    pub args: Map<String, Value>,
    /// Whether failures are ignored (reported as `...ignoring`).
    pub ignore_errors: bool,
    /// `no_log`: results are censored in events.
    pub no_log: bool,
    /// Where the script made the call (`file:line`, Ansible's task path); empty if unknown.
    pub path: String,
}

/// One host's result for the tree.
#[derive(Debug, Clone)]
pub struct HostOutcome {
    /// The status.
    pub status: HostStatus,
    /// The module result (`res`).
    pub result: Map<String, Value>,
    /// ISO timestamps and duration in seconds.
    pub start: String,
    /// When the host finished.
    pub end: String,
    /// Seconds between start and end.
    pub duration: f64,
    /// The address the host was reached at (`remote_addr`).
    pub remote_addr: String,
}

/// Identifies a task in the tree.
pub type TaskId = u64;

struct TaskBlock {
    id: TaskId,
    uuid: String,
    info: TaskInfo,
    buffered: Vec<Event>,
    done: bool,
}

/// Per-host counters for `playbook_on_stats` and the recap.
#[derive(Debug, Default, Clone)]
pub struct HostStats {
    /// ok + changed results (Ansible counts changed results as ok too).
    pub ok: u64,
    /// Changed results.
    pub changed: u64,
    /// Unreachable results.
    pub dark: u64,
    /// Failed results (not ignored).
    pub failures: u64,
    /// Failed results that were ignored.
    pub ignored: u64,
    /// Skipped results.
    pub skipped: u64,
    /// Rescued (always 0 here: scripts handle errors in Python).
    pub rescued: u64,
}

/// The result key that carries, from the module helper to the tree, the lines the EE's
/// ansible-core prints for a module's deprecations ([text, colour] pairs); never in events.
pub const DEPRECATION_LINES: &str = "_ftl2_deprecation_lines";

/// Writes the job's task tree to the worker stream.
pub struct EventTree {
    writer: Arc<StreamWriter>,
    playbook: String,
    playbook_uuid: Option<String>,
    play: Option<(String, String, String)>, // (name, uuid, pattern)
    tasks: VecDeque<TaskBlock>,
    next_id: TaskId,
    /// Per host, by name: the recap lists hosts sorted, as the default callback does.
    stats: BTreeMap<String, HostStats>,
    style: Style,
    /// Per task and host: the uuid of the `async_status` pseudo-task its polls run as.
    poll_tasks: HashMap<(TaskId, String), String>,
}

impl EventTree {
    /// A tree for the job whose playbook (or script) is called `playbook`.
    pub fn new(writer: Arc<StreamWriter>, playbook: &str, style: Style) -> EventTree {
        EventTree {
            writer,
            playbook: playbook.to_string(),
            playbook_uuid: None,
            play: None,
            tasks: VecDeque::new(),
            next_id: 1,
            stats: BTreeMap::new(),
            style,
            poll_tasks: HashMap::new(),
        }
    }

    fn base_data(&self) -> Map<String, Value> {
        let mut d = Map::new();
        d.insert("playbook".into(), json!(self.playbook));
        d.insert("playbook_uuid".into(), json!(self.playbook_uuid));
        d
    }

    fn ensure_playbook(&mut self) -> String {
        if let Some(u) = &self.playbook_uuid {
            return u.clone();
        }
        let u = uuid::Uuid::new_v4().to_string();
        self.playbook_uuid = Some(u.clone());
        let ev = Event {
            event: "playbook_on_start",
            uuid: u.clone(),
            parent_uuid: None,
            stdout: String::new(),
            trailing_newlines: 0,
            event_data: self.base_data(),
        };
        self.writer.event(&ev);
        u
    }

    /// Start a play (one per `automation()` block).
    pub fn play_start(&mut self, name: &str, pattern: &str) {
        let parent = self.ensure_playbook();
        let uuid = uuid::Uuid::new_v4().to_string();
        let mut d = self.base_data();
        d.insert("play".into(), json!(name));
        d.insert("play_uuid".into(), json!(uuid));
        d.insert("play_pattern".into(), json!(pattern));
        d.insert("name".into(), json!(name));
        d.insert("pattern".into(), json!(pattern));
        let ev = Event {
            event: "playbook_on_play_start",
            uuid: uuid.clone(),
            parent_uuid: Some(parent),
            stdout: format!("\r\n{}", banner(&format!("PLAY [{name}]"))),
            trailing_newlines: 1,
            event_data: d,
        };
        self.writer.event(&ev);
        self.play = Some((name.to_string(), uuid, pattern.to_string()));
    }

    fn ensure_play(&mut self) -> (String, String, String) {
        if self.play.is_none() {
            let name = self.playbook.clone();
            self.play_start(&name, "all");
        }
        self.play.clone().unwrap_or_default()
    }

    fn task_data(&self, block: &TaskBlock) -> Map<String, Value> {
        let mut d = self.base_data();
        if let Some((name, uuid, pattern)) = &self.play {
            d.insert("play".into(), json!(name));
            d.insert("play_uuid".into(), json!(uuid));
            d.insert("play_pattern".into(), json!(pattern));
        }
        d.insert("task".into(), json!(block.info.name));
        d.insert("task_uuid".into(), json!(block.uuid));
        d.insert("task_action".into(), json!(block.info.action));
        d.insert("resolved_action".into(), json!(block.info.resolved_action));
        // As ansible-runner's callback: empty unless DISPLAY_ARGS_TO_STDOUT, censored for no_log.
        let task_args = if !self.style.display_args {
            String::new()
        } else if block.info.no_log {
            NO_LOG_TEXT.to_string()
        } else {
            task_args_text(&block.info.args)
        };
        d.insert("task_args".into(), json!(task_args));
        d.insert("task_path".into(), json!(block.info.path));
        d
    }

    /// A module call begins: its `playbook_on_task_start` (streamed now or buffered).
    pub fn task_start(&mut self, info: TaskInfo) -> TaskId {
        // Ad hoc commands have no play or task events (as `ansible` emits none): host events
        // point at a task that is never shown.
        let play_uuid = if self.style.adhoc {
            self.ensure_playbook();
            String::new()
        } else {
            self.ensure_play().1
        };
        let id = self.next_id;
        self.next_id += 1;
        let mut block = TaskBlock {
            id,
            uuid: uuid::Uuid::new_v4().to_string(),
            info,
            buffered: Vec::new(),
            done: false,
        };
        let mut d = self.task_data(&block);
        d.insert("name".into(), json!(block.info.name));
        d.insert("is_conditional".into(), json!(false));
        let mut stdout = format!("\r\n{}", banner(&format!("TASK [{}]", block.info.name)));
        // `-vv`: the default callback names the task's place in the playbook; ours, the script's.
        if self.style.verbosity >= 2 && !block.info.path.is_empty() {
            let line = format!("task path: {}", block.info.path);
            stdout.push_str(&format!(
                "\r\n{}",
                self.style.paint(&line, crate::display::DEBUG)
            ));
        }
        let ev = Event {
            event: "playbook_on_task_start",
            uuid: block.uuid.clone(),
            parent_uuid: Some(play_uuid),
            stdout,
            trailing_newlines: 1,
            event_data: d,
        };
        if self.style.adhoc {
            // nothing to show
        } else if self.tasks.is_empty() {
            self.writer.event(&ev);
        } else {
            block.buffered.push(ev);
        }
        self.tasks.push_back(block);
        id
    }

    fn emit_for(&mut self, id: TaskId, ev: Event) {
        match self.tasks.iter_mut().position(|b| b.id == id) {
            Some(0) => self.writer.event(&ev),
            Some(i) => self.tasks[i].buffered.push(ev),
            None => {}
        }
    }

    /// A host starts running the task: `runner_on_start`.
    pub fn host_start(&mut self, id: TaskId, host: &str) {
        let Some(block) = self.tasks.iter().find(|b| b.id == id) else {
            return;
        };
        let mut d = self.task_data(block);
        d.insert("host".into(), json!(host));
        let ev = Event {
            event: "runner_on_start",
            uuid: uuid::Uuid::new_v4().to_string(),
            parent_uuid: Some(block.uuid.clone()),
            stdout: String::new(),
            trailing_newlines: 0,
            event_data: d,
        };
        self.emit_for(id, ev);
    }

    /// A host finished the task: exactly one of `runner_on_ok|failed|skipped|unreachable`.
    pub fn host_result(&mut self, id: TaskId, host: &str, outcome: &HostOutcome) {
        // Display-only: printed below, never part of the event's result.
        let deprecations = outcome.result.get(DEPRECATION_LINES).cloned();
        let Some(block) = self.tasks.iter().find(|b| b.id == id) else {
            return;
        };
        let ignore = block.info.ignore_errors;
        let module_no_log = outcome.result.get("_ansible_no_log") == Some(&json!(true));
        let mut res = if block.info.no_log || module_no_log {
            censored()
        } else {
            let mut r = outcome.result.clone();
            strip_internal_keys(&mut r);
            r
        };
        // As Ansible's TaskResult.clean_copy: the event type says failed/skipped, the result not.
        res.remove("failed");
        res.remove("skipped");
        // ansible-runner's callback keeps the environment out of fact-gathering events (it names
        // the actions by their short names only).
        if matches!(block.info.action.as_str(), "setup" | "gather_facts")
            && let Some(Value::Object(facts)) = res.get_mut("ansible_facts")
        {
            facts.remove("ansible_env");
        }
        let (event, mut stdout) = display::host_line(
            &self.style,
            outcome.status,
            host,
            &block.info.action,
            &res,
            ignore,
        );
        if let Some(Value::Array(lines)) = &deprecations {
            // After the module's warnings, before the host line, as the callback prints them.
            let text = display::deprecation_text(&self.style, lines);
            let at = display::warnings_len(&self.style, &res);
            stdout.insert_str(at.min(stdout.len()), &text);
        }
        let mut d = self.task_data(block);
        d.insert("host".into(), json!(host));
        d.insert("remote_addr".into(), json!(outcome.remote_addr));
        // ansible-runner's callback sends no result with runner_on_skipped.
        if outcome.status != HostStatus::Skipped {
            d.insert(
                "res".into(),
                Value::Object(crate::executor::truncate_result(res)),
            );
        }
        d.insert("start".into(), json!(outcome.start));
        d.insert("end".into(), json!(outcome.end));
        d.insert("duration".into(), json!(outcome.duration));
        if matches!(outcome.status, HostStatus::Failed | HostStatus::Unreachable) {
            d.insert(
                "ignore_errors".into(),
                if ignore { json!(true) } else { Value::Null },
            );
        }
        d.insert("event_loop".into(), Value::Null);
        let ev = Event {
            event,
            uuid: uuid::Uuid::new_v4().to_string(),
            parent_uuid: Some(block.uuid.clone()),
            trailing_newlines: 1,
            stdout,
            event_data: d,
        };
        let changed = outcome
            .result
            .get("changed")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.count(host, outcome.status, ignore, changed);
        // `--diff`: the diff comes first, as its own event, like Ansible's v2_on_file_diff.
        if outcome.status == HostStatus::Changed
            && let Some(diff) = outcome.result.get("diff")
            && let Some(text) = display::diff_text(&self.style, diff)
        {
            let mut dd = self.task_data(block_of(&self.tasks, id));
            dd.insert("host".into(), json!(host));
            dd.insert("diff".into(), diff.clone());
            let diff_ev = Event {
                event: "runner_on_file_diff",
                uuid: uuid::Uuid::new_v4().to_string(),
                parent_uuid: ev.parent_uuid.clone(),
                stdout: text,
                trailing_newlines: 1,
                event_data: dd,
            };
            self.emit_for(id, diff_ev);
        }
        self.emit_for(id, ev);
    }

    /// A polled async job on a host: `runner_on_async_poll` while it runs, then
    /// `runner_on_async_ok`/`runner_on_async_failed` (before the host's result).
    pub fn host_async(
        &mut self,
        id: TaskId,
        host: &str,
        event: crate::executor::ansible::AsyncEvent,
        result: &Map<String, Value>,
    ) {
        use crate::executor::ansible::AsyncEvent;
        let Some(block) = self.tasks.iter().find(|b| b.id == id) else {
            return;
        };
        let name = match event {
            AsyncEvent::Poll => "runner_on_async_poll",
            AsyncEvent::Ok => "runner_on_async_ok",
            AsyncEvent::Failed => "runner_on_async_failed",
        };
        let res = if block.info.no_log {
            censored()
        } else {
            let mut r = result.clone();
            strip_internal_keys(&mut r);
            r
        };
        let mut res = res;
        // As TaskResult.clean_copy, as for the host's result.
        res.remove("failed");
        res.remove("skipped");
        let stdout = display::async_line(&self.style, name, host, &res);
        let mut d = self.task_data(block);
        let mut parent = block.uuid.clone();
        if event == AsyncEvent::Poll {
            // Polls run as TaskExecutor's pseudo-task `async_status`, one per task and host.
            let pseudo = self
                .poll_tasks
                .entry((id, host.to_string()))
                .or_insert_with(|| uuid::Uuid::new_v4().to_string())
                .clone();
            d.insert("task".into(), json!("async_status"));
            d.insert("task_uuid".into(), json!(pseudo));
            d.insert("task_action".into(), json!("async_status"));
            d.insert(
                "resolved_action".into(),
                json!("ansible.builtin.async_status"),
            );
            d.insert("task_args".into(), json!(""));
            parent = pseudo;
        }
        d.insert("host".into(), json!(host));
        d.insert(
            "jid".into(),
            result.get("ansible_job_id").cloned().unwrap_or(Value::Null),
        );
        d.insert(
            "res".into(),
            Value::Object(crate::executor::truncate_result(res)),
        );
        let ev = Event {
            event: name,
            uuid: uuid::Uuid::new_v4().to_string(),
            parent_uuid: Some(parent),
            trailing_newlines: 1,
            stdout,
            event_data: d,
        };
        self.emit_for(id, ev);
    }

    fn count(&mut self, host: &str, status: HostStatus, ignored: bool, changed: bool) {
        let s = self.stats.entry(host.to_string()).or_default();
        match status {
            HostStatus::Ok => s.ok += 1,
            HostStatus::Changed => {
                s.ok += 1;
                s.changed += 1;
            }
            // An ignored failure counts as ok (and changed, if it changed), plus ignored.
            HostStatus::Failed if ignored => {
                s.ok += 1;
                s.ignored += 1;
                s.changed += u64::from(changed);
            }
            HostStatus::Failed => s.failures += 1,
            HostStatus::Unreachable => s.dark += 1,
            HostStatus::Skipped => s.skipped += 1,
        }
    }

    /// A module call finished on every host; later tasks' buffered events may now follow.
    pub fn task_end(&mut self, id: TaskId) {
        if let Some(b) = self.tasks.iter_mut().find(|b| b.id == id) {
            b.done = true;
        }
        while self.tasks.front().is_some_and(|b| b.done) {
            self.tasks.pop_front();
            if let Some(next) = self.tasks.front_mut() {
                for ev in std::mem::take(&mut next.buffered) {
                    self.writer.event(&ev);
                }
            }
        }
    }

    /// A `[WARNING]: ...` line, coloured as Ansible colours warnings.
    pub fn warning(&mut self, msg: &str) {
        let text = display::warning(&self.style, msg);
        self.writer.event(&Event::verbose(text));
    }

    /// One line of free text (script output, warnings): a `verbose` event.
    pub fn verbose(&mut self, line: &str) {
        self.writer.event(&Event::verbose(line));
    }

    /// The counters so far, per host.
    pub fn stats(&self) -> &BTreeMap<String, HostStats> {
        &self.stats
    }

    /// End of the job: flush unfinished tasks and write `playbook_on_stats` with the recap.
    pub fn finish(&mut self) {
        // Tasks that never ended (a canceled job) are flushed so nothing is lost.
        while let Some(b) = self.tasks.pop_front() {
            for ev in b.buffered {
                self.writer.event(&ev);
            }
        }
        let Some(parent) = self.playbook_uuid.clone() else {
            return;
        };
        let mut d = self.base_data();
        let pick = |f: fn(&HostStats) -> u64| -> Value {
            let mut m = Map::new();
            for (h, s) in &self.stats {
                if f(s) > 0 {
                    m.insert(h.clone(), json!(f(s)));
                }
            }
            Value::Object(m)
        };
        d.insert("changed".into(), pick(|s| s.changed));
        d.insert("dark".into(), pick(|s| s.dark));
        d.insert("failures".into(), pick(|s| s.failures));
        d.insert("ignored".into(), pick(|s| s.ignored));
        d.insert("ok".into(), pick(|s| s.ok));
        d.insert("processed".into(), pick(|_| 1));
        d.insert("rescued".into(), pick(|s| s.rescued));
        d.insert("skipped".into(), pick(|s| s.skipped));
        d.insert("artifact_data".into(), json!({}));
        let hosts: Vec<(String, HostStats)> = self
            .stats
            .iter()
            .map(|(h, s)| (h.clone(), s.clone()))
            .collect();
        // Ad hoc commands print no recap; their stats event has no text.
        let (text, trailing) = if self.style.adhoc {
            (String::new(), 0)
        } else {
            (display::recap(&self.style, &hosts), 2)
        };
        let ev = Event {
            event: "playbook_on_stats",
            uuid: uuid::Uuid::new_v4().to_string(),
            parent_uuid: Some(parent),
            stdout: text,
            trailing_newlines: trailing,
            event_data: d,
        };
        self.writer.event(&ev);
        self.playbook_uuid = None;
    }
}

/// Feeds the executor's per-host progress of one task into the tree, scrubbing secret values.
pub struct TaskProgress {
    /// The tree.
    pub tree: Arc<std::sync::Mutex<EventTree>>,
    /// The task.
    pub task: TaskId,
    /// Secret values to replace with `********` in results.
    pub scrub: Vec<String>,
}

impl crate::executor::Progress for TaskProgress {
    fn host_start(&self, host: &str) {
        self.tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .host_start(self.task, host);
    }
    fn host_done(&self, host: &str, outcome: &HostOutcome) {
        let mut o = outcome.clone();
        crate::sandbox::bridge::scrub_map(&mut o.result, &self.scrub);
        self.tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .host_result(self.task, host, &o);
    }
    fn host_async(
        &self,
        host: &str,
        event: crate::executor::ansible::AsyncEvent,
        result: &Map<String, Value>,
    ) {
        let mut r = result.clone();
        crate::sandbox::bridge::scrub_map(&mut r, &self.scrub);
        self.tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .host_async(self.task, host, event, &r);
    }
}

fn block_of(tasks: &VecDeque<TaskBlock>, id: TaskId) -> &TaskBlock {
    tasks.iter().find(|b| b.id == id).expect("the task is open")
}

fn task_args_text(args: &Map<String, Value>) -> String {
    args.iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={}", pyjson::to_string(other)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What Ansible shows in place of anything `no_log` hides.
const NO_LOG_TEXT: &str =
    "the output has been hidden due to the fact that 'no_log: true' was specified for this result";

/// A `no_log` result as AWX receives it: ansible-runner's callback replaces whatever Ansible's
/// censor_result kept with the censored text alone.
fn censored() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("censored".into(), json!(NO_LOG_TEXT));
    m
}

/// Ansible's strip_internal_keys for callbacks: `_ansible_*` keys go, at any depth, except the
/// few callbacks need.
fn strip_internal_keys(m: &mut Map<String, Value>) {
    const KEEP: &[&str] = &[
        "_ansible_verbose_always",
        "_ansible_item_label",
        "_ansible_no_log",
        "_ansible_verbose_override",
    ];
    m.retain(|k, _| {
        (!k.starts_with("_ansible_") || KEEP.contains(&k.as_str())) && k != DEPRECATION_LINES
    });
    for v in m.values_mut() {
        strip_value(v);
    }
}

fn strip_value(v: &mut Value) {
    match v {
        Value::Object(m) => strip_internal_keys(m),
        Value::Array(a) => a.iter_mut().for_each(strip_value),
        _ => {}
    }
}

/// Sort keys recursively, as Ansible's callback dumps results (`sort_keys=True`).
pub fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::modules::obj;

    #[test]
    fn status_from_result() {
        assert_eq!(
            HostStatus::from_result(&obj(json!({"changed": true}))),
            HostStatus::Changed
        );
        assert_eq!(
            HostStatus::from_result(&obj(json!({"failed": true, "changed": true}))),
            HostStatus::Failed
        );
        assert_eq!(
            HostStatus::from_result(&obj(json!({"unreachable": true}))),
            HostStatus::Unreachable
        );
        assert_eq!(
            HostStatus::from_result(&obj(json!({"skipped": true}))),
            HostStatus::Skipped
        );
        assert_eq!(HostStatus::from_result(&obj(json!({}))), HostStatus::Ok);
    }
}
