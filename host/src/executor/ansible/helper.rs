//! The module helper process: `helper.py` run by the EE's own Python (the one its ansible-core is
//! installed in), one per job, started on the first non-native module call. It speaks JSON lines
//! on stdin/stdout; its stderr is discarded (worker mode must stay silent).
//!
//! Requests carry an `id` and may be answered out of order: most are answered at once, but an
//! action plugin run (`action_run`) goes on in a thread of the helper and asks us, through `call`
//! lines, to do on the host what the plugin wants done there (see `action_bridge.rs`), while
//! other hosts' requests are served.

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{Mutex, mpsc, oneshot};

/// The helper's source, embedded so the binary stays one file.
const HELPER_PY: &str = include_str!("helper.py");

/// Longest the helper may take to start (importing ansible-core) or to answer one request.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// What the helper said about the ansible-core it runs.
#[derive(Debug, Clone, Default)]
pub struct HelperInfo {
    /// ansible-core's version, e.g. `2.19.14`.
    pub ansible_version: String,
    /// The Python running the helper (Ansible's implicit localhost interpreter).
    pub python: String,
    /// `INTERPRETER_PYTHON_FALLBACK`: the discovery candidates, in order.
    pub interpreter_fallback: Vec<String>,
}

/// A running helper.
pub struct Helper {
    stdin: Mutex<ChildStdin>,
    waiting: std::sync::Arc<std::sync::Mutex<Waiting>>,
    next_id: AtomicU64,
    _child: Child,
    reader: tokio::task::JoinHandle<()>,
    /// Its answer to `hello`.
    pub info: HelperInfo,
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Who waits for which line from the helper.
#[derive(Default)]
struct Waiting {
    /// Request id -> the one waiting for its answer.
    answers: HashMap<u64, oneshot::Sender<Map<String, Value>>>,
    /// Request id -> where the `call` lines of that (action) request go.
    calls: HashMap<u64, mpsc::UnboundedSender<Map<String, Value>>>,
    /// Set when the helper's output ended: why.
    dead: Option<String>,
}

/// An `action_run` request in progress: the helper's calls to answer, then its answer.
pub struct Session<'a> {
    helper: &'a Helper,
    id: u64,
    answer: oneshot::Receiver<Map<String, Value>>,
    calls: mpsc::UnboundedReceiver<Map<String, Value>>,
}

/// What an action run asks next.
pub enum Event {
    /// The plugin wants something done (`what`, and its fields); answer with [`Session::reply`].
    Call(Map<String, Value>),
    /// The run is over: its answer, or why it failed.
    Done(Result<Map<String, Value>, String>),
}

/// How to start the helper: which Python, in which directory, with which environment.
#[derive(Debug, Clone, Default)]
pub struct HelperSpawn {
    /// The EE's Python with ansible-core (None: none was found; the reason is in `missing`).
    pub python: Option<PathBuf>,
    /// Why no Python was found, for the error message.
    pub missing: String,
    /// Working directory (the job's project, where its `ansible.cfg` is).
    pub cwd: Option<PathBuf>,
    /// Environment added to the worker's own.
    pub env: Vec<(String, String)>,
}

impl HelperSpawn {
    /// `source` run by the EE's Python as the helper runs: with the job's environment, in the
    /// project directory (its `ansible.cfg`), stderr discarded, ended with the job; stdout piped.
    /// None without a Python.
    pub fn python_command(&self, source: &str) -> Option<tokio::process::Command> {
        let mut cmd = tokio::process::Command::new(self.python.as_ref()?);
        cmd.arg("-c")
            .arg(source)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(d) = self.cwd.as_ref().filter(|d| d.is_dir()) {
            cmd.current_dir(d);
        }
        Some(cmd)
    }
}

