//! `infer-serve`, the binary behind `infer serve` (`infer` runs it from
//! beside itself): parses the command line, maps it onto the server's
//! options and serves; the edge prints the error chain and picks the exit
//! code. The server handles its own signals (SIGTERM and Ctrl-C drain it).

mod cli;

use std::process::ExitCode;

use clap::Parser;

use ae_core::exit::chain;

fn main() -> ExitCode {
    let args = cli::ServeArgs::parse();
    match serve::serve(&args.options(), &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
