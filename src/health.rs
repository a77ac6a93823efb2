//! Signs of posterior collapse in a VAE run's history, as plain data: per-dimension KL and
//! active units at each test evaluation, the training KL, and a warning when they fall.
//! The app's Latent health view draws it; it reads only [`MetricsHistory`].
//!
//! For any model, GANs above all: the **diversity** of the fixed-noise sample grid the run
//! draws every few hundred steps — the mean pixel distance between two of its samples,
//! divided by the same for real test images. Mode collapse makes samples alike, and the
//! ratio falls towards 0; it warns when the ratio is below 0.5 and below half its peak.
//!
//! When the VAE rules warn (each rule needs a real fall, so a run that never used its latent, or one
//! that is still warming up, is not called collapsing):
//! - **active units fell**: the latest test evaluation has at least `max(2, peak / 4)` fewer
//!   active units (KL > 0.01 nats) than the most seen in this run;
//! - **test KL heads to zero**: the latest test KL is below 10 % of its peak and below 2 nats,
//!   after a peak above 5 nats;
//! - **training KL heads to zero** (live, between test evaluations): the mean of the last 10
//!   logged KL values is below 10 % of the highest 10-point mean and below 2 nats, after a
//!   peak above 5 nats.

use crate::images::ImageBatch;
use crate::run::{EvalReport, MetricsHistory};

/// A VAE run's latent health over time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VaeHealth {
    /// Training step of each test evaluation.
    pub steps: Vec<u64>,
    /// KL per latent dimension (nats per image) at each test evaluation.
    pub kl_per_dim: Vec<Vec<f64>>,
    pub active_units: Vec<usize>,
    /// Total test KL at each evaluation.
    pub kl: Vec<f64>,
    /// `[step, KL]` of the logged training KL (empty when the objective has no `kl` term).
    pub train_kl: Vec<[f64; 2]>,
    /// Why this looks like posterior collapse, when it does.
    pub warning: Option<String>,
}

/// Points averaged for the live training-KL rule.
const WINDOW: usize = 10;

/// The health of the VAE whose history this is (`None` when it has no VAE test reports and
/// no `kl` term: a GAN).
pub fn vae_health(h: &MetricsHistory) -> Option<VaeHealth> {
    let mut out = VaeHealth::default();
    for t in &h.test {
        if let EvalReport::Vae(r) = &t.report {
            out.steps.push(t.step);
            out.kl_per_dim.push(r.kl_per_dim.clone());
            out.active_units.push(r.active_units);
            out.kl.push(r.kl);
        }
    }
    if let Some(term) = h.names.iter().position(|n| n == "kl") {
        out.train_kl = h.series(term);
    }
    if out.steps.is_empty() && out.train_kl.is_empty() {
        return None;
    }
    out.warning = warning(&out);
    Some(out)
}

/// The mean root-mean-square pixel distance between two different images of `batch` (all
/// pairs of its first 64).
pub fn diversity(batch: &ImageBatch) -> f64 {
    let p = batch.shape.numel();
    let n = batch.count().min(64);
    if n < 2 || p == 0 {
        return 0.0;
    }
    let img = |i: usize| &batch.pixels[i * p..(i + 1) * p];
    let mut sum = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            let d2: f64 = img(i)
                .iter()
                .zip(img(j))
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
            sum += (d2 / p as f64).sqrt();
        }
    }
    sum / (n * (n - 1) / 2) as f64
}

/// Label coverage of a sample grid: each sample takes the label of its nearest real image
/// (`real`, labelled `labels`; squared distance of the pixels), and the coverage is the
/// entropy of those labels over the entropy of the real images' own labels — 1 when the
/// samples spread over the classes as the data does, 0 when every sample is nearest to one
/// class. Pixel distance is fooled by noise (speckle is "diverse"); a noisy or collapsed
/// generator's samples all land near the same few real images, so this falls either way.
/// `None` without labels.
pub fn label_coverage(samples: &ImageBatch, real: &ImageBatch, labels: &[u32]) -> Option<f64> {
    let p = samples.shape.numel();
    let (n, m) = (samples.count(), real.count().min(labels.len()));
    if n == 0 || m < 2 || p == 0 || real.shape != samples.shape {
        return None;
    }
    let sq: Vec<f32> = (0..m)
        .map(|j| real.pixels[j * p..(j + 1) * p].iter().map(|v| v * v).sum())
        .collect();
    let mut picked = Vec::with_capacity(n);
    for i in 0..n {
        let x = &samples.pixels[i * p..(i + 1) * p];
        // argmin ‖x − r‖² = argmin ‖r‖² − 2 x·r
        let mut best = (f32::MAX, 0);
        for (j, (r, sq)) in real.pixels.chunks_exact(p).zip(&sq).enumerate() {
            let dot: f32 = x.iter().zip(r).map(|(a, b)| a * b).sum();
            let d = sq - 2.0 * dot;
            if d < best.0 {
                best = (d, j);
            }
        }
        picked.push(labels[best.1]);
    }
    let entropy = |ls: &[u32]| {
        let mut counts = std::collections::HashMap::new();
        for &l in ls {
            *counts.entry(l).or_insert(0usize) += 1;
        }
        let t = ls.len() as f64;
        counts
            .values()
            .map(|&c| {
                let q = c as f64 / t;
                -q * q.ln()
            })
            .sum::<f64>()
    };
    let real_h = entropy(&labels[..m]);
    (real_h > 0.0).then(|| (entropy(&picked) / real_h).min(1.0))
}

