//! The VAE step over plain buffers: the same loss as `model::vae_objective`'s step (Bernoulli NLL
//! summed over pixels + β·KL, both averaged over the batch), for the MLP VAE and the
//! conv-VAE (one step, two pairs of [`Encoder`] / [`Decoder`]).

use super::conv::{ConvLayer, ConvScratch, Epilogue};
use super::math::{self, LANES};
use super::{
    adam_record_bytes_of, backward_chain, fill_normal, forward_chain, Act, AdamHyper, Dense,
    ParamBuf,
};
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

/// The MLP VAE on the fused path.
pub type FusedMlpVae = FusedVae<MlpEncoder, MlpDecoder>;
/// The conv-VAE on the fused path.
pub type FusedConvVae = FusedVae<ConvEncoder, ConvDecoder>;

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

/// The MLP VAE's encoder: dense layers, each followed by ReLU.
#[derive(Clone)]
pub struct MlpEncoder {
    pub(crate) layers: Vec<Dense>,
    /// The activation after each layer.
    pub(crate) act: Act,
    pub(crate) buf: MlpBufs,
}

/// The MLP VAE's decoder: dense layers with ReLU, then the logits layer.
#[derive(Clone)]
pub struct MlpDecoder {
    pub(crate) layers: Vec<Dense>,
    /// The activation after each hidden layer.
    pub(crate) act: Act,
    pub(crate) out: Dense,
    pub(crate) buf: MlpBufs,
}

#[derive(Default)]
pub(crate) struct MlpBufs {
    pub(crate) acts: Vec<Vec<f32>>,
    pub(crate) d: Vec<f32>,
    pub(crate) scratch: Vec<f32>,
}

fn dense_params<'a>(layers: impl IntoIterator<Item = &'a Dense>) -> Vec<&'a ParamBuf> {
    layers.into_iter().flat_map(Dense::params).collect()
}

fn dense_params_mut<'a>(layers: impl IntoIterator<Item = &'a mut Dense>) -> Vec<&'a mut ParamBuf> {
    layers.into_iter().flat_map(Dense::params_mut).collect()
}

impl Params for MlpEncoder {
    fn params(&self) -> Vec<&ParamBuf> {
        dense_params(&self.layers)
    }
    fn params_mut(&mut self) -> Vec<&mut ParamBuf> {
        dense_params_mut(&mut self.layers)
    }
}

impl Encoder for MlpEncoder {
    fn forward(&mut self, x: &[f32], rows: usize) {
        forward_chain(&self.layers, x, rows, &mut self.buf.acts, self.act);
    }
    fn output<'a>(&'a self, x: &'a [f32]) -> &'a [f32] {
        self.buf.acts.last().map_or(x, |v| v)
    }
    fn backward(&mut self, x: &[f32], rows: usize, dy: &mut Vec<f32>) {
        let (b, act) = (&mut self.buf, self.act);
        let layers = &mut self.layers;
        backward_chain(
            layers,
            x,
            rows,
            &b.acts,
            act,
            dy,
            &mut b.scratch,
            true,
            false,
        );
    }
}

impl Params for MlpDecoder {
    fn params(&self) -> Vec<&ParamBuf> {
        dense_params(self.layers.iter().chain([&self.out]))
    }
    fn params_mut(&mut self) -> Vec<&mut ParamBuf> {
        dense_params_mut(self.layers.iter_mut().chain([&mut self.out]))
    }
}

impl Decoder for MlpDecoder {
    fn forward(&mut self, z: &[f32], rows: usize, logits: &mut Vec<f32>) {
        forward_chain(&self.layers, z, rows, &mut self.buf.acts, self.act);
        let h: &[f32] = self.buf.acts.last().map_or(z, |v| v);
        self.out.forward(h, rows, logits, Act::Identity);
    }
    fn backward(&mut self, z: &[f32], rows: usize, dlogits: &[f32], dz: &mut Vec<f32>) {
        let (b, act) = (&mut self.buf, self.act);
        let h: &[f32] = b.acts.last().map_or(z, |v| v);
        let d = &mut b.d;
        self.out
            .backward(h, rows, dlogits, Some(false), Some((&mut *d, false)));
        let layers = &mut self.layers;
        backward_chain(layers, z, rows, &b.acts, act, d, &mut b.scratch, true, true);
        dz.clear();
        dz.extend_from_slice(d);
    }
}

/// The conv-VAE's encoder: conv → ReLU → conv → ReLU → dense → ReLU.
#[derive(Clone)]
pub struct ConvEncoder {
    pub(crate) c1: ConvLayer,
    pub(crate) c2: ConvLayer,
    pub(crate) fc: Dense,
    pub(crate) buf: ConvEncoderBufs,
}

