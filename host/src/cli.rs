//! The command line, compatible with `ansible-runner` wherever AWX and Receptor touch it.
//!
//! clap parses; errors are rendered the way Python's argparse renders them, because AWX
//! string-matches `unrecognized arguments` and expects exit code 2 for usage errors.

use crate::cleanup::{self, CleanupArgs};
use crate::worker::{self, WorkerArgs};
use crate::worker_info;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// Subcommands of ansible-runner that only make sense on the controller or without AWX.
const NOT_HERE: &[&str] = &["run", "start", "stop", "is-alive", "transmit", "process"];

#[derive(Parser, Debug)]
#[command(
    disable_version_flag = true,
    about = "Drop-in ansible-runner worker that runs sandboxed FTL2 automation scripts",
    after_help = "Use '<prog> worker --private-data-dir DIR' with a transmit stream on stdin."
)]
struct Cli {
    /// show program's version number and exit
    #[arg(long)]
    version: bool,
    /// enable debug output logging (to --logfile only)
    #[arg(long)]
    debug: bool,
    /// log output messages to a file (default=None)
    #[arg(long, value_name = "LOGFILE")]
    logfile: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Execute work streamed from a controlling instance
    Worker(WorkerCli),
    /// Compile the guest component (.wasm) into a native artifact (.cwasm) for this binary
    Compile(CompileCli),
    /// Run a script from a terminal, with ansible-playbook's output (for script authors)
    Play(PlayCli),
    /// List the modules a script can call: the native ones and the EE's ansible-core and
    /// collections (as ansible-doc -l)
    Modules(ModulesCli),
    /// Show a module's arguments as a script passes them (as ansible-doc MODULE)
    Doc(DocCli),
    #[command(external_subcommand)]
    Other(Vec<OsString>),
}

#[derive(Args, Debug)]
#[command(
    after_help = "ansible-playbook options honoured: -C/--check, -D/--diff, -l/--limit LIMIT, -f/--forks FORKS, -u/--user USER, -b/--become, --become-method METHOD, --become-user USER, -k/--ask-pass, -K/--ask-become-pass, --private-key FILE, -e/--extra-vars VARS, -T/--timeout SECONDS, -c/--connection TYPE, -t/--tags TAGS, --skip-tags TAGS (for calls with _tags), -v; --list-hosts lists the hosts the inventory and --limit select, running nothing; --syntax-check loads and compiles the script, running nothing. Any other option is refused, with the reason (--start-at-task, --list-tasks, ... do not apply to a script)."
)]
struct PlayCli {
    /// The script (`async def run(inventory_path, extravars, runner)`)
    script: PathBuf,
    /// Inventory file or directory
    #[arg(short, long)]
    inventory: Option<PathBuf>,
    /// ansible-playbook options for the job
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    options: Vec<String>,
}

#[derive(Args, Debug)]
#[command(
    after_help = "The modules are those a job run in this environment resolves: ansible-core \
    found as FTL2_ANSIBLE_PYTHON or the Python of ansible-config on PATH, collections in \
    ANSIBLE_COLLECTIONS_PATH (or ansible.cfg in the current directory)."
)]
struct ModulesCli {
    /// Only the modules of this namespace or collection (e.g. community.general)
    filter: Option<String>,
    /// Print JSON
    #[arg(short, long)]
    json: bool,
}

#[derive(Args, Debug)]
struct DocCli {
    /// The module, by short name or fully qualified (e.g. apt, community.general.ufw)
    module: String,
    /// Print JSON
    #[arg(short, long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CompileCli {
    /// The guest component built by guest-python/build.sh
    wasm: PathBuf,
    /// Where to write the artifact (default: the input with .cwasm)
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct WorkerCli {
    /// base directory containing the ansible-runner metadata (project, inventory, env, etc)
    #[arg(long, value_name = "PRIVATE_DATA_DIR")]
    private_data_dir: Option<PathBuf>,
    /// show the execution node's Ansible Runner version along with its memory and CPU capacities
    #[arg(long)]
    worker_info: bool,
    /// Delete existing folder (and everything in it) in the location specified by
    /// --private-data-dir, before unpacking and again when the job finishes.
    #[arg(long)]
    delete: bool,
    /// Emit a synthetic keepalive event every N seconds of idle. (default=0, disabled)
    #[arg(long, value_name = "KEEPALIVE_SECONDS")]
    keepalive_seconds: Option<f64>,
    /// show program's version number and exit
    #[arg(long)]
    version: bool,
    /// enable debug output logging (to --logfile only)
    #[arg(long)]
    debug: bool,
    /// log output messages to a file (default=None)
    #[arg(long, value_name = "LOGFILE")]
    logfile: Option<PathBuf>,
    #[command(subcommand)]
    sub: Option<WorkerSub>,
}

#[derive(Subcommand, Debug)]
enum WorkerSub {
    /// Cleanup private_data_dir patterns from prior jobs and supporting temporary folders.
    Cleanup(CleanupCli),
}

#[derive(Args, Debug)]
struct CleanupCli {
    /// A file glob pattern to find private_data_dir folders to remove.
    #[arg(long, value_name = "FILE_PATTERN")]
    file_pattern: Option<String>,
    /// Keywords in directory name or path to avoid deleting (space or comma separated).
    #[arg(long, num_args = 0.., value_name = "EXCLUDE_STRINGS")]
    exclude_strings: Vec<String>,
    /// podman or docker tags to delete.
    #[arg(long, num_args = 0.., value_name = "REMOVE_IMAGES")]
    remove_images: Vec<String>,
    /// Minutes after last modification during which a folder is kept; 0 keeps none.
    #[arg(long, default_value_t = 60, value_name = "GRACE_PERIOD")]
    grace_period: u64,
    /// Run docker / podman image prune --force after untagging.
    #[arg(long)]
    image_prune: bool,
    /// The container engine to clean up images for
    #[arg(
        long,
        default_value = "podman",
        value_name = "PROCESS_ISOLATION_EXECUTABLE"
    )]
    process_isolation_executable: String,
}