/// A mode-collapse warning from `[step, label coverage]` points ([`label_coverage`]): once
/// the samples covered the classes (a peak of at least 0.6; a young generator's noise
/// covers nothing), coverage fell below 0.5 and below 60 % of that peak.
pub fn collapse_of_coverage(points: &[[f64; 2]]) -> Option<String> {
    let peak = points.iter().map(|p| p[1]).fold(f64::MIN, f64::max);
    let &[step, now] = points.last()?;
    (peak >= 0.6 && now < 0.5 && now < 0.6 * peak).then(|| {
        format!(
            "mode collapse: the samples cover few classes — label coverage {now:.2} at step \
             {step} (peak {peak:.2}): most samples look like the same few real images"
        )
    })
}

/// A mode-collapse warning from `[step, diversity ratio]` points (samples' diversity over
/// the real images').
pub fn collapse_of_samples(ratios: &[[f64; 2]]) -> Option<String> {
    let peak = ratios.iter().map(|p| p[1]).fold(f64::MIN, f64::max);
    let &[step, now] = ratios.last()?;
    (now < 0.5 && now < 0.5 * peak).then(|| {
        format!(
            "mode collapse: the samples are alike — their diversity fell to {now:.2} of the \
             real images' (peak {peak:.2}) at step {step}"
        )
    })
}

fn warning(v: &VaeHealth) -> Option<String> {
    if let (Some(&peak), Some(&now)) = (v.active_units.iter().max(), v.active_units.last()) {
        if peak >= now + (peak / 4).max(2) {
            let at = v.steps.last().copied().unwrap_or(0);
            return Some(format!(
                "posterior collapse: active units fell from {peak} to {now} (test at step {at}) \
                 — dimensions stop carrying information"
            ));
        }
    }
    let falls = |peak: f64, now: f64| peak > 5.0 && now < 2.0 && now < 0.1 * peak;
    if let (Some(peak), Some(&now)) = (v.kl.iter().copied().reduce(f64::max), v.kl.last()) {
        if falls(peak, now) {
            return Some(format!(
                "posterior collapse: test KL fell to {now:.2} nats (peak {peak:.1}) — the \
                 decoder is learning to ignore the latent"
            ));
        }
    }
    if v.train_kl.len() >= 2 * WINDOW {
        let means: Vec<f64> = v
            .train_kl
            .windows(WINDOW)
            .map(|w| w.iter().map(|p| p[1]).sum::<f64>() / WINDOW as f64)
            .collect();
        let peak = means.iter().copied().fold(f64::MIN, f64::max);
        let now = means.last().copied().unwrap_or(peak);
        if falls(peak, now) {
            return Some(format!(
                "posterior collapse: training KL fell to {now:.2} nats (peak {peak:.1}) — \
                 the decoder is learning to ignore the latent"
            ));
        }
    }
    None
}

#[cfg(test)]
mod coverage_tests {
    use super::*;
    use crate::data::ImageShape;

