//! The execution engine: resolves a host pattern against the inventory, opens (and reuses) a
//! connection per host within the job's connection budget (`connection::Pool`), and runs a
//! module on every matched host concurrently, capped by forks.
//!
//! It knows nothing about AWX events: callers (the sandbox bridge, ad hoc commands) get per-host
//! progress through [`Progress`] and decide how to show it.

pub mod ansible;
pub mod connection;
pub mod login;
pub mod modules;

use crate::inventory::Inventory;
use crate::tree::{HostOutcome, HostStatus};
use anyhow::Result;
use connection::Connection;
use login::{Credential, KeyCache};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Semaphore;

/// Ansible's MAX_EVENT_RES: results larger than this are truncated in events.
pub const MAX_EVENT_RES: usize = 700_000;

/// Options of one module call (from the script and the job).
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// `--check` (or the script's `check_mode=True`).
    pub check_mode: bool,
    /// `--diff`.
    pub diff: bool,
    /// Become for this call (`True`/`False` override the host's setting).
    pub become_: Option<bool>,
    /// Become user for this call.
    pub become_user: Option<String>,
    /// `no_log`: Ansible modules censor their own results and logs (`_ansible_no_log`).
    pub no_log: bool,
    /// `async`/`poll`: run in the background on the host, as Ansible's async does.
    pub asynchronous: Option<ansible::Async>,
    /// `changed_when` (a boolean): what `changed` the result reports.
    pub changed_when: Option<bool>,
    /// `failed_when` (a boolean): whether the result is a failure, whatever the module said.
    pub failed_when: Option<bool>,
    /// The task's own `vars` (a template's variables): above host vars and facts, below
    /// extra vars, as Ansible ranks task vars.
    pub vars: Map<String, Value>,
}

/// `changed_when`/`failed_when` applied to a result as TaskExecutor applies them: by the EE's
/// own ansible-core when it has one (versions differ: 2.21 adds `changed_when_result` and turns a
/// failure into its error summary), else as ansible-core does up to 2.19: `changed` replaced;
/// `failed` and `failed_when_result` both set.
async fn apply_when(
    result: &mut Map<String, Value>,
    opts: &CallOptions,
    ansible: &ansible::AnsibleModules,
) {
    if result.get("unreachable").and_then(Value::as_bool) == Some(true)
        || (opts.changed_when.is_none() && opts.failed_when.is_none())
    {
        return;
    }
    if let Some(done) = ansible
        .when(result, opts.changed_when, opts.failed_when, opts.no_log)
        .await
    {
        *result = done;
        return;
    }
    when_as_2_19(result, opts.changed_when, opts.failed_when);
}

/// TaskExecutor's `changed_when`/`failed_when` updates as ansible-core 2.19 makes them (for
/// EEs without ansible-core).
fn when_as_2_19(
    result: &mut Map<String, Value>,
    changed_when: Option<bool>,
    failed_when: Option<bool>,
) {
    if let Some(changed) = changed_when {
        result.insert("changed".into(), json!(changed));
    }
    if let Some(failed) = failed_when {
        result.insert("failed_when_result".into(), json!(failed));
        result.insert("failed".into(), json!(failed));
        if !failed && let Some(e) = result.remove("exception") {
            result.insert("failed_when_suppressed_exception".into(), e);
        }
    }
}

/// Receives per-host progress of a call, in the order things happen.
pub trait Progress: Send + Sync {
    /// A host starts the module.
    fn host_start(&self, host: &str);
    /// A host finished.
    fn host_done(&self, host: &str, outcome: &HostOutcome);
    /// A polled async job on a host is still running, or has ended (before `host_done`).
    fn host_async(&self, host: &str, event: ansible::AsyncEvent, result: &Map<String, Value>) {
        let _ = (host, event, result);
    }
}

/// Job-wide settings the engine needs.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    /// `--forks` (None = a high default).
    pub forks: Option<u32>,
    /// `--limit`, applied to every pattern.
    pub limit: Option<String>,
    /// Environment for local commands (the job's envvars).
    pub env: Vec<(String, String)>,
    /// The AWX machine credential and login options.
    pub credential: Credential,
    /// Extra vars (highest precedence for connection vars; available to templates).
    pub extravars: Map<String, Value>,
    /// Where modules may read/write on the controller.
    pub local_files: modules::LocalFiles,
    /// AWX's fact cache (`fact_cache_type: jsonfile`): `artifacts/<ident>/fact_cache/`, where
    /// gathered facts are written per host for AWX to store.
    pub fact_cache: Option<std::path::PathBuf>,
    /// How to start the EE's ansible-core for modules that are not native.
    pub ansible: ansible::HelperSpawn,
    /// `-v` count (Ansible modules get it as `_ansible_verbosity`).
    pub verbosity: u8,
}

