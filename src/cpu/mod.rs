//! The fast CPU path: a library of layers (dense, convolution, transposed convolution, batch
//! norm, activations, the VAE and GAN losses, Adam) with forward and backward passes over
//! plain `f32` buffers, and the VAE step over any encoder/decoder pair. It names no family and
//! depends on no other engine module but `data` (the RNG) and the error types: each family (in
//! `model/`) composes its fast path from these layers, taking them over from its burn modules —
//! widths, kernels, strides and padding read from the modules themselves — and gives them
//! back.
//!
//! burn's CPU backend runs a training step op by op: each element-wise operation is its own
//! pass over memory with its own allocation, and autodiff records a graph every step. For
//! small MLPs that overhead is larger than the matrix products themselves (see
//! `docs/performance.md`). This module trains the same networks with the same losses and the
//! same Adam over plain `f32` buffers: one sgemm per matrix product (the `gemm` crate, the
//! kernels burn's `flex` backend uses), bias, activation and loss folded into single passes,
//! no allocation after the first step (except the small tap-plane buffers each parallel task
//! of an im2col/col2im starts with).
//!
//! Weights come from burn
//! modules and go back into them (same parameter ids) for inference and checkpoints, and the
//! Adam state is read from and written to burn's optimiser record format, so a run can move
//! between this path and burn's at any checkpoint. `model/fused_tests.rs` checks that every
//! family's fast step equals its step through burn's autodiff; the layer tests are here.

mod bn;
mod conv;
pub mod math;
mod vae;

mod plain;

pub(crate) use bn::{Bn, BnStats};
pub use conv::{ConvGeom, ConvLayer, ConvScratch, Epilogue};
pub use plain::{PlainMlp, PlainOut};
pub(crate) use vae::clone_empty;
pub use vae::{dense_params, dense_params_mut, Decoder, Encoder, FusedVae, Params};

use std::collections::HashMap;

use burn::module::{Param, ParamId};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::{Bytes, DType};
use rayon::prelude::*;

use crate::data::SplitMix64;
use crate::error::TrainError;

/// Adam's hyper-parameters, with burn's `AdamConfig` meaning.
#[derive(Clone, Copy, Debug)]
pub struct AdamHyper {
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
}

/// Element-wise activation after a layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Identity,
    Relu,
    LeakyRelu(f32),
    Tanh,
}

/// Applies `$f` (an `Fn(f32) -> f32` for `act(· + shift)`) with one match per call, so that
/// each arm's loop vectorises on its own.
macro_rules! with_act {
    ($act:expr, $shift:expr, |$f:ident| $body:expr) => {{
        let shift: f32 = $shift;
        match $act {
            Act::Identity => {
                let $f = |v: f32| v + shift;
                $body
            }
            // Not `max(0.0)`: that turns NaN into 0 and would hide a diverged weight.
            Act::Relu => {
                let $f = |v: f32| {
                    let v = v + shift;
                    if v < 0.0 {
                        0.0
                    } else {
                        v
                    }
                };
                $body
            }
            Act::LeakyRelu(s) => {
                let $f = |v: f32| {
                    let v = v + shift;
                    if v > 0.0 {
                        v
                    } else {
                        v * s
                    }
                };
                $body
            }
            Act::Tanh => {
                let $f = |v: f32| math::tanh(v + shift);
                $body
            }
        }
    }};
}

impl Act {
    /// The same activation on a burn tensor: a family's burn module and its fast CPU path
    /// share one [`Act`] value (one slope, written once).
    pub fn tensor<const D: usize>(self, t: Tensor<D>) -> Tensor<D> {
        use burn::tensor::activation;
        match self {
            Act::Identity => t,
            Act::Relu => activation::relu(t),
            Act::LeakyRelu(s) => activation::leaky_relu(t, s as f64),
            Act::Tanh => activation::tanh(t),
        }
    }

    /// `y ← act(x + shift)`.
    pub(crate) fn apply(self, x: &[f32], shift: f32, y: &mut [f32]) {
        with_act!(self, shift, |f| y
            .iter_mut()
            .zip(x)
            .for_each(|(y, &x)| *y = f(x)))
    }

