//! One training run: networks, optimisers, data, position in the data, history.

use std::sync::Arc;
use std::time::Instant;

use burn::optim::ModuleOptimizer;
use burn::prelude::*;

use super::read_f32;
use crate::backend::Backend;
use crate::checkpoint::{Checkpoint, CheckpointHeader};
use crate::data::{BatchPlan, Dataset, Split};
use crate::error::TrainError;
use crate::eval::{evaluate, EvalReport};
use crate::images::ImageBatch;
use crate::infer::{class_rows, normal_latents, Inference};
use crate::model::{adam, Batch, ModelSpec, Nets, StepTerms, Trainer, TrainerSetup};
use crate::run::{Marker, MetricPoint, MetricsHistory, NamedDirection, TestPoint, TrainConfig};
use crate::timeline::{Measures, Timeline};

/// Set to `burn` to train every family on the CPU through burn's autodiff instead of its fast
/// path (for comparisons; both give the same steps).
pub const CPU_TRAINING_ENV: &str = "LATENT_LAB_CPU_TRAINING";

/// Latents of the fixed-noise sample grid.
pub const SAMPLE_GRID: usize = 64;
/// Columns of the sample grid. A conditional model's grid has one row per class (up to
/// [`SAMPLE_CLASS_ROWS`]), the same `SAMPLE_COLS` latents in every row.
pub const SAMPLE_COLS: usize = 8;
pub const SAMPLE_CLASS_ROWS: usize = 16;
/// Labelled test images the samples' label coverage is measured against.
const COVERAGE_IMAGES: usize = 1000;
/// Test images shown with their reconstructions.
pub const RECON_COUNT: usize = 8;

