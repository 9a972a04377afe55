//! Running one job's script: inventory -> executor, event tree, sandbox -> outcome.
//!
//! The worker calls [`run`] once the job's files and settings are in place; it returns the final
//! status and rc the way ansible-playbook would report them: 0 when all went well, 2 when a host
//! failed (even if the script returned 0), 4 when hosts were only unreachable, the script's own
//! non-zero code when it chose one, 254 for cancel/timeout.

use crate::executor::login::Credential;
use crate::executor::modules::LocalFiles;
use crate::executor::{CallOptions, EngineSettings, Executor};
use crate::inventory::Inventory;
use crate::job::JobSettings;
use crate::outcome::{Outcome, RC_CANCELED};
use crate::sandbox::bridge::Bridge;
use crate::sandbox::output::{OutputCaps, OutputSink};
use crate::sandbox::{Guest, Mounts, SandboxLimits, ScriptEnd, ScriptRun, StopFlag, StopReason};
use crate::script::{ScriptChoice, ScriptSource};
use crate::secret::Secret;
use crate::tree::EventTree;
use crate::writer::StreamWriter;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Run the job's script to the end (or until `stop` says otherwise).
pub async fn run(
    job: &JobSettings,
    script: &ScriptChoice,
    writer: &Arc<StreamWriter>,
    stop: Arc<StopFlag>,
) -> Outcome {
    let (path, source) = match script {
        ScriptChoice::Missing(why) => return fail_early(writer, format!("ftl2-runner: {why}")),
        ScriptChoice::Found { path, source } => (path.clone(), source.clone()),
    };
    // What modules start on the controller (the local connection's processes, its resident
    // module runner, their orphans) stays below us and is ended with the job.
    crate::processes::adopt_orphans();
    let playbook_name = job.playbook.clone().unwrap_or_else(|| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let tree = Arc::new(Mutex::new(EventTree::new(
        Arc::clone(writer),
        &playbook_name,
        job.display_style(false),
    )));

    // Options AWX sent that a script job cannot honour: said in the job output; those whose
    // loss would run more than asked (--start-at-task) stop the job before it starts.
    let unhonoured = job.cmdline.unhonoured(false);
    let refused: Vec<String> = unhonoured
        .iter()
        .filter(|u| u.runs_more)
        .map(|u| format!("{}: {}", u.option, u.why))
        .collect();
    if !refused.is_empty() {
        return fail_early(
            writer,
            format!(
                "ERROR! ftl2-runner cannot honour these options, so nothing was run:\n{}",
                refused.join("\n")
            ),
        );
    }
    warn_unhonoured(&tree, &unhonoured);

    // Never expose the private data dir (env/ holds the credentials) through the script's dir.
    let script_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let pdd = job
        .private_data_dir
        .canonicalize()
        .unwrap_or_else(|_| job.private_data_dir.clone());
    let script_dir_real = script_dir
        .canonicalize()
        .unwrap_or_else(|_| script_dir.clone());
    if !job.local_play && pdd.starts_with(&script_dir_real) {
        return fail_early(
            writer,
            format!(
                "ftl2-runner: refusing to run {}: its directory would expose the job's private data \
                 (credentials) to the script; put scripts in project/ or in the image",
                path.display()
            ),
        );
    }

    let scratch = match tempfile::Builder::new().prefix("ftl2-scratch-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            return fail_early(
                writer,
                format!("ftl2-runner: cannot create the scratch dir: {e}"),
            );
        }
    };
    let scratch_path = scratch
        .path()
        .canonicalize()
        .unwrap_or_else(|_| scratch.path().to_path_buf());
    let mut read_only = vec![script_dir_real.clone()];
    let project = job.private_data_dir.join("project");
    if source == ScriptSource::Playbook
        && let Ok(p) = project.canonicalize()
        && !read_only.contains(&p)
    {
        read_only.push(p);
    }
    let mounts = Mounts {
        read_only,
        scratch: scratch_path,
    };

    let gate = Arc::new(crate::sandbox::gate::GuestGate::default());
    let local_files = LocalFiles {
        base: script_dir_real.clone(),
        read_roots: mounts.read_only.clone(),
        write_roots: vec![mounts.scratch.clone()],
        gate: Arc::clone(&gate),
    };
    // Loading the inventory is bounded but can take seconds (100,000 hosts); a cancel or the
    // job timeout meanwhile ends the job at once (the load is left to finish unseen).
    let loading = {
        let job = job.clone();
        tokio::task::spawn_blocking(move || engine(&job, local_files))
    };
    let executor = match until_stopped(loading, &stop).await {
        Err(reason) => {
            // An inventory script may still be running: end it with the job.
            crate::processes::end_all_below_us().await;
            let t = tree.lock().unwrap_or_else(|e| e.into_inner());
            return outcome_of(&ScriptEnd::Stopped(reason), &t);
        }
        Ok(Ok(Ok(e))) => e,
        Ok(Ok(Err(why))) => return fail_early(writer, why),
        Ok(Err(e)) => {
            return fail_early(
                writer,
                format!("ftl2-runner: loading the inventory failed: {e}"),
            );
        }
    };

    let load_started = std::time::Instant::now();
    let guest = match tokio::task::spawn_blocking(Guest::locate).await {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => return fail_early(writer, format!("ftl2-runner: {e:#}")),
        Err(e) => {
            return fail_early(
                writer,
                format!("ftl2-runner: loading the guest failed: {e}"),
            );
        }
    };
    crate::logln!(
        "timing: guest load {:.3} ms",
        load_started.elapsed().as_secs_f64() * 1e3
    );
    let limits = match SandboxLimits::from_env(
        Some(job.settings.job_timeout)
            .filter(|t| *t > 0)
            .map(Duration::from_secs),
    ) {
        Ok(l) => l,
        Err(e) => return fail_early(writer, format!("ftl2-runner: {e:#}")),
    };
    let output = OutputSink::new(Arc::clone(&tree), OutputCaps::from_env());
    let job_info = json!({
        "ident": job.ident,
        "check_mode": job.cmdline.check,
        "diff": job.cmdline.diff,
        "verbosity": job.cmdline.verbosity,
        "forks": job.cmdline.forks,
        "limit": job.cmdline.limit,
        "playbook": job.playbook,
        // Which secrets have a value (names only), for `name in ftl.secrets`.
        "secret_names": job.envvars.keys().collect::<Vec<_>>(),
    });
    let bridge = Bridge::new(
        Arc::clone(&executor),
        Arc::clone(&tree),
        Arc::clone(&output),
        tokio::runtime::Handle::current(),
        job_info,
        CallOptions {
            check_mode: job.cmdline.check,
            diff: job.cmdline.diff,
            ..Default::default()
        },
        playbook_name.clone(),
        job.envvars.clone().into_iter().collect(),
        Arc::clone(&stop),
        crate::tags::Selection::new(&job.cmdline.tags, &job.cmdline.skip_tags),
    );
    let inventory_path = job
        .inventory
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extravars = Value::Object(job.extravars.clone()).to_string();
    let script_path = path.canonicalize().unwrap_or(path);
    let syntax_check = job.syntax_check;
    let handle = tokio::task::spawn_blocking(move || {
        let run = ScriptRun {
            script: script_path,
            inventory_path,
            extravars_json: extravars,
            mounts,
            limits,
            syntax_check,
            gate,
        };
        crate::sandbox::run_script(&guest, run, bridge, output)
    });
    let (end, timings) = match handle.await {
        Ok(r) => r,
        Err(e) => {
            // A panic's text is for the log (the panic hook wrote it there), not the job output.
            crate::logln!("the sandbox thread failed: {e}");
            (
                ScriptEnd::Crashed(
                    "its thread stopped unexpectedly (a bug in ftl2-runner; the details are in \
                     its log, FTL2_LOG_FILE)"
                        .into(),
                ),
                Default::default(),
            )
        }
    };
    drop(scratch);
    crate::processes::end_all_below_us().await;
    crate::logln!(
        "timing: instantiate {:.3} ms, run {:.3} ms; script ended: {end:?}",
        timings.instantiate.as_secs_f64() * 1e3,
        timings.run.as_secs_f64() * 1e3
    );

    let mut t = tree.lock().unwrap_or_else(|e| e.into_inner());
    let outcome = outcome_of(&end, &t);
    // A script that exited non-zero has already said why (its traceback); say the rest.
    if let Some(why) = &outcome.explanation
        && !matches!(
            end,
            ScriptEnd::Stopped(StopReason::Canceled | StopReason::Timeout) | ScriptEnd::Exited(1..)
        )
    {
        t.verbose(&format!("ERROR! {why}"));
    }
    t.finish();
    outcome
}