    /// `x ← act(x + shift)`.
    pub(crate) fn apply_in_place(self, x: &mut [f32], shift: f32) {
        with_act!(self, shift, |f| x.iter_mut().for_each(|x| *x = f(*x)))
    }

    /// `dy ← dy · act'(·)`, from the activation's output `y`. A NaN output passes its
    /// gradient on (as burn does), so a NaN weight cannot hide behind a zero gradient.
    /// Large inputs are split over the thread pool.
    pub(crate) fn backward(self, y: &[f32], dy: &mut [f32]) {
        const PIECE: usize = 1 << 14;
        if self == Act::Identity {
        } else if dy.len() >= 4 * PIECE {
            dy.par_chunks_mut(PIECE)
                .zip(y.par_chunks(PIECE))
                .for_each(|(d, y)| self.backward_serial(y, d));
        } else {
            self.backward_serial(y, dy);
        }
    }

    pub(crate) fn backward_serial(self, y: &[f32], dy: &mut [f32]) {
        match self {
            Act::Identity => {}
            Act::Relu => dy
                .iter_mut()
                .zip(y)
                .for_each(|(d, &y)| *d = if y <= 0.0 { 0.0 } else { *d }),
            Act::LeakyRelu(s) => dy
                .iter_mut()
                .zip(y)
                .for_each(|(d, &y)| *d = if y <= 0.0 { *d * s } else { *d }),
            Act::Tanh => dy.iter_mut().zip(y).for_each(|(d, &y)| *d *= 1.0 - y * y),
        }
    }
}

/// `c = a·b`, or `c += a·b` with `accumulate`; row-major `a` `[m×k]` and `b` `[k×n]`,
/// each read transposed from storage `[k×m]` / `[n×k]` when `ta` / `tb` is set.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    let size = |r: usize, c: usize| r.saturating_mul(c);
    assert!(a.len() >= size(m, k) && b.len() >= size(k, n) && c.len() >= size(m, n));
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 && m * n * k >= 48 * 48 * 48 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assert above keeps every index the strides reach inside the slices:
    // element (i, p) of `a` is at i·a_rs + p·a_cs ≤ (m-1)·k + (k-1) < m·k (or the
    // transposed equivalent), likewise for `b` and `c`; `c` is a unique borrow.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// One fully connected layer `y = x·W + b` with `W` `[inp × out]` row-major (burn's
/// `Linear` layout), its gradients and its Adam state.
#[derive(Clone, Debug)]
pub struct Dense {
    pub inp: usize,
    pub out: usize,
    pub(crate) w: ParamBuf,
    pub(crate) b: ParamBuf,
}

