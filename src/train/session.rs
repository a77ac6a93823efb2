//! One training run: networks, optimisers, data, position in the data, history.

use std::sync::Arc;
use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::Distribution;

use super::fused::{AdamHyper, FusedConvVae, FusedDcgan, FusedGan, FusedMlpVae};
use super::losses::{bce_logits_const, bce_logits_per_image, kl_per_dim};
use super::metrics::{Marker, MetricPoint, MetricsHistory, TestPoint};
use super::{gather_images, images_to_tensor, read_f32, PixelRange, TrainConfig, TrainError};
use crate::backend::Backend;
use crate::checkpoint::{optim_bytes, Checkpoint, CheckpointHeader};
use crate::data::{BatchPlan, Dataset, Split};
use crate::eval::{eval_gan, eval_vae, EvalReport};
use crate::images::ImageBatch;
use crate::infer::{normal_latents, Inference};
use crate::model::{ConvVae, DiscNet, GenNet, ModelSpec, Networks, VaeNet};

/// Set to `burn` to train MLP models and the DCGAN on the CPU through burn's autodiff
/// instead of the fused path (for comparisons; both give the same steps).
pub const CPU_TRAINING_ENV: &str = "LATENT_LAB_CPU_TRAINING";

/// Latents of the fixed-noise sample grid.
pub const SAMPLE_GRID: usize = 64;
/// Test images shown with their reconstructions.
pub const RECON_COUNT: usize = 8;

const VAE_TERMS: [&str; 3] = ["loss", "recon", "kl"];
const GAN_TERMS: [&str; 4] = ["d_loss", "g_loss", "d_real", "d_fake"];

#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // one per session
enum TrainNets {
    Vae {
        model: VaeNet,
        optim: ModuleOptimizer,
    },
    Gan {
        gen: GenNet,
        disc: DiscNet,
        opt_g: ModuleOptimizer,
        opt_d: ModuleOptimizer,
    },
    /// Every model family on the CPU: weights and Adam state in plain buffers
    /// ([`super::fused`]).
    Fused { nets: FusedNets, device: Device },
}

#[derive(Clone)]
enum FusedNets {
    Vae(Box<FusedMlpVae>),
    /// The conv-VAE, with burn's module for the configuration (padding, sizes) that the
    /// weights go back into.
    ConvVae {
        net: Box<FusedConvVae>,
        shell: Box<ConvVae>,
    },
    Gan(Box<FusedGan>),
    Dcgan(Box<FusedDcgan>),
}

impl FusedNets {
    fn pixel_range(&self) -> PixelRange {
        match self {
            FusedNets::Vae(_) | FusedNets::ConvVae { .. } => PixelRange::Unit,
            FusedNets::Gan(_) | FusedNets::Dcgan(_) => PixelRange::Signed,
        }
    }

    /// One step on `x` (`rows` images in [`FusedNets::pixel_range`]); the loss terms.
    fn step(&mut self, x: &[f32], rows: usize, config: &TrainConfig) -> Vec<f32> {
        let lr = config.learning_rate as f32;
        let h = AdamHyper {
            beta1: config.adam_beta1 as f32,
            beta2: config.adam_beta2 as f32,
            epsilon: ADAM_EPSILON,
        };
        match self {
            FusedNets::Vae(v) => v.step(x, rows, lr, config.beta as f32, h).to_vec(),
            FusedNets::ConvVae { net, .. } => net.step(x, rows, lr, config.beta as f32, h).to_vec(),
            FusedNets::Gan(g) => g.step(x, rows, lr, h).to_vec(),
            FusedNets::Dcgan(g) => g.step(x, rows, lr, h).to_vec(),
        }
    }

    fn reseed(&mut self, seed: u64) {
        match self {
            FusedNets::Vae(v) => v.reseed(seed),
            FusedNets::ConvVae { net, .. } => net.reseed(seed),
            FusedNets::Gan(g) => g.reseed(seed),
            FusedNets::Dcgan(g) => g.reseed(seed),
        }
    }

