//! `ansible-runner worker`: receive a job on stdin, run it, stream the results on stdout.
//!
//! The phases follow ansible-runner's `Worker`: decode the transmit stream into the private data
//! dir, read the job settings, announce `starting` and `running`, run the job, then send the final
//! status, the artifacts zip and `{"eof": true}`. Every failure on the way still ends with a
//! status line that explains it and the eof line, because AWX marks a job `error` without them.

use crate::artifacts::ArtifactDir;
use crate::events::EventContext;
use crate::executor::modules::obj;
use crate::job::JobSettings;
use crate::logln;
use crate::outcome::{Outcome, RC_CANCELED};
use crate::sandbox::{StopFlag, StopReason};
use crate::script::{self, ScriptChoice};
use crate::transmit::{Decoder, Message, StreamError};
use crate::unpack::{self, Limits};
use crate::writer::{EventRecorder, StreamWriter};
use serde_json::{Map, Value, json};
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The `worker` command's options.
#[derive(Debug, Clone, Default)]
pub struct WorkerArgs {
    /// `--private-data-dir`; a temporary directory when absent.
    pub private_data_dir: Option<PathBuf>,
    /// `--delete`: remove the directory before reading and after the job.
    pub delete: bool,
    /// `--keepalive-seconds`; falls back to `ANSIBLE_RUNNER_KEEPALIVE_SECONDS`.
    pub keepalive_seconds: Option<f64>,
}

/// A failure before the job started: sent as `{"status": "error", ...}`.
struct Failure {
    explanation: String,
    traceback: Option<String>,
}

/// Run the worker to completion and return the process exit code.
pub fn run(args: WorkerArgs) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Without a runtime we can still end the stream properly.
            let w = StreamWriter::stdout();
            send_error(&w, &format!("cannot start the async runtime: {e}"), None);
            return 0;
        }
    };
    let rc = rt.block_on(run_async(args));
    // Do not wait for a stdin reader still blocked on a pipe that never closes.
    rt.shutdown_timeout(Duration::from_millis(100));
    rc
}

