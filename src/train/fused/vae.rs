//! The MLP VAE step over plain buffers: the same loss as `session::vae_step`
//! (Bernoulli NLL summed over pixels + β·KL, both averaged over the batch).

use burn::prelude::*;

use super::math::{self, LANES};
use super::{
    adam_record_bytes, backward_chain, fill_normal, forward_chain, Act, AdamHyper, AdamState, Dense,
};
use crate::data::SplitMix64;
use crate::model::MlpVae;
use crate::train::TrainError;

/// An MLP VAE with its Adam state, trained without burn's autodiff.
#[derive(Clone)]
pub struct FusedVae {
    enc: Vec<Dense>,
    mu: Dense,
    logvar: Dense,
    dec: Vec<Dense>,
    out: Dense,
    rng: SplitMix64,
    work: Work,
}

/// Activations and gradients of one step, kept between steps to avoid allocation.
#[derive(Default)]
struct Work {
    enc: Vec<Vec<f32>>,
    dec: Vec<Vec<f32>>,
    mu: Vec<f32>,
    lv: Vec<f32>,
    eps: Vec<f32>,
    std: Vec<f32>,
    z: Vec<f32>,
    logits: Vec<f32>,
    d1: Vec<f32>,
    d2: Vec<f32>,
    dmu: Vec<f32>,
    dlv: Vec<f32>,
}

impl Clone for Work {
    /// Scratch space is not state: a copy starts empty.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl FusedVae {
    /// Take over `model`'s weights and the Adam state in `optim_bytes` (burn's record).
    pub fn new(model: &MlpVae, optim_bytes: Vec<u8>, seed: u64) -> Result<Self, TrainError> {
        let mut state = AdamState::from_record_bytes(optim_bytes)?;
        let (enc, mu, logvar, dec, out) = model.parts();
        let chain = |ls: &[burn::nn::Linear], name: &str, state: &mut AdamState| {
            ls.iter()
                .enumerate()
                .map(|(i, l)| Dense::from_linear(l, format!("{name}.{i}"), state))
                .collect::<Result<Vec<_>, _>>()
        };
        let vae = Self {
            enc: chain(enc, "enc", &mut state)?,
            dec: chain(dec, "dec", &mut state)?,
            mu: Dense::from_linear(mu, "mu".into(), &mut state)?,
            logvar: Dense::from_linear(logvar, "logvar".into(), &mut state)?,
            out: Dense::from_linear(out, "out".into(), &mut state)?,
            rng: SplitMix64::new(seed),
            work: Work::default(),
        };
        state.finish()?;
        Ok(vae)
    }

    fn layers(&self) -> impl Iterator<Item = &Dense> {
        self.enc
            .iter()
            .chain([&self.mu, &self.logvar])
            .chain(&self.dec)
            .chain([&self.out])
    }

    /// burn's model with the current weights (same parameter ids), on `device`.
    pub fn model(&self, device: &Device) -> MlpVae {
        MlpVae::from_parts(
            self.enc.iter().map(|l| l.to_linear(device)).collect(),
            self.mu.to_linear(device),
            self.logvar.to_linear(device),
            self.dec.iter().map(|l| l.to_linear(device)).collect(),
            self.out.to_linear(device),
        )
    }

    /// The Adam state as burn optimiser-record bytes.
    pub fn optim_bytes(&self) -> Result<Vec<u8>, TrainError> {
        adam_record_bytes(self.layers())
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
        let pixels = self.out.out;
        let latent = self.mu.out;
        assert_eq!(x.len(), rows * pixels, "batch size");
        assert_eq!(eps.len(), rows * latent, "noise size");
        let inv_b = 1.0 / rows as f32;
        let w = &mut self.work;

        // Encoder → (mu, logvar) → z = mu + eps·σ.
        forward_chain(&self.enc, x, rows, &mut w.enc, Act::Relu);
        let h_enc: &[f32] = w.enc.last().map_or(x, |v| v);
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

        // Decoder → logits; loss and d(loss)/d(logits) in one pass.
        forward_chain(&self.dec, &w.z, rows, &mut w.dec, Act::Relu);
        let h_dec: &[f32] = w.dec.last().map_or(&w.z, |v| v);
        self.out.forward(h_dec, rows, &mut w.logits, Act::Identity);
        let recon = bernoulli_loss_and_grad(&mut w.logits, x, inv_b);

        // Back through the decoder to z.
        w.d1.clear();
        self.out.backward(
            h_dec,
            rows,
            &w.logits,
            Some(false),
            Some((&mut w.d1, false)),
        );
        backward_chain(
            &mut self.dec,
            &w.z,
            rows,
            &w.dec,
            Act::Relu,
            &mut w.d1,
            &mut w.d2,
            true,
            true,
        );
        // dz → d mu, d logvar (reparameterisation and β·KL).
        let dz = &w.d1;
        w.dmu.resize(rows * latent, 0.0);
        w.dlv.resize(rows * latent, 0.0);
        let kb = beta * inv_b;
        for i in 0..rows * latent {
            let s = w.std[i];
            w.dmu[i] = dz[i] + kb * w.mu[i];
            w.dlv[i] = 0.5 * (dz[i] * eps[i] * s + kb * (s * s - 1.0));
        }
        // Back through the heads into the encoder.
        self.mu
            .backward(h_enc, rows, &w.dmu, Some(false), Some((&mut w.d1, false)));
        self.logvar
            .backward(h_enc, rows, &w.dlv, Some(false), Some((&mut w.d1, true)));
        backward_chain(
            &mut self.enc,
            x,
            rows,
            &w.enc,
            Act::Relu,
            &mut w.d1,
            &mut w.d2,
            true,
            false,
        );

        for l in self
            .enc
            .iter_mut()
            .chain([&mut self.mu, &mut self.logvar])
            .chain(self.dec.iter_mut())
            .chain([&mut self.out])
        {
            l.adam(lr, h);
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