impl Dense {
    /// `y ← act(x·W + b)` for `rows` rows of `x`.
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut Vec<f32>, act: Act) {
        y.resize(rows * self.out, 0.0);
        matmul(
            rows, self.out, self.inp, x, false, &self.w.x, false, y, false,
        );
        for row in y.chunks_exact_mut(self.out) {
            match act {
                // One match per row, so that each loop below vectorises on its own.
                Act::Identity => add_bias(row, &self.b.x, |v| v),
                // Not `v.max(0.0)`: that turns NaN into 0 and would hide a diverged weight.
                Act::Relu => add_bias(row, &self.b.x, |v| if v < 0.0 { 0.0 } else { v }),
                Act::LeakyRelu(s) => add_bias(row, &self.b.x, |v| if v > 0.0 { v } else { v * s }),
                Act::Tanh => add_bias(row, &self.b.x, math::tanh),
            }
        }
    }

    /// Back-propagate `dy` (gradient w.r.t. the pre-activation output, `rows × out`) through
    /// this layer applied to `x`. With `params`, the parameter gradients are set (or added
    /// to, with `accumulate`); with `dx`, the input gradient is written (or added, per its
    /// flag).
    pub fn backward(
        &mut self,
        x: &[f32],
        rows: usize,
        dy: &[f32],
        params: Option<bool>,
        dx: Option<(&mut Vec<f32>, bool)>,
    ) {
        if let Some(accumulate) = params {
            let gw = &mut self.w.g;
            gw.resize(self.inp * self.out, 0.0);
            matmul(self.inp, self.out, rows, x, true, dy, false, gw, accumulate);
            let gb = &mut self.b.g;
            gb.resize(self.out, 0.0);
            if !accumulate {
                gb.fill(0.0);
            }
            for row in dy.chunks_exact(self.out) {
                gb.iter_mut().zip(row).for_each(|(g, &d)| *g += d);
            }
        }
        if let Some((dx, accumulate)) = dx {
            dx.resize(rows * self.inp, 0.0);
            matmul(
                rows, self.inp, self.out, dy, false, &self.w.x, true, dx, accumulate,
            );
        }
    }

    /// One Adam step with the gradients of the last backward pass (burn's update rule).
    pub fn adam(&mut self, lr: f32, h: AdamHyper) {
        self.w.adam(lr, h);
        self.b.adam(lr, h);
    }

    /// The layer and Adam state of burn's `linear` at module path `path`; `state` holds the
    /// moments read from the optimiser record (absent = a fresh optimiser).
    pub fn from_linear(
        linear: &Linear,
        path: String,
        state: &mut AdamState,
    ) -> Result<Self, TrainError> {
        let bias = linear
            .bias
            .as_ref()
            .ok_or_else(|| TrainError::Invalid("fused training needs layers with a bias".into()))?;
        let [inp, out] = linear.weight.dims();
        let w = ParamBuf::from_param(&linear.weight, format!("{path}.weight"), state)?;
        let b = ParamBuf::from_param(bias, format!("{path}.bias"), state)?;
        ParamBuf::same_steps(&w, &b)?;
        Ok(Self { inp, out, w, b })
    }

    /// burn's `Linear` with these weights and the original parameter ids.
    pub fn to_linear(&self, device: &Device) -> Linear {
        Linear {
            weight: self.w.to_param(device),
            bias: Some(self.b.to_param(device)),
        }
    }

    pub(crate) fn params(&self) -> [&ParamBuf; 2] {
        [&self.w, &self.b]
    }

    pub(crate) fn params_mut(&mut self) -> [&mut ParamBuf; 2] {
        [&mut self.w, &mut self.b]
    }
}

#[inline(always)]
fn add_bias(row: &mut [f32], b: &[f32], act: impl Fn(f32) -> f32) {
    row.iter_mut().zip(b).for_each(|(v, &b)| *v = act(*v + b));
}

fn adam_update(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    step: f32,
    eps: f32,
    h: AdamHyper,
) {
    const CHUNK: usize = 1 << 14;
    let (b1, b2) = (h.beta1, h.beta2);
    type Chunks<'a> = (((&'a mut [f32], &'a [f32]), &'a mut [f32]), &'a mut [f32]);
    let body = |(((p, g), m), v): Chunks| {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let mi = b1 * *m + (1.0 - b1) * g;
            let vi = b2 * *v + (1.0 - b2) * g * g;
            *m = mi;
            *v = vi;
            *p -= step * mi / (vi.sqrt() + eps);
        }
    };
    if p.len() >= 4 * CHUNK && rayon::current_num_threads() > 1 {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(body);
    } else {
        body((((p, g), m), v));
    }
}

/// Read a tensor back as `f32`s (a device sync); device failures become errors.
pub fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, TrainError> {
    t.try_into_data()
        .map_err(|e| TrainError::Device(format!("{e:?}")))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::Device(format!("{e:?}")))
}

/// Apply `layers` in turn to `x`, each followed by `act`; `acts[i]` receives layer i's
/// output. Returns nothing: the last output is `acts.last()` (or `x` with no layers).
pub fn forward_chain(layers: &[Dense], x: &[f32], rows: usize, acts: &mut Vec<Vec<f32>>, act: Act) {
    acts.resize_with(layers.len(), Vec::new);
    for i in 0..layers.len() {
        let (done, rest) = acts.split_at_mut(i);
        let input = if i == 0 { x } else { &done[i - 1] };
        layers[i].forward(input, rows, &mut rest[0], act);
    }
}