    /// burn networks with the current weights, on `device`.
    fn networks(&self, device: &Device) -> Networks {
        match self {
            FusedNets::Vae(v) => Networks::Vae(VaeNet::Mlp(v.model(device))),
            FusedNets::ConvVae { net, shell } => {
                Networks::Vae(VaeNet::Conv(net.model(shell, device)))
            }
            FusedNets::Gan(g) => Networks::Gan {
                gen: GenNet::Mlp(g.generator(device)),
                disc: DiscNet::Mlp(g.discriminator(device)),
            },
            FusedNets::Dcgan(g) => Networks::Gan {
                gen: GenNet::Conv(g.generator(device)),
                disc: DiscNet::Conv(g.discriminator(device)),
            },
        }
    }

    /// The optimisers' records in checkpoint order (`[optim]` or `[optim_g, optim_d]`).
    fn optim_bytes(&self) -> Result<Vec<Vec<u8>>, TrainError> {
        let pair = |(g, d): (Vec<u8>, Vec<u8>)| vec![g, d];
        Ok(match self {
            FusedNets::Vae(v) => vec![v.optim_bytes()?],
            FusedNets::ConvVae { net, .. } => vec![net.optim_bytes()?],
            FusedNets::Gan(g) => pair(g.optim_bytes()?),
            FusedNets::Dcgan(g) => pair(g.optim_bytes()?),
        })
    }
}

/// Loss terms of one step, not yet checked.
enum PendingTerms {
    /// Still on the training device (read back in one sync with the others).
    Device(Box<Tensor<1>>),
    /// Already on the host (the fused path).
    Host(Vec<f32>),
}

impl TrainNets {
    /// The fused CPU form of the networks (same weights, ids and Adam state), or `self`
    /// unchanged where it does not apply: on a GPU, or when
    /// [`CPU_TRAINING_ENV`] says `burn`. If the conversion fails (an optimiser record burn
    /// accepts but the fused path cannot use), training stays on burn's path and the reason
    /// is returned.
    fn fused(self, backend: &Backend, device: &Device, seed: u64) -> (Self, Option<String>) {
        match self.try_fused(backend, device, seed) {
            Ok(Some(f)) => (f, None),
            Ok(None) => (self, None),
            Err(e) => (self, Some(e.to_string())),
        }
    }

    fn try_fused(
        &self,
        backend: &Backend,
        device: &Device,
        seed: u64,
    ) -> Result<Option<Self>, TrainError> {
        if backend.is_gpu() || std::env::var(CPU_TRAINING_ENV).is_ok_and(|v| v == "burn") {
            return Ok(None);
        }
        let bytes =
            |o: &ModuleOptimizer| optim_bytes(o).map_err(|e| TrainError::Invalid(e.to_string()));
        let nets = match self {
            TrainNets::Vae {
                model: VaeNet::Mlp(m),
                optim,
            } => FusedNets::Vae(Box::new(FusedMlpVae::new(m, bytes(optim)?, seed)?)),
            TrainNets::Vae {
                model: VaeNet::Conv(m),
                optim,
            } => FusedNets::ConvVae {
                net: Box::new(FusedConvVae::new(m, bytes(optim)?, seed)?),
                shell: Box::new(m.clone()),
            },
            TrainNets::Gan {
                gen: GenNet::Mlp(g),
                disc: DiscNet::Mlp(d),
                opt_g,
                opt_d,
            } => FusedNets::Gan(Box::new(FusedGan::new(
                g,
                d,
                bytes(opt_g)?,
                bytes(opt_d)?,
                seed,
            )?)),
            TrainNets::Gan {
                gen: GenNet::Conv(g),
                disc: DiscNet::Conv(d),
                opt_g,
                opt_d,
            } => FusedNets::Dcgan(Box::new(FusedDcgan::new(
                g,
                d,
                bytes(opt_g)?,
                bytes(opt_d)?,
                seed,
            )?)),
            _ => return Ok(None),
        };
        Ok(Some(TrainNets::Fused {
            nets,
            device: device.clone(),
        }))
    }

