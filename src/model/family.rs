//! The plug-in interface of a model family.
//!
//! A family is one file in `model/` that implements [`Family`] (its presets and defaults),
//! [`ArchConfig`] (its burn `Config`: validation, description, building networks) and, through
//! the objective it trains with ([`super::vae_objective`], [`super::gan_objective`]), [`Nets`]
//! and [`Trainer`]. It is listed once in [`super::FAMILIES`]. Nothing else in the crate
//! matches on families: the CLI's `--model` values, the app's model menu, `bench`,
//! checkpoints, evaluation and the plots all come from these traits.

use std::any::Any;
use std::fmt::Debug;

use burn::optim::ModuleOptimizer;
use burn::prelude::*;

use super::tensors::{NamedTensor, PixelRange, TensorSource};
use super::ModelOverrides;
use crate::data::{Dataset, ImageShape};
use crate::error::{CheckpointError, ModelError, TrainError};
use crate::run::{EvalReport, TrainConfig, TrainDefaults};

/// What the app and the CLI can do with a family's networks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Encodes images to latents (reconstructions, scatter, explore a real image, KL per
    /// dimension, interpolation between real images).
    pub encoder: bool,
    /// Has a KL term weighted by β (the β control, "sort by KL").
    pub beta: bool,
}

/// A group of loss terms drawn on one plot.
#[derive(Clone, Copy, Debug)]
pub struct PlotGroup {
    pub title: &'static str,
    /// Term names, in [`Objective::terms`].
    pub terms: &'static [&'static str],
}

/// A training objective shared by families (the VAE's ELBO, the non-saturating GAN loss):
/// the plain data the rest of the app needs about it.
#[derive(Debug)]
pub struct Objective {
    pub name: &'static str,
    /// Loss terms of one step, in the order a [`Trainer`] reports them.
    pub terms: &'static [&'static str],
    pub plots: &'static [PlotGroup],
    /// The per-epoch test metric's label (the value of [`EvalReport::headline`]).
    pub headline: &'static str,
    /// Pixel scaling the networks train on.
    pub pixels: PixelRange,
    pub capabilities: Capabilities,
    /// Checkpoint sections of the optimiser states, in [`Trainer::optim_bytes`] order.
    pub optim_sections: &'static [&'static str],
}

/// A named preset of a family (`--model` value).
#[derive(Debug)]
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
}

/// A model family (see the module docs).
pub trait Family: Send + Sync + 'static {
    /// The serde tag of its configuration in checkpoints (`"family": "vae"`).
    fn id(&self) -> &'static str;
    /// Its presets; the first has the family's own name.
    fn presets(&self) -> &'static [Preset];
    fn objective(&self) -> &'static Objective;
    /// Optimiser settings and batch size that train well.
    fn train_defaults(&self) -> TrainDefaults;
    /// The configuration of preset `preset` for images of `shape`, with `overrides`.
    fn config(
        &self,
        preset: &str,
        shape: ImageShape,
        overrides: &ModelOverrides,
    ) -> Result<Box<dyn ArchConfig>, ModelError>;
    /// Its configuration from a checkpoint header (the JSON object, `family` tag included).
    fn parse(&self, value: serde_json::Value) -> Result<Box<dyn ArchConfig>, String>;
}

/// A family's configuration (its burn `Config`), behind the family's type.
pub trait ArchConfig: ConfigBase + Debug + Send + Sync + 'static {
    fn family(&self) -> &'static dyn Family;
    fn latent_dim(&self) -> usize;
    /// Check a configuration read from a file against `shape` before anything is allocated:
    /// `Ok(false)` when its sizes are implausible, an error when the shape does not fit.
    fn validate(&self, shape: ImageShape) -> Result<bool, ModelError>;
    /// Short description of the layers, e.g. `784-400-20`.
    fn describe(&self) -> String;
    /// This configuration as the overrides a user gives (`--latent-dim`, `--hidden`).
    fn overrides(&self) -> ModelOverrides;
    /// Fresh networks on `device` (lazy: nothing is allocated until first use).
    fn networks(&self, device: &Device) -> Box<dyn Nets>;
}

/// Reads a checkpoint section by name.
pub type SectionReader<'a> = &'a dyn Fn(&str) -> Result<&'a [u8], CheckpointError>;

/// How a [`Trainer`] is set up.
pub struct TrainerSetup<'a> {
    pub config: &'a TrainConfig,
    /// The training device (autodiff).
    pub device: &'a Device,
    /// Optimisers restored from a checkpoint ([`Objective::optim_sections`] order); `None`
    /// starts fresh ones.
    pub optims: Option<Vec<ModuleOptimizer>>,
    /// Use the family's fast CPU path if it has one.
    pub fused: bool,
    /// Seed of the fast path's own noise stream.
    pub seed: u64,
}