/// Back-propagate through a chain run by [`forward_chain`]: `dy` is the gradient w.r.t. the
/// chain's output on entry and w.r.t. its input `x` on return (left untouched past the first
/// layer when `want_dx` is false). Parameter gradients are set when `params`.
#[allow(clippy::too_many_arguments)]
pub fn backward_chain(
    layers: &mut [Dense],
    x: &[f32],
    rows: usize,
    acts: &[Vec<f32>],
    act: Act,
    dy: &mut Vec<f32>,
    scratch: &mut Vec<f32>,
    params: bool,
    want_dx: bool,
) {
    for i in (0..layers.len()).rev() {
        act.backward(&acts[i], dy);
        let input = if i == 0 { x } else { &acts[i - 1] };
        let need_dx = i > 0 || want_dx;
        layers[i].backward(
            input,
            rows,
            dy,
            params.then_some(false),
            need_dx.then_some((&mut *scratch, false)),
        );
        if need_dx {
            std::mem::swap(dy, scratch);
        }
    }
}

/// Sums over one discriminator step on logits of `[real; fake]` (`rows` each).
pub struct DiscSums {
    loss: f64,
    p_real: f64,
    p_fake: f64,
}

/// The discriminator's loss on logits of `[real; fake]` (`rows` each): target 1 for real,
/// `−log σ(l) = softplus(−l)`; target 0 for fake, `l − log σ(l) = softplus(l)`. Replaces each
/// logit by the gradient of the batch-mean loss.
pub fn disc_loss_and_grad(logits: &mut [f32], rows: usize) -> DiscSums {
    let inv_b = 1.0 / rows as f32;
    let mut s = DiscSums {
        loss: 0.0,
        p_real: 0.0,
        p_fake: 0.0,
    };
    for (i, l) in logits.iter_mut().enumerate() {
        let (sig, lg) = math::sigmoid_log1p(*l);
        if i < rows {
            s.loss += ((-*l).max(0.0) + lg) as f64;
            s.p_real += sig as f64;
            *l = (sig - 1.0) * inv_b;
        } else {
            s.loss += ((*l).max(0.0) + lg) as f64;
            s.p_fake += sig as f64;
            *l = sig * inv_b;
        }
    }
    s
}

/// The generator's non-saturating loss `Σ −log σ(l)` on D's logits of fakes; replaces each
/// logit by the gradient of the batch-mean loss.
pub fn gen_loss_and_grad(logits: &mut [f32]) -> f64 {
    let inv_b = 1.0 / logits.len() as f32;
    let mut loss = 0.0f64;
    for l in logits.iter_mut() {
        let (sig, lg) = math::sigmoid_log1p(*l);
        loss += ((-*l).max(0.0) + lg) as f64;
        *l = (sig - 1.0) * inv_b;
    }
    loss
}

/// `[d_loss, g_loss, D(x), D(G(z))]`, batch means.
pub fn gan_terms(d: &DiscSums, g_loss: f64, rows: usize) -> [f32; 4] {
    let b = rows as f64;
    [
        (d.loss / b) as f32,
        (g_loss / b) as f32,
        (d.p_real / b) as f32,
        (d.p_fake / b) as f32,
    ]
}

/// Fill `out` with `n` standard normal values (Box–Muller, both outputs used).
pub fn fill_normal(rng: &mut SplitMix64, out: &mut Vec<f32>, n: usize) {
    out.clear();
    out.reserve(n);
    while out.len() < n {
        let u1 = rng.next_f32().max(1e-7);
        let u2 = rng.next_f32();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
        out.push(r * c);
        if out.len() < n {
            out.push(r * s);
        }
    }
}

/// Adam moments per parameter id, read from a burn optimiser record.
#[derive(Default)]
pub struct AdamState {
    moments: HashMap<u64, Moments>,
}

/// First and second moments with their shape, and the step count.
#[derive(Default)]
struct Moments {
    m: Option<(Vec<f32>, Vec<usize>)>,
    v: Option<(Vec<f32>, Vec<usize>)>,
    time: usize,
}

const MOMENT_1: &str = "momentum.moment_1";
const MOMENT_2: &str = "momentum.moment_2";
const TIME: &str = "momentum.time";
const RANK: &str = "__rank";

