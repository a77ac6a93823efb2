//! `latent-lab export --safetensors`: weights in a file PyTorch (and anything else) reads.
//!
//! Tensor names are the module paths (`enc.0.weight`, `generator.hidden.1.bias`, …), batch
//! norm's scale and shift as PyTorch names them (`weight`, `bias`, `running_mean`,
//! `running_var`). burn stores `Linear` weights as `[in, out]`; they are transposed to
//! PyTorch's `[out, in]` so `nn.Linear.load_state_dict` takes them as they are. Conv weights
//! already share PyTorch's layout. The architecture goes into the header's `__metadata__`
//! ([`meta`]), so that `import` (`crate::import`) rebuilds the model from the file alone. The
//! layout of every family is in `docs/safetensors.md`.

use std::path::Path;

use anyhow::{Context, Result};

use crate::backend::Backend;
use crate::checkpoint::Checkpoint;
use crate::model::Nets;
use crate::util::write_atomic;

pub use crate::model::tensors::NamedTensor;

/// All float parameters of `nets`, PyTorch layout.
pub fn named_tensors(nets: &dyn Nets) -> Result<Vec<NamedTensor>> {
    nets.named_tensors().map_err(anyhow::Error::msg)
}

pub use crate::import::{meta, metadata};

/// The safetensors file of a checkpoint: every tensor of its networks in PyTorch layout
/// (f32) and the [`meta`] keys.
pub fn safetensors_bytes(ckpt: &Checkpoint) -> Result<Vec<u8>> {
    Ok(encode(ckpt)?.0)
}

/// [`safetensors_bytes`], with the number of tensors written.
fn encode(ckpt: &Checkpoint) -> Result<(Vec<u8>, usize)> {
    let device = Backend::cpu().device;
    let nets = ckpt.networks(&device)?;
    let tensors = named_tensors(nets.as_ref())?;
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| {
            let b: Vec<u8> = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (t.name.clone(), t.shape.clone(), b)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .context("cannot build safetensors views")?;
    let h = &ckpt.header;
    let mut meta = metadata(&h.model, h.step);
    meta.insert(meta::DATA.to_string(), serde_json::to_string(&h.data)?);
    if !h.label_names.is_empty() {
        meta.insert(
            meta::LABEL_NAMES.to_string(),
            serde_json::to_string(&h.label_names)?,
        );
    }
    let data = safetensors::serialize(views, Some(meta)).context("cannot encode safetensors")?;
    Ok((data, tensors.len()))
}

pub fn export_safetensors(checkpoint: &Path, out: &Path) -> Result<()> {
    let ckpt = crate::import::open(checkpoint)?;
    let (data, n) = encode(&ckpt)?;
    write_atomic(out, &data).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {n} tensors to {}", out.display());
    Ok(())
}
