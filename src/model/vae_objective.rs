//! The VAE objective (Kingma & Welling 2014): a Bernoulli decoder, the negative ELBO with a
//! β-weighted KL term, shared by every VAE family. A family supplies its burn module
//! ([`VaeModule`]) and configuration ([`VaeArch`]); this file trains (burn's autodiff, or the
//! family's fast CPU path when it has one), evaluates, saves and decodes it.

use std::any::Any;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::Distribution;

use super::family::{
    fast_or_burn, ArchConfig, Batch, Capabilities, Nets, Objective, PlotGroup, SectionReader,
    StepTerms, Trainer, TrainerSetup,
};
use super::losses::{bce_logits_per_image, kl_per_dim};
use super::tensors::{
    assign_tensors, collect_tensors, deep_copy, gather_images, images_to_tensor, load_module,
    optim_bytes, read_f32, record_bytes, NamedTensor, PixelRange, TensorSource,
};
use super::{adam, adam_hyper};
use crate::cpu::{AdamHyper, PlainMlp};
use crate::data::Dataset;
use crate::error::{CheckpointError, TrainError};
use crate::run::{EvalReport, TrainConfig, VaeReport};

pub static VAE_OBJECTIVE: Objective = Objective {
    name: "vae",
    terms: &["loss", "recon", "kl"],
    plots: &[PlotGroup {
        title: "loss",
        terms: &["loss", "recon", "kl"],
    }],
    headline: "test −ELBO (nats)",
    pixels: PixelRange::Unit,
    capabilities: Capabilities {
        encoder: true,
        beta: true,
    },
    optim_sections: &["optim"],
};

/// Images per evaluation batch.
const EVAL_BATCH: usize = 250;

/// A VAE family's burn module: encoder to (mean, log-variance), decoder to Bernoulli logits.
///
/// A conditional family (Sohn et al. 2015) returns its class count from `classes` and
/// overrides `encode_with` / `decode_logits_with`: the objective then hands it each batch's
/// one-hot labels (`cond`, `[batch, classes]`), in training, evaluation and inference alike.
pub trait VaeModule: Module + Send + Sync + 'static {
    /// `x: [batch, pixels]` in [0, 1] → `(mu, logvar)`, each `[batch, latent]`.
    fn encode(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>);
    /// `z: [batch, latent]` → logits `[batch, pixels]`.
    fn decode_logits(&self, z: Tensor<2>) -> Tensor<2>;
    /// The number of classes the module is conditioned on; `None` (the default) for an
    /// unconditional VAE.
    fn classes(&self) -> Option<usize> {
        None
    }
    /// [`VaeModule::encode`] given the one-hot condition (conditional families).
    fn encode_with(&self, x: Tensor<2>, cond: Option<Tensor<2>>) -> (Tensor<2>, Tensor<2>) {
        let _ = cond;
        self.encode(x)
    }
    /// [`VaeModule::decode_logits`] given the one-hot condition (conditional families).
    fn decode_logits_with(&self, z: Tensor<2>, cond: Option<Tensor<2>>) -> Tensor<2> {
        let _ = cond;
        self.decode_logits(z)
    }
}

/// The one-hot condition of images `idx` of `data` for `model` ([`Batch::condition`]).
fn condition<M: VaeModule>(
    model: &M,
    data: &Dataset,
    idx: &[usize],
    device: &Device,
) -> Result<Option<Tensor<2>>, TrainError> {
    Batch { data, idx }.condition(model.classes(), device)
}

/// A VAE family's configuration: builds its module, and its fast CPU paths if it has them.
pub trait VaeArch: ArchConfig + Clone {
    type Module: VaeModule;
    fn init_module(&self, device: &Device) -> Self::Module;
    /// The fast CPU training path for `model` with the Adam state `optim` (burn's record),
    /// if the family has one.
    #[allow(clippy::type_complexity)]
    fn fused(
        &self,
        _model: &Self::Module,
        _optim: Vec<u8>,
        _seed: u64,
    ) -> Option<Result<Box<dyn FusedVaeNet<Self::Module>>, TrainError>> {
        None
    }
    /// A plain-Rust decoder for the slider path, if the family has one.
    fn fast_decoder(&self, _model: &Self::Module) -> Option<PlainMlp> {
        None
    }
}