impl AdamState {
    /// Parse the bytes of a burn `ModuleOptimizer` holding Adam (its `into_bytes`).
    pub fn from_record_bytes(bytes: Vec<u8>) -> Result<Self, TrainError> {
        let bad = |e: String| TrainError::Invalid(format!("optimiser state: {e}"));
        let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|e| bad(e.to_string()))?;
        let scalars = reader.scalars().clone();
        let mut moments: HashMap<u64, Moments> = HashMap::new();
        for t in reader.into_tensors().map_err(|e| bad(e.to_string()))? {
            let (name, dtype, shape, id, bytes) = t.into_parts().map_err(|e| bad(e.to_string()))?;
            let Some(id) = id else {
                return Err(bad(format!("entry {name} belongs to no parameter")));
            };
            let first = if name == format!("{id}.{MOMENT_1}") {
                true
            } else if name == format!("{id}.{MOMENT_2}") {
                false
            } else {
                return Err(bad(format!("unexpected entry {name} (not Adam's state?)")));
            };
            if dtype != DType::F32 || bytes.len() % 4 != 0 {
                return Err(bad(format!("{name} is not f32")));
            }
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let dims = shape.to_vec();
            if dims.iter().product::<usize>() != values.len() {
                return Err(bad(format!("{name}: shape {dims:?} does not fit its data")));
            }
            let time = scalars
                .get(&format!("{id}.{TIME}"))
                .and_then(|s| u64::try_from(*s).ok())
                .filter(|&t| t >= 1 && t <= i32::MAX as u64)
                .ok_or_else(|| bad(format!("no valid step count for parameter {id}")))?;
            let e = moments.entry(id).or_default();
            e.time = time as usize;
            let slot = if first { &mut e.m } else { &mut e.v };
            *slot = Some((values, dims));
        }
        Ok(Self { moments })
    }

    /// The moments of parameter `id` of shape `shape` (zeros and step 0 when absent).
    pub(crate) fn take(
        &mut self,
        id: ParamId,
        shape: &[usize],
    ) -> Result<(Vec<f32>, Vec<f32>, usize), TrainError> {
        let len = shape.iter().product();
        match self.moments.remove(&id.val()) {
            None => Ok((vec![0.0; len], vec![0.0; len], 0)),
            Some(Moments {
                m: Some((m, m_shape)),
                v: Some((v, v_shape)),
                time,
            }) if m_shape == shape && v_shape == shape => Ok((m, v, time)),
            Some(_) => Err(TrainError::Invalid(format!(
                "optimiser state for parameter {} does not fit the layer (shape {shape:?})",
                id.val()
            ))),
        }
    }

    /// Fails if the record held state for parameters no layer claimed (a record of another
    /// model: using it would silently restart Adam).
    pub fn finish(self) -> Result<(), TrainError> {
        match self.moments.keys().next() {
            None => Ok(()),
            Some(id) => Err(TrainError::Invalid(format!(
                "optimiser state for parameter {id}, which the model does not have"
            ))),
        }
    }
}

/// Builds burn's optimiser record (the same entries burn's Adam writes).
#[derive(Default)]
struct RecordParts {
    tensors: Vec<burn_pack::Tensor>,
    scalars: Vec<(String, burn_pack::Scalar)>,
    paths: Vec<(String, String)>,
}

impl RecordParts {
    pub(crate) fn push(
        &mut self,
        id: ParamId,
        path: String,
        m: &[f32],
        v: &[f32],
        shape: &[usize],
        t: usize,
    ) {
        let id = id.val();
        self.paths.push((id.to_string(), path));
        let bytes =
            |x: &[f32]| Bytes::from_bytes_vec(x.iter().flat_map(|f| f.to_le_bytes()).collect());
        for (name, x) in [(MOMENT_1, m), (MOMENT_2, v)] {
            self.tensors.push(burn_pack::Tensor::new(
                format!("{id}.{name}"),
                DType::F32,
                shape.to_vec(),
                Some(id),
                bytes(x),
            ));
        }
        self.scalars
            .push((format!("{id}.{TIME}"), burn_pack::Scalar::from(t as u64)));
        self.scalars.push((
            format!("{id}.{RANK}"),
            burn_pack::Scalar::from(shape.len() as u64),
        ));
    }

