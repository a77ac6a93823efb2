//! The engine's error types, in one leaf module so that every engine module can return them
//! without depending on the others (no module cycles). `anyhow` is only used at the edges
//! (`cli`, `app`).

use std::path::PathBuf;

use crate::data::{DataError, ImageShape};

/// A model or configuration that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{model} needs square images of a size divisible by 4 between 8 and 128 with 1 or 3 channels, got {shape}")]
    UnsupportedShape {
        model: &'static str,
        shape: ImageShape,
    },
    #[error("invalid model setting: {0}")]
    Invalid(String),
    #[error("unknown model '{name}' (available: {available})")]
    Unknown { name: String, available: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a Latent Lab checkpoint (wrong magic bytes)")]
    NotCheckpoint { path: PathBuf },
    #[error("{path}: checkpoint format version {found} is newer than this build understands ({supported})")]
    Version {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: checkpoint is truncated or corrupt ({what})")]
    Corrupt { path: PathBuf, what: String },
    #[error("{path}: checkpoint has no '{name}' section")]
    MissingBlob { path: PathBuf, name: String },
    #[error("{path}: weights do not fit the model described in the checkpoint: {msg}")]
    Weights { path: PathBuf, msg: String },
    #[error("{path}: cannot import: {msg}")]
    Import { path: PathBuf, msg: String },
    #[error("cannot serialise checkpoint: {0}")]
    Encode(String),
}

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