/// The job's execution engine: its inventory, credential and options.
pub fn engine(job: &JobSettings, local_files: LocalFiles) -> Result<Arc<Executor>, String> {
    let mut inventory = match &job.inventory {
        Some(p) => {
            Inventory::load(p).map_err(|e| format!("ERROR! the inventory is broken: {e:#}"))?
        }
        None => Inventory::empty(),
    };
    let fact_cache = fact_cache_dir(job);
    if let Some(dir) = &fact_cache {
        load_cached_facts(&mut inventory, dir);
    }
    Ok(Arc::new(Executor::new(
        inventory,
        EngineSettings {
            forks: job.cmdline.forks,
            limit: job.cmdline.limit.clone(),
            env: job
                .envvars
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            credential: credential(job),
            extravars: job.extravars.clone(),
            local_files,
            fact_cache,
            ansible: ansible_helper(job),
            verbosity: job.cmdline.verbosity,
        },
    )))
}

/// Say in the job output each option the job was given but cannot honour, and why.
pub fn warn_unhonoured(tree: &Mutex<EventTree>, unhonoured: &[crate::cmdline::Unhonoured]) {
    let mut t = tree.lock().unwrap_or_else(|e| e.into_inner());
    for u in unhonoured {
        t.warning(&format!(
            "ftl2-runner does not honour {}: {}",
            u.option, u.why
        ));
    }
}