/// The engine of one job.
pub struct Executor {
    inventory: RwLock<Inventory>,
    settings: EngineSettings,
    forks: Arc<Semaphore>,
    connections: Mutex<HashMap<String, Connection>>,
    /// The budget of SSH connections open at once (the descriptor limit's share).
    pool: Arc<connection::Pool>,
    keys: KeyCache,
    ansible: ansible::AnsibleModules,
    /// Facts modules returned in this job, per host, as Ansible's fact cache keeps them.
    facts: Mutex<HashMap<String, Map<String, Value>>>,
}

/// Hosts run at once when the job sets no `--forks`.
const DEFAULT_FORKS: usize = 256;

impl Executor {
    /// An engine over `inventory` with the job's settings.
    pub fn new(inventory: Inventory, settings: EngineSettings) -> Executor {
        let forks = settings
            .forks
            .map(|f| f.max(1) as usize)
            .unwrap_or(DEFAULT_FORKS);
        Executor {
            inventory: RwLock::new(inventory),
            ansible: ansible::AnsibleModules::new(settings.ansible.clone(), settings.verbosity),
            settings,
            forks: Arc::new(Semaphore::new(forks)),
            connections: Mutex::new(HashMap::new()),
            pool: connection::Pool::for_job(),
            keys: KeyCache::default(),
            facts: Mutex::new(HashMap::new()),
        }
    }

    fn inv(&self) -> std::sync::RwLockReadGuard<'_, Inventory> {
        self.inventory.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Hosts matching `pattern`, limited by the job's `--limit`, in inventory order.
    pub fn list_hosts(&self, pattern: &str) -> Result<Vec<String>> {
        self.select(pattern, true)
    }

    /// The controller for a call the script makes there (`ftl.ping()`, `ftl.local.*`): like a
    /// playbook's `delegate_to: localhost`, not subject to `--limit`, which selects inventory hosts.
    pub fn controller_hosts(&self, pattern: &str) -> Result<Vec<String>> {
        self.select(pattern, false)
    }

    fn select(&self, pattern: &str, limited: bool) -> Result<Vec<String>> {
        let inv = self.inv();
        let mut hosts = inv.select(pattern)?;
        if limited && let Some(limit) = &self.settings.limit {
            let allowed = inv.select(limit)?;
            hosts.retain(|h| allowed.contains(h));
        }
        Ok(hosts)
    }

    /// Group name -> hosts (with children expanded), including `all` and `ungrouped`.
    pub fn groups(&self) -> Map<String, Value> {
        let inv = self.inv();
        inv.groups
            .keys()
            .map(|g| (g.clone(), json!(inv.group_hosts(g))))
            .collect()
    }

    /// A host's merged variables, without secrets.
    pub fn host_vars(&self, host: &str) -> Option<Map<String, Value>> {
        let mut vars = self.inv().vars_for(host)?;
        for k in [
            "ansible_password",
            "ansible_ssh_pass",
            "ansible_become_password",
            "ansible_become_pass",
            "ansible_ssh_private_key_passphrase",
        ] {
            if vars.contains_key(k) {
                vars.insert(k.into(), json!("********"));
            }
        }
        Some(vars)
    }

    /// `ftl.add_host`.
    pub fn add_host(&self, name: &str, groups: &[String], vars: Map<String, Value>) -> Result<()> {
        self.inventory
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add_runtime_host(name, groups, vars)
    }

    /// `automation(inventory="file")`: the hosts, groups and variables of an inventory the script
    /// read join the job's. Returns the hosts it brought.
    pub fn add_inventory(&self, other: Inventory) -> Result<Vec<String>> {
        self.inventory
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .merge(other)
    }

    /// `ftl.remove_host`.
    pub fn remove_host(&self, name: &str) -> Result<()> {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.inventory
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove_runtime_host(name)
    }

