//! The VAE step over plain buffers: the same loss as `model::vae_objective`'s step (Bernoulli NLL
//! summed over pixels + β·KL, both averaged over the batch), over any [`Encoder`] / [`Decoder`]
//! pair a family composes from the layers of this module (the MLP VAE's in `model/vae.rs`, the
//! conv-VAE's in `model/conv_vae.rs`).

use super::math::{self, LANES};
use super::{adam_record_bytes_of, fill_normal, Act, AdamHyper, Dense, ParamBuf};
use crate::data::SplitMix64;
use crate::error::TrainError;

/// Layers with parameters, for the optimiser record and Adam.
pub trait Params {
    fn params(&self) -> Vec<&ParamBuf>;
    fn params_mut(&mut self) -> Vec<&mut ParamBuf>;
}

/// The layers from the image to the latent heads' input. Keeps its activations.
pub trait Encoder: Params + Clone {
    fn forward(&mut self, x: &[f32], rows: usize);
    /// The last forward pass's output (`x` itself without layers).
    fn output<'a>(&'a self, x: &'a [f32]) -> &'a [f32];
    /// From `dy`, the gradient w.r.t. the output (used as scratch): parameter gradients set.
    fn backward(&mut self, x: &[f32], rows: usize, dy: &mut Vec<f32>);
}

/// The layers from the latent to the logits. Keeps its activations.
pub trait Decoder: Params + Clone {
    fn forward(&mut self, z: &[f32], rows: usize, logits: &mut Vec<f32>);
    /// From the gradient w.r.t. the logits: parameter gradients set, the gradient w.r.t. `z`
    /// into `dz`.
    fn backward(&mut self, z: &[f32], rows: usize, dlogits: &[f32], dz: &mut Vec<f32>);
}

/// A VAE with its Adam state, trained without burn's autodiff.
#[derive(Clone)]
pub struct FusedVae<E, D> {
    pub(crate) enc: E,
    pub(crate) mu: Dense,
    pub(crate) logvar: Dense,
    pub(crate) dec: D,
    rng: SplitMix64,
    work: Work,
}

/// Activations and gradients of one step, kept between steps to avoid allocation.
#[derive(Default)]
struct Work {
    mu: Vec<f32>,
    lv: Vec<f32>,
    eps: Vec<f32>,
    std: Vec<f32>,
    z: Vec<f32>,
    logits: Vec<f32>,
    dz: Vec<f32>,
    dh: Vec<f32>,
    dmu: Vec<f32>,
    dlv: Vec<f32>,
}

impl Clone for Work {
    /// Scratch space is not state: a copy starts empty.
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// `Clone` for buffers that are not state (activations, gradients, scratch): a copy starts
/// empty.
macro_rules! clone_empty {
    ($($t:ty),*) => {
        $(impl Clone for $t {
            fn clone(&self) -> Self {
                Self::default()
            }
        })*
    };
}
pub(crate) use clone_empty;

pub fn dense_params<'a>(layers: impl IntoIterator<Item = &'a Dense>) -> Vec<&'a ParamBuf> {
    layers.into_iter().flat_map(Dense::params).collect()
}

pub fn dense_params_mut<'a>(
    layers: impl IntoIterator<Item = &'a mut Dense>,
) -> Vec<&'a mut ParamBuf> {
    layers.into_iter().flat_map(Dense::params_mut).collect()
}

impl<E: Encoder, D: Decoder> FusedVae<E, D> {
    pub(crate) fn from_parts(enc: E, mu: Dense, logvar: Dense, dec: D, seed: u64) -> Self {
        Self {
            enc,
            mu,
            logvar,
            dec,
            rng: SplitMix64::new(seed),
            work: Work::default(),
        }
    }

