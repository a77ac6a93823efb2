//! Hand-written training loops (burn-train's Learner does not fit GANs and VAEs).
//!
//! [`Session`] owns one run: model, optimisers, data, position and history.
//! It is driven step by step by the worker thread (`crate::worker`) or directly by tests.

pub(crate) mod fused;
pub mod losses;
pub mod metrics;
mod session;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointError;
use crate::data::{DataError, Dataset};
use crate::model::{ModelError, ModelKind};

pub use session::{evaluate, Session, StepOutcome};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("device error: {0}")]
    Device(String),
    #[error("{0}")]
    Invalid(String),
}

/// Hyperparameters of a run. Stored in checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Weight of the KL term (β-VAE); 1 is the plain VAE. Ignored by GANs.
    pub beta: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub seed: u64,
    /// Train until this many epochs are complete.
    pub epochs: usize,
    /// Read losses back from the device every this many steps (each read is a sync).
    pub log_every: u64,
    /// Emit a sample grid (and reconstructions) every this many steps.
    pub sample_every: u64,
    /// Importance samples for the IWAE bound at each epoch end (0 = skip).
    pub iw_samples: usize,
}

impl TrainConfig {
    /// Defaults that train well for `kind`.
    pub fn for_kind(kind: ModelKind) -> Self {
        let (lr, beta1) = kind.default_optim();
        Self {
            // The DCGAN needs updates more than batch size: on the 9,000-image built-in split,
            // batch 64 gives 1,400 updates in 10 epochs (batch 128: 700, visibly blotchier digits).
            batch_size: if kind == ModelKind::Dcgan { 64 } else { 128 },
            learning_rate: lr,
            beta: 1.0,
            adam_beta1: beta1,
            adam_beta2: 0.999,
            seed: 0,
            epochs: 10,
            log_every: 10,
            sample_every: 200,
            iw_samples: 0,
        }
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Invalid(m.to_string()));
        if self.batch_size == 0 || self.batch_size > 65_536 {
            return bad("batch size must be between 1 and 65536");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning rate must be a positive number");
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return bad("β must be a non-negative number");
        }
        if !(0.0..1.0).contains(&self.adam_beta1) || !(0.0..1.0).contains(&self.adam_beta2) {
            return bad("Adam betas must be in [0, 1)");
        }
        if self.log_every == 0 || self.sample_every == 0 {
            return bad("log and sample intervals must be at least 1 step");
        }
        Ok(())
    }
}

/// How pixels are scaled for a model: VAEs use [0, 1], GANs [-1, 1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelRange {
    Unit,
    Signed,
}

/// Images `idx` of `data` into `buf` (`[len, pixels]`, row-major), scaled to `range`.
pub fn gather_images(data: &Dataset, idx: &[usize], buf: &mut Vec<f32>, range: PixelRange) {
    data.gather_f32(idx, buf);
    if range == PixelRange::Signed {
        for v in buf.iter_mut() {
            *v = *v * 2.0 - 1.0;
        }
    }
}

/// Images `idx` of `data` as a `[len, pixels]` tensor on `device`.
pub fn images_to_tensor(
    data: &Dataset,
    idx: &[usize],
    buf: &mut Vec<f32>,
    device: &Device,
    range: PixelRange,
) -> Tensor<2> {
    gather_images(data, idx, buf, range);
    let t = TensorData::new(buf.clone(), [idx.len(), data.image_len()]);
    Tensor::from_data(t, device)
}

/// Read a tensor back as `f32`s (a device sync); device failures become errors.
pub fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, TrainError> {
    let data = t
        .try_into_data()
        .map_err(|e| TrainError::Device(format!("{e:?}")))?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::Device(format!("{e:?}")))
}
