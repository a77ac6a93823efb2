//! Checkpoint files (`.llck`): one self-contained file per run.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic        8 bytes   b"LATLAB\r\n"  (the CR LF catches text-mode corruption, as in PNG)
//! version      u32       FORMAT_VERSION
//! header_len   u64
//! header       JSON      CheckpointHeader: model family + config, dataset, hyperparameters,
//!                        step / epoch / batch position, full metrics history
//! blob_count   u32
//! blob × n     u32 name_len, name (UTF-8), u64 len, bytes
//!                        burnpack records: "model" + "optim" (VAE) or
//!                        "generator" + "discriminator" + "optim_g" + "optim_d" (GAN)
//! crc32        u32       CRC-32 of every byte before it
//! ```
//!
//! Files are written atomically: a temporary file in the same directory, fsync, rename.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use crate::data::DataSource;
use crate::model::{ModelSpec, Networks};
use crate::train::metrics::MetricsHistory;
use crate::train::TrainConfig;

pub const MAGIC: &[u8; 8] = b"LATLAB\r\n";
pub const FORMAT_VERSION: u32 = 1;
/// Conventional file extension.
pub const EXTENSION: &str = "llck";

const MAX_HEADER: u64 = 256 << 20;
const MAX_NAME: u32 = 256;
const MAX_BLOBS: u32 = 64;
/// Weights are stored as f16 at the least (f32 in practice).
const MIN_BYTES_PER_PARAM: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a Latent Lab checkpoint (wrong magic bytes)")]
    NotCheckpoint { path: PathBuf },
    #[error("{path}: checkpoint format version {found} is newer than this build understands ({FORMAT_VERSION})")]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: checkpoint is truncated or corrupt ({what})")]
    Corrupt { path: PathBuf, what: String },
    #[error("{path}: checkpoint has no '{name}' section")]
    MissingBlob { path: PathBuf, name: String },
    #[error("{path}: weights do not fit the model described in the checkpoint: {msg}")]
    Weights { path: PathBuf, msg: String },
    #[error("cannot serialise checkpoint: {0}")]
    Encode(String),
}

/// Everything about a run except the tensors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointHeader {
    pub app_version: String,
    pub model: ModelSpec,
    pub data: DataSource,
    pub data_description: String,
    pub train: TrainConfig,
    /// Optimiser steps taken.
    pub step: u64,
    /// Completed epochs.
    pub epoch: usize,
    /// Batches of the current (incomplete) epoch already seen.
    pub batch_in_epoch: usize,
    pub history: MetricsHistory,
    pub saved_unix_secs: u64,
}

#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub header: CheckpointHeader,
    pub blobs: Vec<(String, Vec<u8>)>,
    /// Where it was read from (for messages); empty when built in memory.
    pub path: PathBuf,
}

fn record_bytes<M: Module>(m: &M) -> Result<Vec<u8>, CheckpointError> {
    // `valid()` folds pending batch-norm running-statistics updates into the recorded value;
    // a plain clone would record them one update behind.
    let bytes = m
        .valid()
        .into_record()
        .into_bytes()
        .map_err(|e| CheckpointError::Encode(e.to_string()))?;
    Ok(bytes.to_vec())
}

/// The saved form of an optimiser (burn's optimiser record).
pub fn optim_bytes(o: &ModuleOptimizer) -> Result<Vec<u8>, CheckpointError> {
    let bytes = o
        .into_bytes()
        .map_err(|e| CheckpointError::Encode(e.to_string()))?;
    Ok(bytes.to_vec())
}

impl Checkpoint {
    /// Build a checkpoint from networks and their optimisers' records ([`optim_bytes`];
    /// `[optim]` for a VAE, `[optim_g, optim_d]` for a GAN).
    pub fn from_parts(
        header: CheckpointHeader,
        nets: &Networks,
        optims: Vec<Vec<u8>>,
    ) -> Result<Self, CheckpointError> {
        let mut blobs = Vec::new();
        match nets {
            Networks::Vae(m) => {
                blobs.push(("model".to_string(), record_bytes(m)?));
            }
            Networks::Gan { gen, disc } => {
                blobs.push(("generator".to_string(), record_bytes(gen)?));
                blobs.push(("discriminator".to_string(), record_bytes(disc)?));
            }
        }
        let names: &[&str] = match nets {
            Networks::Vae(_) => &["optim"],
            Networks::Gan { .. } => &["optim_g", "optim_d"],
        };
        if names.len() != optims.len() {
            return Err(CheckpointError::Encode(format!(
                "{} optimiser states for a model with {}",
                optims.len(),
                names.len()
            )));
        }
        for (name, o) in names.iter().zip(optims) {
            blobs.push((name.to_string(), o));
        }
        Ok(Self {
            header,
            blobs,
            path: PathBuf::new(),
        })
    }