async fn run_async(args: WorkerArgs) -> i32 {
    let writer = StreamWriter::stdout();
    let cancel = install_signal_handlers();
    writer.start_keepalive(keepalive_interval(args.keepalive_seconds));

    let (pdd, temporary) = match &args.private_data_dir {
        Some(p) => (absolute(p), false),
        None => match tempfile::Builder::new().prefix("ftl2-runner-").tempdir() {
            Ok(d) => (d.keep(), true),
            Err(e) => {
                send_error(
                    &writer,
                    &format!("cannot create a private data dir: {e}"),
                    None,
                );
                return 0;
            }
        },
    };
    if args.delete {
        remove_dir(&pdd);
    }
    if let Err(e) = std::fs::create_dir_all(&pdd) {
        send_error(
            &writer,
            &format!("cannot create the private data dir {}: {e}", pdd.display()),
            None,
        );
        return 0;
    }
    let cleanup = |pdd: &Path| {
        if args.delete || temporary {
            remove_dir(pdd);
        }
    };

    // Phase 1: receive the job. Reading stdin blocks, so it runs on its own thread while we keep
    // answering signals.
    let limits = match Limits::from_env() {
        Ok(l) => l,
        Err(e) => {
            send_error(&writer, &format!("invalid unzip limits: {e:#}"), None);
            return 0;
        }
    };
    let max_zip = std::env::var("FTL2_MAX_ZIP_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(limits.max_total_bytes);
    let pdd2 = pdd.clone();
    // The job's ident, as soon as its kwargs arrive: a cancel before the end still reports there.
    let ident_slot: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let slot = Arc::clone(&ident_slot);
    let mut reader = tokio::task::spawn_blocking(move || receive(&pdd2, limits, max_zip, &slot));
    let received = tokio::select! {
        biased;
        _ = wait_cancel(cancel.clone()) => None,
        r = &mut reader => Some(r),
    };
    // A signal and a closing stdin often arrive together: the signal is what happened.
    tokio::task::yield_now().await;
    let Some(received) = received.filter(|_| !*cancel.borrow()) else {
        logln!("canceled while receiving the job");
        let ident = ident_slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        canceled_while_receiving(&writer, &pdd, ident.as_deref());
        cleanup(&pdd);
        return RC_CANCELED;
    };
    let kwargs = match received {
        Ok(Ok(k)) => k,
        Ok(Err(f)) => {
            send_error(&writer, &f.explanation, f.traceback.as_deref());
            cleanup(&pdd);
            return 0;
        }
        Err(e) => {
            send_error(
                &writer,
                "the transmit stream reader crashed",
                Some(&e.to_string()),
            );
            cleanup(&pdd);
            return 0;
        }
    };

    // Phase 2: the job's settings and artifact directory.
    let job = match JobSettings::load(&pdd, &kwargs) {
        Ok(j) => j,
        Err(e) => {
            send_error(&writer, &format!("Invalid job settings: {e:#}"), None);
            cleanup(&pdd);
            return 0;
        }
    };
    logln!("job {} received into {}", job.ident, pdd.display());
    if let Some(what) = job.foreign_job() {
        // Real Ansible's work: hand it to the image's original runner when there is one;
        // otherwise refuse it where AWX shows the reason, rather than fake it with the script.
        if let Some(runner) = crate::fallback::original_runner() {
            let rc = match crate::fallback::delegate(&runner, &kwargs, &pdd, &writer, cancel).await
            {
                Ok(rc) => rc,
                Err(e) => {
                    send_error(&writer, &format!("{e:#}"), None);
                    0
                }
            };
            cleanup(&pdd);
            return rc;
        }
        send_error(
            &writer,
            &format!(
                "This execution environment runs FTL2 automation scripts (ftl2-runner), not \
                 {what}. Inventory syncs, project updates and other jobs that are not playbook \
                 runs or ad hoc commands need real Ansible: keep the image's original runner as \
                 ansible-runner.orig (or set FTL2_FALLBACK_RUNNER), or use a standard execution \
                 environment."
            ),
            None,
        );
        cleanup(&pdd);
        return 0;
    }
    // The credential's files (written only when AWX does not pass them in kwargs) are in memory
    // now; remove them so nothing the job runs on the controller can read them from disk.
    for secret_file in ["env/ssh_key", "env/passwords"] {
        let _ = std::fs::remove_file(pdd.join(secret_file));
    }
    let artifacts = match ArtifactDir::create(&pdd, &job.ident) {
        Ok(a) => a,
        Err(e) => {
            send_error(&writer, &format!("{e:#}"), None);
            cleanup(&pdd);
            return 0;
        }
    };
    let stdout_file = if job.settings.suppress_output_file {
        None
    } else {
        let _ = artifacts.write("stderr", b"");
        artifacts.create_appendable("stdout").ok()
    };
    writer.begin_job(
        EventContext {
            runner_ident: job.ident.clone(),
            job_id: job.job_id(),
            pid: std::process::id(),
        },
        Some(EventRecorder {
            stdout_file: stdout_file.map(std::io::BufWriter::new),
        }),
    );
    let pid_file = pdd.join("pid");
    let _ = std::fs::write(&pid_file, std::process::id().to_string());

    let script = script::locate(&job, std::env::var("FTL2_SCRIPT").ok().as_deref());
    let command = command_line(&job, &script);
    let env = safe_env(&job);
    let cwd = if pdd.join("project").is_dir() {
        pdd.join("project")
    } else {
        pdd.clone()
    };
    let cwd = cwd.to_string_lossy().into_owned();
    let command_json = json!({"command": command, "cwd": cwd, "env": env});
    let _ = artifacts.write("command", &crate::pyjson::to_vec(&command_json));
    writer.status(obj(json!({
        "status": "starting", "runner_ident": job.ident, "command": command, "env": env, "cwd": cwd,
    })));
    writer.status(obj(json!({"status": "running", "runner_ident": job.ident})));

    // Phase 3: run, bounded by job_timeout and cancellable by SIGTERM/SIGINT. The sandbox stops
    // itself on either; the outer timers only guarantee an answer if it does not.
    let timeout = job.settings.job_timeout;
    let stop = Arc::new(StopFlag::default());
    let job_future = async {
        if job.module.is_some() {
            crate::adhoc::run(&job, &writer, Arc::clone(&stop)).await
        } else {
            crate::job_run::run(&job, &script, &writer, Arc::clone(&stop)).await
        }
    };
    tokio::pin!(job_future);
    let grace = Duration::from_millis(1500);
    let idle = job.settings.idle_timeout;
    let idle_watch = {
        let writer = Arc::clone(&writer);
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if writer.idle_for() >= Duration::from_secs(idle) {
                    return;
                }
            }
        }
    };
    let stopped = |status: &'static str, explanation: Option<String>| Outcome {
        status,
        rc: RC_CANCELED,
        explanation,
    };
    let outcome = tokio::select! {
        o = &mut job_future => o,
        _ = wait_cancel(cancel.clone()) => {
            stop_within(job_future.as_mut(), &stop, StopReason::Canceled, grace, stopped("canceled", None)).await
        }
        _ = writer.wait_reader_gone() => {
            logln!("the worker stream's reader went away; canceling the job");
            // Whatever the job ends with, it ends canceled: nobody saw it finish.
            let _ = stop_within(job_future.as_mut(), &stop, StopReason::Canceled, grace, stopped("canceled", None)).await;
            let why = "Job canceled: its output stream was closed (the controller stopped reading).";
            stopped("canceled", Some(why.into()))
        }
        _ = idle_watch, if idle > 0 => {
            let mut o = stop_within(job_future.as_mut(), &stop, StopReason::Timeout, grace, stopped("timeout", None)).await;
            o.explanation = Some(format!("Job terminated due to idle timeout: no output for {idle} s (idle_timeout)."));
            o
        }
        _ = tokio::time::sleep(Duration::from_secs(timeout) + grace), if timeout > 0 => {
            let why = format!("Job terminated due to timeout: it ran longer than job_timeout ({timeout} s).");
            stop_within(job_future.as_mut(), &stop, StopReason::Timeout, grace, stopped("timeout", Some(why))).await
        }
    };
    logln!(
        "job {} ended: {} rc={}",
        job.ident,
        outcome.status,
        outcome.rc
    );

    // Phase 4: final status, artifacts, eof.
    let _ = std::fs::remove_file(&pid_file);
    let _ = artifacts.write("rc", outcome.rc.to_string().as_bytes());
    let _ = artifacts.write("status", outcome.status.as_bytes());
    let mut status = obj(json!({"status": outcome.status, "runner_ident": job.ident}));
    if let Some(why) = &outcome.explanation {
        status.insert("job_explanation".into(), json!(why));
    }
    writer.status(status);
    writer.end_recording();
    send_artifacts(&writer, &artifacts);
    writer.eof();
    cleanup(&pdd);
    outcome.rc
}

