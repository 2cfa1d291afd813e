//! `train`: parses the command line, maps it onto a library job and runs it.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use train::{explore, export, pipeline, sweep, TrainError};

fn run(cli: Cli) -> Result<(), TrainError> {
    match cli.command {
        Command::Autoencoder(a) => pipeline::train_autoencoder(&a.job()?).map(drop),
        Command::Classifier(a) => pipeline::train_classifier(&a.job()?).map(drop),
        Command::Export(a) => export::export(&a.job()).map(drop),
        Command::Sweep(a) => sweep::run(a.plan()?),
        Command::Explore(a) => explore::run(a.plan()?, &mut std::io::stdin().lock(), &mut std::io::stdout()),
        Command::Summary(a) => {
            print!("{}", train::run_summary::run_summary(&a.run)?);
            Ok(())
        }
        Command::Convert(a) => {
            let done = train::convert::convert(&a.job()?)?;
            if !a.quiet {
                println!(
                    "wrote {} pictures in {} class folders to {}",
                    done.images,
                    done.classes.len(),
                    a.out.display()
                );
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ae_core::interrupt::install();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", ae_core::exit::chain(&e));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