    #[test]
    fn coverage_is_high_for_real_images_and_low_for_one_repeated() {
        // Ten classes, each a different pixel lit, with a little noise per image.
        let shape = ImageShape::new(1, 4, 4);
        let img = |class: usize, k: usize| {
            let mut v = vec![0.05 * (k % 3) as f32; 16];
            v[class] = 1.0;
            v
        };
        let labels: Vec<u32> = (0..200).map(|i| (i % 10) as u32).collect();
        let real = ImageBatch {
            shape,
            pixels: (0..200).flat_map(|i| img(i % 10, i)).collect(),
        };
        let varied = ImageBatch {
            shape,
            pixels: (0..64).flat_map(|i| img(i % 10, i + 1)).collect(),
        };
        let same = ImageBatch {
            shape,
            pixels: (0..64).flat_map(|i| img(3, i)).collect(),
        };
        let c = label_coverage(&varied, &real, &labels).unwrap();
        assert!(c > 0.95, "{c}");
        assert_eq!(label_coverage(&same, &real, &labels), Some(0.0));
        assert_eq!(label_coverage(&same, &real, &[]), None);
        let warn = collapse_of_coverage(&[[0.0, 0.9], [100.0, 0.95], [200.0, 0.2]]);
        assert!(warn.unwrap().contains("coverage 0.20 at step 200"));
        assert_eq!(
            collapse_of_coverage(&[[0.0, 0.1], [100.0, 0.3]]),
            None,
            "never covered: a young run"
        );
        assert_eq!(collapse_of_coverage(&[[0.0, 0.9], [100.0, 0.85]]), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{MetricPoint, TestPoint, VaeReport};

    fn test_point(step: u64, kl_per_dim: Vec<f64>) -> TestPoint {
        let kl: f64 = kl_per_dim.iter().sum();
        let active = kl_per_dim.iter().filter(|&&k| k > 0.01).count();
        TestPoint {
            step,
            epoch: step as usize / 100,
            value: 100.0 + kl,
            report: EvalReport::Vae(VaeReport {
                neg_elbo: 100.0 + kl,
                recon: 100.0,
                kl,
                kl_per_dim,
                active_units: active,
                iwae_nll: None,
                iw_samples: 0,
                images: 1000,
            }),
        }
    }

    fn history(kls: &[Vec<f64>], train_kl: &[f32]) -> MetricsHistory {
        let mut h = MetricsHistory::new(&["loss", "recon", "kl"]);
        for (i, k) in kls.iter().enumerate() {
            h.test.push(test_point(100 * (i as u64 + 1), k.clone()));
        }
        for (i, &k) in train_kl.iter().enumerate() {
            h.points.push(MetricPoint {
                step: 10 * i as u64,
                epoch: i as f64 / 10.0,
                values: vec![100.0 + k, 100.0, k],
                images_per_sec: 1000.0,
            });
        }
        h
    }

    #[test]
    fn a_healthy_run_is_quiet_and_a_collapsing_one_warns() {
        let healthy = vec![vec![2.0; 10], vec![2.2; 10], vec![2.1; 10]];
        let h = vae_health(&history(&healthy, &[20.0; 40])).unwrap();
        assert_eq!(h.warning, None);
        assert_eq!(h.active_units, vec![10, 10, 10]);
        assert_eq!(h.kl_per_dim.len(), 3);
        assert_eq!(h.train_kl.len(), 40);

        // Dimensions dying one evaluation after another.
        let mut dying = healthy.clone();
        dying.push([vec![2.0; 4], vec![0.0; 6]].concat());
        let w = vae_health(&history(&dying, &[])).unwrap().warning.unwrap();
        assert!(w.contains("active units fell from 10 to 4"), "{w}");

        // All dimensions still "active" but the total KL gone.
        let mut fading = healthy.clone();
        fading.push(vec![0.05; 10]);
        let w = vae_health(&history(&fading, &[])).unwrap().warning.unwrap();
        assert!(w.contains("test KL fell to 0.50"), "{w}");

        // Live: the logged training KL falls between evaluations.
        let mut train: Vec<f32> = vec![20.0; 30];
        train.extend(vec![0.3; 20]);
        let w = vae_health(&history(&healthy, &train))
            .unwrap()
            .warning
            .unwrap();
        assert!(w.contains("training KL fell to 0.30"), "{w}");
    }

    #[test]
    fn alike_samples_have_no_diversity_and_warn() {
        use crate::model::ImageShape;
        let shape = ImageShape::new(1, 4, 4);
        let varied: Vec<f32> = (0..8 * 16).map(|i| ((i * 37) % 11) as f32 / 10.0).collect();
        let d = diversity(&ImageBatch {
            shape,
            pixels: varied.clone(),
        });
        assert!(d > 0.1, "{d}");
        let same: Vec<f32> = varied[..16].repeat(8);
        assert_eq!(
            diversity(&ImageBatch {
                shape,
                pixels: same
            }),
            0.0
        );
        assert_eq!(
            collapse_of_samples(&[[200.0, 0.9], [400.0, 1.0], [600.0, 0.95]]),
            None
        );
        // Low from the start (an untrained generator) is not a fall.
        assert_eq!(collapse_of_samples(&[[200.0, 0.3]]), None);
        let w = collapse_of_samples(&[[200.0, 0.9], [400.0, 0.2]]).unwrap();
        assert!(w.contains("fell to 0.20") && w.contains("step 400"), "{w}");
    }

    #[test]
    fn no_false_alarms_at_the_start_or_without_a_latent_to_lose() {
        // KL that was never large (a tiny latent) and one unit lost are not a collapse.
        let small = vec![vec![0.3, 0.2, 0.0], vec![0.2, 0.0, 0.0]];
        assert_eq!(
            vae_health(&history(&small, &[1.0; 40])).unwrap().warning,
            None
        );
        // Rising KL at the start of training.
        let rising: Vec<f32> = (0..40).map(|i| i as f32).collect();
        assert_eq!(vae_health(&history(&[], &rising)).unwrap().warning, None);
        // A GAN's history: nothing to say.
        let gan = MetricsHistory::new(&["d_loss", "g_loss"]);
        assert_eq!(vae_health(&gan), None);
    }
}