    fn connection_for(&self, host: &str) -> Result<Connection, String> {
        if let Some(c) = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
        {
            return Ok(c.clone());
        }
        let vars = self.inv().vars_for(host).unwrap_or_default();
        let access = login::resolve(
            host,
            &vars,
            &self.settings.extravars,
            &self.settings.credential,
            &self.keys,
        )?;
        let conn = Connection::new(access, self.settings.env.clone(), &self.pool);
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), conn.clone());
        Ok(conn)
    }

    /// A host's variables as a task sees them: inventory, then facts gathered in this job,
    /// then extra vars (Ansible's precedence for these three).
    pub fn template_vars(&self, host: &str) -> Map<String, Value> {
        let mut v = self.inv().vars_for(host).unwrap_or_default();
        if let Some(facts) = self
            .facts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
        {
            let mut ns = match v.remove("ansible_facts") {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            for (k, val) in facts {
                ns.insert(
                    k.strip_prefix("ansible_").unwrap_or(k).to_string(),
                    val.clone(),
                );
                // INJECT_FACTS_AS_VARS (on by default): each fact is a variable too.
                v.insert(k.clone(), val.clone());
            }
            v.insert("ansible_facts".into(), Value::Object(ns));
        }
        v.extend(self.settings.extravars.clone());
        v
    }

    /// [`Executor::template_vars`] with the call's own `vars` ranked below extra vars.
    fn task_vars(&self, host: &str, own: &Map<String, Value>) -> Map<String, Value> {
        let mut v = self.template_vars(host);
        for (k, val) in own {
            if !self.settings.extravars.contains_key(k) {
                v.insert(k.clone(), val.clone());
            }
        }
        v
    }

    /// Keep the facts a module returned for the host's later tasks (templates, interpreter).
    fn learn_facts(&self, host: &str, facts: &Map<String, Value>) {
        let mut all = self.facts.lock().unwrap_or_else(|e| e.into_inner());
        let known = all.entry(host.to_string()).or_default();
        for (k, v) in facts {
            known.insert(k.clone(), v.clone());
        }
    }

    /// Run `module` on every host in `hosts` concurrently; results come back in the same order.
    pub async fn run(
        self: &Arc<Self>,
        hosts: &[String],
        module: &str,
        args: &Map<String, Value>,
        opts: &CallOptions,
        progress: Arc<dyn Progress>,
    ) -> Vec<(String, HostOutcome)> {
        let mut tasks = Vec::with_capacity(hosts.len());
        for host in hosts {
            let me = Arc::clone(self);
            let host = host.clone();
            let module = module.to_string();
            let args = args.clone();
            let opts = opts.clone();
            let progress = Arc::clone(&progress);
            tasks.push(tokio::spawn(async move {
                let _permit = me.forks.acquire().await;
                progress.host_start(&host);
                let outcome = me
                    .run_one(&host, &module, &args, &opts, progress.as_ref())
                    .await;
                progress.host_done(&host, &outcome);
                (host, outcome)
            }));
        }
        let mut out = Vec::with_capacity(tasks.len());
        for (t, host) in tasks.into_iter().zip(hosts) {
            out.push(t.await.unwrap_or_else(|e| {
                (
                    host.clone(),
                    outcome_of(
                        failed_result(format!("internal error running the module: {e}")),
                        host,
                        start_now(),
                    ),
                )
            }));
        }
        out
    }

    async fn run_one(
        &self,
        host: &str,
        module: &str,
        args: &Map<String, Value>,
        opts: &CallOptions,
        progress: &dyn Progress,
    ) -> HostOutcome {
        let started = start_now();
        let conn = match self.connection_for(host) {
            Ok(c) => c,
            Err(msg) => return outcome_of(unreachable_result(msg), host, started),
        };
        let _busy = conn.busy();
        let mut become_ = conn.access().become_.clone();
        match opts.become_ {
            Some(false) => become_ = None,
            Some(true) if become_.is_none() => {
                become_ = Some(login::Become {
                    method: self
                        .settings
                        .credential
                        .become_method
                        .clone()
                        .unwrap_or_else(|| "sudo".into()),
                    user: self
                        .settings
                        .credential
                        .become_user
                        .clone()
                        .unwrap_or_else(|| "root".into()),
                    password: self
                        .settings
                        .credential
                        .become_password
                        .as_ref()
                        .map(|p| p.expose().clone()),
                    flags: None,
                })
            }
            _ => {}
        }
        if let (Some(b), Some(u)) = (become_.as_mut(), &opts.become_user) {
            b.user = u.clone();
        }
        let vars = || self.task_vars(host, &opts.vars);
        let on_async = |event: ansible::AsyncEvent, result: &Map<String, Value>| {
            progress.host_async(host, event, result)
        };
        let ctx = modules::ModuleCtx {
            conn: &conn,
            host,
            check_mode: opts.check_mode,
            diff: opts.diff,
            become_,
            vars: &vars,
            local: &self.settings.local_files,
            no_log: opts.no_log,
            ansible: &self.ansible,
            asynchronous: opts.asynchronous,
            on_async: &on_async,
        };
        let mut result = match modules::run(module, args, &ctx).await {
            Ok(r) => r,
            // Out of descriptors on the controller: the job's limit, not the host's fault.
            Err(u) if u.is_local_limit() => failed_result(format!(
                "ftl2-runner could not reach {host}: the controller ran out of file descriptors \
                 ({}; the limit is {}). Raise the execution environment's hard `ulimit -n`, or \
                 split the job.",
                u.0,
                crate::limits::current_nofile()
            )),
            Err(u) => {
                conn.reset().await;
                unreachable_result(u.0)
            }
        };
        apply_when(&mut result, opts, &self.ansible).await;
        if let Some(Value::Object(facts)) = result.get("ansible_facts") {
            self.learn_facts(host, facts);
        }
        if let (Some(dir), Some(Value::Object(facts))) =
            (&self.settings.fact_cache, result.get("ansible_facts"))
        {
            // A full disk or a bad host name must not fail the module: the cache is a copy.
            if !host.contains('/') && std::fs::create_dir_all(dir).is_ok() {
                let _ = crate::artifacts::write_private_file(
                    &dir.join(host),
                    &crate::pyjson::to_vec(facts),
                );
            }
        }
        let mut o = outcome_of(result, host, started);
        o.remote_addr = conn.remote_addr();
        crate::debugln!(
            "{host}: {module} {} in {:.3} s{}",
            o.status.as_str(),
            o.duration,
            match (&o.status, o.result.get("msg")) {
                (crate::tree::HostStatus::Unreachable, Some(Value::String(m))) => format!(": {m}"),
                _ => String::new(),
            }
        );
        o
    }
}

