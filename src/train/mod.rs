//! Hand-written training loops (burn-train's Learner does not fit GANs and VAEs).
//!
//! [`Session`] owns one run: its family's [`Trainer`](crate::model::Trainer) (networks,
//! optimisers, the step), data, position, history and rollback. It is driven step by step by
//! the worker thread (`crate::worker`) or directly by tests.

mod session;

pub use crate::error::TrainError;
pub use crate::model::losses;
pub use crate::model::tensors::{gather_images, images_to_tensor, read_f32, PixelRange};
pub use crate::run::TrainConfig;
pub use session::{Session, StepOutcome, CPU_TRAINING_ENV, RECON_COUNT, SAMPLE_COLS, SAMPLE_GRID};

/// The plain-data metric history (kept in [`crate::run`]).
pub mod metrics {
    pub use crate::run::{Marker, MetricPoint, MetricsHistory, TestPoint};
}

pub use crate::eval::evaluate;
