//! The `ftl2-runner` binary (also installed as `ansible-runner`); all logic lives in the library.

use ftl2_runner::{cli, logln, writer};

fn main() {
    // A panic must never print to stderr in worker mode (AWX merges it into the stream); the
    // worker catches it below and still ends the stream with a status and eof.
    std::panic::set_hook(Box::new(|info| {
        logln!("panic: {info}");
    }));
    ftl2_runner::limits::raise_nofile();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = match std::panic::catch_unwind(|| cli::main(argv)) {
        Ok(code) => code,
        Err(_) => {
            writer::emergency_eof(
                "ftl2-runner crashed; see its log file (FTL2_LOG_FILE) for details.",
            );
            1
        }
    };
    std::process::exit(code);
}