    /// The Adam state as burn optimiser-record bytes.
    pub fn optim_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let heads = [&self.mu, &self.logvar];
        adam_record_bytes_of(
            heads,
            self.enc.params().into_iter().chain(self.dec.params()),
        )
    }

    /// Restart the noise stream (after a rollback, so that the same steps are not replayed).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = SplitMix64::new(seed);
    }

    /// One step on `x` (`rows` images in [0, 1]) with fresh noise; returns
    /// `[loss, recon, kl]` of the batch before the update.
    pub fn step(&mut self, x: &[f32], rows: usize, lr: f32, beta: f32, h: AdamHyper) -> [f32; 3] {
        let latent = self.mu.out;
        let mut eps = std::mem::take(&mut self.work.eps);
        fill_normal(&mut self.rng, &mut eps, rows * latent);
        let terms = self.step_with_noise(x, rows, &eps, lr, beta, h);
        self.work.eps = eps;
        terms
    }

    /// [`FusedVae::step`] with given noise `eps` (`rows × latent`).
    pub fn step_with_noise(
        &mut self,
        x: &[f32],
        rows: usize,
        eps: &[f32],
        lr: f32,
        beta: f32,
        h: AdamHyper,
    ) -> [f32; 3] {
        let latent = self.mu.out;
        assert_eq!(x.len() % rows.max(1), 0, "batch size");
        assert_eq!(eps.len(), rows * latent, "noise size");
        let inv_b = 1.0 / rows as f32;
        let w = &mut self.work;

        // Encoder → (mu, logvar) → z = mu + eps·σ.
        self.enc.forward(x, rows);
        let h_enc = self.enc.output(x);
        self.mu.forward(h_enc, rows, &mut w.mu, Act::Identity);
        self.logvar.forward(h_enc, rows, &mut w.lv, Act::Identity);
        w.std.resize(rows * latent, 0.0);
        w.z.resize(rows * latent, 0.0);
        let mut kl = 0.0f64;
        for ((((&mu, &lv), &e), s), z) in
            w.mu.iter()
                .zip(&w.lv)
                .zip(eps)
                .zip(&mut w.std)
                .zip(&mut w.z)
        {
            *s = math::exp(0.5 * lv);
            *z = mu + e * *s;
            kl += (0.5 * (mu * mu + *s * *s - lv - 1.0)) as f64;
        }

        // Decoder → logits; loss and d(loss)/d(logits) in one pass; back to z.
        self.dec.forward(&w.z, rows, &mut w.logits);
        assert_eq!(w.logits.len(), x.len(), "image size");
        let recon = bernoulli_loss_and_grad(&mut w.logits, x, inv_b);
        self.dec.backward(&w.z, rows, &w.logits, &mut w.dz);

        // dz → d mu, d logvar (reparameterisation and β·KL).
        let dz = &w.dz;
        w.dmu.resize(rows * latent, 0.0);
        w.dlv.resize(rows * latent, 0.0);
        let kb = beta * inv_b;
        for i in 0..rows * latent {
            let s = w.std[i];
            w.dmu[i] = dz[i] + kb * w.mu[i];
            w.dlv[i] = 0.5 * (dz[i] * eps[i] * s + kb * (s * s - 1.0));
        }
        // Back through the heads into the encoder.
        let h_enc = self.enc.output(x);
        self.mu
            .backward(h_enc, rows, &w.dmu, Some(false), Some((&mut w.dh, false)));
        self.logvar
            .backward(h_enc, rows, &w.dlv, Some(false), Some((&mut w.dh, true)));
        self.enc.backward(x, rows, &mut w.dh);

        for p in self.enc.params_mut() {
            p.adam(lr, h);
        }
        self.mu.adam(lr, h);
        self.logvar.adam(lr, h);
        for p in self.dec.params_mut() {
            p.adam(lr, h);
        }

        let recon = (recon * inv_b as f64) as f32;
        let kl = (kl * inv_b as f64) as f32;
        [recon + beta * kl, recon, kl]
    }
}

/// Bernoulli NLL of `x` under `logits`, summed: `Σ (1 − x)·l − log σ(l)` (burn's form, with
/// `−log σ(l) = max(−l, 0) + ln(1 + e^{−|l|})` exact). Replaces each logit by the gradient of
/// the batch-mean loss, `(σ(l) − x) / rows`.
fn bernoulli_loss_and_grad(logits: &mut [f32], x: &[f32], inv_b: f32) -> f64 {
    #[inline(always)]
    fn one(l: &mut f32, x: f32, inv_b: f32) -> f32 {
        let (sig, lg) = math::sigmoid_log1p(*l);
        let nll = (1.0 - x) * *l + (-*l).max(0.0) + lg;
        *l = (sig - x) * inv_b;
        nll
    }
    let mut lc = logits.chunks_exact_mut(LANES);
    let mut xc = x.chunks_exact(LANES);
    let mut acc = [0.0f32; LANES];
    for (l, x) in (&mut lc).zip(&mut xc) {
        for k in 0..LANES {
            acc[k] += one(&mut l[k], x[k], inv_b);
        }
    }
    let mut total: f64 = acc.iter().map(|&a| a as f64).sum();
    for (l, &x) in lc.into_remainder().iter_mut().zip(xc.remainder()) {
        total += one(l, x, inv_b) as f64;
    }
    total
}