/// Weights and position at the last step whose losses were all finite.
struct GoodState {
    nets: Box<dyn Trainer>,
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
    trainer: Box<dyn Trainer>,
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
    pending: Vec<StepTerms>,
    buf: Vec<f32>,
    fixed_noise: Vec<f32>,
    /// The class of each fixed-noise latent (conditional models).
    sample_labels: Option<Vec<u32>>,
    interval_start: Instant,
    interval_images: usize,
    /// Why a model the fused path supports trains through burn's path instead.
    fused_off: Option<String>,
    /// Latent directions the user named, saved with the run.
    directions: Vec<NamedDirection>,
    /// The fast CPU path was asked for (the CPU backend, not opted out).
    fused_asked: bool,
    /// Every sample grid (and reconstruction) recorded, saved with the run.
    timeline: Timeline,
    /// Labelled test images the samples' label coverage is measured against (labelled
    /// data, unconditional models).
    coverage_ref: Option<(ImageBatch, Vec<u32>)>,
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
        let nets = spec.init(&device);
        let names = spec.objective().terms;
        let mut history = MetricsHistory::new(names);
        if config.kl_warmup_steps > 0 && spec.capabilities().beta {
            history.markers.push(Marker {
                step: 0,
                text: format!("KL warm-up over {} steps", config.kl_warmup_steps),
            });
        }
        Self::assemble(
            spec,
            config,
            data,
            backend,
            device,
            (nets, None),
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
        let nets = ckpt.networks(&device)?;
        // An imported model has no optimiser states: fresh ones, as for a new run.
        let optims = if ckpt.has_optimizers() {
            let restored = nets
                .objective()
                .optim_sections
                .iter()
                .map(|name| ckpt.optimizer(name, adam(&config)))
                .collect::<Result<Vec<_>, _>>()?;
            Some(restored)
        } else {
            None
        };
        let mut history = h.history.clone();
        if optims.is_some() {
            history.markers.push(Marker {
                step: h.step,
                text: "resumed".into(),
            });
        }
        let mut session = Self::assemble(
            h.model.clone(),
            config,
            data,
            backend,
            device,
            (nets, optims),
            history,
            (h.step, h.epoch, h.batch_in_epoch),
        )?;
        session.set_directions(h.directions.clone())?;
        session.timeline = ckpt.timeline()?;
        Ok(session)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        spec: ModelSpec,
        config: TrainConfig,
        data: Arc<Dataset>,
        backend: Backend,
        device: Device,
        (nets, optims): (Box<dyn Nets>, Option<Vec<ModuleOptimizer>>),
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
        let noise_seed = config.seed ^ 0x5A3D_11FE;
        let (fixed_noise, sample_labels) = match nets.classes() {
            Some(k) => {
                let z = normal_latents(SAMPLE_COLS, spec.latent_dim(), noise_seed);
                let (z, labels) = class_rows(&z, SAMPLE_COLS, k.clamp(1, SAMPLE_CLASS_ROWS));
                (z, Some(labels))
            }
            None => (
                normal_latents(SAMPLE_GRID, spec.latent_dim(), noise_seed),
                None,
            ),
        };
        if let Some(k) = nets.classes() {
            crate::model::family::labels_fit(&data, data.labels.as_deref(), k)?;
        }
        let terms = spec.objective().terms;
        if history.names.len() != terms.len() {
            return Err(TrainError::Invalid(format!(
                "the metrics history names {:?} do not fit a {} model",
                history.names, spec.kind
            )));
        }
        let seed = config.seed ^ 0x0F05_ED00 ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let fused =
            !backend.is_gpu() && !std::env::var(CPU_TRAINING_ENV).is_ok_and(|v| v == "burn");
        let (trainer, fused_off) = nets.trainer(TrainerSetup {
            config: &config,
            device: &device,
            optims,
            fused,
            seed,
        })?;
        let good = Some(GoodState {
            nets: trainer.snapshot()?,
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
            trainer,
            good,
            candidate: None,
            step,
            epoch,
            batch,
            history,
            pending: Vec::new(),
            buf: Vec::new(),
            fixed_noise,
            sample_labels,
            interval_start: Instant::now(),
            interval_images: 0,
            fused_off,
            directions: Vec::new(),
            fused_asked: fused,
            timeline: Timeline::default(),
            coverage_ref: None,
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
        let b = self.backend.describe();
        match (self.trainer.path(), &self.fused_off) {
            (Some(path), _) => format!("{b}, {path}"),
            (None, Some(why)) => format!("{b} (fused path off: {why})"),
            // A family without a fast CPU path says so rather than looking slow for no reason.
            (None, None) if self.fused_asked => format!(
                "{b}, burn autodiff training ({} has no fast CPU path)",
                self.spec.family().id()
            ),
            (None, None) => b,
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
    /// The named latent directions saved with the run.
    pub fn directions(&self) -> &[NamedDirection] {
        &self.directions
    }

    /// Replace the named directions (each must have the model's latent size).
    pub fn set_directions(&mut self, directions: Vec<NamedDirection>) -> Result<(), TrainError> {
        let d = self.spec.latent_dim();
        if let Some(bad) = directions
            .iter()
            .find(|v| v.vector.len() != d || v.vector.iter().any(|x| !x.is_finite()))
        {
            return Err(TrainError::Invalid(format!(
                "direction \"{}\" has {} finite values or fewer; the model's latent has {d}",
                bad.name,
                bad.vector.len()
            )));
        }
        self.directions = directions;
        Ok(())
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

    /// Start a KL warm-up of `steps` steps from the next step (0 ends one): β rises from 0
    /// to its value; marked in the history.
    pub fn set_kl_warmup(&mut self, steps: u64) -> Result<(), TrainError> {
        if steps > 0 && !self.spec.capabilities().beta {
            return Err(TrainError::Invalid(
                "KL warm-up needs a model with a KL term".into(),
            ));
        }
        self.config.kl_warmup_steps = steps;
        self.config.kl_warmup_start = self.step;
        self.history.markers.push(Marker {
            step: self.step,
            text: match steps {
                0 => "KL warm-up off".into(),
                n => format!("KL warm-up over {n} steps"),
            },
        });
        Ok(())
    }

    /// One optimiser step on the next batch.
    pub fn step(&mut self) -> Result<StepOutcome, TrainError> {
        if self.batch >= self.plan.batches_per_epoch() {
            self.batch = 0;
            self.epoch += 1;
        }
        let idx = self.plan.batch(self.epoch, self.batch);
        let batch = Batch {
            data: &self.data,
            idx: &idx,
        };
        let terms = if self.config.warming_up(self.step) {
            let mut c = self.config.clone();
            c.beta = self.config.beta_at(self.step);
            self.trainer.step(&batch, &c, &mut self.buf)?
        } else {
            self.trainer.step(&batch, &self.config, &mut self.buf)?
        };
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
                StepTerms::Host(v) => values.extend(v),
                StepTerms::Device(t) => on_device.push(*t),
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
                return self.roll_back(first_step + i as u64, t);
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
            nets: self.trainer.snapshot()?,
            step: self.step,
            epoch: self.epoch,
            batch: self.batch,
        });
        Ok(StepOutcome::Ran {
            point: Some(point),
            epoch_done,
        })
    }

    fn roll_back(&mut self, bad_step: u64, term: usize) -> Result<StepOutcome, TrainError> {
        let term = self.history.names.get(term).cloned().unwrap_or_default();
        self.candidate = None;
        // A copy of the good state, which stays good for a later rollback.
        let restored = match &self.good {
            Some(g) => Some((g.nets.snapshot()?, g.step, g.epoch, g.batch)),
            None => None,
        };
        let restored_step = match restored {
            Some((mut nets, step, epoch, batch)) => {
                nets.reseed(self.config.seed ^ bad_step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                self.trainer = nets;
                self.step = step;
                self.epoch = epoch;
                self.batch = batch;
                step
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
        Ok(StepOutcome::Diverged {
            step: bad_step,
            restored_step,
            term,
        })
    }

    /// Frozen copy of the current weights on `device` (the UI uses `Device::flex()`).
    pub fn inference(&self, device: &Device) -> Inference {
        Inference::new(
            self.spec.clone(),
            self.trainer.nets().as_ref(),
            device,
            self.step,
        )
    }

    /// Frozen copy on the training device (for evaluation and sample grids).
    fn local_inference(&self) -> Inference {
        self.inference(&self.backend.device)
    }

    /// The fixed-noise sample grid with the current weights, [`SAMPLE_COLS`] wide (a
    /// conditional model: one row per class).
    pub fn samples(&self) -> Result<ImageBatch, TrainError> {
        let inf = self.local_inference();
        match &self.sample_labels {
            Some(labels) => inf.decode_labelled(&self.fixed_noise, labels),
            None => inf.decode(&self.fixed_noise),
        }
    }

    /// The sample history of the run ([`Session::record_images`]).
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The sample grid and (VAE) reconstructions with the current weights, recorded in the
    /// run's [`Timeline`].
    #[allow(clippy::type_complexity)]
    pub fn record_images(
        &mut self,
    ) -> Result<(ImageBatch, Option<(ImageBatch, ImageBatch)>, Measures), TrainError> {
        let samples = self.samples()?;
        let recon = self.reconstructions()?;
        let coverage = self.coverage(&samples);
        let measures = Measures::of(&samples, coverage);
        self.timeline.push(
            self.step,
            &samples,
            SAMPLE_COLS,
            recon.as_ref().map(|(o, r)| (o, r)),
            measures,
        );
        Ok((samples, recon, measures))
    }

    /// [`crate::health::label_coverage`] of `samples` against the first test images.
    fn coverage(&mut self, samples: &ImageBatch) -> Option<f32> {
        if self.data.labels.is_none() || self.sample_labels.is_some() {
            return None;
        }
        if self.coverage_ref.is_none() {
            let (real, l) = self.first_test_images(COVERAGE_IMAGES);
            self.coverage_ref = Some((real, l.unwrap_or_default()));
        }
        let (real, l) = self.coverage_ref.as_ref()?;
        crate::health::label_coverage(samples, real, l).map(|c| c as f32)
    }

    /// The first `n` images of the test split, and their labels if the data has them (the
    /// app's test preview, and what label coverage is measured against).
    pub fn first_test_images(&self, n: usize) -> (ImageBatch, Option<Vec<u32>>) {
        let idx: Vec<usize> = self.split.test.iter().take(n).copied().collect();
        let mut pixels = Vec::new();
        self.data.gather_f32(&idx, &mut pixels);
        let labels = self
            .data
            .labels
            .as_ref()
            .map(|l| idx.iter().map(|&i| l[i]).collect());
        (
            ImageBatch {
                shape: self.spec.shape,
                pixels,
            },
            labels,
        )
    }

    /// The first test images and their reconstructions (VAE only).
    pub fn reconstructions(&self) -> Result<Option<(ImageBatch, ImageBatch)>, TrainError> {
        if !self.spec.has_encoder() {
            return Ok(None);
        }
        let n = RECON_COUNT.min(self.split.test.len());
        let idx = &self.split.test[..n];
        let mut originals = Vec::new();
        self.data.gather_f32(idx, &mut originals);
        let inf = self.local_inference();
        let labels: Option<Vec<u32>> = match (inf.classes(), &self.data.labels) {
            (Some(_), Some(l)) => Some(
                idx.iter()
                    .map(|&i| l.get(i).copied().unwrap_or(0))
                    .collect(),
            ),
            _ => None,
        };
        let recon = match &labels {
            Some(l) => {
                let (mu, _) = inf.encode_labelled(&originals, l)?;
                inf.decode_labelled(&mu, l)?
            }
            None => {
                let (mu, _) = inf.encode(&originals)?;
                inf.decode(&mu)?
            }
        };
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
            data_description: self.data.describe(),
            label_names: self.data.label_names.clone(),
            train: self.config.clone(),
            step: self.step,
            epoch: self.epoch,
            batch_in_epoch: self.batch,
            history: self.history.clone(),
            saved_unix_secs: crate::checkpoint::now_unix_secs(),
            directions: self.directions.clone(),
        };
        let optims = self.trainer.optim_bytes()?;
        let mut ckpt = Checkpoint::from_parts(header, self.trainer.nets().as_ref(), optims)?;
        if !self.timeline.is_empty() {
            ckpt.blobs.push((
                crate::timeline::SECTION.to_string(),
                self.timeline.to_bytes(),
            ));
        }
        Ok(ckpt)
    }
}