/// The job's AWX machine credential and login options, from what AWX sent (kwargs passwords,
/// ssh key, cmdline flags, environment), for the engine: the engine never reads the job itself.
fn credential(job: &JobSettings) -> Credential {
    let prompt = |starts: &str| -> Option<Secret<String>> {
        job.passwords
            .expose()
            .iter()
            .find(|(k, v)| k.starts_with(starts) && !v.is_empty())
            .map(|(_, v)| Secret::new(v.clone()))
    };
    let c = &job.cmdline;
    let hkc = job
        .envvars
        .get("ANSIBLE_HOST_KEY_CHECKING")
        .is_some_and(|v| crate::boolean::is_true_word(v));
    Credential {
        user: c.user.clone(),
        ssh_key: job.ssh_key.clone(),
        key_passphrase: prompt("Enter passphrase for"),
        ssh_password: if c.ask_pass {
            prompt("SSH password")
        } else {
            None
        },
        become_: c.become_,
        become_method: c.become_method.clone(),
        become_user: c.become_user.clone(),
        become_password: if c.ask_become_pass {
            prompt("BECOME password")
        } else {
            None
        },
        private_key_file: c.private_key_file.clone(),
        timeout: c.timeout,
        host_key_checking: hkc,
    }
}

/// How the job reaches its EE's ansible-core: the Python found from `FTL2_ANSIBLE_PYTHON` or
/// `ansible-config` on PATH, run in the project directory (its `ansible.cfg`) with the job's
/// environment, and with the project's `collections/` and the job's `requirements_collections/`
/// ahead of the configured collections path, as ansible-playbook would search them.
fn ansible_helper(job: &JobSettings) -> crate::executor::ansible::HelperSpawn {
    let path = job
        .envvars
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    let (python, missing) = match crate::executor::ansible::find_python(
        std::env::var("FTL2_ANSIBLE_PYTHON").ok().as_deref(),
        &path,
    ) {
        Ok(p) => (Some(p), String::new()),
        Err(e) => (None, e),
    };
    let project = job.private_data_dir.join("project");
    let mut env: Vec<(String, String)> = job
        .envvars
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let configured = job
        .envvars
        .get("ANSIBLE_COLLECTIONS_PATH")
        .or_else(|| job.envvars.get("ANSIBLE_COLLECTIONS_PATHS"))
        .cloned()
        .or_else(|| std::env::var("ANSIBLE_COLLECTIONS_PATH").ok());
    let mut paths: Vec<String> = Vec::new();
    for extra in [
        project.join("collections"),
        job.private_data_dir.join("requirements_collections"),
    ] {
        let text = extra.to_string_lossy().into_owned();
        if extra.is_dir()
            && !configured
                .as_deref()
                .unwrap_or("")
                .split(':')
                .any(|p| p == text)
        {
            paths.push(text);
        }
    }
    if !paths.is_empty() {
        // Unset means Ansible's default, which must stay searched after ours.
        paths.push(
            configured
                .unwrap_or_else(|| "~/.ansible/collections:/usr/share/ansible/collections".into()),
        );
        env.retain(|(k, _)| k != "ANSIBLE_COLLECTIONS_PATH" && k != "ANSIBLE_COLLECTIONS_PATHS");
        env.push(("ANSIBLE_COLLECTIONS_PATH".into(), paths.join(":")));
    }
    crate::executor::ansible::HelperSpawn {
        python,
        missing,
        cwd: project.is_dir().then_some(project),
        env,
    }
}

/// AWX's fact cache directory, when the job uses fact caching (`fact_cache_type: jsonfile`).
fn fact_cache_dir(job: &JobSettings) -> Option<std::path::PathBuf> {
    (job.fact_cache_type.as_deref() == Some("jsonfile")).then(|| {
        job.private_data_dir
            .join("artifacts")
            .join(&job.ident)
            .join("fact_cache")
    })
}

