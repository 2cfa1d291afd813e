//! `infer`: parses the command line, maps it onto the library's options
//! and runs the command; the edge prints the error chain and picks the
//! exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use ae_core::exit::chain;
use cli::{Cli, Command};
use infer::commands;
use infer::error::InferError;

fn run(cli: Cli) -> Result<(), InferError> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Classify(a) => commands::classify(&a.run_options()?, &a.options(), &mut out),
        Command::Reconstruct(a) => commands::reconstruct(&a.run.options(), &a.options(), &mut out),
        Command::Embed(a) => commands::embed(&a.run.options(), &a.out, &mut out),
        Command::Info(a) => commands::info(&a.model, a.format, &mut out),
        Command::Serve(a) => infer::serve::serve(&a.options(), &mut out).map_err(InferError::from),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server handles its own signals (SIGTERM and Ctrl-C drain it).
    if !matches!(cli.command, Command::Serve(_)) {
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
