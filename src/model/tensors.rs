//! Tensor helpers shared by the families and their objectives: pixel scaling, batches to
//! tensors, read-back, module records (checkpoint sections) and named tensors (export).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
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

pub use crate::util::{contained, panic_is_contained};

/// A named float tensor, PyTorch layout.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Where a module walk is: the PyTorch name of the parameter at hand and whether it is a
/// `Linear` weight (stored `[in, out]` by burn, `[out, in]` by PyTorch). Export and import
/// walk modules with it, so their names are one definition.
#[derive(Default)]
struct ParamPath {
    prefix: String,
    /// (name, container type) of the modules entered.
    stack: Vec<(String, String)>,
}

impl ParamPath {
    fn enter(&mut self, name: &str, container_type: &str) {
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit(&mut self) {
        self.stack.pop();
    }

    /// The innermost struct entered (`Struct:Linear`, `Struct:BatchNorm`, …).
    fn innermost_struct(&self) -> Option<&str> {
        self.stack
            .iter()
            .rev()
            .find(|(_, ct)| ct.starts_with("Struct:"))
            .map(|(_, ct)| ct.as_str())
    }

    /// The PyTorch name of the parameter at hand: module path without enum wrappers (a level
    /// PyTorch models do not have), batch norm's `gamma` / `beta` as PyTorch's `weight` /
    /// `bias`.
    fn name(&self) -> String {
        self.name_as(true)
    }

    /// [`ParamPath::name`], with burn's own batch-norm names unless `pytorch` (exports before
    /// the PyTorch names wrote `bn0.gamma`).
    fn name_as(&self, pytorch: bool) -> String {
        let mut parts: Vec<&str> = self
            .stack
            .iter()
            .filter(|(_, ct)| !ct.starts_with("Enum:"))
            .map(|(n, _)| n.as_str())
            .collect();
        if pytorch && self.innermost_struct() == Some("Struct:BatchNorm") {
            if let Some(last) = parts.last_mut() {
                *last = match *last {
                    "gamma" => "weight",
                    "beta" => "bias",
                    other => other,
                };
            }
        }
        let name = parts.join(".");
        if self.prefix.is_empty() {
            name
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// A `Linear` weight: stored transposed.
    fn transposed(&self, dims: usize) -> bool {
        dims == 2
            && self.innermost_struct() == Some("Struct:Linear")
            && self.stack.last().is_some_and(|(n, _)| n == "weight")
    }
}

/// `values` of a row-major `[rows, cols]` matrix, transposed.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut tr = vec![0.0f32; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            tr[c * rows + r] = values[r * cols + c];
        }
    }
    tr
}

#[derive(Default)]
struct Collect {
    path: ParamPath,
    out: Vec<NamedTensor>,
    error: Option<String>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let mut shape = t.dims().to_vec();
        let values = match read_f32(t) {
            Ok(v) => v,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        let values = if self.path.transposed(D) {
            let (rows, cols) = (shape[0], shape[1]);
            shape = vec![cols, rows];
            transpose(&values, rows, cols)
        } else {
            values
        };
        self.out.push(NamedTensor {
            name: self.path.name(),
            shape,
            values,
        });
    }
}

/// Named tensors (from a file) for [`assign_tensors`] to put into modules; it remembers which
/// were taken, so that [`TensorSource::finish`] can name the ones no module has.
#[derive(Debug, Default)]
pub struct TensorSource {
    tensors: std::collections::BTreeMap<String, NamedTensor>,
    taken: std::collections::BTreeSet<String>,
}

impl TensorSource {
    pub fn new(tensors: impl IntoIterator<Item = NamedTensor>) -> Self {
        Self {
            tensors: tensors.into_iter().map(|t| (t.name.clone(), t)).collect(),
            taken: Default::default(),
        }
    }

    /// Float values the file holds in all.
    pub fn values(&self) -> usize {
        self.tensors.values().map(|t| t.values.len()).sum()
    }

    /// An error naming the tensors no module took (the file is for another architecture).
    pub fn finish(&self) -> Result<(), String> {
        let extra: Vec<String> = self
            .tensors
            .values()
            .filter(|t| !self.taken.contains(&t.name))
            .map(|t| format!("{} {:?}", t.name, t.shape))
            .collect();
        match extra.len() {
            0 => Ok(()),
            n => Err(format!(
                "{n} tensor{} the model does not have: {}",
                if n == 1 { "" } else { "s" },
                extra.join(", ")
            )),
        }
    }
}

struct Assign<'a> {
    path: ParamPath,
    source: &'a mut TensorSource,
    error: Option<String>,
}

impl ModuleMapper for Assign<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let name = self.path.name();
        // The shape the module expects, without initialising it (a lazy parameter).
        let dims = param.lazy_shape().to_vec();
        let transposed = self.path.transposed(D);
        let mut expected = dims.clone();
        if transposed {
            expected.reverse();
        }
        let older = self.path.name_as(false);
        let (name, t) = match (
            self.source.tensors.get(&name),
            self.source.tensors.get(&older),
        ) {
            (Some(t), _) => (name, t),
            (None, Some(t)) => (older, t),
            (None, None) => {
                self.error = Some(format!("missing tensor {name} (shape {expected:?})"));
                return param;
            }
        };
        if t.shape != expected {
            self.error = Some(format!(
                "tensor {name} has shape {:?}, the model needs {expected:?}",
                t.shape
            ));
            return param;
        }
        let values = if transposed {
            transpose(&t.values, expected[0], expected[1])
        } else {
            t.values.clone()
        };
        self.source.taken.insert(name);
        let device = param.lazy_device();
        let tensor = Tensor::<D>::from_data(TensorData::new(values, dims), &device);
        let id = param.id;
        param.transform_for_load(tensor, id)
    }
}

/// `fresh` (still lazy: nothing allocated) with every float parameter and running statistic
/// taken from `source` under its PyTorch name (prefixed with `prefix`), in PyTorch layout.
/// A tensor the module needs and `source` lacks, or one of the wrong shape, is an error
/// that names it.
pub fn assign_tensors<M: Module>(
    fresh: M,
    prefix: &str,
    source: &mut TensorSource,
) -> Result<M, String> {
    let mut a = Assign {
        path: ParamPath {
            prefix: prefix.to_string(),
            ..Default::default()
        },
        source,
        error: None,
    };
    let m = fresh.map(&mut a);
    match a.error {
        Some(e) => Err(e),
        None => Ok(m),
    }
}

/// Append the float parameters of `m` to `out`, names prefixed with `prefix`.
pub fn collect_tensors<M: Module>(
    m: &M,
    prefix: &str,
    out: &mut Vec<NamedTensor>,
) -> Result<(), String> {
    let mut v = Collect {
        path: ParamPath {
            prefix: prefix.to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    m.visit(&mut v);
    if let Some(e) = v.error {
        return Err(format!("cannot read weights: {e}"));
    }
    out.extend(v.out);
    Ok(())
}
