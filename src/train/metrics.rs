//! Plain-data metric history: what the plots draw and checkpoints keep.

use serde::{Deserialize, Serialize};

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
    pub report: crate::eval::EvalReport,
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
