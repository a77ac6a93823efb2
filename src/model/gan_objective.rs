//! The GAN objectives, shared by every GAN family: D on real and detached fake images, then G
//! through the updated D, with the non-saturating loss (Goodfellow et al. 2014) or the hinge
//! loss (Lim & Ye 2017; Miyato et al. 2018), see [`GanLoss`]. A family supplies its generator
//! and discriminator ([`GenModule`], [`DiscModule`]) and configuration ([`GanArch`]); this
//! file trains, evaluates, saves and decodes them.

use std::any::Any;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::Distribution;

use super::family::{
    fast_or_burn, ArchConfig, Batch, Capabilities, Nets, Objective, PlotGroup, SectionReader,
    StepTerms, Trainer, TrainerSetup,
};
use super::losses::bce_logits_const;
use super::tensors::{
    assign_tensors, collect_tensors, deep_copy, gather_images, images_to_tensor, load_module,
    optim_bytes, read_f32, record_bytes, NamedTensor, PixelRange, TensorSource,
};
use super::{adam, adam_hyper};
use crate::cpu::{AdamHyper, PlainMlp};
use crate::data::Dataset;
use crate::error::{CheckpointError, TrainError};
use crate::run::{EvalReport, GanReport, TrainConfig};

pub static GAN_OBJECTIVE: Objective = Objective {
    name: "gan",
    terms: &["d_loss", "g_loss", "d_real", "d_fake"],
    plots: &[
        PlotGroup {
            title: "losses",
            terms: &["d_loss", "g_loss"],
        },
        PlotGroup {
            title: "D outputs",
            terms: &["d_real", "d_fake"],
        },
    ],
    headline: "test D loss",
    pixels: PixelRange::Signed,
    capabilities: Capabilities {
        encoder: false,
        beta: false,
    },
    optim_sections: &["optim_g", "optim_d"],
};

/// The hinge objective: D minimises `E[relu(1 − D(x))] + E[relu(1 + D(G(z)))]`, G minimises
/// `−E[D(G(z))]`. D's raw scores are plotted, and their gap `E[D(x)] − E[D(G(z))]`, the
/// critic's estimate of how far the fakes are from the data (it shrinks as G catches up; a
/// gap that grows while G's samples stop changing is the sign of trouble).
pub static HINGE_OBJECTIVE: Objective = Objective {
    name: "hinge gan",
    terms: &["d_loss", "g_loss", "d_real", "d_fake", "critic_gap"],
    plots: &[
        PlotGroup {
            title: "hinge losses",
            terms: &["d_loss", "g_loss"],
        },
        PlotGroup {
            title: "critic scores",
            terms: &["d_real", "d_fake"],
        },
        PlotGroup {
            title: "critic gap",
            terms: &["critic_gap"],
        },
    ],
    headline: "test critic gap",
    pixels: PixelRange::Signed,
    capabilities: Capabilities {
        encoder: false,
        beta: false,
    },
    optim_sections: &["optim_g", "optim_d"],
};

/// The loss a GAN family trains with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GanLoss {
    /// Non-saturating: D a classifier (sigmoid outputs plotted), G maximises log D(G(z)).
    NonSaturating,
    /// Hinge ([`HINGE_OBJECTIVE`]): D a critic with raw scores.
    Hinge,
}

impl GanLoss {
    pub fn objective(self) -> &'static Objective {
        match self {
            GanLoss::NonSaturating => &GAN_OBJECTIVE,
            GanLoss::Hinge => &HINGE_OBJECTIVE,
        }
    }
}

/// Images per evaluation batch.
const EVAL_BATCH: usize = 250;