/// A cancel before the job was all there: the canceled status and, once the job's ident is
/// known, the artifacts AWX reads (`status`, `rc`, an empty `stdout`), as for any other ending.
fn canceled_while_receiving(writer: &StreamWriter, pdd: &Path, ident: Option<&str>) {
    let why = "Job canceled while its data was being received.";
    let mut status = obj(json!({"status": "canceled", "job_explanation": why}));
    let artifacts = ident.and_then(|i| ArtifactDir::create(pdd, i).ok());
    if let (Some(a), Some(i)) = (&artifacts, ident) {
        let _ = a.write("status", b"canceled");
        let _ = a.write("rc", RC_CANCELED.to_string().as_bytes());
        let _ = a.write("stdout", b"");
        status.insert("runner_ident".into(), json!(i));
    }
    writer.status(status);
    if let Some(a) = artifacts {
        send_artifacts(writer, &a);
    }
    writer.eof();
}

/// The artifacts directory, zipped into the stream (a failure only costs the artifacts).
fn send_artifacts(writer: &StreamWriter, artifacts: &ArtifactDir) {
    match artifacts.zip() {
        Ok(tmp) => {
            if let Err(e) = writer.zipfile(tmp.path()) {
                logln!("cannot stream the artifacts zip: {e}");
            }
        }
        Err(e) => logln!("cannot zip the artifacts: {e:#}"),
    }
}