impl Helper {
    /// Start the helper and ask for its versions; any failure is a message for the user.
    pub async fn start(spawn: &HelperSpawn) -> Result<Helper, String> {
        let python = spawn.python.as_ref().ok_or_else(|| spawn.missing.clone())?;
        let mut cmd = spawn
            .python_command(HELPER_PY)
            .ok_or_else(|| spawn.missing.clone())?;
        cmd.env("ANSIBLE_NOCOLOR", "1")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {} for Ansible modules: {e}", python.display()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the Ansible module helper has no pipes".into());
        };
        let last_words = tokio::spawn(last_line(stderr));
        let mut reader = BufReader::new(stdout);
        let first = match read_answer(&mut reader).await {
            Ok(first) => first,
            Err(e) => {
                // Its stderr says why, in its last line (Python's exception): wait for it briefly.
                let why = tokio::time::timeout(std::time::Duration::from_secs(2), last_words)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .filter(|l| !l.is_empty())
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default();
                return Err(format!(
                    "the Ansible module helper ({}) did not start: {e}{why}",
                    python.display()
                ));
            }
        };
        if let Some(version) = first.get("unsupported").and_then(Value::as_str) {
            return Err(format!(
                "{} has ansible-core {version}; ftl2-runner runs Ansible modules with \
                 ansible-core 2.15 and newer",
                python.display()
            ));
        }
        if first.get("no_ansible").is_some() {
            return Err(format!(
                "{} cannot import ansible-core ({})",
                python.display(),
                first.get("msg").and_then(Value::as_str).unwrap_or("?")
            ));
        }
        let waiting = std::sync::Arc::new(std::sync::Mutex::new(Waiting::default()));
        let mut helper = Helper {
            stdin: Mutex::new(stdin),
            reader: tokio::spawn(read_lines(reader, std::sync::Arc::clone(&waiting))),
            waiting,
            next_id: AtomicU64::new(1),
            _child: child,
            info: HelperInfo::default(),
        };
        let hello = helper.request(json!({"op": "hello"})).await?;
        let strings = |k: &str| super::strings(hello.get(k));
        let text = |k: &str| {
            hello
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let info = HelperInfo {
            ansible_version: text("ansible_version"),
            python: text("python"),
            interpreter_fallback: strings("interpreter_fallback"),
        };
        helper.info = info;
        Ok(helper)
    }

    /// Send one request; the answer's fields, or its `msg` when it says `ok: false`.
    pub async fn request(&self, req: Value) -> Result<Map<String, Value>, String> {
        let (id, rx) = self.send(req, None).await?;
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, rx).await;
        self.forget(id);
        match answer {
            Ok(Ok(m)) => outcome(m),
            Ok(Err(_)) => Err(self.death()),
            Err(_) => Err(format!(
                "the Ansible module helper failed: no answer in {} s",
                ANSWER_TIMEOUT.as_secs()
            )),
        }
    }

    /// Start a request that may call back (an action plugin run); follow it with
    /// [`Session::next`].
    pub async fn session(&self, req: Value) -> Result<Session<'_>, String> {
        let (tx, calls) = mpsc::unbounded_channel();
        let (id, answer) = self.send(req, Some(tx)).await?;
        Ok(Session {
            helper: self,
            id,
            answer,
            calls,
        })
    }

    async fn send(
        &self,
        mut req: Value,
        calls: Option<mpsc::UnboundedSender<Map<String, Value>>>,
    ) -> Result<(u64, oneshot::Receiver<Map<String, Value>>), String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        req["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(why) = &w.dead {
                return Err(format!("the Ansible module helper failed: {why}"));
            }
            w.answers.insert(id, tx);
            if let Some(c) = calls {
                w.calls.insert(id, c);
            }
        }
        if let Err(e) = self.write(&req).await {
            self.forget(id);
            return Err(format!("the Ansible module helper failed: {e}"));
        }
        Ok((id, rx))
    }

    async fn write(&self, line: &Value) -> Result<(), String> {
        let mut bytes = serde_json::to_vec(line).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(&bytes).await.map_err(|e| e.to_string())?;
        stdin.flush().await.map_err(|e| e.to_string())
    }

    fn forget(&self, id: u64) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        w.answers.remove(&id);
        w.calls.remove(&id);
    }

    fn death(&self) -> String {
        let w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        format!(
            "the Ansible module helper failed: {}",
            w.dead.as_deref().unwrap_or("it exited")
        )
    }
}

impl Session<'_> {
    /// The helper's next call for this run, or the run's end.
    pub async fn next(&mut self) -> Event {
        tokio::select! {
            biased;
            Some(call) = self.calls.recv() => Event::Call(call),
            answer = &mut self.answer => Event::Done(match answer {
                Ok(m) => outcome(m),
                Err(_) => Err(self.helper.death()),
            }),
        }
    }

    /// Answer the call `call` (its `call` field) with `answer`'s fields.
    pub async fn reply(&self, call: &Map<String, Value>, mut answer: Map<String, Value>) {
        answer.insert(
            "reply".into(),
            call.get("call").cloned().unwrap_or(Value::Null),
        );
        // A helper that died is noticed by `next`.
        let _ = self.helper.write(&Value::Object(answer)).await;
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.helper.forget(self.id);
    }
}

/// An answer's fields, or its `msg` when it says `ok: false`.
fn outcome(mut m: Map<String, Value>) -> Result<Map<String, Value>, String> {
    if m.get("ok").and_then(Value::as_bool) == Some(true) {
        m.remove("ok");
        m.remove("id");
        Ok(m)
    } else {
        Err(m
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or("the Ansible module helper gave no reason")
            .to_string())
    }
}

