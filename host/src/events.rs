//! The job events we stream to AWX, in the shape ansible-runner's callback gives them.
//!
//! An [`Event`] is built by whoever knows what happened (the job, later the sandbox and the
//! executor); the [`crate::writer::StreamWriter`] gives it its counter and line numbers, because
//! those must be assigned in the order events actually reach stdout.

use serde_json::{Map, Value, json};

/// Event names AWX knows (`awx.main.models.events.BasePlaybookEvent.EVENT_TYPES`); anything else
/// breaks AWX's output tree, so an event may only carry one of these.
pub const KNOWN_EVENTS: &[&str] = &[
    "runner_on_failed",
    "runner_on_start",
    "runner_on_ok",
    "runner_on_error",
    "runner_on_skipped",
    "runner_on_unreachable",
    "runner_on_no_hosts",
    "runner_on_async_poll",
    "runner_on_async_ok",
    "runner_on_async_failed",
    "runner_item_on_ok",
    "runner_item_on_failed",
    "runner_item_on_skipped",
    "runner_retry",
    "runner_on_file_diff",
    "playbook_on_start",
    "playbook_on_notify",
    "playbook_on_include",
    "playbook_on_no_hosts_matched",
    "playbook_on_no_hosts_remaining",
    "playbook_on_task_start",
    "playbook_on_vars_prompt",
    "playbook_on_setup",
    "playbook_on_import_for_host",
    "playbook_on_not_import_for_host",
    "playbook_on_play_start",
    "playbook_on_stats",
    "debug",
    "verbose",
    "deprecated",
    "warning",
    "system_warning",
    "error",
];

/// One job event before it is numbered: what happened, its place in the tree and its text.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event name, one of [`KNOWN_EVENTS`].
    pub event: &'static str,
    /// The event's uuid (also the parent of the events nested under it).
    pub uuid: String,
    /// The enclosing event's uuid; `None` only for `playbook_on_start` and `verbose`.
    pub parent_uuid: Option<String>,
    /// The text AWX shows, lines joined with `\r\n`, without the trailing newline.
    pub stdout: String,
    /// How many line breaks the display printed after `stdout` (0 for events without text, 1 for
    /// normal text, 2 for the recap, which ends in a blank line); they count in `end_line` but
    /// are not part of `stdout`.
    pub trailing_newlines: u64,
    /// The callback's `event_data`; ignored for `verbose` events, which carry none.
    pub event_data: Map<String, Value>,
}

impl Event {
    /// A free-text `verbose` event: one line of job output outside the task tree.
    pub fn verbose(line: impl Into<String>) -> Event {
        let stdout: String = line.into();
        Event {
            event: "verbose",
            uuid: uuid::Uuid::new_v4().to_string(),
            parent_uuid: None,
            trailing_newlines: 1,
            stdout,
            event_data: Map::new(),
        }
    }

    /// Number of output lines this event occupies, as ansible-runner counts them: every `\n`
    /// the display printed, including the trailing ones stripped from `stdout`.
    pub fn line_count(&self) -> u64 {
        self.stdout.matches('\n').count() as u64 + self.trailing_newlines
    }
}

/// Per-job facts every event line repeats.
#[derive(Debug, Clone)]
pub struct EventContext {
    /// The job ident as a string (AWX's job id for real jobs).
    pub runner_ident: String,
    /// `JOB_ID` from the job's environment, copied into events as the real callback does.
    pub job_id: Option<i64>,
    /// The process id the events claim to come from.
    pub pid: u32,
}

/// ISO 8601 UTC timestamp with microseconds and `+00:00`, as the callback writes `created`.
pub fn timestamp() -> String {
    timestamp_of(chrono::Utc::now())
}

/// [`timestamp`] for a given moment (host results' `start`/`end`).
pub fn timestamp_of(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// Render one numbered event as the JSON object AWX expects, keys in the real runner's order.
pub fn render(
    ctx: &EventContext,
    ev: &Event,
    counter: u64,
    start_line: u64,
    end_line: u64,
) -> Value {
    let mut m = Map::new();
    if ev.event == "verbose" {
        m.insert("event".into(), json!("verbose"));
        m.insert("uuid".into(), json!(ev.uuid));
        m.insert("counter".into(), json!(counter));
        m.insert("stdout".into(), json!(ev.stdout));
        m.insert("start_line".into(), json!(start_line));
        m.insert("end_line".into(), json!(end_line));
        m.insert("runner_ident".into(), json!(ctx.runner_ident));
        m.insert("created".into(), json!(timestamp()));
        return Value::Object(m);
    }
    m.insert("uuid".into(), json!(ev.uuid));
    m.insert("counter".into(), json!(counter));
    m.insert("stdout".into(), json!(ev.stdout));
    m.insert("start_line".into(), json!(start_line));
    m.insert("end_line".into(), json!(end_line));
    m.insert("runner_ident".into(), json!(ctx.runner_ident));
    m.insert("event".into(), json!(ev.event));
    if let Some(job_id) = ctx.job_id {
        m.insert("job_id".into(), json!(job_id));
    }
    m.insert("pid".into(), json!(ctx.pid));
    m.insert("created".into(), json!(timestamp()));
    if let Some(parent) = &ev.parent_uuid {
        m.insert("parent_uuid".into(), json!(parent));
    }
    let mut data = ev.event_data.clone();
    data.insert("uuid".into(), json!(ev.uuid));
    m.insert("event_data".into(), Value::Object(data));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(stdout: &str, trailing: u64) -> Event {
        Event {
            event: "playbook_on_stats",
            uuid: "u".into(),
            parent_uuid: Some("p".into()),
            stdout: stdout.into(),
            trailing_newlines: trailing,
            event_data: Map::new(),
        }
    }

    #[test]
    fn line_counts_match_the_real_runner_fixture() {
        // worker.stream: play banner 0->2, "ok: [localhost]" 4->5, recap 8->12, empty 0->0.
        assert_eq!(ev("\r\nPLAY [all] ****", 1).line_count(), 2);
        assert_eq!(ev("ok: [localhost]", 1).line_count(), 1);
        assert_eq!(
            ev("\r\nPLAY RECAP ***\r\nlocalhost : ok=2", 2).line_count(),
            4
        );
        assert_eq!(ev("", 0).line_count(), 0);
        assert_eq!(Event::verbose("").line_count(), 1);
    }

    #[test]
    fn render_orders_keys_like_ansible_runner() {
        let ctx = EventContext {
            runner_ident: "4242".into(),
            job_id: Some(4242),
            pid: 7,
        };
        let v = render(&ctx, &ev("x", 1), 3, 5, 6);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "uuid",
                "counter",
                "stdout",
                "start_line",
                "end_line",
                "runner_ident",
                "event",
                "job_id",
                "pid",
                "created",
                "parent_uuid",
                "event_data"
            ]
        );
        let verbose = render(&ctx, &Event::verbose("hi"), 1, 0, 1);
        assert!(verbose.get("job_id").is_none() && verbose.get("pid").is_none());
        assert!(verbose["created"].as_str().unwrap().ends_with("+00:00"));
    }
}