/// The networks of one model, behind the family's types.
pub trait Nets: Debug + Send + Sync + 'static {
    fn objective(&self) -> &'static Objective;
    fn clone_box(&self) -> Box<dyn Nets>;
    /// Inference copy on `device` (`valid()`: no autodiff, batch norm in eval mode).
    fn inference_copy(&self, device: &Device) -> Box<dyn Nets>;
    /// `z: [batch, latent]` → images `[batch, pixels]` in [0, 1].
    fn decode(&self, z: Tensor<2>) -> Tensor<2>;
    /// Images in [0, 1] → `(mean, log-variance)`; `None` for families without an encoder.
    fn encode(&self, x: Tensor<2>) -> Option<(Tensor<2>, Tensor<2>)>;
    /// The number of classes a conditional family is conditioned on; `None` for the others.
    fn classes(&self) -> Option<usize> {
        None
    }
    /// [`Nets::decode`] given the condition `[batch, classes]` of a conditional family: one-hot
    /// rows, or mixtures of classes (a walk from one class to another). The others ignore it.
    fn decode_with(&self, z: Tensor<2>, cond: Tensor<2>) -> Tensor<2> {
        let _ = cond;
        self.decode(z)
    }
    /// [`Nets::decode`] with one class label per latent (conditional families; the others
    /// have no use for labels).
    fn decode_labelled(&self, z: Tensor<2>, labels: &[u32]) -> Tensor<2> {
        match self.classes() {
            Some(k) => {
                let cond = super::tensors::one_hot(labels, k, &z.device());
                self.decode_with(z, cond)
            }
            None => self.decode(z),
        }
    }
    /// [`Nets::encode`] with each image's class label (conditional families).
    fn encode_labelled(&self, x: Tensor<2>, labels: &[u32]) -> Option<(Tensor<2>, Tensor<2>)> {
        let _ = labels;
        self.encode(x)
    }
    /// The generator's first hidden activations for latents `z` (`[batch, features]`), where
    /// the family exposes them ([`crate::model::gan_objective::GenModule::first_hidden`]).
    fn first_hidden(&self, _z: Tensor<2>) -> Option<Tensor<2>> {
        None
    }
    /// A discriminator's (critic's) logits `[batch, 1]` for images in the objective's pixel
    /// range; `None` for families without one.
    fn discriminate(&self, _x: Tensor<2>) -> Option<Tensor<2>> {
        None
    }
    /// Checkpoint sections of the weights (`model`, or `generator` + `discriminator`).
    fn save(&self) -> Result<Vec<(String, Vec<u8>)>, CheckpointError>;
    /// These (fresh) networks with the weights of a checkpoint's sections.
    fn load(&self, sections: SectionReader<'_>) -> Result<Box<dyn Nets>, String>;
    /// Test metrics on images `idx` of `data` (pass an inference copy).
    fn evaluate(
        &self,
        data: &Dataset,
        idx: &[usize],
        iw_samples: usize,
        device: &Device,
    ) -> Result<EvalReport, TrainError>;
    /// Every float parameter and running statistic, PyTorch names and layout
    /// (`export --safetensors`; the format is in `docs/safetensors.md`).
    fn named_tensors(&self) -> Result<Vec<NamedTensor>, String>;
    /// These (fresh, lazy) networks with every tensor of [`Nets::named_tensors`] taken from
    /// `source` (`import --safetensors`): the inverse of `named_tensors`. A missing tensor or
    /// one of the wrong shape is an error naming it; [`TensorSource::finish`] names the ones
    /// left over.
    fn with_named_tensors(&self, source: &mut TensorSource) -> Result<Box<dyn Nets>, String>;
    /// A plain-Rust decoder for a few latents at a time (the slider path), if the family
    /// has one.
    fn fast_decoder(&self) -> Option<crate::cpu::PlainMlp> {
        None
    }
    /// A trainer for these networks; also the reason the fast CPU path is off, if it was
    /// asked for and could not be used.
    fn trainer(
        &self,
        setup: TrainerSetup<'_>,
    ) -> Result<(Box<dyn Trainer>, Option<String>), TrainError>;
    fn as_any(&self) -> &dyn Any;
}

/// The fast CPU trainer when the family built one (`fast`: `None` when it was not asked for
/// or the family has none), else the burn trainer; with the reason the fast path is off when
/// building it failed.
pub fn fast_or_burn(
    fast: Option<Result<Box<dyn Trainer>, TrainError>>,
    burn: impl FnOnce() -> Box<dyn Trainer>,
) -> (Box<dyn Trainer>, Option<String>) {
    match fast {
        Some(Ok(t)) => (t, None),
        Some(Err(e)) => (burn(), Some(e.to_string())),
        None => (burn(), None),
    }
}

/// The serde form and copying of a family's configuration, for every `Serialize + Clone`
/// config (so a family does not write them).
pub trait ConfigBase {
    /// The serde form as JSON text, fields in declaration order (without the `family` tag,
    /// which [`super::Architecture`] adds).
    fn to_json_string(&self) -> Result<String, String>;
    fn clone_box(&self) -> Box<dyn ArchConfig>;
}