/// A generator: `z: [batch, latent]` → images `[batch, pixels]` in [-1, 1].
///
/// A conditional GAN family returns its class count from `classes` and overrides the `_with`
/// methods of its generator and discriminator: the objective then hands both each batch's
/// one-hot labels (the fakes take the real batch's labels), in training, evaluation and
/// labelled decoding.
pub trait GenModule: Module + Send + Sync + 'static {
    fn forward(&self, z: Tensor<2>) -> Tensor<2>;
    /// The number of classes the generator is conditioned on; `None` (the default) for an
    /// unconditional GAN.
    fn classes(&self) -> Option<usize> {
        None
    }
    /// [`GenModule::forward`] given the one-hot condition (conditional families).
    fn forward_with(&self, z: Tensor<2>, cond: Option<Tensor<2>>) -> Tensor<2> {
        let _ = cond;
        self.forward(z)
    }
    /// The activations of the generator's first hidden layer, `[batch, features]`: the
    /// principal directions of a GAN (GANSpace) are the PCA of these over sampled latents.
    /// `None` (the default) where a family does not say; the analysis then uses the output.
    fn first_hidden(&self, z: Tensor<2>) -> Option<Tensor<2>> {
        let _ = z;
        None
    }
}

/// A discriminator: images `[batch, pixels]` in [-1, 1] → logits `[batch, 1]`.
pub trait DiscModule: Module + Send + Sync + 'static {
    fn forward(&self, x: Tensor<2>) -> Tensor<2>;
    /// [`DiscModule::forward`] given the one-hot condition (conditional families).
    fn forward_with(&self, x: Tensor<2>, cond: Option<Tensor<2>>) -> Tensor<2> {
        let _ = cond;
        self.forward(x)
    }
    /// Called once before each training step: state kept outside gradients moves on (the
    /// power iteration of spectral normalisation). The default does nothing.
    fn refresh(self) -> Self
    where
        Self: Sized,
    {
        self
    }
}

/// A GAN family's configuration: builds its networks, and its fast CPU paths if it has them.
pub trait GanArch: ArchConfig + Clone {
    type Gen: GenModule;
    type Disc: DiscModule;
    fn init_gen(&self, device: &Device) -> Self::Gen;
    fn init_disc(&self, device: &Device) -> Self::Disc;
    /// The loss it trains with (the non-saturating loss unless it says otherwise).
    fn loss(&self) -> GanLoss {
        GanLoss::NonSaturating
    }
    /// The fast CPU training path for `(gen, disc)` with the Adam states `(opt_g, opt_d)`
    /// (burn's records), if the family has one.
    #[allow(clippy::type_complexity)]
    fn fused(
        &self,
        _gen: &Self::Gen,
        _disc: &Self::Disc,
        _optims: (Vec<u8>, Vec<u8>),
        _seed: u64,
    ) -> Option<Result<Box<dyn FusedGanNet<Self::Gen, Self::Disc>>, TrainError>> {
        None
    }
    /// A plain-Rust generator for the slider path, if the family has one.
    fn fast_decoder(&self, _gen: &Self::Gen) -> Option<PlainMlp> {
        None
    }
}

/// A family's fast CPU GAN step: weights and Adam states in plain buffers ([`crate::cpu`]).
pub trait FusedGanNet<G, D>: Send {
    /// One step on `real` (`rows` images in [-1, 1]) with fresh latents;
    /// `[d_loss, g_loss, D(x), D(G(z))]`.
    fn step(&mut self, real: &[f32], rows: usize, lr: f32, h: AdamHyper) -> [f32; 4];
    fn reseed(&mut self, seed: u64);
    /// burn's networks with the current weights (same parameter ids), on `device`.
    fn modules(&self, device: &Device) -> (G, D);
    /// The Adam states of (generator, discriminator) as burn optimiser-record bytes.
    fn optim_bytes(&self) -> Result<(Vec<u8>, Vec<u8>), TrainError>;
    fn clone_box(&self) -> Box<dyn FusedGanNet<G, D>>;
    /// For the backend line, e.g. `fused conv training`.
    fn path(&self) -> &'static str;
}

/// A GAN's networks: its configuration, generator and discriminator.
#[derive(Clone, Debug)]
pub struct GanNets<A: GanArch> {
    pub arch: A,
    pub gen: A::Gen,
    pub disc: A::Disc,
}

impl<A: GanArch> GanNets<A> {
    pub fn new(arch: A, gen: A::Gen, disc: A::Disc) -> Self {
        Self { arch, gen, disc }
    }

    /// Fresh networks of `arch` on `device` (a family's `ArchConfig::networks`).
    pub fn init(arch: &A, device: &Device) -> Box<dyn Nets> {
        Box::new(Self::new(
            arch.clone(),
            arch.init_gen(device),
            arch.init_disc(device),
        ))
    }
}