/// Hand each line the helper writes to whoever waits for it, until its output ends.
async fn read_lines(
    mut r: BufReader<ChildStdout>,
    waiting: std::sync::Arc<std::sync::Mutex<Waiting>>,
) {
    let why = loop {
        let mut line = String::new();
        match r.read_line(&mut line).await {
            Ok(0) => break "it exited".to_string(),
            Err(e) => break e.to_string(),
            Ok(_) => {}
        }
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&line) else {
            break format!(
                "it wrote something that is not an answer: {:?}",
                line.chars().take(200).collect::<String>()
            );
        };
        let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
        if m.contains_key("call") {
            let target = m.get("for").and_then(Value::as_u64).unwrap_or(0);
            if let Some(tx) = w.calls.get(&target) {
                let _ = tx.send(m);
            }
        } else if let Some(tx) = m
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| w.answers.remove(&id))
        {
            let _ = tx.send(m);
        }
    };
    let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
    w.dead = Some(why);
    w.answers.clear();
    w.calls.clear();
}

/// Drain the helper's stderr (ansible-core's own output goes there) for as long as it runs,
/// keeping only its last non-empty line, which says why when it dies at start. Bytes, not text:
/// output that is not UTF-8 must not stop the draining (the helper would block on a full pipe).
async fn last_line(stderr: tokio::process::ChildStderr) -> String {
    let mut reader = BufReader::new(stderr);
    let (mut line, mut last) = (Vec::new(), Vec::new());
    while matches!(reader.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
        if !line.trim_ascii().is_empty() {
            std::mem::swap(&mut last, &mut line);
        }
        line.clear();
    }
    String::from_utf8_lossy(last.trim_ascii())
        .chars()
        .take(300)
        .collect()
}

async fn read_answer(r: &mut BufReader<ChildStdout>) -> Result<Map<String, Value>, String> {
    let mut line = String::new();
    let n = tokio::time::timeout(ANSWER_TIMEOUT, r.read_line(&mut line))
        .await
        .map_err(|_| format!("no answer in {} s", ANSWER_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("it exited".into());
    }
    match serde_json::from_str(&line) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(format!(
            "it wrote something that is not an answer: {:?}",
            line.chars().take(200).collect::<String>()
        )),
    }
}

/// The EE's Python with ansible-core: `$FTL2_ANSIBLE_PYTHON`, else the interpreter of the
/// `ansible-config` (or `ansible`) found on `path`. Err says where it looked.
pub fn find_python(override_: Option<&str>, path: &str) -> Result<PathBuf, String> {
    if let Some(p) = override_.filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    for tool in ["ansible-config", "ansible", "ansible-playbook"] {
        for dir in path.split(':').filter(|d| !d.is_empty()) {
            let candidate = Path::new(dir).join(tool);
            if let Some(py) = shebang_python(&candidate) {
                return Ok(py);
            }
        }
    }
    Err(format!(
        "this execution environment has no ansible-core (no ansible-config on PATH {path}, \
         and FTL2_ANSIBLE_PYTHON is not set)"
    ))
}

/// The interpreter a Python entry-point script runs with (`#!/usr/bin/python3.11`,
/// `#!/usr/bin/env python3`).
fn shebang_python(script: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(script).ok()?.read(&mut head).ok()?;
    let first = std::str::from_utf8(&head[..n]).ok()?.lines().next()?;
    let line = first.strip_prefix("#!")?.trim();
    let mut words = line.split_whitespace();
    let prog = words.next()?;
    if prog.ends_with("/env") {
        return words.find(|w| !w.starts_with('-')).map(PathBuf::from);
    }
    prog.contains("python").then(|| PathBuf::from(prog))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_comes_from_the_ansible_config_shebang() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ansible-config"),
            "#!/opt/venv/bin/python3.11\nimport sys\n",
        )
        .unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(
            find_python(None, &path).unwrap(),
            PathBuf::from("/opt/venv/bin/python3.11")
        );
        assert_eq!(
            find_python(Some("/usr/bin/python3"), &path).unwrap(),
            PathBuf::from("/usr/bin/python3")
        );
        std::fs::write(
            dir.path().join("ansible-config"),
            "#!/usr/bin/env python3\n",
        )
        .unwrap();
        assert_eq!(find_python(None, &path).unwrap(), PathBuf::from("python3"));
        let err = find_python(None, "/nonexistent").unwrap_err();
        assert!(err.contains("no ansible-core"), "{err}");
    }
}
