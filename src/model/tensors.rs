//! Tensor helpers shared by the families and their objectives: pixel scaling, batches to
//! tensors, read-back, module records (checkpoint sections) and named tensors (export).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

pub use crate::cpu::read_f32;
use crate::data::Dataset;
use crate::error::{CheckpointError, TrainError};

/// Weights are stored as f16 at the least (f32 in practice).
const MIN_BYTES_PER_PARAM: usize = 2;

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

/// `labels` one-hot over `classes` (labels at or above `classes` give a zero row), as a
/// `[labels, classes]` tensor on `device`.
pub fn one_hot(labels: &[u32], classes: usize, device: &Device) -> Tensor<2> {
    let mut v = vec![0.0f32; labels.len() * classes];
    for (row, &l) in labels.iter().enumerate() {
        if (l as usize) < classes {
            v[row * classes + l as usize] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(v, [labels.len(), classes]), device)
}

/// `x` `[rows, n]` with a conditional network's one-hot condition appended: `cond`, or, when
/// a caller gives none, classes `0, 1, …, k−1, 0, …` down the rows (so that an unlabelled
/// request, e.g. a sample grid, shows every class).
pub fn join_condition(x: Tensor<2>, cond: Option<Tensor<2>>, k: usize) -> Tensor<2> {
    let cond = condition_or_cycle(cond, x.dims()[0], k, &x.device());
    Tensor::cat(vec![x, cond], 1)
}

/// `cond`, or for a caller that gives none the one-hot of classes `0, 1, …, k−1, 0, …` for
/// `rows` rows ([`join_condition`]'s default).
pub fn condition_or_cycle(
    cond: Option<Tensor<2>>,
    rows: usize,
    k: usize,
    device: &Device,
) -> Tensor<2> {
    cond.unwrap_or_else(|| {
        let labels: Vec<u32> = (0..rows).map(|r| (r % k.max(1)) as u32).collect();
        one_hot(&labels, k, device)
    })
}

/// The saved form of a module (burn's record), from its inference copy.
pub fn record_bytes<M: Module>(m: &M) -> Result<Vec<u8>, CheckpointError> {
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

/// Load `blob` (a module record) into `fresh` (still lazy: nothing allocated). The header
/// that described `fresh` is untrusted: the parameters it describes must be paid for by real
/// bytes in the section before anything is built. Records of the first format version, whose
/// paths start with an enum variant (`Mlp.enc.0.weight`), load too.
pub fn load_module<M: Module>(fresh: M, blob: &[u8]) -> Result<M, String> {
    let params = fresh.num_params();
    if params.saturating_mul(MIN_BYTES_PER_PARAM) > blob.len() {
        return Err(format!(
            "the header describes {params} parameters but the section holds only {} bytes",
            blob.len()
        ));
    }
    let load = |fresh: M, blob: &[u8]| {
        let bytes = Bytes::from_bytes_vec(blob.to_vec());
        contained(|| {
            let record = ModuleRecord::from_bytes(bytes).map_err(|e| e.to_string())?;
            fresh.try_load_record(record).map_err(|e| e.to_string())
        })
    };
    match load(fresh.clone(), blob) {
        Ok(m) => Ok(m),
        Err(e) => match contained(|| legacy_record(blob)) {
            Ok(Some(unwrapped)) => load(fresh, &unwrapped).map_err(|_| e),
            _ => Err(e),
        },
    }
}

/// Enum variants that wrapped every family's module in records before the plug-in design
/// (`VaeNet::Mlp`, `GenNet::Conv`, …).
const LEGACY_WRAPPERS: [&str; 2] = ["Mlp", "Conv"];

/// `blob` with the legacy enum level stripped from every tensor path, if it has one.
fn legacy_record(blob: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(blob.to_vec()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut wrapper: Option<String> = None;
    for t in reader.into_tensors().map_err(|e| e.to_string())? {
        let (name, dtype, shape, id, bytes) = t.into_parts().map_err(|e| e.to_string())?;
        let Some((first, rest)) = name.split_once('.') else {
            return Ok(None);
        };
        if !LEGACY_WRAPPERS.contains(&first) || wrapper.as_deref().is_some_and(|w| w != first) {
            return Ok(None);
        }
        wrapper = Some(first.to_string());
        out.push(burn_pack::Tensor::new(
            rest.to_string(),
            dtype,
            shape,
            id,
            bytes,
        ));
    }
    let bytes = burn_pack::Writer::new(out)
        .into_bytes()
        .map_err(|e| e.to_string())?;
    Ok(Some(bytes.to_vec()))
}

/// Restore an optimiser's state from its record into `fresh` (a new optimiser of the same kind).
pub fn load_optimizer(fresh: ModuleOptimizer, blob: &[u8]) -> Result<ModuleOptimizer, String> {
    let bytes = Bytes::from_bytes_vec(blob.to_vec());
    contained(|| fresh.from_bytes(bytes).map_err(|e| e.to_string()))
}

/// A copy of `m` that shares no state with it. Tensors are immutable, so a clone suffices for
/// parameters; but state that is not trained through gradients (batch-norm running
/// statistics) is shared between clones, so a module with such state is copied through a
/// record into `fresh()` (the same architecture, freshly initialised). Only those pay for a
/// fresh module (which draws from the device's RNG), so the others keep their noise stream.
pub fn deep_copy<M: Module>(m: &M, fresh: impl FnOnce() -> M) -> Result<M, TrainError> {
    if !has_untrained_state(m) {
        return Ok(m.clone());
    }
    fresh()
        .try_load_record(m.valid().into_record())
        .map_err(|e| TrainError::Invalid(format!("copying weights: {e}")))
}

/// Whether `m` (on an autodiff device) holds float state that gradients do not train: running
/// statistics, frozen parameters. Parameters not yet initialised hold nothing yet.
fn has_untrained_state<M: Module>(m: &M) -> bool {
    struct Untrained(bool);
    impl ModuleVisitor for Untrained {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if p.is_initialized() && !p.val().is_require_grad() {
                self.0 = true;
            }
        }
    }
    let mut v = Untrained(false);
    m.visit(&mut v);
    v.0
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
pub fn contained<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let before = CONTAINING.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(before));
    r.unwrap_or_else(|_| Err("malformed record (the decoder failed)".to_string()))
}

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
        // Enum wrappers add a level that PyTorch models do not have.
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

/// Append the float parameters of `m` to `out`, names prefixed with `prefix`.
pub fn collect_tensors<M: Module>(
    m: &M,
    prefix: &str,
    out: &mut Vec<NamedTensor>,
) -> Result<(), String> {
    let mut v = Collect {
        prefix: prefix.to_string(),
        ..Default::default()
    };
    m.visit(&mut v);
    if let Some(e) = v.error {
        return Err(format!("cannot read weights: {e}"));
    }
    out.extend(v.out);
    Ok(())
}
