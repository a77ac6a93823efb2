//! `latent-lab import --safetensors`: a model trained elsewhere (PyTorch) as a checkpoint.
//!
//! The inverse of [`crate::export`]: tensors under the PyTorch names and layouts of
//! [`crate::model::Nets::named_tensors`], the architecture in the header's `__metadata__`
//! (the `latent_lab.*` keys of [`meta`], defined here and written by export), or given by the
//! caller where the file lacks it. The format, per family, is in `docs/safetensors.md`.
//!
//! Untrusted input: the safetensors crate checks that the header's offsets cover the file
//! exactly, so every tensor is paid for by bytes of the file; the architecture is checked for
//! plausible sizes before a module is built, and every parameter must come from the file with
//! its exact shape, so nothing sized by the header alone is allocated.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::backend::Backend;
use crate::checkpoint::{now_unix_secs, read_file, Checkpoint, CheckpointHeader, MAGIC};
use crate::data::{DataSource, ImageShape};
use crate::error::CheckpointError;
use crate::model::tensors::{NamedTensor, TensorSource};
use crate::model::{ModelKind, ModelOverrides, ModelSpec};
use crate::run::{Marker, MetricsHistory, TrainConfig};

/// What the caller says about the model, filling in or checking the file's metadata.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    pub model: Option<ModelKind>,
    pub latent_dim: Option<usize>,
    pub hidden: Option<Vec<usize>>,
    /// Image side (square images).
    pub image_size: Option<usize>,
    pub channels: Option<usize>,
    /// Class count of a conditional model.
    pub classes: Option<usize>,
    /// The dataset to train on and to explore with.
    pub data: Option<DataSource>,
}

/// The header's `__metadata__` keys (strings, as safetensors has them). `import` reads them:
/// `MODEL` to `CLASSES` describe a model as the command-line flags do, `ARCHITECTURE` is its
/// exact configuration.
pub mod meta {
    /// Version of this layout: `1`.
    pub const FORMAT: &str = "latent_lab.format";
    /// The preset (`--model` value): `vae`, `gan`, `dcgan`, …
    pub const MODEL: &str = "latent_lab.model";
    /// The family (`vae`, `gan`, `dcgan`, …): the tag of `ARCHITECTURE`.
    pub const FAMILY: &str = "latent_lab.family";
    pub const LATENT_DIM: &str = "latent_lab.latent_dim";
    /// Hidden widths, comma-separated (MLP families), or the base channel count (conv).
    pub const HIDDEN: &str = "latent_lab.hidden";
    /// `channels,height,width`.
    pub const IMAGE_SHAPE: &str = "latent_lab.image_shape";
    /// Class count of a conditional family.
    pub const CLASSES: &str = "latent_lab.classes";
    /// The family's whole configuration as JSON (as checkpoints store it).
    pub const ARCHITECTURE: &str = "latent_lab.architecture";
    /// The dataset the model was trained on, as JSON (as checkpoints store it).
    pub const DATA: &str = "latent_lab.data";
    /// Class names as a JSON list.
    pub const LABEL_NAMES: &str = "latent_lab.label_names";
    /// Optimiser steps the model was trained for.
    pub const STEP: &str = "latent_lab.step";
}

/// The metadata keys describing `spec` ([`meta`]).
pub fn metadata(spec: &ModelSpec, step: u64) -> HashMap<String, String> {
    let o = spec.arch.config().overrides();
    let s = spec.shape;
    let mut m = HashMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put(meta::FORMAT, "1".into());
    put(meta::MODEL, spec.kind.name().into());
    put(meta::FAMILY, spec.family().id().into());
    if let Some(l) = o.latent_dim {
        put(meta::LATENT_DIM, l.to_string());
    }
    if let Some(h) = &o.hidden {
        let h: Vec<String> = h.iter().map(|w| w.to_string()).collect();
        put(meta::HIDDEN, h.join(","));
    }
    put(
        meta::IMAGE_SHAPE,
        format!("{},{},{}", s.channels, s.height, s.width),
    );
    if let Some(k) = spec.classes() {
        put(meta::CLASSES, k.to_string());
    }
    if let Ok(a) = serde_json::to_string(&spec.arch) {
        put(meta::ARCHITECTURE, a);
    }
    put(meta::STEP, step.to_string());
    m
}