#[derive(Default)]
pub(crate) struct ConvEncoderBufs {
    pub(crate) a1: Vec<f32>,
    pub(crate) a2: Vec<f32>,
    pub(crate) h: Vec<f32>,
    pub(crate) cc1: ConvScratch,
    pub(crate) cc2: ConvScratch,
    pub(crate) d2: Vec<f32>,
    pub(crate) d1: Vec<f32>,
}

/// The conv-VAE's decoder: dense → ReLU → dense → ReLU → transposed conv → ReLU →
/// transposed conv (the logits).
#[derive(Clone)]
pub struct ConvDecoder {
    pub(crate) fc1: Dense,
    pub(crate) fc2: Dense,
    pub(crate) t1: ConvLayer,
    pub(crate) t2: ConvLayer,
    pub(crate) buf: ConvDecoderBufs,
}

#[derive(Default)]
pub(crate) struct ConvDecoderBufs {
    pub(crate) h1: Vec<f32>,
    pub(crate) h2: Vec<f32>,
    pub(crate) n1: Vec<f32>,
    pub(crate) ct1: ConvScratch,
    pub(crate) ct2: ConvScratch,
    pub(crate) e1: Vec<f32>,
    pub(crate) e2: Vec<f32>,
    pub(crate) e3: Vec<f32>,
}

clone_empty!(MlpBufs, ConvEncoderBufs, ConvDecoderBufs);

impl Params for ConvEncoder {
    fn params(&self) -> Vec<&ParamBuf> {
        let convs = self.c1.params().into_iter().chain(self.c2.params());
        convs.chain(self.fc.params()).collect()
    }
    fn params_mut(&mut self) -> Vec<&mut ParamBuf> {
        let convs = self.c1.params_mut().into_iter().chain(self.c2.params_mut());
        convs.chain(self.fc.params_mut()).collect()
    }
}

impl Encoder for ConvEncoder {
    fn forward(&mut self, x: &[f32], rows: usize) {
        let (relu, b) = (Act::Relu, &mut self.buf);
        self.c1.forward(x, rows, relu, &mut b.a1, &mut b.cc1, true);
        self.c2
            .forward(&b.a1, rows, relu, &mut b.a2, &mut b.cc2, true);
        self.fc.forward(&b.a2, rows, &mut b.h, relu);
    }
    fn output<'a>(&'a self, _: &'a [f32]) -> &'a [f32] {
        &self.buf.h
    }
    fn backward(&mut self, _: &[f32], rows: usize, dy: &mut Vec<f32>) {
        let b = &mut self.buf;
        Act::Relu.backward(&b.h, dy);
        self.fc
            .backward(&b.a2, rows, dy, Some(false), Some((&mut b.d2, false)));
        Act::Relu.backward(&b.a2, &mut b.d2);
        let dx = Some((&mut b.d1, Epilogue::ActGrad(Act::Relu, &b.a1)));
        self.c2.backward(rows, &b.d2, true, dx, &mut b.cc2);
        self.c1.backward(rows, &b.d1, true, None, &mut b.cc1);
    }
}

impl Params for ConvDecoder {
    fn params(&self) -> Vec<&ParamBuf> {
        let dense = self.fc1.params().into_iter().chain(self.fc2.params());
        dense
            .chain(self.t1.params())
            .chain(self.t2.params())
            .collect()
    }
    fn params_mut(&mut self) -> Vec<&mut ParamBuf> {
        let dense = self
            .fc1
            .params_mut()
            .into_iter()
            .chain(self.fc2.params_mut());
        dense
            .chain(self.t1.params_mut())
            .chain(self.t2.params_mut())
            .collect()
    }
}

impl Decoder for ConvDecoder {
    fn forward(&mut self, z: &[f32], rows: usize, logits: &mut Vec<f32>) {
        let (relu, b) = (Act::Relu, &mut self.buf);
        self.fc1.forward(z, rows, &mut b.h1, relu);
        self.fc2.forward(&b.h1, rows, &mut b.h2, relu);
        self.t1.t_forward(&b.h2, rows, relu, &mut b.n1, &mut b.ct1);
        self.t2
            .t_forward(&b.n1, rows, Act::Identity, logits, &mut b.ct2);
    }
    fn backward(&mut self, z: &[f32], rows: usize, dlogits: &[f32], dz: &mut Vec<f32>) {
        let b = &mut self.buf;
        let dx = Some((&mut b.e1, Act::Relu));
        self.t2.t_backward(&b.n1, rows, dlogits, dx, &mut b.ct2);
        let dx = Some((&mut b.e2, Act::Relu));
        self.t1.t_backward(&b.h2, rows, &b.e1, dx, &mut b.ct1);
        self.fc2
            .backward(&b.h1, rows, &b.e2, Some(false), Some((&mut b.e3, false)));
        Act::Relu.backward(&b.h1, &mut b.e3);
        self.fc1
            .backward(z, rows, &b.e3, Some(false), Some((dz, false)));
    }
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
