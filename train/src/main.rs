use std::process::ExitCode;

use clap::Parser;

use train::cli::{Cli, Command};
use train::{explore, export, fit, pipeline, sweep, TrainError};

fn run(cli: Cli) -> Result<(), TrainError> {
    match cli.command {
        Command::Autoencoder(a) => pipeline::train_autoencoder(&a.job()).map(drop),
        Command::Classifier(a) => pipeline::train_classifier(&a.job()?).map(drop),
        Command::Export(a) => export::export(&export::ExportJob {
            run: a.run,
            out: a.out,
            quiet: a.quiet,
            images: a.images,
            verify_count: 64,
        })
        .map(drop),
        Command::Sweep(a) => sweep::run(&a),
        Command::Explore(a) => explore::run(&a, &mut std::io::stdin().lock(), &mut std::io::stdout()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fit::install_interrupt_handler();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