/// PyTorch's batch-norm step counter: an integer the networks here do not keep.
const SKIPPED_SUFFIX: &str = ".num_batches_tracked";

/// The tensors (as `f32`, converted from F16, BF16 or F64) and the metadata of a safetensors
/// file's bytes.
pub fn read_safetensors(
    bytes: &[u8],
) -> Result<(HashMap<String, String>, Vec<NamedTensor>), String> {
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let mut tensors = Vec::new();
    for (name, view) in st.iter() {
        if name.ends_with(SKIPPED_SUFFIX) {
            continue;
        }
        let values = to_f32(view.dtype(), view.data()).ok_or_else(|| {
            format!(
                "tensor {name} is {:?}; weights must be F32, F16, BF16 or F64",
                view.dtype()
            )
        })?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(format!("tensor {name} holds NaN or infinite values"));
        }
        tensors.push(NamedTensor {
            name: name.to_string(),
            shape: view.shape().to_vec(),
            values,
        });
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((metadata, tensors))
}

/// Little-endian `data` of `dtype` as `f32`; `None` for dtypes that are not floats we take.
fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let words = |n: usize| data.chunks_exact(n);
    Some(match dtype {
        Dtype::F32 => words(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => words(8)
            .map(|b| {
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                f64::from_le_bytes(w) as f32
            })
            .collect(),
        Dtype::BF16 => words(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
            .collect(),
        Dtype::F16 => words(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        _ => return None,
    })
}

/// IEEE half precision to single (exact: every f16 is an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: frac · 2^-24.
            let v = frac as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000,
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// A file's metadata value, by key.
fn get<'a>(metadata: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    metadata.get(key).map(|s| s.trim())
}

/// `value` from the file's metadata and `given` by the caller: the one there is, and an
/// error when both are there and differ.
fn agree<T: PartialEq + std::fmt::Debug>(
    what: &str,
    file: Option<T>,
    given: Option<T>,
) -> Result<Option<T>, String> {
    match (file, given) {
        (Some(f), Some(g)) if f != g => Err(format!(
            "the file's metadata says {what} {f:?}, the command line {g:?}"
        )),
        (f, g) => Ok(g.or(f)),
    }
}

fn parse_num(metadata: &HashMap<String, String>, key: &str) -> Result<Option<usize>, String> {
    get(metadata, key)
        .map(|v| {
            v.parse()
                .map_err(|_| format!("metadata {key} = {v:?} is not a number"))
        })
        .transpose()
}

fn parse_list(metadata: &HashMap<String, String>, key: &str) -> Result<Option<Vec<usize>>, String> {
    get(metadata, key)
        .map(|v| {
            v.split(',')
                .map(|w| w.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    format!("metadata {key} = {v:?} is not a comma-separated list of numbers")
                })
        })
        .transpose()
}