    pub(crate) fn into_bytes(self) -> Result<Vec<u8>, TrainError> {
        let mut w = burn_pack::Writer::new(self.tensors);
        for (k, v) in &self.scalars {
            w = w.with_scalar(k, *v);
        }
        for (k, v) in &self.paths {
            w = w.with_metadata(k, v);
        }
        w.into_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| TrainError::Invalid(format!("writing optimiser state: {e}")))
    }
}

/// The optimiser-record bytes of `layers`' Adam state (loadable by burn's `ModuleOptimizer`).
pub fn adam_record_bytes<'a>(
    layers: impl IntoIterator<Item = &'a Dense>,
) -> Result<Vec<u8>, TrainError> {
    adam_record_bytes_of(layers, [])
}

/// One parameter tensor of any shape with its gradient and Adam state.
#[derive(Debug)]
pub struct ParamBuf {
    pub x: Vec<f32>,
    pub g: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    pub(crate) t: usize,
    id: ParamId,
    path: String,
    shape: Vec<usize>,
}

impl Clone for ParamBuf {
    /// Values and optimiser state; the gradient starts empty.
    fn clone(&self) -> Self {
        Self {
            x: self.x.clone(),
            g: Vec::new(),
            m: self.m.clone(),
            v: self.v.clone(),
            t: self.t,
            id: self.id,
            path: self.path.clone(),
            shape: self.shape.clone(),
        }
    }
}

impl ParamBuf {
    pub fn from_param<const D: usize>(
        p: &Param<Tensor<D>>,
        path: String,
        state: &mut AdamState,
    ) -> Result<Self, TrainError> {
        let shape = p.dims().to_vec();
        let x = read_f32(p.val())?;
        let (m, v, t) = state.take(p.id, &shape)?;
        Ok(Self {
            x,
            g: Vec::new(),
            m,
            v,
            t,
            id: p.id,
            path,
            shape,
        })
    }

    /// burn's parameter with these values and the original id, trainable like the one it
    /// came from (a no-op without autodiff).
    /// A layer's weight and bias must have taken the same number of Adam steps.
    pub(crate) fn same_steps(w: &ParamBuf, b: &ParamBuf) -> Result<(), TrainError> {
        if w.t != b.t {
            return Err(TrainError::Invalid(format!(
                "optimiser state out of step ({} vs {} updates in one layer)",
                w.t, b.t
            )));
        }
        Ok(())
    }

    pub fn to_param<const D: usize>(&self, device: &Device) -> Param<Tensor<D>> {
        let t = Tensor::<D>::from_data(TensorData::new(self.x.clone(), self.shape.clone()), device);
        Param::initialized(self.id, t).set_require_grad(true)
    }

    /// The gradient buffer, zeroed.
    pub fn zero_grad(&mut self) -> &mut Vec<f32> {
        self.g.clear();
        self.g.resize(self.x.len(), 0.0);
        &mut self.g
    }

    pub fn adam(&mut self, lr: f32, h: AdamHyper) {
        self.t = self.t.saturating_add(1);
        let t = self.t.min(i32::MAX as usize) as i32;
        let bc2 = (1.0 - h.beta2.powi(t)).sqrt();
        let step = lr * bc2 / (1.0 - h.beta1.powi(t));
        let n = self.x.len();
        self.m.resize(n, 0.0);
        self.v.resize(n, 0.0);
        self.g.resize(n, 0.0);
        adam_update(
            &mut self.x,
            &self.g,
            &mut self.m,
            &mut self.v,
            step,
            h.epsilon * bc2,
            h,
        );
    }

    fn record_into(&self, rec: &mut RecordParts) {
        if self.t > 0 {
            rec.push(
                self.id,
                self.path.clone(),
                &self.m,
                &self.v,
                &self.shape,
                self.t,
            );
        }
    }
}

/// The optimiser-record bytes of the Adam state of `dense` layers and other `params`.
pub fn adam_record_bytes_of<'a>(
    dense: impl IntoIterator<Item = &'a Dense>,
    params: impl IntoIterator<Item = &'a ParamBuf>,
) -> Result<Vec<u8>, TrainError> {
    let mut rec = RecordParts::default();
    for p in dense.into_iter().flat_map(Dense::params).chain(params) {
        p.record_into(&mut rec);
    }
    rec.into_bytes()
}