    /// After a rollback: a new noise stream, so the fused path does not replay the steps
    /// that diverged (burn's device RNG moves on by itself).
    fn reseed(&mut self, seed: u64) {
        if let TrainNets::Fused { nets, .. } = self {
            nets.reseed(seed);
        }
    }

    fn networks(&self) -> Networks {
        match self {
            TrainNets::Fused { nets, device } => nets.networks(device),
            TrainNets::Vae { model, .. } => Networks::Vae(model.clone()),
            TrainNets::Gan { gen, disc, .. } => Networks::Gan {
                gen: gen.clone(),
                disc: disc.clone(),
            },
        }
    }
}

/// Weights and position at the last step whose losses were all finite.
#[derive(Clone)]
struct GoodState {
    nets: TrainNets,
    step: u64,
    epoch: usize,
    batch: usize,
}

/// What one call to [`Session::step`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    Ran {
        /// Set when losses were read back at this step.
        point: Option<MetricPoint>,
        /// Set when this step completed an epoch.
        epoch_done: bool,
    },
    /// A loss became NaN or infinite at `step`; the weights of `restored_step` are back.
    Diverged {
        step: u64,
        restored_step: u64,
        term: String,
    },
}

pub struct Session {
    spec: ModelSpec,
    config: TrainConfig,
    data: Arc<Dataset>,
    split: Split,
    plan: BatchPlan,
    backend: Backend,
    /// Autodiff view of the backend device.
    device: Device,
    nets: Option<TrainNets>,
    /// Weights vouched for by a finite read-back (restored on divergence).
    good: Option<GoodState>,
    /// Weights at the last read-back: their losses are only seen at the next read-back,
    /// so they become `good` then.
    candidate: Option<GoodState>,
    step: u64,
    epoch: usize,
    batch: usize,
    history: MetricsHistory,
    /// Loss terms of the steps since the last read-back.
    pending: Vec<PendingTerms>,
    buf: Vec<f32>,
    fixed_noise: Vec<f32>,
    interval_start: Instant,
    interval_images: usize,
    /// Why a model the fused path supports trains through burn's path instead.
    fused_off: Option<String>,
}

const ADAM_EPSILON: f32 = 1e-8;

fn adam(config: &TrainConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(config.adam_beta1 as f32)
        .with_beta_2(config.adam_beta2 as f32)
        .with_epsilon(ADAM_EPSILON)
        .init()
}

impl Session {
    /// A fresh run of `spec` on `data`.
    pub fn new(
        spec: ModelSpec,
        config: TrainConfig,
        data: Arc<Dataset>,
        backend: Backend,
    ) -> Result<Self, TrainError> {
        config.validate()?;
        let device = backend.device.clone().autodiff();
        device.seed(config.seed);
        let nets = match spec.init(&device) {
            Networks::Vae(model) => TrainNets::Vae {
                model,
                optim: adam(&config),
            },
            Networks::Gan { gen, disc } => TrainNets::Gan {
                gen,
                disc,
                opt_g: adam(&config),
                opt_d: adam(&config),
            },
        };
        let names: &[&str] = if spec.is_vae() {
            &VAE_TERMS
        } else {
            &GAN_TERMS
        };
        let history = MetricsHistory::new(names);
        Self::assemble(
            spec,
            config,
            data,
            backend,
            device,
            nets,
            history,
            (0, 0, 0),
        )
    }

