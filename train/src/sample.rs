//! `--limit`'s sample of a data set.

use serde::{Deserialize, Serialize};

use crate::config::TrainSettings;
use crate::rng::Rng;

/// `--limit N`: a seeded sample of N images, stratified by class wherever
/// the classes are known (an image folder's sub-folders, an IDX labels
/// file), so a limit never drops a class — whatever order the files are
/// in. Each class keeps its share of N (largest remainders first, at least
/// one image each); without labels (an autoencoder's IDX file) the sample is
/// uniform. The kept images stay in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub n: usize,
    pub seed: u64,
}

impl Sample {
    /// The sample `settings` ask for (`None`: every image).
    pub fn of(settings: &TrainSettings) -> Option<Sample> {
        settings.limit.map(|n| Sample { n, seed: settings.seed })
    }

    /// Ascending indices of the kept images among `total` (`labels`: one
    /// class per image, for stratification). Fails when N is below the
    /// number of classes: some class would be dropped.
    pub fn indices(&self, total: usize, labels: Option<&[u8]>) -> Result<Vec<usize>, String> {
        if self.n >= total {
            return Ok((0..total).collect());
        }
        let mut rng = Rng::new(self.seed ^ 0x5A3D_1E5E);
        let Some(labels) = labels else {
            let mut keep = rng.permutation(total)[..self.n].to_vec();
            keep.sort_unstable();
            return Ok(keep);
        };
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            if members.len() <= l as usize {
                members.resize(l as usize + 1, Vec::new());
            }
            members[l as usize].push(i);
        }
        let present: Vec<usize> = (0..members.len()).filter(|&k| !members[k].is_empty()).collect();
        if self.n < present.len() {
            return Err(format!(
                "--limit {} is below the {} classes: a sample that small would drop classes",
                self.n,
                present.len()
            ));
        }
        // Quotas proportional to class sizes, largest remainders first,
        // then at least one image for every class (taken from the largest).
        let mut quota = vec![0usize; members.len()];
        let mut rest: Vec<(usize, usize)> = Vec::new();
        for &k in &present {
            let exact = self.n * members[k].len();
            quota[k] = exact / total;
            rest.push((exact % total, k));
        }
        rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let short = self.n - quota.iter().sum::<usize>();
        for &(_, k) in rest.iter().take(short) {
            quota[k] += 1;
        }
        for &k in &present {
            if quota[k] == 0 {
                let big = (0..quota.len()).max_by_key(|&j| (quota[j], std::cmp::Reverse(j))).expect("classes");
                quota[big] -= 1;
                quota[k] = 1;
            }
        }
        let mut keep = Vec::with_capacity(self.n);
        for &k in &present {
            let perm = rng.permutation(members[k].len());
            keep.extend(perm[..quota[k]].iter().map(|&j| members[k][j]));
        }
        keep.sort_unstable();
        Ok(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::Sample;

    /// Classes of 5, 3 and 2 images (interleaved, as a file may hold
    /// them), five kept: exact shares 2.5, 1.5 and 1; the one image left
    /// after the whole parts goes to the larger remainder, and of the tied
    /// remainders (0.5 and 0.5) to the lower class: 3, 1, 1.
    #[test]
    fn uneven_remainders_and_ties_keep_the_largest_remainder_rule() {
        let labels: Vec<u8> = vec![0, 1, 0, 2, 0, 1, 0, 2, 1, 0];
        for seed in 0..20 {
            let keep = Sample { n: 5, seed }.indices(labels.len(), Some(&labels)).unwrap();
            assert!(keep.windows(2).all(|w| w[0] < w[1]), "ascending, each once: {keep:?}");
            let count = |k: u8| keep.iter().filter(|&&i| labels[i] == k).count();
            assert_eq!((count(0), count(1), count(2)), (3, 1, 1), "seed {seed}: {keep:?}");
        }
        // The seed decides which images of a class are kept, not how many.
        let draws: std::collections::BTreeSet<Vec<usize>> =
            (0..20).map(|seed| Sample { n: 5, seed }.indices(labels.len(), Some(&labels)).unwrap()).collect();
        assert!(draws.len() > 5, "20 seeds drew only {} samples", draws.len());
        // Three images: one per class; two would drop a class, and are refused.
        let keep = Sample { n: 3, seed: 1 }.indices(labels.len(), Some(&labels)).unwrap();
        assert_eq!(keep.iter().map(|&i| labels[i]).collect::<std::collections::BTreeSet<_>>().len(), 3);
        assert!(Sample { n: 2, seed: 1 }.indices(labels.len(), Some(&labels)).is_err());
    }
}
