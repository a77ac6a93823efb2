//! `latent-lab export --safetensors`: weights in a file PyTorch (and anything else) reads.
//!
//! Tensor names are the module paths (`enc.0.weight`, `generator.hidden.1.bias`, …).
//! burn stores `Linear` weights as `[in, out]`; they are transposed to PyTorch's
//! `[out, in]` so `nn.Linear.load_state_dict` takes them as they are. Conv weights
//! already share PyTorch's layout.

use std::collections::HashMap;
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

pub fn export_safetensors(checkpoint: &Path, out: &Path) -> Result<()> {
    let ckpt = Checkpoint::load(checkpoint)?;
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
    let mut meta = HashMap::new();
    meta.insert(
        "model".to_string(),
        ckpt.header.model.kind.name().to_string(),
    );
    meta.insert(
        "architecture".to_string(),
        serde_json::to_string(&ckpt.header.model)?,
    );
    meta.insert("step".to_string(), ckpt.header.step.to_string());
    let data = safetensors::serialize(views, Some(meta)).context("cannot encode safetensors")?;
    write_atomic(out, &data).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {} tensors to {}", tensors.len(), out.display());
    Ok(())
}
