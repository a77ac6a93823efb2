//! Test-set metrics.
//!
//! VAE: negative ELBO in nats (mean over images; one reparameterised sample per image),
//! its reconstruction and KL parts, KL per latent dimension, active units
//! (Burda et al.: variance over the test set of the encoder mean > 0.01) and the
//! importance-weighted bound on −log p(x) with K samples (IWAE, Burda et al. 2016).
//! GAN: discriminator and generator losses, mean D(x) and mean D(G(z)).

use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::Distribution;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::model::{DiscNet, GenNet, VaeNet};
use crate::train::losses::{bce_logits_const, bce_logits_per_image, kl_per_dim};
use crate::train::{images_to_tensor, read_f32, PixelRange, TrainError};

/// Images per evaluation batch.
const EVAL_BATCH: usize = 250;

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
                .all(|v| v.is_finite()),
        }
    }

    /// The number plotted per epoch: negative ELBO (VAE) or D loss (GAN).
    pub fn headline(&self) -> f64 {
        match self {
            EvalReport::Vae(r) => r.neg_elbo,
            EvalReport::Gan(r) => r.d_loss,
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
    pub d_real: f64,
    pub d_fake: f64,
    pub images: usize,
}

/// Evaluate a VAE (pass an inference copy, `model.valid()`) on images `idx` of `data`.
pub fn eval_vae(
    model: &VaeNet,
    data: &Dataset,
    idx: &[usize],
    iw_samples: usize,
    device: &Device,
) -> Result<VaeReport, TrainError> {
    if idx.is_empty() {
        return Err(TrainError::Invalid("no test images to evaluate".into()));
    }
    let mut buf = Vec::new();
    let (mut recon_sum, mut iwae_sum) = (0.0f64, 0.0f64);
    let mut kl_sum: Vec<f64> = Vec::new();
    let mut mu_sum: Vec<f64> = Vec::new();
    let mut mu_sq_sum: Vec<f64> = Vec::new();
    for chunk in idx.chunks(EVAL_BATCH) {
        let x = images_to_tensor(data, chunk, &mut buf, device, PixelRange::Unit);
        let (mu, logvar) = model.encode(x.clone());
        let std = logvar.clone().mul_scalar(0.5).exp();
        let eps = std.random_like(Distribution::Normal(0.0, 1.0));
        let logits = model.decode_logits(mu.clone() + eps * std);
        let recon = bce_logits_per_image(logits, x.clone()).sum();
        let kl = kl_per_dim(mu.clone(), logvar.clone()).sum_dim(0);
        let mu_s = mu.clone().sum_dim(0);
        let mu_sq = mu.clone().powi_scalar(2).sum_dim(0);
        recon_sum += read_f32(recon)?[0] as f64;
        accumulate(&mut kl_sum, &read_f32(kl)?);
        accumulate(&mut mu_sum, &read_f32(mu_s)?);
        accumulate(&mut mu_sq_sum, &read_f32(mu_sq)?);
        if iw_samples > 0 {
            let nll = iwae_nll_batch(model, x, mu, logvar, iw_samples);
            iwae_sum += read_f32(nll.sum())?[0] as f64;
        }
    }
    let n = idx.len() as f64;
    let kl_per_dim: Vec<f64> = kl_sum.iter().map(|k| k / n).collect();
    let kl: f64 = kl_per_dim.iter().sum();
    let recon = recon_sum / n;
    let active_units = mu_sum
        .iter()
        .zip(&mu_sq_sum)
        .filter(|(s, sq)| {
            let mean = *s / n;
            *sq / n - mean * mean > 0.01
        })
        .count();
    Ok(VaeReport {
        neg_elbo: recon + kl,
        recon,
        kl,
        kl_per_dim,
        active_units,
        iwae_nll: (iw_samples > 0).then_some(iwae_sum / n),
        iw_samples,
        images: idx.len(),
    })
}

fn accumulate(acc: &mut Vec<f64>, v: &[f32]) {
    if acc.is_empty() {
        acc.resize(v.len(), 0.0);
    }
    for (a, b) in acc.iter_mut().zip(v) {
        *a += *b as f64;
    }
}

/// −log p(x) ≈ −log (1/K Σ_k p(x|z_k) p(z_k) / q(z_k|x)), `[batch]`.
fn iwae_nll_batch(
    model: &VaeNet,
    x: Tensor<2>,
    mu: Tensor<2>,
    logvar: Tensor<2>,
    k: usize,
) -> Tensor<1> {
    let [b, _] = x.dims();
    // Rows are K copies of the batch: row r is image r % b.
    let x = x.repeat_dim(0, k);
    let mu = mu.repeat_dim(0, k);
    let logvar = logvar.repeat_dim(0, k);
    let std = logvar.clone().mul_scalar(0.5).exp();
    let eps = std.random_like(Distribution::Normal(0.0, 1.0));
    let z = mu + eps.clone() * std;
    let log_px_z = bce_logits_per_image(model.decode_logits(z.clone()), x).neg();
    // log p(z) − log q(z|x); the 2π terms cancel.
    let log_ratio = (eps.powi_scalar(2) + logvar - z.powi_scalar(2))
        .sum_dim(1)
        .squeeze_dim::<1>(1)
        .mul_scalar(0.5);
    let log_w: Tensor<2> = (log_px_z + log_ratio).reshape([k, b]);
    let m = log_w.clone().max_dim(0); // [1, b]
    let lse = (log_w - m.clone()).exp().sum_dim(0).log() + m; // [1, b]
    (lse.squeeze_dim::<1>(0) - (k as f64).ln()).neg()
}

/// Evaluate a GAN (inference copies) on images `idx` of `data`.
pub fn eval_gan(
    gen: &GenNet,
    disc: &DiscNet,
    latent: usize,
    data: &Dataset,
    idx: &[usize],
    device: &Device,
) -> Result<GanReport, TrainError> {
    if idx.is_empty() {
        return Err(TrainError::Invalid("no test images to evaluate".into()));
    }
    let mut buf = Vec::new();
    let mut sums = [0.0f64; 4];
    for chunk in idx.chunks(EVAL_BATCH) {
        let b = chunk.len();
        let x = images_to_tensor(data, chunk, &mut buf, device, PixelRange::Signed);
        let z = Tensor::<2>::random([b, latent], Distribution::Normal(0.0, 1.0), device);
        let real = disc.forward(x);
        let fake = disc.forward(gen.forward(z));
        let d_loss = bce_logits_const(real.clone(), true) + bce_logits_const(fake.clone(), false);
        let g_loss = bce_logits_const(fake.clone(), true);
        let d_real = sigmoid(real).mean();
        let d_fake = sigmoid(fake).mean();
        let all = Tensor::cat(vec![d_loss, g_loss, d_real, d_fake], 0);
        let v = read_f32(all)?;
        for (s, x) in sums.iter_mut().zip(v) {
            *s += x as f64 * b as f64;
        }
    }
    let n = idx.len() as f64;
    Ok(GanReport {
        d_loss: sums[0] / n,
        g_loss: sums[1] / n,
        d_real: sums[2] / n,
        d_fake: sums[3] / n,
        images: idx.len(),
    })
}
