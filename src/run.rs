//! Plain data describing a run: hyperparameters, the metric history the plots draw and
//! checkpoints keep, and test-metric reports. A leaf module: it depends on no other engine
//! module but the error types, so checkpoints, evaluation, training and the UI can all share it.

use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// A latent direction the user named — a principal direction or an attribute vector
/// (mean of one group of latents minus another's) — kept in the checkpoint with the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedDirection {
    pub name: String,
    /// `latent_dim` values; a slider moves the latent by α times this.
    pub vector: Vec<f32>,
    /// Where it came from (e.g. "principal direction 1 at step 1200, 31 % of variance").
    #[serde(default)]
    pub note: String,
}

/// One logged point: the mean of each loss term over the steps since the previous point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub step: u64,
    /// Fractional epoch, e.g. 2.5 halfway through the third epoch.
    pub epoch: f64,
    /// Values in the order of [`MetricsHistory::names`].
    pub values: Vec<f32>,
    pub images_per_sec: f32,
}

/// Test-set metrics at the end of an epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestPoint {
    pub step: u64,
    pub epoch: usize,
    /// Headline metric: negative ELBO (VAE) or discriminator loss (GAN).
    pub value: f64,
    pub report: EvalReport,
}

/// Something that happened at a step and belongs on the loss plot
/// (learning-rate change, β change, resume, divergence).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub step: u64,
    pub text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsHistory {
    /// Names of the loss terms, e.g. `["loss", "recon", "kl"]`.
    pub names: Vec<String>,
    pub points: Vec<MetricPoint>,
    pub test: Vec<TestPoint>,
    pub markers: Vec<Marker>,
}

impl MetricsHistory {
    pub fn new(names: &[&str]) -> Self {
        Self {
            names: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Series `term` as `[step, value]` pairs.
    pub fn series(&self, term: usize) -> Vec<[f64; 2]> {
        self.points
            .iter()
            .filter_map(|p| p.values.get(term).map(|v| [p.step as f64, *v as f64]))
            .collect()
    }

    /// `values` labelled with the term names, e.g. `loss 120.1  recon 98.0  kl 22.1`.
    pub fn format_terms(&self, values: &[f32], decimals: usize) -> String {
        self.names
            .iter()
            .zip(values)
            .map(|(n, v)| format!("{n} {v:.decimals$}"))
            .collect::<Vec<_>>()
            .join("  ")
    }

    /// Latest value of term `name`.
    pub fn last(&self, name: &str) -> Option<f32> {
        let i = self.names.iter().position(|n| n == name)?;
        self.points.last().and_then(|p| p.values.get(i).copied())
    }

    /// Drop everything logged after `step` (used when rolling back to good weights).
    pub fn truncate_after(&mut self, step: u64) {
        self.points.retain(|p| p.step <= step);
        self.test.retain(|p| p.step <= step);
    }
}

/// A family's optimiser settings and batch size ([`TrainConfig::with_defaults`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainDefaults {
    pub learning_rate: f64,
    pub adam_beta1: f64,
    pub batch_size: usize,
}

/// Hyperparameters of a run. Stored in checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Weight of the KL term (β-VAE); 1 is the plain VAE. Ignored by GANs.
    pub beta: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub seed: u64,
    /// Train until this many epochs are complete.
    pub epochs: usize,
    /// Read losses back from the device every this many steps (each read is a sync).
    pub log_every: u64,
    /// Emit a sample grid (and reconstructions) every this many steps.
    pub sample_every: u64,
    /// Importance samples for the IWAE bound at each epoch end (0 = skip).
    pub iw_samples: usize,
    /// KL warm-up (VAEs): β rises linearly from 0 to `beta` over this many steps, counted
    /// from step `kl_warmup_start` (0: off). A remedy for posterior collapse: the decoder
    /// learns to use the latents before the KL term pulls them to the prior.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kl_warmup_steps: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kl_warmup_start: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl TrainConfig {
    /// Defaults with a family's optimiser settings and batch size.
    pub fn with_defaults(d: TrainDefaults) -> Self {
        Self {
            batch_size: d.batch_size,
            learning_rate: d.learning_rate,
            beta: 1.0,
            adam_beta1: d.adam_beta1,
            adam_beta2: 0.999,
            seed: 0,
            epochs: 10,
            log_every: 10,
            sample_every: 200,
            iw_samples: 0,
            kl_warmup_steps: 0,
            kl_warmup_start: 0,
        }
    }

    /// β at optimiser step `step` (counting from 0): `beta`, scaled down during a KL
    /// warm-up.
    pub fn beta_at(&self, step: u64) -> f64 {
        if self.kl_warmup_steps == 0 || step < self.kl_warmup_start {
            return self.beta;
        }
        let done = (step - self.kl_warmup_start + 1) as f64 / self.kl_warmup_steps as f64;
        self.beta * done.min(1.0)
    }

    /// Whether a KL warm-up is still under way at `step`.
    pub fn warming_up(&self, step: u64) -> bool {
        self.kl_warmup_steps > 0
            && step >= self.kl_warmup_start
            && step - self.kl_warmup_start < self.kl_warmup_steps
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Invalid(m.to_string()));
        if self.batch_size == 0 || self.batch_size > 65_536 {
            return bad("batch size must be between 1 and 65536");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning rate must be a positive number");
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return bad("β must be a non-negative number");
        }
        if !(0.0..1.0).contains(&self.adam_beta1) || !(0.0..1.0).contains(&self.adam_beta2) {
            return bad("Adam betas must be in [0, 1)");
        }
        if self.log_every == 0 || self.sample_every == 0 {
            return bad("log and sample intervals must be at least 1 step");
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EvalReport {
    Vae(VaeReport),
    Gan(GanReport),
}

impl EvalReport {
    /// Every number is finite (JSON cannot carry NaN or infinity).
    pub fn is_finite(&self) -> bool {
        match self {
            EvalReport::Vae(r) => {
                [r.neg_elbo, r.recon, r.kl].iter().all(|v| v.is_finite())
                    && r.kl_per_dim.iter().all(|v| v.is_finite())
                    && r.iwae_nll.is_none_or(|v| v.is_finite())
            }
            EvalReport::Gan(r) => [r.d_loss, r.g_loss, r.d_real, r.d_fake]
                .iter()
                .chain(&r.critic_gap)
                .all(|v| v.is_finite()),
        }
    }

    /// The number plotted per epoch: negative ELBO (VAE), the critic gap (hinge GAN) or D
    /// loss (GAN).
    pub fn headline(&self) -> f64 {
        match self {
            EvalReport::Vae(r) => r.neg_elbo,
            EvalReport::Gan(r) => r.critic_gap.unwrap_or(r.d_loss),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeReport {
    pub neg_elbo: f64,
    pub recon: f64,
    pub kl: f64,
    pub kl_per_dim: Vec<f64>,
    pub active_units: usize,
    /// −log p(x) estimated with the IWAE bound; `None` when K = 0.
    pub iwae_nll: Option<f64>,
    pub iw_samples: usize,
    pub images: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GanReport {
    pub d_loss: f64,
    pub g_loss: f64,
    /// Mean D output on test images and on fakes: a probability (non-saturating loss) or a
    /// raw critic score (hinge loss).
    pub d_real: f64,
    pub d_fake: f64,
    /// `d_real − d_fake` of a critic (hinge loss); absent for the non-saturating loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critic_gap: Option<f64>,
    pub images: usize,
}