fn start_now() -> (chrono::DateTime<chrono::Utc>, std::time::Instant) {
    (chrono::Utc::now(), std::time::Instant::now())
}

fn outcome_of(
    result: Map<String, Value>,
    host: &str,
    started: (chrono::DateTime<chrono::Utc>, std::time::Instant),
) -> HostOutcome {
    let duration = started.1.elapsed().as_secs_f64();
    HostOutcome {
        status: HostStatus::from_result(&result),
        result,
        start: crate::events::timestamp_of(started.0),
        end: crate::events::timestamp(),
        duration: (duration * 1e6).round() / 1e6,
        remote_addr: host.to_string(),
    }
}

fn failed_result(msg: String) -> Map<String, Value> {
    modules::failed(msg)
}

fn unreachable_result(msg: String) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("changed".into(), json!(false));
    m.insert("msg".into(), json!(msg));
    m.insert("unreachable".into(), json!(true));
    m
}

/// Whether `value` serialized as JSON is longer than `limit` bytes: counted while serializing,
/// without keeping the text, and stopping as soon as the limit is passed.
fn json_longer_than(value: &Map<String, Value>, limit: usize) -> bool {
    struct Counter {
        n: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.n += b.len();
            if self.n > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter { n: 0, limit };
    serde_json::to_writer(&mut c, value).is_err()
}

/// Cap an oversized result for events, as AWX's callback caps payloads at MAX_EVENT_RES: long
/// strings are cut (at any depth), long lists shortened, and `_ansible_truncated` marks it.
pub fn truncate_result(res: Map<String, Value>) -> Map<String, Value> {
    if !json_longer_than(&res, MAX_EVENT_RES) {
        return res;
    }
    fn cut(v: Value, max: usize) -> Value {
        match v {
            Value::String(s) if s.len() > max => {
                let mut end = max;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                Value::String(format!(
                    "{}... (truncated by ftl2-runner: {} bytes)",
                    &s[..end],
                    s.len()
                ))
            }
            Value::Array(a) => {
                Value::Array(a.into_iter().take(1000).map(|x| cut(x, max)).collect())
            }
            Value::Object(m) => {
                Value::Object(m.into_iter().map(|(k, x)| (k, cut(x, max))).collect())
            }
            other => other,
        }
    }
    let mut m = match cut(Value::Object(res), MAX_EVENT_RES / 8) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("_ansible_truncated".into(), json!(true));
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn changed_when_and_failed_when_without_ansible_core_follow_2_19() {
        let mut r =
            modules::obj(json!({"changed": true, "failed": true, "rc": 1, "exception": "x"}));
        when_as_2_19(&mut r, Some(false), Some(false));
        assert_eq!(
            Value::Object(r),
            json!({"changed": false, "failed": false, "rc": 1, "failed_when_result": false,
                   "failed_when_suppressed_exception": "x"})
        );
        let mut r = modules::obj(json!({"changed": false, "rc": 0}));
        when_as_2_19(&mut r, None, Some(true));
        assert_eq!(r["failed"], true);
        assert_eq!(r["failed_when_result"], true);
        assert_eq!(r["changed"], false);
    }

    use super::*;

    #[test]
    fn results_are_truncated_only_above_max_event_res() {
        let res = |n: usize| modules::obj(json!({"stdout": "x".repeat(n)}));
        let exact = serde_json::to_string(&res(100)).unwrap().len();
        assert!(!json_longer_than(&res(100), exact));
        assert!(json_longer_than(&res(100), exact - 1));
        let small = truncate_result(res(1000));
        assert!(!small.contains_key("_ansible_truncated"));
        let big = truncate_result(res(MAX_EVENT_RES));
        assert_eq!(big["_ansible_truncated"], json!(true));
        assert!(serde_json::to_string(&big).unwrap().len() < MAX_EVENT_RES);
    }
}
