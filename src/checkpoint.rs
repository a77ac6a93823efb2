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
//!                        "generator" + "discriminator" + "optim_g" + "optim_d" (GAN);
//!                        "timeline": the sample history (`crate::timeline`, deflated;
//!                        optional, skipped by readers that do not know it)
//! crc32        u32       CRC-32 of every byte before it
//! ```
//!
//! Files are written atomically: a temporary file in the same directory, fsync, rename.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::error::CheckpointError;
pub use crate::model::tensors::{optim_bytes, panic_is_contained};

use crate::model::tensors::load_optimizer;
pub use crate::util::write_atomic;

use crate::data::DataSource;
use crate::model::{ModelSpec, Nets};
use crate::run::{MetricsHistory, NamedDirection, TrainConfig};

pub const MAGIC: &[u8; 8] = b"LATLAB\r\n";
pub const FORMAT_VERSION: u32 = 1;
/// Conventional file extension.
pub const EXTENSION: &str = "llck";

const MAX_HEADER: u64 = 256 << 20;
const MAX_NAME: u32 = 256;
const MAX_BLOBS: u32 = 64;

/// The bytes of the file at `path` (a checkpoint, or a file to import), the error naming it.
pub fn read_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Now, for [`CheckpointHeader::saved_unix_secs`].
pub fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Everything about a run except the tensors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointHeader {
    pub app_version: String,
    pub model: ModelSpec,
    pub data: DataSource,
    pub data_description: String,
    /// The dataset's class names (label `i` is `label_names[i]`), so that a conditional model's
    /// classes can be named without the data; empty in files before version 0.2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_names: Vec<String>,
    pub train: TrainConfig,
    /// Optimiser steps taken.
    pub step: u64,
    /// Completed epochs.
    pub epoch: usize,
    /// Batches of the current (incomplete) epoch already seen.
    pub batch_in_epoch: usize,
    pub history: MetricsHistory,
    pub saved_unix_secs: u64,
    /// Latent directions the user named (absent in files before version 0.3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directions: Vec<NamedDirection>,
}

#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub header: CheckpointHeader,
    pub blobs: Vec<(String, Vec<u8>)>,
    /// Where it was read from (for messages); empty when built in memory.
    pub path: PathBuf,
}

impl Checkpoint {
    /// Build a checkpoint from networks and their optimisers' records
    /// ([`optim_bytes`], in the order of the objective's `optim_sections`), or none (an
    /// imported model: training starts with fresh optimisers).
    pub fn from_parts(
        header: CheckpointHeader,
        nets: &dyn Nets,
        optims: Vec<Vec<u8>>,
    ) -> Result<Self, CheckpointError> {
        let mut blobs = nets.save()?;
        let names = nets.objective().optim_sections;
        if !optims.is_empty() && names.len() != optims.len() {
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

    /// Rebuild the networks on `device` with the saved weights.
    pub fn networks(&self, device: &Device) -> Result<Box<dyn Nets>, CheckpointError> {
        // Fresh networks are still lazy (nothing allocated): each section must pay for the
        // parameters the (untrusted) header describes before anything is built.
        let fresh = self.header.model.init(device);
        // A missing section is its own error, not "weights do not fit".
        let missing = std::cell::RefCell::new(None);
        let read = |name: &str| {
            self.blob(name).inspect_err(|_| {
                *missing.borrow_mut() = Some(name.to_string());
            })
        };
        fresh.load(&read).map_err(|msg| match missing.take() {
            Some(name) => CheckpointError::MissingBlob {
                path: self.path.clone(),
                name,
            },
            None => CheckpointError::Weights {
                path: self.path.clone(),
                msg,
            },
        })
    }

    /// The run's sample history (empty in files without one).
    pub fn timeline(&self) -> Result<crate::timeline::Timeline, CheckpointError> {
        match self
            .blobs
            .iter()
            .find(|(n, _)| n == crate::timeline::SECTION)
        {
            None => Ok(crate::timeline::Timeline::default()),
            Some((_, b)) => {
                crate::timeline::Timeline::from_bytes(b).map_err(|what| CheckpointError::Corrupt {
                    path: self.path.clone(),
                    what: format!("sample history: {what}"),
                })
            }
        }
    }

    /// Whether the file has optimiser states (an imported model has none: it trains on with
    /// fresh ones).
    pub fn has_optimizers(&self) -> bool {
        let names = self.header.model.objective().optim_sections;
        names.iter().any(|n| self.blobs.iter().any(|(b, _)| b == n))
    }

    /// Restore optimiser `name` into `fresh` (a newly initialised optimiser of the same kind).
    pub fn optimizer(
        &self,
        name: &str,
        fresh: ModuleOptimizer,
    ) -> Result<ModuleOptimizer, CheckpointError> {
        load_optimizer(fresh, self.blob(name)?).map_err(|msg| CheckpointError::Weights {
            path: self.path.clone(),
            msg: format!("{name}: {msg}"),
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
                supported: FORMAT_VERSION,
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
        Self::from_bytes(&read_file(path)?, path)
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
