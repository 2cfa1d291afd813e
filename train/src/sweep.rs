//! `train sweep`: every listed value of each varied hyperparameter around
//! the base, then the graphs and the results table.

use crate::error::TrainError;
use crate::explorer::{Explorer, Param, Plan};
use crate::table;

/// A sweep: the exploration and the values to try, per hyperparameter.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    pub explore: Plan,
    /// Hyperparameters with the values given for them (empty lists ignored).
    pub varied: Vec<(Param, Vec<usize>)>,
}

pub fn run(plan: SweepPlan) -> Result<(), TrainError> {
    let quiet = plan.explore.quiet;
    let mut ex = Explorer::new(plan.explore)?;
    let network = ex.network();
    let varied: Vec<(Param, Vec<usize>)> = plan.varied.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    if let Some((p, _)) = varied.iter().find(|(p, _)| !Param::of(network).contains(p)) {
        return Err(TrainError::Invalid(format!("a {network} sweep cannot vary {}", p.label()).to_lowercase()));
    }
    if varied.is_empty() {
        return Err(TrainError::Invalid(
            "nothing to sweep: give at least one list of values, e.g. --layers 3,4,5".into(),
        ));
    }
    for (param, values) in varied {
        for v in values {
            if !quiet {
                println!("== {} = {v}", param.label());
            }
            ex.vary(param, v)?;
        }
    }
    for f in ex.graphs()? {
        println!("graph {}", f.display());
    }
    println!("table {}", ex.dir.join(table::name(network)).display());
    Ok(())
}