/// Read the transmit stream into `pdd` and return the job's kwargs; the job's ident goes into
/// `ident` as soon as the kwargs are read.
fn receive(
    pdd: &Path,
    limits: Limits,
    max_zip: u64,
    ident: &std::sync::Mutex<Option<String>>,
) -> Result<Map<String, Value>, Failure> {
    let stdin = std::io::stdin();
    let mut decoder = Decoder::new(BufReader::with_capacity(256 * 1024, stdin.lock()), max_zip);
    let mut kwargs = Map::new();
    loop {
        let mut tmp = tempfile::tempfile().map_err(|e| Failure {
            explanation: "Failed to extract private data directory on worker.".into(),
            traceback: Some(format!("cannot create a temporary file for the zip: {e}")),
        })?;
        match decoder.next_message(&mut tmp) {
            Ok(Message::Kwargs(k)) => {
                if let Ok(Some(i)) = crate::job::given_ident(&k) {
                    *ident.lock().unwrap_or_else(|e| e.into_inner()) = Some(i);
                }
                kwargs = k;
            }
            Ok(Message::Zip(n)) => {
                logln!("unpacking a {n}-byte zip into {}", pdd.display());
                let unpacked = tmp
                    .rewind()
                    .map_err(anyhow::Error::from)
                    .and_then(|_| unpack::unpack(&mut tmp, pdd, limits));
                if let Err(e) = unpacked {
                    return Err(Failure {
                        explanation: format!(
                            "Failed to extract private data directory on worker: {e:#}"
                        ),
                        traceback: Some(format!("{e:?}")),
                    });
                }
            }
            Ok(Message::Eof) => return Ok(kwargs),
            Ok(Message::Other) => {}
            Err(StreamError::BadLine(why)) => {
                return Err(Failure {
                    explanation: format!("Failed to JSON parse a line from transmit stream: {why}"),
                    traceback: None,
                });
            }
            Err(StreamError::BadZip(e)) => {
                return Err(Failure {
                    explanation: format!(
                        "Failed to extract private data directory on worker: {e:#}"
                    ),
                    traceback: Some(format!("{e:?}")),
                });
            }
        }
    }
}

fn send_error(writer: &StreamWriter, explanation: &str, traceback: Option<&str>) {
    logln!("error: {explanation}");
    let mut m = obj(json!({"status": "error", "job_explanation": explanation}));
    if let Some(tb) = traceback {
        m.insert("result_traceback".into(), json!(tb));
    }
    writer.status(m);
    writer.eof();
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn remove_dir(p: &Path) {
    if let Err(e) = std::fs::remove_dir_all(p)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        logln!("cannot remove {}: {e}", p.display());
    }
}

/// `--keepalive-seconds`, else `ANSIBLE_RUNNER_KEEPALIVE_SECONDS` (a float), else off.
fn keepalive_interval(flag: Option<f64>) -> Duration {
    let secs = flag.unwrap_or_else(|| {
        std::env::var("ANSIBLE_RUNNER_KEEPALIVE_SECONDS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    });
    if secs.is_finite() && secs > 0.0 {
        Duration::from_secs_f64(secs)
    } else {
        Duration::ZERO
    }
}

/// SIGTERM and SIGINT flip the returned flag; installed first so no signal kills us mid-line.
fn install_signal_handlers() -> watch::Receiver<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(false);
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    tokio::spawn(async move {
        match (term, int) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
            }
            _ => std::future::pending::<()>().await,
        }
        logln!("cancel signal received");
        let _ = tx.send(true);
    });
    rx
}