/// The model a file describes (metadata) with what the caller says (`opts`).
pub fn resolve_spec(
    metadata: &HashMap<String, String>,
    opts: &ImportOptions,
) -> Result<ModelSpec, String> {
    let upgraded;
    let metadata = match legacy_keys(metadata)? {
        Some(m) => {
            upgraded = m;
            &upgraded
        }
        None => metadata,
    };
    let model = get(metadata, meta::MODEL)
        .map(|m| ModelKind::named(m).map_err(|e| format!("metadata {}: {e}", meta::MODEL)))
        .transpose()?;
    let kind = agree("model", model, opts.model)?;
    let shape = match parse_list(metadata, meta::IMAGE_SHAPE)? {
        Some(s) if s.len() == 3 => Some(s),
        Some(s) => {
            return Err(format!(
                "metadata {} = {s:?} is not channels,height,width",
                meta::IMAGE_SHAPE
            ))
        }
        None => None,
    };
    if let Some(s) = &shape {
        if s[1] != s[2] {
            return Err(format!(
                "metadata {}: images must be square",
                meta::IMAGE_SHAPE
            ));
        }
    }
    let channels = agree("channels", shape.as_ref().map(|s| s[0]), opts.channels)?;
    let size = agree("image size", shape.as_ref().map(|s| s[1]), opts.image_size)?;
    let latent_dim = agree(
        "latent_dim",
        parse_num(metadata, meta::LATENT_DIM)?,
        opts.latent_dim,
    )?;
    let hidden = agree(
        "hidden",
        parse_list(metadata, meta::HIDDEN)?,
        opts.hidden.clone(),
    )?;
    let classes = agree("classes", parse_num(metadata, meta::CLASSES)?, opts.classes)?;

    let Some(kind) = kind else {
        return Err(format!(
            "the file does not say which model it holds (no {} in its metadata): pass --model ({})",
            meta::MODEL,
            ModelKind::names()
        ));
    };
    let Some(size) = size else {
        return Err(format!(
            "the file does not say its image size (no {} in its metadata): pass --image-size",
            meta::IMAGE_SHAPE
        ));
    };
    let shape = ImageShape::new(channels.unwrap_or(1), size, size);
    let overrides = ModelOverrides {
        latent_dim,
        hidden,
        classes,
    };
    let spec = match get(metadata, meta::ARCHITECTURE) {
        // The exact configuration (fields the flags do not reach, such as a conv model's
        // stages): it must agree with the keys above, which a person may have edited.
        Some(json) => {
            let arch: crate::model::Architecture = serde_json::from_str(json)
                .map_err(|e| format!("metadata {}: {e}", meta::ARCHITECTURE))?;
            let o = arch.config().overrides();
            agree("latent_dim", o.latent_dim, overrides.latent_dim)?;
            agree("hidden", o.hidden, overrides.hidden)?;
            ModelSpec { kind, shape, arch }
        }
        None => ModelSpec::new(kind, shape, &overrides).map_err(|e| e.to_string())?,
    };
    spec.validate().map_err(|e| e.to_string())?;
    agree("classes", spec.classes(), overrides.classes)?;
    Ok(spec)
}

/// The `latent_lab.*` keys of a file exported before they existed (keys `model` and
/// `architecture`, the whole model spec as JSON); `None` for other files.
fn legacy_keys(
    metadata: &HashMap<String, String>,
) -> Result<Option<HashMap<String, String>>, String> {
    if metadata.contains_key(meta::MODEL) {
        return Ok(None);
    }
    let Some(json) = get(metadata, "architecture") else {
        return Ok(None);
    };
    let spec: ModelSpec = serde_json::from_str(json)
        .map_err(|e| format!("metadata architecture (an earlier export's model): {e}"))?;
    let mut m = metadata.clone();
    m.extend(self::metadata(&spec, 0));
    Ok(Some(m))
}

/// Import the safetensors file at `path` as a checkpoint (in memory): its networks with the
/// file's weights, fresh optimiser state, an empty history marked as imported.
pub fn import(path: &Path, opts: &ImportOptions) -> Result<Checkpoint, CheckpointError> {
    import_bytes(&read_file(path)?, path, opts)
}

