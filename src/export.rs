//! `latent-lab export --safetensors`: weights in a file PyTorch (and anything else) reads.
//!
//! Tensor names are the module paths (`enc.0.weight`, `generator.hidden.1.bias`, …).
//! burn stores `Linear` weights as `[in, out]`; they are transposed to PyTorch's
//! `[out, in]` so `nn.Linear.load_state_dict` takes them as they are. Conv weights
//! already share PyTorch's layout.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

use crate::backend::Backend;
use crate::checkpoint::{write_atomic, Checkpoint};
use crate::model::Networks;
use crate::train::read_f32;

/// A named float tensor, PyTorch layout.
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

#[derive(Default)]
struct Collect {
    prefix: String,
    /// (name, container type) of the modules entered.
    stack: Vec<(String, String)>,
    out: Vec<NamedTensor>,
    error: Option<String>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Enum wrappers (`VaeNet::Mlp`) add a level that PyTorch models do not have.
        let parts: Vec<&str> = self
            .stack
            .iter()
            .filter(|(_, ct)| !ct.starts_with("Enum:"))
            .map(|(n, _)| n.as_str())
            .collect();
        let mut name = parts.join(".");
        if !self.prefix.is_empty() {
            name = format!("{}.{name}", self.prefix);
        }
        let in_linear = self
            .stack
            .iter()
            .rev()
            .find(|(_, ct)| ct.starts_with("Struct:"))
            .is_some_and(|(_, ct)| ct == "Struct:Linear");
        let t = param.val();
        let mut shape = t.dims().to_vec();
        let values = match read_f32(t) {
            Ok(v) => v,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        let values = if in_linear && D == 2 && name.ends_with("weight") {
            let (rows, cols) = (shape[0], shape[1]);
            let mut tr = vec![0.0f32; values.len()];
            for r in 0..rows {
                for c in 0..cols {
                    tr[c * rows + r] = values[r * cols + c];
                }
            }
            shape = vec![cols, rows];
            tr
        } else {
            values
        };
        self.out.push(NamedTensor {
            name,
            shape,
            values,
        });
    }
}

fn collect<M: Module>(m: &M, prefix: &str, out: &mut Vec<NamedTensor>) -> Result<()> {
    let mut v = Collect {
        prefix: prefix.to_string(),
        ..Default::default()
    };
    m.visit(&mut v);
    if let Some(e) = v.error {
        anyhow::bail!("cannot read weights: {e}");
    }
    out.extend(v.out);
    Ok(())
}

/// All float parameters of `nets`, PyTorch layout.
pub fn named_tensors(nets: &Networks) -> Result<Vec<NamedTensor>> {
    let mut out = Vec::new();
    match nets {
        Networks::Vae(m) => collect(m, "", &mut out)?,
        Networks::Gan { gen, disc } => {
            collect(gen, "generator", &mut out)?;
            collect(disc, "discriminator", &mut out)?;
        }
    }
    Ok(out)
}

pub fn export_safetensors(checkpoint: &Path, out: &Path) -> Result<()> {
    let ckpt = Checkpoint::load(checkpoint)?;
    let device = Backend::cpu().device;
    let nets = ckpt.networks(&device)?;
    let tensors = named_tensors(&nets)?;
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
