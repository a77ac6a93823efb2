//! Messages between the worker and its owner (UI or CLI).

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::BackendChoice;
use crate::data::DataSource;
use crate::images::ImageBatch;
use crate::infer::Inference;
use crate::model::{ModelKind, ModelOverrides, ModelSpec};
use crate::run::NamedDirection;
use crate::train::metrics::{MetricPoint, MetricsHistory, TestPoint};
use crate::train::TrainConfig;

/// A new run.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    pub kind: ModelKind,
    pub overrides: ModelOverrides,
    pub data: DataSource,
    pub config: TrainConfig,
    pub backend: BackendChoice,
}

#[derive(Debug)]
pub enum Command {
    /// Load data and build a fresh model (paused; send `Train` to run).
    Start(Box<TrainRequest>),
    /// Load a checkpoint to continue it (paused).
    Load {
        path: PathBuf,
        backend: BackendChoice,
    },
    /// Run until the configured epochs are done (or resume after a pause).
    Train,
    Pause,
    /// Run this many steps, then pause.
    Step(u64),
    /// End the run (the model is dropped; save first if you want it).
    Stop,
    SetLearningRate(f64),
    SetBeta(f64),
    /// Start a KL warm-up of this many steps from the next step (0 ends one).
    SetKlWarmup(u64),
    SetEpochs(usize),
    /// Replace the run's named latent directions (saved with its checkpoints).
    SetDirections(Vec<NamedDirection>),
    /// Save a checkpoint (atomically).
    Save(PathBuf),
    /// Evaluate on the test split now.
    Evaluate,
    /// Make the next training step fail as `fault` would (for tests of fault handling;
    /// the app never sends it).
    InjectFault(Fault),
    Shutdown,
}

/// Failures [`Command::InjectFault`] can stage inside the training thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A panic inside a training step (a bug, or a backend that reports failure by panicking).
    Panic,
    /// The device reports an error (e.g. a lost wgpu device) while reading results back.
    DeviceLost,
}

/// A run is ready: what it is, where it stands, its history so far.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub spec: ModelSpec,
    pub config: TrainConfig,
    pub data: String,
    /// Where the data comes from (the app's Data controls show it).
    pub data_source: DataSource,
    /// Files of an image folder that could not be read, with the reason.
    pub data_skipped: Vec<String>,
    pub label_names: Vec<String>,
    pub backend: String,
    /// Set when `auto` fell back to the CPU.
    pub backend_notice: Option<String>,
    pub train_images: usize,
    pub test_images: usize,
    pub batches_per_epoch: usize,
    pub step: u64,
    pub epoch: usize,
    pub history: MetricsHistory,
    /// The first (up to [`PREVIEW_IMAGES`]) test images, for thumbnails, encoding and scatter plots.
    pub test_preview: ImageBatch,
    /// Their labels (empty when the dataset has none).
    pub test_preview_labels: Vec<u32>,
    /// Latent directions named by the user, from the checkpoint.
    pub directions: Vec<NamedDirection>,
    /// The sample history so far (from the checkpoint); the UI takes it over and goes on
    /// recording from [`Event::Samples`].
    pub timeline: crate::timeline::Timeline,
}

/// Test images sent with [`RunInfo`].
pub const PREVIEW_IMAGES: usize = 1000;

#[derive(Debug)]
pub enum Event {
    Ready(Box<RunInfo>),
    Running {
        step: u64,
    },
    Paused {
        step: u64,
    },
    Stopped {
        step: u64,
    },
    /// Training reached the configured number of epochs.
    Finished {
        step: u64,
        epoch: usize,
    },
    Metrics(MetricPoint),
    TestMetrics(TestPoint),
    /// Fixed-noise samples with the current weights, and the test images with their
    /// reconstructions (a model with an encoder): what the run's timeline recorded.
    Samples {
        step: u64,
        images: ImageBatch,
        recon: Option<(ImageBatch, ImageBatch)>,
        /// The grid's diversity and label coverage, as the timeline recorded them.
        measures: crate::timeline::Measures,
    },
    /// A frozen CPU copy of the model for live decoding off the training device. The UI
    /// decodes and encodes only on these (on [`super::decoder`]'s thread); the worker never
    /// decodes for it.
    Snapshot(Arc<Inference>),
    ConfigChanged(TrainConfig),
    /// A loss became NaN/inf at `step`; training paused with the weights of `restored_step`.
    Diverged {
        step: u64,
        restored_step: u64,
        term: String,
    },
    Saved {
        path: PathBuf,
        step: u64,
    },
    /// A save failed (a full disk, a vanished folder): nothing was written, a file already
    /// at `path` is as it was, and training goes on. `message` names the file and the cause.
    SaveFailed {
        path: PathBuf,
        message: String,
    },
    /// Something failed; the message is meant for the user.
    Error(String),
    /// The training thread hit an internal error (a panic) and dropped the run; it is ready
    /// for a new `Start` or `Load`. The last snapshot stays usable for decoding.
    Crashed(String),
}
