//! `train explore`: the reference project's interactive menu, on the same
//! machinery as `sweep`. Reads answers line by line from any reader, so it
//! works with input piped in; an invalid answer is asked again, and the end
//! of input exits cleanly.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use crate::config::Network;
use crate::error::TrainError;
use crate::explorer::{Explorer, Param, Plan};
use crate::export::{self, EncoderSource, Epoch, ExportJob, Layout};

/// Asks until the answer parses and `ok` accepts it; `None` at end of input.
fn ask<R: BufRead, W: Write, T: std::str::FromStr>(
    input: &mut R,
    out: &mut W,
    prompt: &str,
    ok: impl Fn(&T) -> bool,
) -> Result<Option<T>, TrainError> {
    let io = TrainError::Terminal;
    loop {
        write!(out, "{prompt}").map_err(io)?;
        out.flush().map_err(io)?;
        let mut line = String::new();
        if input.read_line(&mut line).map_err(io)? == 0 {
            writeln!(out).map_err(io)?;
            return Ok(None);
        }
        match line.trim().parse::<T>() {
            Ok(v) if ok(&v) => return Ok(Some(v)),
            _ => writeln!(out, "invalid answer {:?}, try again", line.trim()).map_err(io)?,
        }
    }
}

/// Images the "save the model" choice checks the export on.
const EXPORT_CHECK_IMAGES: usize = 16;

pub fn run<R: BufRead, W: Write>(plan: Plan, input: &mut R, out: &mut W) -> Result<(), TrainError> {
    let io = TrainError::Terminal;
    let mut ex = Explorer::new(plan)?;
    let network = ex.network();
    writeln!(out, "training the base configuration {}", ex.base.name(None)).map_err(io)?;
    ex.train(&ex.base.clone())?;
    let params = Param::of(network);
    let third = match network {
        Network::Autoencoder => "save the model (ONNX)",
        Network::Classifier => "predict the test data",
    };
    loop {
        let menu = format!(
            "\n1) run again with one changed hyperparameter\n2) show the error graphs\n3) {third}\n4) exit\nchoice: "
        );
        let Some(choice) = ask::<_, _, usize>(input, out, &menu, |c| (1..=4).contains(c))? else { return Ok(()) };
        match choice {
            1 => {
                let list = params
                    .iter()
                    .enumerate()
                    .map(|(i, p)| format!("{}) {}", i + 1, p.label()))
                    .collect::<Vec<_>>()
                    .join("\n");
                let Some(k) = ask::<_, _, usize>(input, out, &format!("{list}\nhyperparameter: "), |k| {
                    (1..=params.len()).contains(k)
                })?
                else {
                    return Ok(());
                };
                let param = params[k - 1];
                let Some(v) = ask::<_, _, usize>(input, out, &format!("new value of {}: ", param.label()), |v| *v > 0)?
                else {
                    return Ok(());
                };
                // A value the model rejects is reported and the menu goes on.
                match ex.vary(param, v) {
                    Ok(o) => writeln!(
                        out,
                        "{} = {v}: loss {:.6} val_loss {:.6} ({:.1}s)",
                        param.label(),
                        o.last.loss,
                        o.last.val_loss,
                        o.train_seconds
                    )
                    .map_err(io)?,
                    Err(e) if e.exit_code() == 2 => writeln!(out, "error: {e}").map_err(io)?,
                    Err(e) => return Err(e),
                }
            }
            2 => {
                let files = ex.graphs()?;
                if files.is_empty() {
                    writeln!(out, "no graphs yet: vary a hyperparameter first (1)").map_err(io)?;
                }
                for f in files {
                    writeln!(out, "graph {}", f.display()).map_err(io)?;
                }
            }
            3 => {
                let last = ex.last.clone().expect("the base run is trained first");
                match network {
                    Network::Autoencoder => {
                        let models = ex.dir.join("models");
                        export::export(&ExportJob {
                            run: last.run.clone(),
                            out: models.clone(),
                            quiet: true,
                            images: Some(ex.files.images.clone()),
                            verify_count: EXPORT_CHECK_IMAGES,
                            encoder: EncoderSource::Autoencoder,
                            epoch: Epoch::Best,
                            int8: None,
                            layout: Layout::Flat,
                        })?;
                        writeln!(
                            out,
                            "saved {} and {}",
                            models.join("autoencoder.onnx").display(),
                            models.join("encoder.onnx").display()
                        )
                        .map_err(io)?;
                    }
                    Network::Classifier => {
                        let report: PathBuf = last.run.join("test_report.txt");
                        match std::fs::read_to_string(&report) {
                            Ok(text) => {
                                writeln!(out, "{text}").map_err(io)?;
                                writeln!(
                                    out,
                                    "images {} and {}",
                                    last.run.join("correct.png").display(),
                                    last.run.join("incorrect.png").display()
                                )
                                .map_err(io)?;
                            }
                            Err(_) => {
                                writeln!(out, "no test data: pass --test-images and --test-labels").map_err(io)?
                            }
                        }
                    }
                }
            }
            _ => return Ok(()),
        }
    }
}