/// [`import`] of a file's bytes (`path` for messages).
pub fn import_bytes(
    bytes: &[u8],
    path: &Path,
    opts: &ImportOptions,
) -> Result<Checkpoint, CheckpointError> {
    let fail = |msg: String| CheckpointError::Import {
        path: path.to_path_buf(),
        msg,
    };
    let (metadata, tensors) = read_safetensors(bytes).map_err(fail)?;
    let spec = resolve_spec(&metadata, opts).map_err(fail)?;
    let data = match (&opts.data, get(&metadata, meta::DATA)) {
        (Some(d), _) => d.clone(),
        (None, Some(json)) => {
            serde_json::from_str(json).map_err(|e| fail(format!("metadata {}: {e}", meta::DATA)))?
        }
        (None, None) if spec.shape == ImageShape::new(1, 28, 28) => DataSource::Mnist,
        (None, None) => {
            return Err(fail(format!(
                "the model is for {} images and the file names no dataset ({}): import it with \
                 `latent-lab import --data DIR` to say which images it belongs to",
                spec.shape,
                meta::DATA
            )))
        }
    };
    let label_names: Vec<String> = match get(&metadata, meta::LABEL_NAMES) {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| fail(format!("metadata {}: {e}", meta::LABEL_NAMES)))?,
        None => Vec::new(),
    };
    let mut source = TensorSource::new(tensors);
    let describe = |msg: String| {
        fail(format!(
            "{msg} (the model from the file's metadata and the command line: {})",
            spec.describe()
        ))
    };
    let fresh = spec.init(&Backend::cpu().device);
    let nets = crate::model::tensors::contained(|| fresh.with_named_tensors(&mut source))
        .map_err(describe)?;
    source.finish().map_err(describe)?;

    let train = TrainConfig::with_defaults(spec.family().train_defaults());
    let mut history = MetricsHistory::new(spec.objective().terms);
    history.markers.push(Marker {
        step: 0,
        text: format!(
            "imported from {}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
    });
    let header = CheckpointHeader {
        app_version: env!("CARGO_PKG_VERSION").to_string(),
        data_description: data.describe(),
        data,
        label_names,
        model: spec,
        train,
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        history,
        saved_unix_secs: now_unix_secs(),
        directions: Vec::new(),
    };
    let mut ckpt = Checkpoint::from_parts(header, nets.as_ref(), Vec::new())?;
    ckpt.path = path.to_path_buf();
    Ok(ckpt)
}

/// A file the user opened: a checkpoint, or a safetensors file imported with what its
/// metadata says.
pub fn open(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = read_file(path)?;
    if bytes.starts_with(MAGIC) || !is_safetensors(path, &bytes) {
        return Checkpoint::from_bytes(&bytes, path);
    }
    import_bytes(&bytes, path, &ImportOptions::default())
}

/// A safetensors file by its name or by its first bytes (a little-endian header length, then
/// a JSON object).
pub fn is_safetensors(path: &Path, bytes: &[u8]) -> bool {
    let named = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    named
        || (bytes.len() > 9 && bytes[8] == b'{' && bytes[..8].iter().rev().take(3).all(|&b| b == 0))
}

/// Where `import` writes by default: the input's name with the checkpoint extension.
pub fn default_out(input: &Path) -> PathBuf {
    input.with_extension(crate::checkpoint::EXTENSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts_exactly() {
        // 1.0, -2.0, 65504 (largest), 2^-24 (smallest subnormal), 0.5, inf.
        let cases = [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0001, 5.960_464_5e-8),
            (0x3800, 0.5),
            (0x7c00, f32::INFINITY),
        ];
        for (h, f) in cases {
            assert_eq!(f16_to_f32(h), f, "{h:#06x}");
        }
        let bf = to_f32(Dtype::BF16, &[0x80, 0x3f, 0x40, 0xc0]).unwrap();
        assert_eq!(bf, vec![1.0, -3.0]);
        assert!(to_f32(Dtype::I32, &[0; 4]).is_none());
    }

    #[test]
    fn metadata_and_flags_must_agree() {
        let mut m = HashMap::new();
        m.insert(meta::MODEL.to_string(), "vae".to_string());
        m.insert(meta::IMAGE_SHAPE.to_string(), "1,28,28".to_string());
        m.insert(meta::LATENT_DIM.to_string(), "4".to_string());
        m.insert(meta::HIDDEN.to_string(), "16".to_string());
        let spec = resolve_spec(&m, &ImportOptions::default()).unwrap();
        assert_eq!(spec.describe(), "vae (784-16-4)");
        let clash = ImportOptions {
            latent_dim: Some(8),
            ..Default::default()
        };
        let e = resolve_spec(&m, &clash).unwrap_err();
        assert!(
            e.contains("latent_dim") && e.contains('4') && e.contains('8'),
            "{e}"
        );
        m.remove(meta::MODEL);
        let e = resolve_spec(&m, &ImportOptions::default()).unwrap_err();
        assert!(e.contains("--model"), "{e}");
        let given = ImportOptions {
            model: ModelKind::parse("vae"),
            ..Default::default()
        };
        assert!(resolve_spec(&m, &given).is_ok());
    }
}
