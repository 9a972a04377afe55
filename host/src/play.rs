//! `ftl2-runner play`: run a script from a terminal, outside AWX, with ansible-playbook's output.
//!
//! Script authors test the same script the EE will run, with the same sandbox, engine and text
//! (`PLAY`/`TASK` banners, host lines, recap); only the printer differs from the worker's.

use crate::job::JobSettings;
use crate::sandbox::{StopFlag, StopReason};
use crate::script::{ScriptChoice, ScriptSource};
use crate::writer::StreamWriter;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::Arc;

/// The usage line printed with an option error, as argparse prints it.
const USAGE: &str = "usage: ftl2-runner play [-h] [-i INVENTORY] SCRIPT [ansible-playbook options]";

/// What `play` was asked to do, in ansible-playbook's terms.
#[derive(Debug, Clone, Default)]
pub struct PlayArgs {
    /// The script.
    pub script: PathBuf,
    /// `-i`: an inventory file or directory.
    pub inventory: Option<PathBuf>,
    /// Options passed on as the job's command line (`--check`, `-l`, `-u`, `-e`, `-v`, ...).
    pub options: Vec<String>,
}

/// Run the script; returns ansible-playbook's exit code for the outcome.
pub fn run(args: PlayArgs) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ftl2-runner: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let rc = rt.block_on(run_async(args));
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    rc
}

async fn run_async(args: PlayArgs) -> i32 {
    let script = match args.script.canonicalize() {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "ERROR! cannot use the script {}: {e}",
                args.script.display()
            );
            return 1;
        }
    };
    let pdd = match tempfile::Builder::new().prefix("ftl2-play-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ERROR! cannot create a working directory: {e}");
            return 1;
        }
    };
    // `-e @file` is relative to where the user is, not to the working directory.
    let mut options = args.options.clone();
    for i in 0..options.len() {
        if let Some(f) = options[i].strip_prefix('@')
            && i > 0
            && matches!(options[i - 1].as_str(), "-e" | "--extra-vars")
        {
            options[i] = format!(
                "@{}",
                std::path::absolute(f)
                    .unwrap_or_else(|_| PathBuf::from(f))
                    .display()
            );
        }
    }
    // `--list-hosts`: the hosts the inventory and `--limit` select, and nothing run.
    let list_hosts = options.iter().any(|o| o == "--list-hosts");
    options.retain(|o| o != "--list-hosts");
    // `--syntax-check`: the script is loaded and compiled in the sandbox, and nothing runs.
    let syntax_check = options.iter().any(|o| o == "--syntax-check");
    options.retain(|o| o != "--syntax-check");
    // ansible-playbook refuses options it does not have; so do we, and those we cannot honour.
    match crate::cmdline::CmdlineOptions::parse_words(&options) {
        Err(e) => {
            eprintln!("{USAGE}\nftl2-runner play: error: {e:#}");
            return 2;
        }
        Ok(o) => {
            let unhonoured = o.unhonoured(false);
            let unknown: Vec<&str> = unhonoured
                .iter()
                .filter(|u| u.unknown)
                .map(|u| u.option.as_str())
                .collect();
            if !unknown.is_empty() {
                eprintln!(
                    "{USAGE}\nftl2-runner play: error: unrecognized arguments: {}",
                    unknown.join(" ")
                );
                return 2;
            }
            if let Some(u) = unhonoured.first() {
                eprintln!("{USAGE}\nftl2-runner play: error: {}: {}", u.option, u.why);
                return 2;
            }
        }
    }
    let mut kwargs = Map::new();
    kwargs.insert("ident".into(), json!("play"));
    kwargs.insert(
        "cmdline".into(),
        json!(crate::executor::modules::shell_join(&options)),
    );
    if let Some(inv) = &args.inventory {
        let abs = std::path::absolute(inv).unwrap_or_else(|_| inv.clone());
        kwargs.insert("inventory".into(), json!(abs.to_string_lossy()));
    }
    // Colours when the terminal can show them, as ansible-playbook does.
    let tty = unsafe { libc::isatty(1) } == 1 && std::env::var_os("NO_COLOR").is_none();
    let mut env: Map<String, Value> = Map::new();
    for (k, v) in std::env::vars() {
        env.insert(k, json!(v));
    }
    if tty {
        env.insert("ANSIBLE_FORCE_COLOR".into(), json!("True"));
    }
    kwargs.insert("envvars".into(), Value::Object(env));
    let job = match JobSettings::load(pdd.path(), &kwargs) {
        Ok(j) => JobSettings {
            local_play: true,
            syntax_check,
            ..j
        },
        Err(e) => {
            eprintln!("ERROR! {e:#}");
            return 1;
        }
    };
    if list_hosts {
        return print_hosts(&job, &script);
    }
    let writer = StreamWriter::terminal();
    writer.begin_job(
        crate::events::EventContext {
            runner_ident: "play".into(),
            job_id: None,
            pid: std::process::id(),
        },
        None,
    );
    let stop = Arc::new(StopFlag::default());
    let stop_sig = Arc::clone(&stop);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop_sig.request(StopReason::Canceled);
        }
    });
    // `ftl2-runner play ... | head`: once nobody reads, stop instead of running on unseen.
    let (writer_watch, stop_pipe) = (Arc::clone(&writer), Arc::clone(&stop));
    tokio::spawn(async move {
        writer_watch.wait_reader_gone().await;
        stop_pipe.request(StopReason::Canceled);
    });
    let choice = ScriptChoice::Found {
        path: script,
        source: ScriptSource::Environment,
    };
    let outcome = crate::job_run::run(&job, &choice, &writer, stop).await;
    writer.eof();
    outcome.rc
}

/// ansible-playbook's `--list-hosts` text for the script, as one play over `all`.
fn print_hosts(job: &JobSettings, script: &std::path::Path) -> i32 {
    let files = crate::executor::modules::LocalFiles {
        base: script.parent().map(PathBuf::from).unwrap_or_default(),
        read_roots: Vec::new(),
        write_roots: Vec::new(),
        ..Default::default()
    };
    let executor = match crate::job_run::engine(job, files) {
        Ok(e) => e,
        Err(why) => {
            eprintln!("{why}");
            return 1;
        }
    };
    let hosts = match executor.list_hosts("all") {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ERROR! {e:#}");
            return 1;
        }
    };
    println!("\nplaybook: {}\n", script.display());
    println!("  play #1 (all): all\tTAGS: []");
    println!("    pattern: ['all']");
    println!("    hosts ({}):", hosts.len());
    for h in &hosts {
        println!("      {h}");
    }
    0
}