    pub fn blob(&self, name: &str) -> Result<&[u8], CheckpointError> {
        self.blobs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| CheckpointError::MissingBlob {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    fn load_module<M: Module>(&self, fresh: M, name: &str) -> Result<M, CheckpointError> {
        let blob = self.blob(name)?;
        let weights_err = |msg: String| CheckpointError::Weights {
            path: self.path.clone(),
            msg: format!("{name}: {msg}"),
        };
        // `fresh` is still lazy (nothing allocated). The header is untrusted: a model it
        // describes must be paid for by real bytes in the file before anything is built.
        let params = fresh.num_params();
        if params.saturating_mul(MIN_BYTES_PER_PARAM) > blob.len() {
            return Err(weights_err(format!(
                "the header describes {params} parameters but the section holds only {} bytes",
                blob.len()
            )));
        }
        let bytes = Bytes::from_bytes_vec(blob.to_vec());
        contained(|| {
            let record = ModuleRecord::from_bytes(bytes).map_err(|e| e.to_string())?;
            fresh.try_load_record(record).map_err(|e| e.to_string())
        })
        .map_err(weights_err)
    }

    /// Rebuild the networks on `device` with the saved weights.
    pub fn networks(&self, device: &Device) -> Result<Networks, CheckpointError> {
        Ok(match self.header.model.init(device) {
            Networks::Vae(m) => Networks::Vae(self.load_module(m, "model")?),
            Networks::Gan { gen, disc } => Networks::Gan {
                gen: self.load_module(gen, "generator")?,
                disc: self.load_module(disc, "discriminator")?,
            },
        })
    }

    /// Restore optimiser `name` into `fresh` (a newly initialised optimiser of the same kind).
    pub fn optimizer(
        &self,
        name: &str,
        fresh: ModuleOptimizer,
    ) -> Result<ModuleOptimizer, CheckpointError> {
        let bytes = Bytes::from_bytes_vec(self.blob(name)?.to_vec());
        contained(|| fresh.from_bytes(bytes).map_err(|e| e.to_string())).map_err(|msg| {
            CheckpointError::Weights {
                path: self.path.clone(),
                msg: format!("{name}: {msg}"),
            }
        })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        let header =
            serde_json::to_vec(&self.header).map_err(|e| CheckpointError::Encode(e.to_string()))?;
        // JSON turns NaN into null, which would not load again: refuse before writing.
        serde_json::from_slice::<CheckpointHeader>(&header).map_err(|e| {
            CheckpointError::Encode(format!("the header would not load again: {e}"))
        })?;
        let mut out = Vec::with_capacity(
            header.len() + self.blobs.iter().map(|(_, b)| b.len() + 64).sum::<usize>() + 32,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&(self.blobs.len() as u32).to_le_bytes());
        for (name, bytes) in &self.blobs {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Parse a checkpoint; `path` only names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, CheckpointError> {
        let corrupt = |what: &str| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(CheckpointError::NotCheckpoint {
                path: path.to_path_buf(),
            });
        }
        if bytes.len() < MAGIC.len() + 4 + 8 + 4 + 4 {
            return Err(corrupt("file ends inside the header"));
        }
        let mut r = Reader {
            bytes,
            pos: MAGIC.len(),
        };
        let version = r.u32().ok_or_else(|| corrupt("no version"))?;
        if version > FORMAT_VERSION || version == 0 {
            return Err(CheckpointError::Version {
                path: path.to_path_buf(),
                found: version,
            });
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if crc32fast::hash(body) != stored {
            return Err(corrupt("checksum mismatch"));
        }
        r.bytes = body;
        let header_len = r.u64().ok_or_else(|| corrupt("no header length"))?;
        if header_len > MAX_HEADER {
            return Err(corrupt("header length out of range"));
        }
        let header = r
            .take(header_len as usize)
            .ok_or_else(|| corrupt("header runs past the end"))?;
        let header: CheckpointHeader = serde_json::from_slice(header)
            .map_err(|e| corrupt(&format!("unreadable header: {e}")))?;
        header
            .model
            .validate()
            .map_err(|e| corrupt(&e.to_string()))?;
        let count = r.u32().ok_or_else(|| corrupt("no section count"))?;
        if count > MAX_BLOBS {
            return Err(corrupt("too many sections"));
        }
        let mut blobs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let name_len = r.u32().ok_or_else(|| corrupt("section name length"))?;
            if name_len > MAX_NAME {
                return Err(corrupt("section name too long"));
            }
            let name = r
                .take(name_len as usize)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| corrupt("section name"))?
                .to_string();
            let len = r.u64().ok_or_else(|| corrupt("section length"))?;
            let data = usize::try_from(len)
                .ok()
                .and_then(|l| r.take(l))
                .ok_or_else(|| corrupt("section runs past the end"))?;
            blobs.push((name, data.to_vec()));
        }
        if r.pos != body.len() {
            return Err(corrupt("trailing bytes after the last section"));
        }
        Ok(Self {
            header,
            blobs,
            path: path.to_path_buf(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// Write atomically: a crash leaves either the old file or the new one, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let bytes = self.to_bytes()?;
        write_atomic(path, &bytes).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

thread_local! {
    static CONTAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True while this thread runs third-party decoding whose panics are caught and turned into
/// errors (a panic hook can stay quiet about them).
pub fn panic_is_contained() -> bool {
    CONTAINING.with(|c| c.get())
}

/// Run `f`, turning a panic into an error: burn's record decoders panic on some malformed
/// records (found by `tests/fuzz.rs`) instead of returning an error.
fn contained<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let before = CONTAINING.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(before));
    r.unwrap_or_else(|_| Err("malformed record (the decoder failed)".to_string()))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }
}

/// Write `bytes` to `path` through a temporary file in the same directory, fsync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
