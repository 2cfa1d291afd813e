//! `infer`: parses the command line, maps it onto the library's options
//! and runs the command; the edge prints the error chain and picks the
//! exit code. `infer serve` runs the server's binary, `infer-serve`, from
//! beside this one (as `git` and `cargo` run their subcommands' binaries),
//! so that this one builds without the server's crates.

mod cli;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use ae_core::exit::chain;
use cli::{Cli, Command};
use infer::commands;
use infer::error::InferError;

fn run(cli: Cli) -> Result<(), InferError> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Serve { args } => Err(serve(args)),
        Command::Classify(a) => commands::classify(&a.run_options()?, &a.options(), &mut out),
        Command::Reconstruct(a) => commands::reconstruct(&a.run.options(), &a.options(), &mut out),
        Command::Embed(a) => commands::embed(&a.run.options(), &a.out, &mut out),
        Command::Info(a) => commands::info(&a.model, a.format, &mut out),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server handles its own signals (SIGTERM and Ctrl-C drain it).
    if !matches!(cli.command, Command::Serve { .. }) {
        ae_core::interrupt::install();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Replaces this process with `infer-serve ARGS` (the same PID, so signals
/// reach the server); returns only the error when it cannot.
fn serve(args: Vec<OsString>) -> InferError {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("infer-serve")));
    let Some(server) = beside.filter(|p| p.is_file()) else {
        return InferError::Usage(
            "infer serve runs the server's binary, infer-serve, and there is none beside this infer: build it with \
             `cargo build --release -p serve` (or `make build`)"
                .into(),
        );
    };
    let e = std::process::Command::new(&server).args(args).exec();
    InferError::Usage(format!("cannot run {}: {e}", server.display()))
}