/// Facts AWX cached from earlier jobs become host vars, as Ansible's fact cache makes them:
/// `ansible_facts` (names without the prefix) and the `ansible_*` variables themselves.
fn load_cached_facts(inv: &mut Inventory, dir: &Path) {
    for (host, vars) in inv.host_vars.iter_mut() {
        let Ok(text) = std::fs::read_to_string(dir.join(host)) else {
            continue;
        };
        let Ok(Value::Object(facts)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let short: serde_json::Map<String, Value> = facts
            .iter()
            .map(|(k, v)| {
                (
                    k.strip_prefix("ansible_").unwrap_or(k).to_string(),
                    v.clone(),
                )
            })
            .collect();
        for (k, v) in &facts {
            vars.entry(k.clone()).or_insert_with(|| v.clone());
        }
        vars.insert("ansible_facts".into(), Value::Object(short));
    }
}

/// What the hosts' results make of a job that otherwise went fine, as ansible-playbook's rc:
/// 2 when a host failed, 4 when hosts were only unreachable, else 0.
pub fn hosts_outcome(tree: &EventTree) -> Outcome {
    let stats = tree.stats();
    if stats.values().any(|s| s.failures > 0) {
        Outcome {
            status: "failed",
            rc: 2,
            explanation: Some("one or more hosts failed".into()),
        }
    } else if stats.values().any(|s| s.dark > 0) {
        Outcome {
            status: "failed",
            rc: 4,
            explanation: Some("one or more hosts were unreachable".into()),
        }
    } else {
        Outcome {
            status: "successful",
            rc: 0,
            explanation: None,
        }
    }
}

/// End a job that could not start: the reason as job output, status failed.
pub fn fail_early(writer: &Arc<StreamWriter>, why: String) -> Outcome {
    for line in why.lines() {
        writer.event(&crate::events::Event::verbose(line));
    }
    Outcome {
        status: "failed",
        rc: 1,
        explanation: Some(why),
    }
}

/// `task`'s result, or the reason to stop when a stop is requested first (checked every 50 ms:
/// the flag is set from signal and timer tasks).
async fn until_stopped<T>(
    mut task: tokio::task::JoinHandle<T>,
    stop: &StopFlag,
) -> Result<Result<T, tokio::task::JoinError>, StopReason> {
    loop {
        if let Some(reason) = stop.reason() {
            return Err(reason);
        }
        tokio::select! {
            done = &mut task => return Ok(done),
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
}

/// ansible-playbook's rc rules applied to how the script ended and what happened on the hosts.
fn outcome_of(end: &ScriptEnd, tree: &EventTree) -> Outcome {
    match end {
        ScriptEnd::Exited(0) => hosts_outcome(tree),
        ScriptEnd::Exited(rc) => Outcome {
            status: "failed",
            rc: *rc,
            explanation: Some(format!("the script exited with rc={rc}")),
        },
        ScriptEnd::Stopped(StopReason::Canceled) => Outcome {
            status: "canceled",
            rc: RC_CANCELED,
            explanation: None,
        },
        ScriptEnd::Stopped(StopReason::Timeout) => Outcome {
            status: "timeout",
            rc: RC_CANCELED,
            explanation: Some(
                "Job terminated due to timeout: the script ran longer than job_timeout.".into(),
            ),
        },
        ScriptEnd::Stopped(StopReason::ScratchFull) => Outcome {
            status: "failed",
            rc: 1,
            explanation: Some(format!(
                "the script was stopped: {}",
                StopReason::ScratchFull
            )),
        },
        ScriptEnd::OutOfMemory(cap) => Outcome {
            status: "failed",
            rc: 1,
            explanation: Some(format!(
                "the script ran out of memory: it reached its cap of {} MiB (FTL2_MEMORY_LIMIT)",
                cap >> 20
            )),
        },
        ScriptEnd::Crashed(e) => Outcome {
            status: "failed",
            rc: 1,
            explanation: Some(format!("the script sandbox failed: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompt_passwords_need_their_flags() {
        let dir = tempfile::tempdir().unwrap();
        let kwargs = json!({"passwords": {"SSH password:\\s*?$": "sshpw", "BECOME password.*:\\s*?$": "bpw", "Enter passphrase for .*:\\s*?$": "kp"}});
        let job = JobSettings::load(dir.path(), kwargs.as_object().unwrap()).unwrap();
        let c = credential(&job);
        assert!(c.ssh_password.is_none() && c.become_password.is_none());
        assert_eq!(c.key_passphrase.unwrap().expose(), "kp");
        std::fs::create_dir_all(dir.path().join("env")).unwrap();
        std::fs::write(
            dir.path().join("env/cmdline"),
            "--ask-pass --ask-become-pass",
        )
        .unwrap();
        let job = JobSettings::load(dir.path(), kwargs.as_object().unwrap()).unwrap();
        let c = credential(&job);
        assert_eq!(c.ssh_password.unwrap().expose(), "sshpw");
        assert_eq!(c.become_password.unwrap().expose(), "bpw");
    }
}