/// The program name to show: `ansible-runner` when invoked through that symlink.
pub fn program_name(argv0: &OsString) -> String {
    let base = std::path::Path::new(argv0)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base.starts_with("ansible-runner") {
        "ansible-runner".into()
    } else {
        "ftl2-runner".into()
    }
}

fn version_text(prog: &str) -> String {
    if prog == "ansible-runner" {
        worker_info::RUNNER_VERSION.to_string()
    } else {
        format!(
            "ftl2-runner {} (ansible-runner {} worker protocol)",
            env!("CARGO_PKG_VERSION"),
            worker_info::RUNNER_VERSION
        )
    }
}

/// Parse `argv` and run the chosen command; returns the exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    // Started by rsync as the `ssh` of a synchronize task (see `rsync_ssh`).
    if argv
        .first()
        .is_some_and(|a| crate::executor::ansible::is_rsync_ssh(a))
    {
        return crate::executor::ansible::rsync_ssh_main(argv);
    }
    let prog = argv
        .first()
        .map(program_name)
        .unwrap_or_else(|| "ftl2-runner".into());
    let mut cmd = Cli::command().name(prog.clone()).bin_name(prog.clone());
    let matches = match cmd.clone().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => return usage_error(&mut cmd, &prog, e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return usage_error(&mut cmd, &prog, e),
    };
    if cli.version {
        println!("{}", version_text(&prog));
        return 0;
    }
    match cli.command {
        None => {
            let usage = cmd.render_usage().to_string();
            eprintln!("{}", argparse_usage(&usage));
            eprintln!("{prog}: error: the following arguments are required: command");
            2
        }
        Some(Command::Other(args)) => {
            let name = args
                .first()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if NOT_HERE.contains(&name.as_str()) {
                eprintln!(
                    "{prog}: error: '{name}' is not supported: ftl2-runner implements the execution \
                     side ('worker') only; use the ansible-runner package on the controller"
                );
            } else {
                let usage = cmd.render_usage().to_string();
                eprintln!("{}", argparse_usage(&usage));
                let choices: Vec<String> = cmd
                    .get_subcommands()
                    .map(|c| format!("'{}'", c.get_name()))
                    .filter(|c| c != "'help'")
                    .collect();
                eprintln!(
                    "{prog}: error: argument command: invalid choice: '{name}' (choose from {})",
                    choices.join(", ")
                );
            }
            2
        }
        Some(Command::Play(p)) => crate::play::run(crate::play::PlayArgs {
            script: p.script,
            inventory: p.inventory,
            options: p.options,
        }),
        Some(Command::Modules(m)) => crate::catalog::modules(m.filter.as_deref(), m.json),
        Some(Command::Doc(d)) => crate::catalog::doc(&d.module, d.json),
        Some(Command::Compile(c)) => {
            let out = c.output.unwrap_or_else(|| c.wasm.with_extension("cwasm"));
            match crate::sandbox::compile(&c.wasm, &out) {
                Ok(()) => {
                    println!("{}", out.display());
                    0
                }
                Err(e) => {
                    eprintln!("{prog}: error: {e:#}");
                    1
                }
            }
        }
        Some(Command::Worker(w)) => {
            crate::log::init(
                w.logfile.as_deref().or(cli.logfile.as_deref()),
                w.debug || cli.debug,
            );
            if w.version {
                println!("{}", version_text(&prog));
                return 0;
            }
            if let Some(WorkerSub::Cleanup(c)) = w.sub {
                return cleanup::run(&CleanupArgs {
                    file_pattern: c.file_pattern,
                    exclude_strings: c.exclude_strings,
                    remove_images: c.remove_images,
                    grace_period: c.grace_period,
                    image_prune: c.image_prune,
                    process_isolation_executable: c.process_isolation_executable,
                });
            }
            if w.worker_info {
                print!("{}", worker_info::render());
                return 0;
            }
            worker::run(WorkerArgs {
                private_data_dir: w.private_data_dir,
                delete: w.delete,
                keepalive_seconds: w.keepalive_seconds,
            })
        }
    }
}

fn argparse_usage(clap_usage: &str) -> String {
    clap_usage.replacen("Usage:", "usage:", 1)
}

/// Print a clap error the way argparse does and return its exit code.
fn usage_error(cmd: &mut clap::Command, prog: &str, e: clap::Error) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print!("{}", e.render());
            return 0;
        }
        _ => {}
    }
    let invalid = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(" "),
        _ => String::new(),
    };
    let message = match e.kind() {
        ErrorKind::UnknownArgument => format!("unrecognized arguments: {invalid}"),
        ErrorKind::InvalidSubcommand => format!(
            "argument worker_subcommand: invalid choice: '{invalid}' (choose from 'cleanup')"
        ),
        _ => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            first.trim_start_matches("error: ").to_string()
        }
    };
    let usage = cmd.render_usage().to_string();
    eprintln!("{}", argparse_usage(&usage));
    eprintln!("{prog}: error: {message}");
    2
}