impl<A: GanArch> Nets for GanNets<A> {
    fn objective(&self) -> &'static Objective {
        self.arch.loss().objective()
    }

    fn clone_box(&self) -> Box<dyn Nets> {
        Box::new(self.clone())
    }

    fn inference_copy(&self, device: &Device) -> Box<dyn Nets> {
        Box::new(Self::new(
            self.arch.clone(),
            self.gen.valid().to_device(device),
            self.disc.valid().to_device(device),
        ))
    }

    fn decode(&self, z: Tensor<2>) -> Tensor<2> {
        (self.gen.forward(z) + 1.0).mul_scalar(0.5)
    }

    fn classes(&self) -> Option<usize> {
        self.gen.classes()
    }

    fn decode_with(&self, z: Tensor<2>, cond: Tensor<2>) -> Tensor<2> {
        (self.gen.forward_with(z, Some(cond)) + 1.0).mul_scalar(0.5)
    }

    fn encode(&self, _x: Tensor<2>) -> Option<(Tensor<2>, Tensor<2>)> {
        None
    }

    fn first_hidden(&self, z: Tensor<2>) -> Option<Tensor<2>> {
        self.gen.first_hidden(z)
    }

    fn discriminate(&self, x: Tensor<2>) -> Option<Tensor<2>> {
        Some(self.disc.forward(x))
    }

    fn save(&self) -> Result<Vec<(String, Vec<u8>)>, CheckpointError> {
        Ok(vec![
            ("generator".to_string(), record_bytes(&self.gen)?),
            ("discriminator".to_string(), record_bytes(&self.disc)?),
        ])
    }

    fn load(&self, sections: SectionReader<'_>) -> Result<Box<dyn Nets>, String> {
        let blob = sections("generator").map_err(|e| e.to_string())?;
        let gen = load_module(self.gen.clone(), blob).map_err(|e| format!("generator: {e}"))?;
        let blob = sections("discriminator").map_err(|e| e.to_string())?;
        let disc =
            load_module(self.disc.clone(), blob).map_err(|e| format!("discriminator: {e}"))?;
        Ok(Box::new(Self::new(self.arch.clone(), gen, disc)))
    }

    fn evaluate(
        &self,
        data: &Dataset,
        idx: &[usize],
        _iw_samples: usize,
        device: &Device,
    ) -> Result<EvalReport, TrainError> {
        Ok(EvalReport::Gan(eval_gan(
            &self.gen,
            &self.disc,
            (self.arch.latent_dim(), self.arch.loss()),
            data,
            idx,
            device,
        )?))
    }

    fn named_tensors(&self) -> Result<Vec<NamedTensor>, String> {
        let mut out = Vec::new();
        collect_tensors(&self.gen, "generator", &mut out)?;
        collect_tensors(&self.disc, "discriminator", &mut out)?;
        Ok(out)
    }

    fn with_named_tensors(&self, source: &mut TensorSource) -> Result<Box<dyn Nets>, String> {
        let gen = assign_tensors(self.gen.clone(), "generator", source)?;
        let disc = assign_tensors(self.disc.clone(), "discriminator", source)?;
        Ok(Box::new(Self::new(self.arch.clone(), gen, disc)))
    }

    fn fast_decoder(&self) -> Option<PlainMlp> {
        self.arch.fast_decoder(&self.gen)
    }

    fn trainer(
        &self,
        setup: TrainerSetup<'_>,
    ) -> Result<(Box<dyn Trainer>, Option<String>), TrainError> {
        let (opt_g, opt_d) = match setup.optims.map(|o| o.into_iter()) {
            Some(mut o) => match (o.next(), o.next()) {
                (Some(g), Some(d)) => (g, d),
                _ => {
                    return Err(TrainError::Invalid(
                        "a GAN needs two optimiser states".into(),
                    ))
                }
            },
            None => (adam(setup.config), adam(setup.config)),
        };
        let device = setup.device.clone();
        let fast = setup.fused.then(|| {
            // An optimiser record the fast path cannot take leaves training on burn.
            let bytes = match (optim_bytes(&opt_g), optim_bytes(&opt_d)) {
                (Ok(g), Ok(d)) => (g, d),
                (Err(e), _) | (_, Err(e)) => return Some(Err(e.into())),
            };
            // A fast path implements the non-saturating step only.
            if self.arch.loss() != GanLoss::NonSaturating {
                return None;
            }
            let net = self.arch.fused(&self.gen, &self.disc, bytes, setup.seed)?;
            Some(net.map(|net| {
                Box::new(FusedGanTrainer {
                    arch: self.arch.clone(),
                    net,
                    device: device.clone(),
                }) as Box<dyn Trainer>
            }))
        });
        Ok(fast_or_burn(fast.flatten(), || {
            Box::new(BurnGanTrainer {
                nets: self.clone(),
                opt_g,
                opt_d,
                device: device.clone(),
            })
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Trains a GAN through burn's autodiff (a GPU, or the CPU without a fast path).
struct BurnGanTrainer<A: GanArch> {
    nets: GanNets<A>,
    opt_g: ModuleOptimizer,
    opt_d: ModuleOptimizer,
    device: Device,
}

impl<A: GanArch> Trainer for BurnGanTrainer<A> {
    fn step(
        &mut self,
        batch: &Batch<'_>,
        config: &TrainConfig,
        buf: &mut Vec<f32>,
    ) -> Result<StepTerms, TrainError> {
        let real = images_to_tensor(batch.data, batch.idx, buf, &self.device, PixelRange::Signed);
        let z = Tensor::<2>::random(
            [batch.idx.len(), self.nets.arch.latent_dim()],
            Distribution::Normal(0.0, 1.0),
            &self.device,
        );
        let cond = batch.condition(self.nets.gen.classes(), &self.device)?;
        let (gen, disc, terms) = gan_step_with_latents(
            self.nets.gen.clone(),
            self.nets.disc.clone(),
            (&mut self.opt_g, &mut self.opt_d),
            real,
            (z, cond),
            (config.learning_rate, self.nets.arch.loss()),
        );
        self.nets.gen = gen;
        self.nets.disc = disc;
        Ok(StepTerms::Device(Box::new(terms)))
    }

    fn nets(&self) -> Box<dyn Nets> {
        Box::new(self.nets.clone())
    }

    fn optim_bytes(&self) -> Result<Vec<Vec<u8>>, TrainError> {
        Ok(vec![optim_bytes(&self.opt_g)?, optim_bytes(&self.opt_d)?])
    }

    fn snapshot(&self) -> Result<Box<dyn Trainer>, TrainError> {
        let a = &self.nets.arch;
        let gen = deep_copy(&self.nets.gen, || a.init_gen(&self.device))?;
        let disc = deep_copy(&self.nets.disc, || a.init_disc(&self.device))?;
        Ok(Box::new(Self {
            nets: GanNets::new(a.clone(), gen, disc),
            opt_g: self.opt_g.clone(),
            opt_d: self.opt_d.clone(),
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

/// Trains a GAN on the family's fast CPU path.
struct FusedGanTrainer<A: GanArch> {
    arch: A,
    net: Box<dyn FusedGanNet<A::Gen, A::Disc>>,
    device: Device,
}

impl<A: GanArch> Trainer for FusedGanTrainer<A> {
    fn step(
        &mut self,
        batch: &Batch<'_>,
        config: &TrainConfig,
        buf: &mut Vec<f32>,
    ) -> Result<StepTerms, TrainError> {
        gather_images(batch.data, batch.idx, buf, PixelRange::Signed);
        let terms = self.net.step(
            buf,
            batch.idx.len(),
            config.learning_rate as f32,
            adam_hyper(config),
        );
        Ok(StepTerms::Host(terms.to_vec()))
    }

    fn nets(&self) -> Box<dyn Nets> {
        let (gen, disc) = self.net.modules(&self.device);
        Box::new(GanNets::new(self.arch.clone(), gen, disc))
    }

    fn optim_bytes(&self) -> Result<Vec<Vec<u8>>, TrainError> {
        let (g, d) = self.net.optim_bytes()?;
        Ok(vec![g, d])
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

/// D's and G's losses and the logged terms of one batch of D logits on real and fake images
/// (`terms`: `[d_real, d_fake]`, plus the critic gap for the hinge loss).
fn d_loss(loss: GanLoss, real: Tensor<2>, fake: Tensor<2>) -> (Tensor<1>, Vec<Tensor<1>>) {
    match loss {
        GanLoss::NonSaturating => {
            let l = bce_logits_const(real.clone(), true) + bce_logits_const(fake.clone(), false);
            (l, vec![sigmoid(real).mean(), sigmoid(fake).mean()])
        }
        GanLoss::Hinge => {
            let l = relu(real.clone().neg() + 1.0).mean() + relu(fake.clone() + 1.0).mean();
            let (r, f) = (real.mean(), fake.mean());
            (l, vec![r.clone(), f.clone(), r - f])
        }
    }
}

/// G's loss on D's logits of its fakes.
fn g_loss(loss: GanLoss, fake_logits: Tensor<2>) -> Tensor<1> {
    match loss {
        GanLoss::NonSaturating => bce_logits_const(fake_logits, true),
        GanLoss::Hinge => fake_logits.mean().neg(),
    }
}

/// One GAN step with given latents `z` `[b, latent]`: D on real and detached fake, then G
/// through the updated D. Returns the new networks and the objective's terms
/// (`[d_loss, g_loss, D(x), D(G(z))]`, plus the critic gap for the hinge loss).
pub(crate) fn gan_step_with_latents<G: GenModule, D: DiscModule>(
    gen: G,
    disc: D,
    (opt_g, opt_d): (&mut ModuleOptimizer, &mut ModuleOptimizer),
    real: Tensor<2>,
    (z, cond): (Tensor<2>, Option<Tensor<2>>),
    (lr, loss): (f64, GanLoss),
) -> (G, D, Tensor<1>) {
    let disc = disc.refresh();
    let fake = gen.forward_with(z, cond.clone()); // [b, pixels]
    let real_logits = disc.forward_with(real, cond.clone());
    let fake_logits = disc.forward_with(fake.clone().detach(), cond.clone());
    let (d_loss, scores) = d_loss(loss, real_logits, fake_logits);
    let grads = GradientsParams::from_grads(d_loss.backward(), &disc);
    let disc = opt_d.step(lr, disc, grads);
    let g_loss = g_loss(loss, disc.forward_with(fake, cond));
    let grads = GradientsParams::from_grads(g_loss.backward(), &gen);
    let gen = opt_g.step(lr, gen, grads);
    let mut terms = vec![d_loss.detach(), g_loss.detach()];
    terms.extend(scores.into_iter().map(|t| t.detach()));
    (gen, disc, Tensor::cat(terms, 0))
}

/// Evaluate a GAN (inference copies) with `latent` dimensions and its `loss` on images `idx`
/// of `data`.
pub fn eval_gan<G: GenModule, D: DiscModule>(
    gen: &G,
    disc: &D,
    (latent, loss): (usize, GanLoss),
    data: &Dataset,
    idx: &[usize],
    device: &Device,
) -> Result<GanReport, TrainError> {
    if idx.is_empty() {
        return Err(TrainError::Invalid("no test images to evaluate".into()));
    }
    let mut buf = Vec::new();
    let mut sums = [0.0f64; 5];
    for chunk in idx.chunks(EVAL_BATCH) {
        let b = chunk.len();
        let x = images_to_tensor(data, chunk, &mut buf, device, PixelRange::Signed);
        let z = Tensor::<2>::random([b, latent], Distribution::Normal(0.0, 1.0), device);
        // A conditional GAN is judged on the test images' classes, real and fake alike.
        let cond = Batch { data, idx: chunk }.condition(gen.classes(), device)?;
        let real = disc.forward_with(x, cond.clone());
        let fake = disc.forward_with(gen.forward_with(z, cond.clone()), cond);
        let (d, scores) = d_loss(loss, real, fake.clone());
        let mut all = vec![d, g_loss(loss, fake)];
        all.extend(scores);
        let v = read_f32(Tensor::cat(all, 0))?;
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
        critic_gap: (loss == GanLoss::Hinge).then_some(sums[4] / n),
        images: idx.len(),
    })
}