/// A family's fast CPU VAE step: weights and Adam state in plain buffers ([`crate::cpu`]).
pub trait FusedVaeNet<M>: Send {
    /// One step on `x` (`rows` images in [0, 1]) with fresh noise; `[loss, recon, kl]`.
    fn step(&mut self, x: &[f32], rows: usize, lr: f32, beta: f32, h: AdamHyper) -> [f32; 3];
    fn reseed(&mut self, seed: u64);
    /// burn's module with the current weights (same parameter ids), on `device`.
    fn module(&self, device: &Device) -> M;
    /// The Adam state as burn optimiser-record bytes.
    fn optim_bytes(&self) -> Result<Vec<u8>, TrainError>;
    fn clone_box(&self) -> Box<dyn FusedVaeNet<M>>;
    /// For the backend line, e.g. `fused MLP training`.
    fn path(&self) -> &'static str;
}

/// A VAE's networks: its configuration and module.
#[derive(Clone, Debug)]
pub struct VaeNets<A: VaeArch> {
    pub arch: A,
    pub model: A::Module,
}

impl<A: VaeArch> VaeNets<A> {
    pub fn new(arch: A, model: A::Module) -> Self {
        Self { arch, model }
    }
}

impl<A: VaeArch> Nets for VaeNets<A> {
    fn objective(&self) -> &'static Objective {
        &VAE_OBJECTIVE
    }

    fn clone_box(&self) -> Box<dyn Nets> {
        Box::new(self.clone())
    }

    fn inference_copy(&self, device: &Device) -> Box<dyn Nets> {
        Box::new(Self::new(
            self.arch.clone(),
            self.model.valid().to_device(device),
        ))
    }

    fn decode(&self, z: Tensor<2>) -> Tensor<2> {
        sigmoid(self.model.decode_logits(z))
    }

    fn encode(&self, x: Tensor<2>) -> Option<(Tensor<2>, Tensor<2>)> {
        Some(self.model.encode(x))
    }

    fn classes(&self) -> Option<usize> {
        self.model.classes()
    }

    fn decode_with(&self, z: Tensor<2>, cond: Tensor<2>) -> Tensor<2> {
        sigmoid(self.model.decode_logits_with(z, Some(cond)))
    }

    fn encode_labelled(&self, x: Tensor<2>, labels: &[u32]) -> Option<(Tensor<2>, Tensor<2>)> {
        let cond = self
            .model
            .classes()
            .map(|k| super::tensors::one_hot(labels, k, &x.device()));
        Some(self.model.encode_with(x, cond))
    }

    fn save(&self) -> Result<Vec<(String, Vec<u8>)>, CheckpointError> {
        Ok(vec![("model".to_string(), record_bytes(&self.model)?)])
    }

    fn load(&self, sections: SectionReader<'_>) -> Result<Box<dyn Nets>, String> {
        let blob = sections("model").map_err(|e| e.to_string())?;
        let model = load_module(self.model.clone(), blob).map_err(|e| format!("model: {e}"))?;
        Ok(Box::new(Self::new(self.arch.clone(), model)))
    }

    fn evaluate(
        &self,
        data: &Dataset,
        idx: &[usize],
        iw_samples: usize,
        device: &Device,
    ) -> Result<EvalReport, TrainError> {
        Ok(EvalReport::Vae(eval_vae(
            &self.model,
            data,
            idx,
            iw_samples,
            device,
        )?))
    }

    fn named_tensors(&self) -> Result<Vec<NamedTensor>, String> {
        let mut out = Vec::new();
        collect_tensors(&self.model, "", &mut out)?;
        Ok(out)
    }

    fn with_named_tensors(&self, source: &mut TensorSource) -> Result<Box<dyn Nets>, String> {
        let model = assign_tensors(self.model.clone(), "", source)?;
        Ok(Box::new(Self::new(self.arch.clone(), model)))
    }

    fn fast_decoder(&self) -> Option<PlainMlp> {
        self.arch.fast_decoder(&self.model)
    }

    fn trainer(
        &self,
        setup: TrainerSetup<'_>,
    ) -> Result<(Box<dyn Trainer>, Option<String>), TrainError> {
        let optim = match setup.optims.and_then(|o| o.into_iter().next()) {
            Some(o) => o,
            None => adam(setup.config),
        };
        let device = setup.device.clone();
        let fast = setup.fused.then(|| {
            // An optimiser record the fast path cannot take leaves training on burn.
            let bytes = match optim_bytes(&optim) {
                Ok(b) => b,
                Err(e) => return Some(Err(e.into())),
            };
            let net = self.arch.fused(&self.model, bytes, setup.seed)?;
            Some(net.map(|net| {
                Box::new(FusedVaeTrainer {
                    arch: self.arch.clone(),
                    net,
                    device: device.clone(),
                }) as Box<dyn Trainer>
            }))
        });
        Ok(fast_or_burn(fast.flatten(), || {
            Box::new(BurnVaeTrainer {
                nets: self.clone(),
                optim,
                device: device.clone(),
            })
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Trains a VAE through burn's autodiff (a GPU, or the CPU without a fast path).
#[derive(Clone)]
struct BurnVaeTrainer<A: VaeArch> {
    nets: VaeNets<A>,
    optim: ModuleOptimizer,
    device: Device,
}

impl<A: VaeArch> Trainer for BurnVaeTrainer<A> {
    fn step(
        &mut self,
        batch: &Batch<'_>,
        config: &TrainConfig,
        buf: &mut Vec<f32>,
    ) -> Result<StepTerms, TrainError> {
        let x = images_to_tensor(batch.data, batch.idx, buf, &self.device, PixelRange::Unit);
        let cond = condition(&self.nets.model, batch.data, batch.idx, &self.device)?;
        let model = self.nets.model.clone();
        let (model, terms) = vae_step(
            model,
            &mut self.optim,
            (x, cond),
            config.learning_rate,
            config.beta,
        );
        self.nets.model = model;
        Ok(StepTerms::Device(Box::new(terms)))
    }

    fn nets(&self) -> Box<dyn Nets> {
        Box::new(self.nets.clone())
    }

    fn optim_bytes(&self) -> Result<Vec<Vec<u8>>, TrainError> {
        Ok(vec![optim_bytes(&self.optim)?])
    }

    fn snapshot(&self) -> Result<Box<dyn Trainer>, TrainError> {
        let fresh = || self.nets.arch.init_module(&self.device);
        Ok(Box::new(Self {
            nets: VaeNets::new(self.nets.arch.clone(), deep_copy(&self.nets.model, fresh)?),
            optim: self.optim.clone(),
            device: self.device.clone(),
        }))
    }

    fn reseed(&mut self, _seed: u64) {
        // burn's device RNG moves on by itself.
    }

    fn path(&self) -> Option<&'static str> {
        None
    }
}

/// Trains a VAE on the family's fast CPU path.
struct FusedVaeTrainer<A: VaeArch> {
    arch: A,
    net: Box<dyn FusedVaeNet<A::Module>>,
    device: Device,
}

impl<A: VaeArch> Trainer for FusedVaeTrainer<A> {
    fn step(
        &mut self,
        batch: &Batch<'_>,
        config: &TrainConfig,
        buf: &mut Vec<f32>,
    ) -> Result<StepTerms, TrainError> {
        gather_images(batch.data, batch.idx, buf, PixelRange::Unit);
        let terms = self.net.step(
            buf,
            batch.idx.len(),
            config.learning_rate as f32,
            config.beta as f32,
            adam_hyper(config),
        );
        Ok(StepTerms::Host(terms.to_vec()))
    }

    fn nets(&self) -> Box<dyn Nets> {
        Box::new(VaeNets::new(
            self.arch.clone(),
            self.net.module(&self.device),
        ))
    }

    fn optim_bytes(&self) -> Result<Vec<Vec<u8>>, TrainError> {
        Ok(vec![self.net.optim_bytes()?])
    }

    fn snapshot(&self) -> Result<Box<dyn Trainer>, TrainError> {
        Ok(Box::new(Self {
            arch: self.arch.clone(),
            net: self.net.clone_box(),
            device: self.device.clone(),
        }))
    }

    fn reseed(&mut self, seed: u64) {
        self.net.reseed(seed);
    }

    fn path(&self) -> Option<&'static str> {
        Some(self.net.path())
    }
}

/// One VAE step; returns the new model and the detached terms `[loss, recon, kl]`.
fn vae_step<M: VaeModule>(
    model: M,
    optim: &mut ModuleOptimizer,
    (x, cond): (Tensor<2>, Option<Tensor<2>>),
    lr: f64,
    beta: f64,
) -> (M, Tensor<1>) {
    let (mu, logvar) = model.encode_with(x.clone(), cond.clone()); // [b, latent] each
    let eps = mu.random_like(Distribution::Normal(0.0, 1.0));
    vae_step_with_noise(model, optim, (x, cond), (mu, logvar), eps, lr, beta)
}

/// [`vae_step`] after the encoder ran, with given noise `eps` `[b, latent]`.
pub(crate) fn vae_step_with_noise<M: VaeModule>(
    model: M,
    optim: &mut ModuleOptimizer,
    (x, cond): (Tensor<2>, Option<Tensor<2>>),
    (mu, logvar): (Tensor<2>, Tensor<2>),
    eps: Tensor<2>,
    lr: f64,
    beta: f64,
) -> (M, Tensor<1>) {
    let b = x.dims()[0] as f64;
    let std = logvar.clone().mul_scalar(0.5).exp();
    let logits = model.decode_logits_with(mu.clone() + eps * std, cond); // [b, pixels]
    let recon = bce_logits_per_image(logits, x).sum().div_scalar(b);
    let kl = kl_per_dim(mu, logvar).sum().div_scalar(b);
    let loss = recon.clone() + kl.clone().mul_scalar(beta);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = optim.step(lr, model, grads);
    let terms = Tensor::cat(vec![loss.detach(), recon.detach(), kl.detach()], 0);
    (model, terms)
}

/// Evaluate a VAE (pass an inference copy, `model.valid()`) on images `idx` of `data`.
pub fn eval_vae<M: VaeModule>(
    model: &M,
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
        let cond = condition(model, data, chunk, device)?;
        let (mu, logvar) = model.encode_with(x.clone(), cond.clone());
        let std = logvar.clone().mul_scalar(0.5).exp();
        let eps = std.random_like(Distribution::Normal(0.0, 1.0));
        let logits = model.decode_logits_with(mu.clone() + eps * std, cond.clone());
        let recon = bce_logits_per_image(logits, x.clone()).sum();
        let kl = kl_per_dim(mu.clone(), logvar.clone()).sum_dim(0);
        let mu_s = mu.clone().sum_dim(0);
        let mu_sq = mu.clone().powi_scalar(2).sum_dim(0);
        recon_sum += read_f32(recon)?[0] as f64;
        accumulate(&mut kl_sum, &read_f32(kl)?);
        accumulate(&mut mu_sum, &read_f32(mu_s)?);
        accumulate(&mut mu_sq_sum, &read_f32(mu_sq)?);
        if iw_samples > 0 {
            let nll = iwae_nll_batch(model, (x, cond), mu, logvar, iw_samples);
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
fn iwae_nll_batch<M: VaeModule>(
    model: &M,
    (x, cond): (Tensor<2>, Option<Tensor<2>>),
    mu: Tensor<2>,
    logvar: Tensor<2>,
    k: usize,
) -> Tensor<1> {
    let [b, _] = x.dims();
    // Rows are K copies of the batch: row r is image r % b.
    let x = x.repeat_dim(0, k);
    let cond = cond.map(|c| c.repeat_dim(0, k));
    let mu = mu.repeat_dim(0, k);
    let logvar = logvar.repeat_dim(0, k);
    let std = logvar.clone().mul_scalar(0.5).exp();
    let eps = std.random_like(Distribution::Normal(0.0, 1.0));
    let z = mu + eps.clone() * std;
    let log_px_z = bce_logits_per_image(model.decode_logits_with(z.clone(), cond), x).neg();
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