impl<T: ArchConfig + serde::Serialize + Clone> ConfigBase for T {
    fn to_json_string(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|e| e.to_string())
    }

    fn clone_box(&self) -> Box<dyn ArchConfig> {
        Box::new(self.clone())
    }
}

/// A family's configuration from its serde form ([`Family::parse`]).
pub fn parse_config<T: ArchConfig + serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<Box<dyn ArchConfig>, String> {
    parse_config_with::<T>(value, &[])
}

/// [`parse_config`] for a configuration that gained fields after files were written: each
/// `(field, value)` in `later` fills a field the file lacks with the value those files
/// meant (burn's `Config` derive gives serde no defaults of its own).
pub fn parse_config_with<T: ArchConfig + serde::de::DeserializeOwned>(
    mut value: serde_json::Value,
    later: &[(&str, serde_json::Value)],
) -> Result<Box<dyn ArchConfig>, String> {
    if let Some(fields) = value.as_object_mut() {
        for (name, meant) in later {
            if !fields.contains_key(*name) {
                fields.insert(name.to_string(), meant.clone());
            }
        }
    }
    let cfg: T = serde_json::from_value(value).map_err(|e| e.to_string())?;
    Ok(Box::new(cfg))
}

/// Loss terms of one step, not yet checked.
pub enum StepTerms {
    /// Still on the training device (read back in one sync with the others).
    Device(Box<Tensor<1>>),
    /// Already on the host (the fast CPU path).
    Host(Vec<f32>),
}

/// One batch: image indices into a dataset (pixels and, where the dataset has them, labels).
pub struct Batch<'a> {
    pub data: &'a Dataset,
    pub idx: &'a [usize],
}

impl Batch<'_> {
    /// The labels of the batch, if the dataset has labels.
    pub fn labels(&self) -> Option<Vec<u32>> {
        let l = self.data.labels.as_ref()?;
        self.idx.iter().map(|&i| l.get(i).copied()).collect()
    }

    /// The classes of the dataset (labels run from 0 to this), if it has labels.
    pub fn classes(&self) -> Option<usize> {
        self.data.classes()
    }

    /// The labels of the batch one-hot, `[batch, classes]`, on `device`.
    pub fn one_hot(&self, classes: usize, device: &Device) -> Option<Tensor<2>> {
        Some(super::tensors::one_hot(&self.labels()?, classes, device))
    }

    /// The condition a model with `classes` (a conditional family; `None` for the others)
    /// takes for this batch: its one-hot labels, or an error in words when the data has no
    /// labels or labels outside the model's classes.
    pub fn condition(
        &self,
        classes: Option<usize>,
        device: &Device,
    ) -> Result<Option<Tensor<2>>, TrainError> {
        let Some(k) = classes else {
            return Ok(None);
        };
        let labels = self.labels();
        let labels = labels_fit(self.data, labels.as_deref(), k)?;
        Ok(Some(super::tensors::one_hot(labels, k, device)))
    }
}

/// `labels` (of `data`) fit a conditional model with `k` classes: there are some, and all are
/// below `k`. The error says which, in words.
pub fn labels_fit<'a>(
    data: &Dataset,
    labels: Option<&'a [u32]>,
    k: usize,
) -> Result<&'a [u32], TrainError> {
    let Some(labels) = labels else {
        return Err(TrainError::Invalid(format!(
            "a conditional model needs class labels, and {} has none",
            data.source.describe()
        )));
    };
    if let Some(bad) = labels.iter().find(|&&l| l as usize >= k) {
        return Err(TrainError::Invalid(format!(
            "{} has class {bad}, outside the model's {k} classes",
            data.source.describe()
        )));
    }
    Ok(labels)
}

/// Trains one model: the family's step, weights and optimiser states.
pub trait Trainer: Send {
    /// One optimiser step on `batch`; `buf` is scratch for the gathered pixels.
    fn step(
        &mut self,
        batch: &Batch<'_>,
        config: &TrainConfig,
        buf: &mut Vec<f32>,
    ) -> Result<StepTerms, TrainError>;
    /// The networks with the current weights, on the training device.
    fn nets(&self) -> Box<dyn Nets>;
    /// The optimisers' records ([`Objective::optim_sections`] order).
    fn optim_bytes(&self) -> Result<Vec<Vec<u8>>, TrainError>;
    /// A copy that shares no state (weights, optimiser, batch-norm statistics) with this one,
    /// for rolling back.
    fn snapshot(&self) -> Result<Box<dyn Trainer>, TrainError>;
    /// After a rollback: a new noise stream, so the same steps are not replayed.
    fn reseed(&mut self, seed: u64);
    /// The training path, for the backend line (`fused MLP training`), when it is not
    /// burn's autodiff.
    fn path(&self) -> Option<&'static str>;
}