/// Ask the running job to stop for `why` and give it `grace` to wrap up; a job that does not
/// finish in time ends as `otherwise`.
async fn stop_within<F: std::future::Future<Output = Outcome>>(
    job: std::pin::Pin<&mut F>,
    stop: &StopFlag,
    why: StopReason,
    grace: Duration,
    otherwise: Outcome,
) -> Outcome {
    stop.request(why);
    tokio::time::timeout(grace, job).await.unwrap_or(otherwise)
}

async fn wait_cancel(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What ran, for `starting.command` and the `command` artifact.
fn command_line(job: &JobSettings, script: &ScriptChoice) -> Vec<String> {
    if let Some(module) = &job.module {
        // An ad hoc command, shown as the `ansible` command it stands for.
        let mut cmd = vec!["ansible".to_string()];
        if let Some(inv) = &job.inventory {
            cmd.extend(["-i".into(), inv.to_string_lossy().into_owned()]);
        }
        cmd.extend(["-m".into(), module.clone()]);
        if let Some(a) = &job.module_args {
            cmd.extend(["-a".into(), a.clone()]);
        }
        cmd.push(job.host_pattern.clone().unwrap_or_default());
        return cmd;
    }
    let mut cmd = vec!["ftl2-runner".to_string()];
    match script {
        ScriptChoice::Found { path, .. } => cmd.push(path.to_string_lossy().into_owned()),
        ScriptChoice::Missing(_) => cmd.push(script::BAKED_SCRIPT.to_string()),
    }
    if let Some(inv) = &job.inventory {
        cmd.extend(["-i".into(), inv.to_string_lossy().into_owned()]);
    }
    let extravars = job.private_data_dir.join("env/extravars");
    if extravars.exists() {
        cmd.extend(["-e".into(), format!("@{}", extravars.display())]);
    }
    cmd
}

/// The job environment for `starting.env`, with secret-looking values hidden as AWX hides them.
fn safe_env(job: &JobSettings) -> Map<String, Value> {
    let mut env = Map::new();
    for key in ["PATH", "HOME", "LANG"] {
        if let Ok(v) = std::env::var(key) {
            env.insert(key.into(), json!(v));
        }
    }
    for (k, v) in &job.envvars {
        env.insert(k.clone(), json!(redact_env_value(k, v)));
    }
    env
}

/// AWX's `build_safe_env` rule: hide API/TOKEN/KEY/SECRET/PASS variables and URL passwords.
pub fn redact_env_value(key: &str, value: &str) -> String {
    const HIDDEN: &str = "**********";
    let upper = key.to_ascii_uppercase();
    let ansible_exempt = upper.starts_with("ANSIBLE_")
        && !upper.starts_with("ANSIBLE_NET")
        && !upper.starts_with("ANSIBLE_GALAXY_SERVER");
    if upper == "AWS_ACCESS_KEY_ID" || ansible_exempt {
        return value.to_string();
    }
    if ["API", "TOKEN", "KEY", "SECRET", "PASS"]
        .iter()
        .any(|w| upper.contains(w))
    {
        return HIDDEN.to_string();
    }
    // scheme://user:password@host -> scheme://user:**********@host
    if let Some((scheme, rest)) = value.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _pw)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:{HIDDEN}@{host}");
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_hidden_like_awx_does() {
        assert_eq!(redact_env_value("MY_API_TOKEN", "abc"), "**********");
        assert_eq!(
            redact_env_value("ANSIBLE_HOST_KEY_CHECKING", "False"),
            "False"
        );
        assert_eq!(redact_env_value("ANSIBLE_NET_PASSWORD", "x"), "**********");
        assert_eq!(
            redact_env_value("PROXY", "http://u:pw@h:3128"),
            "http://u:**********@h:3128"
        );
        assert_eq!(redact_env_value("JOB_ID", "4242"), "4242");
    }
}