    /// Continue the run saved in `ckpt` (its data must be loaded already).
    pub fn from_checkpoint(
        ckpt: &Checkpoint,
        data: Arc<Dataset>,
        backend: Backend,
    ) -> Result<Self, TrainError> {
        let h = &ckpt.header;
        let config = h.train.clone();
        config.validate()?;
        let device = backend.device.clone().autodiff();
        device.seed(config.seed.wrapping_add(h.step));
        let nets = match ckpt.networks(&device)? {
            Networks::Vae(model) => TrainNets::Vae {
                model,
                optim: ckpt.optimizer("optim", adam(&config))?,
            },
            Networks::Gan { gen, disc } => TrainNets::Gan {
                gen,
                disc,
                opt_g: ckpt.optimizer("optim_g", adam(&config))?,
                opt_d: ckpt.optimizer("optim_d", adam(&config))?,
            },
        };
        let mut history = h.history.clone();
        history.markers.push(Marker {
            step: h.step,
            text: "resumed".into(),
        });
        Self::assemble(
            h.model.clone(),
            config,
            data,
            backend,
            device,
            nets,
            history,
            (h.step, h.epoch, h.batch_in_epoch),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        spec: ModelSpec,
        config: TrainConfig,
        data: Arc<Dataset>,
        backend: Backend,
        device: Device,
        nets: TrainNets,
        history: MetricsHistory,
        (step, epoch, batch): (u64, usize, usize),
    ) -> Result<Self, TrainError> {
        let shape = crate::model::ImageShape::new(data.channels, data.height, data.width);
        if shape != spec.shape {
            return Err(TrainError::Invalid(format!(
                "the model expects {} images but the dataset has {}",
                spec.shape, shape
            )));
        }
        let split = data.split(config.seed)?;
        let plan = BatchPlan::new(split.train.clone(), config.batch_size, config.seed);
        let fixed_noise = normal_latents(SAMPLE_GRID, spec.latent_dim(), config.seed ^ 0x5A3D_11FE);
        if history.names.len()
            != if spec.is_vae() {
                VAE_TERMS.len()
            } else {
                GAN_TERMS.len()
            }
        {
            return Err(TrainError::Invalid(format!(
                "the metrics history names {:?} do not fit a {} model",
                history.names, spec.kind
            )));
        }
        let seed = config.seed ^ 0x0F05_ED00 ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (nets, fused_off) = nets.fused(&backend, &device, seed);
        let good = Some(GoodState {
            nets: deep_copy(&spec, &nets, &device)?,
            step,
            epoch,
            batch,
        });
        Ok(Self {
            spec,
            config,
            data,
            split,
            plan,
            backend,
            device,
            nets: Some(nets),
            good,
            candidate: None,
            step,
            epoch,
            batch,
            history,
            pending: Vec::new(),
            buf: Vec::new(),
            fixed_noise,
            interval_start: Instant::now(),
            interval_images: 0,
            fused_off,
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }
    pub fn data(&self) -> &Arc<Dataset> {
        &self.data
    }
    pub fn split(&self) -> &Split {
        &self.split
    }
    pub fn backend(&self) -> &Backend {
        &self.backend
    }
    /// The backend and, on the CPU, whether the fused training path is in use.
    pub fn describe_backend(&self) -> String {
        match self.nets() {
            TrainNets::Fused {
                nets: FusedNets::Dcgan(_) | FusedNets::ConvVae { .. },
                ..
            } => format!("{}, fused conv training", self.backend.describe()),
            TrainNets::Fused { .. } => format!("{}, fused MLP training", self.backend.describe()),
            _ => match &self.fused_off {
                Some(why) => format!("{} (fused path off: {why})", self.backend.describe()),
                None => self.backend.describe(),
            },
        }
    }
    pub fn step_count(&self) -> u64 {
        self.step
    }
    /// Completed epochs.
    pub fn epoch(&self) -> usize {
        self.epoch
    }
    pub fn batch_in_epoch(&self) -> usize {
        self.batch
    }
    pub fn batches_per_epoch(&self) -> usize {
        self.plan.batches_per_epoch()
    }
    pub fn history(&self) -> &MetricsHistory {
        &self.history
    }
    /// True once `config.epochs` epochs are complete.
    pub fn is_done(&self) -> bool {
        self.epoch >= self.config.epochs
    }

    pub fn set_epochs(&mut self, epochs: usize) {
        self.config.epochs = epochs;
    }

    /// Change the learning rate from the next step on; marked in the history.
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<(), TrainError> {
        let mut c = self.config.clone();
        c.learning_rate = lr;
        c.validate()?;
        self.config = c;
        self.history.markers.push(Marker {
            step: self.step,
            text: format!("lr = {lr:.2e}"),
        });
        Ok(())
    }

    /// Change β (VAE KL weight) from the next step on; marked in the history.
    pub fn set_beta(&mut self, beta: f64) -> Result<(), TrainError> {
        let mut c = self.config.clone();
        c.beta = beta;
        c.validate()?;
        self.config = c;
        self.history.markers.push(Marker {
            step: self.step,
            text: format!("β = {beta}"),
        });
        Ok(())
    }

    fn nets(&self) -> &TrainNets {
        // Invariant: `nets` is only `None` inside `step` (and after a panic there,
        // after which the worker drops the session).
        self.nets.as_ref().expect("session networks present")
    }

    /// One optimiser step on the next batch.
    pub fn step(&mut self) -> Result<StepOutcome, TrainError> {
        if self.batch >= self.plan.batches_per_epoch() {
            self.batch = 0;
            self.epoch += 1;
        }
        let idx = self.plan.batch(self.epoch, self.batch);
        let lr = self.config.learning_rate;
        let nets = self.nets.take().expect("session networks present");
        let (nets, terms) = match nets {
            TrainNets::Vae { model, mut optim } => {
                let x = images_to_tensor(
                    &self.data,
                    &idx,
                    &mut self.buf,
                    &self.device,
                    PixelRange::Unit,
                );
                let (model, terms) = vae_step(model, &mut optim, x, lr, self.config.beta);
                (
                    TrainNets::Vae { model, optim },
                    PendingTerms::Device(Box::new(terms)),
                )
            }
            TrainNets::Fused { mut nets, device } => {
                gather_images(&self.data, &idx, &mut self.buf, nets.pixel_range());
                let terms = nets.step(&self.buf, idx.len(), &self.config);
                (TrainNets::Fused { nets, device }, PendingTerms::Host(terms))
            }
            TrainNets::Gan {
                gen,
                disc,
                mut opt_g,
                mut opt_d,
            } => {
                let x = images_to_tensor(
                    &self.data,
                    &idx,
                    &mut self.buf,
                    &self.device,
                    PixelRange::Signed,
                );
                let (gen, disc, terms) = gan_step(
                    gen,
                    disc,
                    &mut opt_g,
                    &mut opt_d,
                    x,
                    self.spec.latent_dim(),
                    lr,
                    &self.device,
                );
                (
                    TrainNets::Gan {
                        gen,
                        disc,
                        opt_g,
                        opt_d,
                    },
                    PendingTerms::Device(Box::new(terms)),
                )
            }
        };
        self.nets = Some(nets);
        self.pending.push(terms);
        self.step += 1;
        self.batch += 1;
        self.interval_images += idx.len();
        let epoch_done = self.batch >= self.plan.batches_per_epoch();
        if epoch_done {
            self.batch = 0;
            self.epoch += 1;
        }
        if self.step % self.config.log_every == 0 || epoch_done {
            return self.read_back(epoch_done);
        }
        Ok(StepOutcome::Ran {
            point: None,
            epoch_done,
        })
    }

    /// Read the pending loss terms (one device sync), check them, log their mean.
    fn read_back(&mut self, epoch_done: bool) -> Result<StepOutcome, TrainError> {
        let n_steps = self.pending.len();
        if n_steps == 0 {
            return Ok(StepOutcome::Ran {
                point: None,
                epoch_done,
            });
        }
        let mut values = Vec::new();
        let mut on_device = Vec::new();
        for terms in std::mem::take(&mut self.pending) {
            match terms {
                PendingTerms::Host(v) => values.extend(v),
                PendingTerms::Device(t) => on_device.push(*t),
            }
        }
        if !on_device.is_empty() {
            // One session never mixes the two kinds, so the order is kept.
            values.extend(read_f32(Tensor::cat(on_device, 0))?);
        }
        let n_terms = self.history.names.len();
        let first_step = self.step + 1 - n_steps as u64;
        for (i, row) in values.chunks(n_terms).enumerate() {
            if let Some(t) = row.iter().position(|v| !v.is_finite()) {
                return Ok(self.roll_back(first_step + i as u64, t));
            }
        }
        let mut mean = vec![0.0f32; n_terms];
        for row in values.chunks(n_terms) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v / n_steps as f32;
            }
        }
        let secs = self.interval_start.elapsed().as_secs_f32().max(1e-6);
        let point = MetricPoint {
            step: self.step,
            epoch: self.epoch as f64 + self.batch as f64 / self.plan.batches_per_epoch() as f64,
            values: mean,
            images_per_sec: self.interval_images as f32 / secs,
        };
        self.interval_start = Instant::now();
        self.interval_images = 0;
        self.history.points.push(point.clone());
        // The losses just read were computed with the weights from before each step's
        // update, so they vouch for the previous candidate, not for the current weights.
        if let Some(c) = self.candidate.take() {
            self.good = Some(c);
        }
        self.candidate = Some(GoodState {
            nets: deep_copy(&self.spec, self.nets(), &self.device)?,
            step: self.step,
            epoch: self.epoch,
            batch: self.batch,
        });
        Ok(StepOutcome::Ran {
            point: Some(point),
            epoch_done,
        })
    }

    fn roll_back(&mut self, bad_step: u64, term: usize) -> StepOutcome {
        let term = self.history.names.get(term).cloned().unwrap_or_default();
        self.candidate = None;
        let restored_step = match self.good.clone() {
            Some(mut g) => {
                g.nets
                    .reseed(self.config.seed ^ bad_step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                self.nets = Some(g.nets);
                self.step = g.step;
                self.epoch = g.epoch;
                self.batch = g.batch;
                g.step
            }
            None => self.step,
        };
        self.history.truncate_after(restored_step);
        self.history.markers.push(Marker {
            step: restored_step,
            text: format!("diverged at step {bad_step} ({term}); rolled back"),
        });
        self.interval_start = Instant::now();
        self.interval_images = 0;
        StepOutcome::Diverged {
            step: bad_step,
            restored_step,
            term,
        }
    }

    /// Frozen copy of the current weights on `device` (the UI uses `Device::flex()`).
    pub fn inference(&self, device: &Device) -> Inference {
        Inference::new(
            self.spec.clone(),
            &self.nets().networks(),
            device,
            self.step,
        )
    }

    /// Frozen copy on the training device (for evaluation and sample grids).
    fn local_inference(&self) -> Inference {
        self.inference(&self.backend.device)
    }

    /// The fixed-noise sample grid with the current weights.
    pub fn samples(&self) -> Result<ImageBatch, TrainError> {
        self.local_inference().decode(&self.fixed_noise)
    }

    /// The first test images and their reconstructions (VAE only).
    pub fn reconstructions(&self) -> Result<Option<(ImageBatch, ImageBatch)>, TrainError> {
        if !self.spec.is_vae() {
            return Ok(None);
        }
        let n = RECON_COUNT.min(self.split.test.len());
        let idx = &self.split.test[..n];
        let mut originals = Vec::new();
        self.data.gather_f32(idx, &mut originals);
        let inf = self.local_inference();
        let (mu, _) = inf.encode(&originals)?;
        let recon = inf.decode(&mu)?;
        Ok(Some((
            ImageBatch {
                shape: self.spec.shape,
                pixels: originals,
            },
            recon,
        )))
    }

    /// Evaluate on the test split and record the result in the history.
    pub fn evaluate(&mut self) -> Result<TestPoint, TrainError> {
        let report = self.eval_report(self.config.iw_samples)?;
        if !report.is_finite() {
            return Err(TrainError::Invalid(format!(
                "test metrics at step {} are not finite; the model has diverged",
                self.step
            )));
        }
        let point = TestPoint {
            step: self.step,
            epoch: self.epoch,
            value: report.headline(),
            report,
        };
        self.history.test.retain(|p| p.step != point.step);
        self.history.test.push(point.clone());
        Ok(point)
    }

    /// Test-split metrics without touching the history.
    pub fn eval_report(&self, iw_samples: usize) -> Result<EvalReport, TrainError> {
        let inf = self.local_inference();
        evaluate(&inf, &self.data, &self.split.test, iw_samples)
    }

    /// Read back and check the losses of steps not logged yet (before a save or a pause),
    /// so that no unchecked weights are written. May roll back.
    pub fn flush(&mut self) -> Result<Option<StepOutcome>, TrainError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        self.read_back(false).map(Some)
    }

    /// Everything needed to continue this run later. Pending steps are checked first
    /// ([`Session::flush`]; call it yourself to see a divergence it finds), so unchecked
    /// weights are never saved.
    pub fn checkpoint(&mut self) -> Result<Checkpoint, TrainError> {
        self.flush()?;
        let header = CheckpointHeader {
            app_version: env!("CARGO_PKG_VERSION").to_string(),
            model: self.spec.clone(),
            data: self.data.source.clone(),
            data_description: self.data.source.describe(),
            train: self.config.clone(),
            step: self.step,
            epoch: self.epoch,
            batch_in_epoch: self.batch,
            history: self.history.clone(),
            saved_unix_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let nets = self.nets();
        let optims = match nets {
            TrainNets::Vae { optim, .. } => vec![optim_bytes(optim)?],
            TrainNets::Gan { opt_g, opt_d, .. } => vec![optim_bytes(opt_g)?, optim_bytes(opt_d)?],
            TrainNets::Fused { nets, .. } => nets.optim_bytes()?,
        };
        Ok(Checkpoint::from_parts(header, &nets.networks(), optims)?)
    }
}

/// A copy that shares no state with `nets`. Tensors are immutable, so a clone suffices,
/// except for batch-norm running statistics, which clones share; models with batch norm
/// are copied through a record.
fn deep_copy(spec: &ModelSpec, nets: &TrainNets, device: &Device) -> Result<TrainNets, TrainError> {
    if !matches!(spec.arch, crate::model::Architecture::Dcgan(_)) {
        return Ok(nets.clone());
    }
    match nets {
        TrainNets::Gan {
            gen,
            disc,
            opt_g,
            opt_d,
        } => {
            let Networks::Gan { gen: g0, disc: d0 } = spec.init(device) else {
                return Ok(nets.clone());
            };
            let load =
                |e: burn::store::RecordError| TrainError::Invalid(format!("copying weights: {e}"));
            Ok(TrainNets::Gan {
                gen: g0
                    .try_load_record(gen.valid().into_record())
                    .map_err(load)?,
                disc: d0
                    .try_load_record(disc.valid().into_record())
                    .map_err(load)?,
                opt_g: opt_g.clone(),
                opt_d: opt_d.clone(),
            })
        }
        TrainNets::Vae { .. } | TrainNets::Fused { .. } => Ok(nets.clone()),
    }
}

/// Test metrics of a frozen model on images `idx` of `data`.
pub fn evaluate(
    inf: &Inference,
    data: &Dataset,
    idx: &[usize],
    iw_samples: usize,
) -> Result<EvalReport, TrainError> {
    Ok(match inf.networks() {
        Networks::Vae(m) => EvalReport::Vae(eval_vae(m, data, idx, iw_samples, inf.device())?),
        Networks::Gan { gen, disc } => EvalReport::Gan(eval_gan(
            gen,
            disc,
            inf.latent_dim(),
            data,
            idx,
            inf.device(),
        )?),
    })
}

/// One VAE step; returns the new model and the detached terms `[loss, recon, kl]`.
fn vae_step(
    model: VaeNet,
    optim: &mut ModuleOptimizer,
    x: Tensor<2>,
    lr: f64,
    beta: f64,
) -> (VaeNet, Tensor<1>) {
    let (mu, logvar) = model.encode(x.clone()); // [b, latent] each
    let eps = mu.random_like(Distribution::Normal(0.0, 1.0));
    vae_step_with_noise(model, optim, x, (mu, logvar), eps, lr, beta)
}

/// [`vae_step`] after the encoder ran, with given noise `eps` `[b, latent]`.
pub(crate) fn vae_step_with_noise(
    model: VaeNet,
    optim: &mut ModuleOptimizer,
    x: Tensor<2>,
    (mu, logvar): (Tensor<2>, Tensor<2>),
    eps: Tensor<2>,
    lr: f64,
    beta: f64,
) -> (VaeNet, Tensor<1>) {
    let b = x.dims()[0] as f64;
    let std = logvar.clone().mul_scalar(0.5).exp();
    let logits = model.decode_logits(mu.clone() + eps * std); // [b, pixels]
    let recon = bce_logits_per_image(logits, x).sum().div_scalar(b);
    let kl = kl_per_dim(mu, logvar).sum().div_scalar(b);
    let loss = recon.clone() + kl.clone().mul_scalar(beta);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = optim.step(lr, model, grads);
    let terms = Tensor::cat(vec![loss.detach(), recon.detach(), kl.detach()], 0);
    (model, terms)
}

/// One GAN step (non-saturating loss): D on real and detached fake, then G through the
/// updated D. Returns the new networks and `[d_loss, g_loss, D(x), D(G(z))]`.
#[allow(clippy::too_many_arguments)]
fn gan_step(
    gen: GenNet,
    disc: DiscNet,
    opt_g: &mut ModuleOptimizer,
    opt_d: &mut ModuleOptimizer,
    real: Tensor<2>,
    latent: usize,
    lr: f64,
    device: &Device,
) -> (GenNet, DiscNet, Tensor<1>) {
    let b = real.dims()[0];
    let z = Tensor::<2>::random([b, latent], Distribution::Normal(0.0, 1.0), device);
    gan_step_with_latents(gen, disc, opt_g, opt_d, real, z, lr)
}

/// [`gan_step`] with given latents `z` `[b, latent]`.
pub(crate) fn gan_step_with_latents(
    gen: GenNet,
    disc: DiscNet,
    opt_g: &mut ModuleOptimizer,
    opt_d: &mut ModuleOptimizer,
    real: Tensor<2>,
    z: Tensor<2>,
    lr: f64,
) -> (GenNet, DiscNet, Tensor<1>) {
    let fake = gen.forward(z); // [b, pixels]
    let real_logits = disc.forward(real);
    let fake_logits = disc.forward(fake.clone().detach());
    let d_loss =
        bce_logits_const(real_logits.clone(), true) + bce_logits_const(fake_logits.clone(), false);
    let grads = GradientsParams::from_grads(d_loss.backward(), &disc);
    let disc = opt_d.step(lr, disc, grads);
    let g_loss = bce_logits_const(disc.forward(fake), true);
    let grads = GradientsParams::from_grads(g_loss.backward(), &gen);
    let gen = opt_g.step(lr, gen, grads);
    let d_real = sigmoid(real_logits.detach()).mean();
    let d_fake = sigmoid(fake_logits.detach()).mean();
    let terms = Tensor::cat(vec![d_loss.detach(), g_loss.detach(), d_real, d_fake], 0);
    (gen, disc, terms)
}
