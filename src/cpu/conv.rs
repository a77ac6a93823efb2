//! Convolutions for the fused CPU path (the DCGAN's): 2-D convolution and transposed
//! convolution, square kernels, as a batched im2col/col2im + one sgemm per layer for the
//! whole batch, in burn's weight layouts.

use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use rayon::prelude::*;

use super::math::sum_map;
use super::{matmul, Act, AdamHyper, AdamState, ParamBuf};
use crate::error::TrainError;

/// A k×k convolution with stride `s` and padding `p` from `c_in × h_in × w_in` images to
/// `c_out × h_out × w_out`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvGeom {
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub h_in: usize,
    pub w_in: usize,
    pub h_out: usize,
    pub w_out: usize,
}

impl ConvGeom {
    /// The square geometry of a burn convolution's settings; anything the fast path does not
    /// implement (non-square kernels, groups, dilation) is an error naming the layer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn of(
        path: &str,
        c_in: usize,
        c_out: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        groups: usize,
        dilation: [usize; 2],
        h_in: usize,
    ) -> Result<Self, TrainError> {
        let square = kernel[0] == kernel[1] && stride[0] == stride[1] && padding[0] == padding[1];
        if !square || groups != 1 || dilation != [1, 1] || h_in + 2 * padding[0] < kernel[0] {
            return Err(TrainError::Invalid(format!(
                "{path}: kernel {kernel:?}, stride {stride:?}, padding {padding:?}, groups {groups}, dilation {dilation:?} on {h_in}-pixel planes has no fast CPU path"
            )));
        }
        Ok(Self::new(
            c_in, c_out, kernel[0], stride[0], padding[0], h_in, h_in,
        ))
    }

    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        s: usize,
        p: usize,
        h_in: usize,
        w_in: usize,
    ) -> Self {
        let out = |n: usize| (n + 2 * p - k) / s + 1;
        Self {
            c_in,
            c_out,
            k,
            s,
            p,
            h_in,
            w_in,
            h_out: out(h_in),
            w_out: out(w_in),
        }
    }

    pub(crate) fn in_len(&self) -> usize {
        self.c_in * self.h_in * self.w_in
    }
    pub(crate) fn out_len(&self) -> usize {
        self.c_out * self.h_out * self.w_out
    }
    pub(crate) fn col_rows(&self) -> usize {
        self.c_in * self.k * self.k
    }
    pub(crate) fn positions(&self) -> usize {
        self.h_out * self.w_out
    }

    /// For each (kernel offset, output index) the input index, or `None` in the padding.
    #[inline(always)]
    pub(crate) fn src(&self, o: usize, kk: usize, n: usize) -> Option<usize> {
        let i = (o * self.s + kk).checked_sub(self.p)?;
        (i < n).then_some(i)
    }
}

/// The output columns `ox` whose input column `ox·s + kk − p` lies inside `0..n`.
#[inline]
fn valid_range(g: &ConvGeom, kk: usize, n_in: usize, n_out: usize) -> std::ops::Range<usize> {
    // ox·s + kk ≥ p  and  ox·s + kk − p < n_in
    let lo = g.p.saturating_sub(kk).div_ceil(g.s);
    let hi = if n_in + g.p > kk {
        ((n_in + g.p - kk - 1) / g.s + 1).min(n_out)
    } else {
        0
    };
    lo..hi.max(lo)
}

/// The tap planes of one `h_in × w_in` input plane: for each kernel-row phase `a < s` and
/// kernel column `kx < k`, the `tap_rows × w_out` plane `T(a, kx)[i, ox] = x[i·s + a − p,
/// ox·s + kx − p]` (0 in the padding). Tap `(ky, kx)`'s im2col block for this plane is then
/// the contiguous run of rows `ky/s ..` of `T(ky mod s, kx)`, so im2col becomes one copy per
/// tap and image, and only these planes (about 2.3× the input for 4×4 / stride 2, against
/// 4× for the columns) need strided reads.
impl ConvGeom {
    pub(crate) fn tap_rows(&self) -> usize {
        self.h_out + (self.k - 1) / self.s
    }
    pub(crate) fn tap_plane(&self) -> usize {
        self.tap_rows() * self.w_out
    }
    pub(crate) fn taps_len(&self) -> usize {
        self.s.min(self.k) * self.k * self.tap_plane()
    }
    /// Where tap `(ky, kx)`'s block starts in the tap planes.
    pub(crate) fn tap_offset(&self, ky: usize, kx: usize) -> usize {
        ((ky % self.s) * self.k + kx) * self.tap_plane() + (ky / self.s) * self.w_out
    }
}

/// Fills the tap planes of one input plane (see [`ConvGeom::tap_rows`]).
fn gather_taps(g: &ConvGeom, x: &[f32], taps: &mut [f32]) {
    let (tp, wo) = (g.tap_plane(), g.w_out);
    for a in 0..g.s.min(g.k) {
        for kx in 0..g.k {
            let cols = valid_range(g, kx, g.w_in, wo);
            let plane = &mut taps[(a * g.k + kx) * tp..(a * g.k + kx + 1) * tp];
            for (i, line) in plane.chunks_exact_mut(wo).enumerate() {
                let row = g.src(i, a, g.h_in).filter(|_| !cols.is_empty());
                let Some(iy) = row else {
                    line.fill(0.0);
                    continue;
                };
                line[..cols.start].fill(0.0);
                line[cols.end..].fill(0.0);
                let first = iy * g.w_in + cols.start * g.s + kx - g.p;
                let src = x[first..].iter().step_by(g.s);
                for (d, &v) in line[cols.clone()].iter_mut().zip(src) {
                    *d = v;
                }
            }
        }
    }
}

/// The adjoint of [`gather_taps`]: `x` (overwritten) is the sum of the tap-plane entries
/// that were read from each position.
fn scatter_taps(g: &ConvGeom, taps: &[f32], x: &mut [f32]) {
    let (tp, wo) = (g.tap_plane(), g.w_out);
    x.fill(0.0);
    for a in 0..g.s.min(g.k) {
        for kx in 0..g.k {
            let cols = valid_range(g, kx, g.w_in, wo);
            let plane = &taps[(a * g.k + kx) * tp..(a * g.k + kx + 1) * tp];
            for (i, line) in plane.chunks_exact(wo).enumerate() {
                let row = g.src(i, a, g.h_in).filter(|_| !cols.is_empty());
                let Some(iy) = row else {
                    continue;
                };
                let first = iy * g.w_in + cols.start * g.s + kx - g.p;
                let dst = x[first..].iter_mut().step_by(g.s);
                for (d, &v) in dst.zip(&line[cols.clone()]) {
                    *d += v;
                }
            }
        }
    }
}

/// im2col of a whole batch: `cols[(c·k + ky)·k + kx, r·pos + oy·w_out + ox] =
/// x[r, c, oy·s + ky − p, ox·s + kx − p]` (0 in the padding), in parallel over the input
/// channels.
pub fn im2col(g: &ConvGeom, x: &[f32], rows: usize, cols: &mut [f32]) {
    let pos = g.positions();
    let (hw, in_len, kk) = (g.h_in * g.w_in, g.in_len(), g.k * g.k);
    cols[..g.col_rows() * rows * pos]
        .par_chunks_mut(kk * rows * pos)
        .enumerate()
        .for_each_init(
            || vec![0.0; g.taps_len()],
            |taps, (c, block)| {
                for r in 0..rows {
                    gather_taps(g, &x[r * in_len + c * hw..][..hw], taps);
                    for (t, dst) in block.chunks_exact_mut(rows * pos).enumerate() {
                        let src = &taps[g.tap_offset(t / g.k, t % g.k)..][..pos];
                        dst[r * pos..(r + 1) * pos].copy_from_slice(src);
                    }
                }
            },
        );
}

/// What [`col2im`] does to each finished input plane.
#[derive(Clone, Copy)]
pub enum Epilogue<'a> {
    None,
    /// `x ← act(x + bias[c])` (a transposed convolution's output).
    Bias(&'a [f32], Act),
    /// `x ← x · act'(y)` for the activation output `y` laid out like `x` (a gradient
    /// passing back through the activation that produced the convolution's input).
    ActGrad(Act, &'a [f32]),
}

/// The adjoint of [`im2col`]: `x[r, c, ·]` (overwritten) is the sum of the column entries
/// taken from it, then the epilogue; in parallel over the images.
pub fn col2im(g: &ConvGeom, cols: &[f32], rows: usize, x: &mut [f32], epi: Epilogue) {
    let pos = g.positions();
    let (hw, in_len, kk) = (g.h_in * g.w_in, g.in_len(), g.k * g.k);
    x[..rows * in_len]
        .par_chunks_mut(in_len)
        .enumerate()
        .for_each_init(
            || vec![0.0; g.taps_len()],
            |taps, (r, img)| {
                for (c, plane) in img.chunks_exact_mut(hw).enumerate() {
                    taps.fill(0.0);
                    for t in 0..kk {
                        let row = (c * kk + t) * rows * pos + r * pos;
                        let dst = &mut taps[g.tap_offset(t / g.k, t % g.k)..][..pos];
                        for (d, &v) in dst.iter_mut().zip(&cols[row..row + pos]) {
                            *d += v;
                        }
                    }
                    scatter_taps(g, taps, plane);
                    match epi {
                        Epilogue::None => {}
                        Epilogue::Bias(b, act) => act.apply_in_place(plane, b[c]),
                        Epilogue::ActGrad(act, y) => {
                            act.backward(&y[r * in_len + c * hw..][..hw], plane)
                        }
                    }
                }
            },
        );
}

/// `[rows, c, pos]` → `[c, rows·pos]`, in parallel over the channels.
fn to_channel_major(x: &[f32], rows: usize, c: usize, pos: usize, out: &mut [f32]) {
    out[..rows * c * pos]
        .par_chunks_mut(rows * pos)
        .enumerate()
        .for_each(|(ch, dst)| {
            for (r, d) in dst.chunks_exact_mut(pos).enumerate() {
                d.copy_from_slice(&x[(r * c + ch) * pos..(r * c + ch + 1) * pos]);
            }
        });
}

/// `[c, rows·pos]` → `act([rows, c, pos] + bias per channel)`, in parallel over the images.
fn to_image_major(
    t: &[f32],
    rows: usize,
    c: usize,
    pos: usize,
    bias: Option<&[f32]>,
    act: Act,
    out: &mut [f32],
) {
    out[..rows * c * pos]
        .par_chunks_mut(c * pos)
        .enumerate()
        .for_each(|(r, img)| {
            for (ch, dst) in img.chunks_exact_mut(pos).enumerate() {
                let src = &t[(ch * rows + r) * pos..(ch * rows + r + 1) * pos];
                act.apply(src, bias.map_or(0.0, |b| b[ch]), dst);
            }
        });
}

/// A convolution or transposed convolution's weights (burn's layouts) with their Adam state.
#[derive(Clone, Debug)]
pub struct ConvLayer {
    pub geom: ConvGeom,
    pub w: ParamBuf,
    pub b: ParamBuf,
}

impl ConvLayer {
    pub(crate) fn new(
        weight: &Param<Tensor<4>>,
        bias: &Option<Param<Tensor<1>>>,
        path: &str,
        geom: ConvGeom,
        state: &mut AdamState,
    ) -> Result<Self, TrainError> {
        let bias = bias
            .as_ref()
            .ok_or_else(|| TrainError::Invalid("fused training needs layers with a bias".into()))?;
        let w = ParamBuf::from_param(weight, format!("{path}.weight"), state)?;
        let b = ParamBuf::from_param(bias, format!("{path}.bias"), state)?;
        // burn's layout: [c_out, c_in, k, k] for a convolution, [c_in, c_out, k, k] for a
        // transposed one (whose adjoint `geom` has the channel counts the other way round).
        let (k, weights, biases) = (geom.k, w.x.len(), b.x.len());
        let channels = [geom.c_in, geom.c_out];
        if weights != geom.c_in * geom.c_out * k * k || !channels.contains(&biases) {
            return Err(TrainError::Invalid(format!(
                "{path}: {weights} weights and {biases} biases do not fit a {k}×{k} \
                 convolution between {} and {} channels",
                geom.c_in, geom.c_out
            )));
        }
        ParamBuf::same_steps(&w, &b)?;
        Ok(Self { geom, w, b })
    }

    /// Takes over a convolution (module path `path`) on `h_in × h_in` planes. The
    /// geometry (channels, kernel, stride, padding) is read from the module itself, so it is
    /// defined once, where the family builds its burn module.
    pub fn from_conv(
        c: &Conv2d,
        path: &str,
        h_in: usize,
        state: &mut AdamState,
    ) -> Result<Self, TrainError> {
        let [c_out, c_in, _, _] = c.weight.val().dims();
        let p = match c.padding {
            PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => t,
            PaddingConfig2d::Valid => 0,
            ref other => {
                return Err(TrainError::Invalid(format!(
                    "{path}: padding {other:?} has no fast CPU path"
                )))
            }
        };
        let geom = ConvGeom::of(
            path,
            c_in,
            c_out,
            c.kernel_size,
            c.stride,
            [p, p],
            c.groups,
            c.dilation,
            h_in,
        )?;
        Self::new(&c.weight, &c.bias, path, geom, state)
    }

    /// Takes over a transposed convolution (module path `path`) producing `h_out × h_out`
    /// planes: the adjoint of the convolution with the same geometry, read from the module.
    pub fn from_conv_t(
        c: &ConvTranspose2d,
        path: &str,
        h_out: usize,
        state: &mut AdamState,
    ) -> Result<Self, TrainError> {
        if c.padding_out != [0, 0] {
            return Err(TrainError::Invalid(format!(
                "{path}: output padding has no fast CPU path"
            )));
        }
        let [c_in, c_out] = c.channels;
        let geom = ConvGeom::of(
            path,
            c_out,
            c_in,
            c.kernel_size,
            c.stride,
            c.padding,
            c.groups,
            c.dilation,
            h_out,
        )?;
        Self::new(&c.weight, &c.bias, path, geom, state)
    }

    /// burn's convolution with these weights (the rest from `shell`).
    pub fn to_conv(&self, shell: &Conv2d, device: &Device) -> Conv2d {
        Conv2d {
            weight: self.w.to_param(device),
            bias: Some(self.b.to_param(device)),
            ..shell.clone()
        }
    }

    pub fn to_conv_t(&self, shell: &ConvTranspose2d, device: &Device) -> ConvTranspose2d {
        ConvTranspose2d {
            weight: self.w.to_param(device),
            bias: Some(self.b.to_param(device)),
            ..shell.clone()
        }
    }

    pub fn params(&self) -> [&ParamBuf; 2] {
        [&self.w, &self.b]
    }

    pub fn params_mut(&mut self) -> [&mut ParamBuf; 2] {
        [&mut self.w, &mut self.b]
    }

    pub fn adam(&mut self, lr: f32, h: AdamHyper) {
        self.w.adam(lr, h);
        self.b.adam(lr, h);
    }

    /// [`conv_forward`] with this layer's weights.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        rows: usize,
        act: Act,
        y: &mut Vec<f32>,
        s: &mut ConvScratch,
        keep_cols: bool,
    ) {
        conv_forward(
            &self.geom, &self.w.x, &self.b.x, x, rows, act, y, s, keep_cols,
        );
    }

    /// [`conv_backward`] after [`ConvLayer::forward`] (with `keep_cols` when `params`):
    /// with `params`, this layer's gradients are set.
    pub fn backward(
        &mut self,
        rows: usize,
        dy: &[f32],
        params: bool,
        dx: Option<(&mut Vec<f32>, Epilogue)>,
        s: &mut ConvScratch,
    ) {
        let params = params.then_some((&mut self.w.g, &mut self.b.g));
        conv_backward(&self.geom, &self.w.x, rows, dy, params, dx, s);
    }

    /// [`conv_t_forward`] with this layer's weights.
    pub fn t_forward(
        &self,
        x: &[f32],
        rows: usize,
        act: Act,
        y: &mut Vec<f32>,
        s: &mut ConvScratch,
    ) {
        conv_t_forward(&self.geom, &self.w.x, &self.b.x, x, rows, act, y, s);
    }

    /// [`conv_t_backward`], setting this layer's gradients.
    pub fn t_backward(
        &mut self,
        x: &[f32],
        rows: usize,
        dy: &[f32],
        dx: Option<(&mut Vec<f32>, Act)>,
        s: &mut ConvScratch,
    ) {
        let (w, gw, gb) = (&self.w.x, &mut self.w.g, &mut self.b.g);
        conv_t_backward(&self.geom, w, x, rows, dy, gw, gb, dx, s);
    }
}

/// Column floats per chunk of images: the convolutions run chunk by chunk so that the
/// columns (and the matrix products' outputs) of one chunk stay in the L2/L3 caches instead of
/// streaming a whole batch's (25 MB for D's second layer at batch 2·128) through memory.
const CHUNK_FLOATS: usize = 1 << 19;

impl ConvGeom {
    /// The batch as chunks of images (row ranges) with at most `floats` column floats each
    /// (and at least one image).
    pub(crate) fn chunks(
        &self,
        rows: usize,
        floats: usize,
    ) -> impl Iterator<Item = std::ops::Range<usize>> {
        let per = (floats / (self.col_rows() * self.positions()).max(1)).max(1);
        (0..rows.div_ceil(per)).map(move |i| i * per..((i + 1) * per).min(rows))
    }
}

impl Epilogue<'_> {
    /// The same epilogue for the images from `r0` on.
    pub(crate) fn skip_rows(self, r0: usize, in_len: usize) -> Self {
        match self {
            Epilogue::ActGrad(act, y) => Epilogue::ActGrad(act, &y[r0 * in_len..]),
            other => other,
        }
    }
}

/// Scratch buffers of the batched convolutions.
pub struct ConvScratch {
    /// The columns of a whole batch, chunk after chunk (each `[col_rows, n·pos]`).
    cols: Vec<f32>,
    t: Vec<f32>,
    u: Vec<f32>,
    /// Column floats per chunk ([`CHUNK_FLOATS`]; tests make it small).
    chunk_floats: usize,
}

impl Default for ConvScratch {
    fn default() -> Self {
        Self {
            cols: Vec::new(),
            t: Vec::new(),
            u: Vec::new(),
            chunk_floats: CHUNK_FLOATS,
        }
    }
}

/// The first `n` values of `v`, which grows to hold them but never shrinks: a scratch
/// buffer used for chunks of different sizes keeps its size (growing re-zeroes).
fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// Convolution `y = act(W ⋆ x + b)` over a batch; `w` is burn's `[c_out, c_in, k, k]`.
/// With `keep_cols`, the columns of the whole batch stay in `s` for [`conv_backward`]'s
/// weight gradient (otherwise only one chunk's are held at a time).
#[allow(clippy::too_many_arguments)]
pub fn conv_forward(
    g: &ConvGeom,
    w: &[f32],
    b: &[f32],
    x: &[f32],
    rows: usize,
    act: Act,
    y: &mut Vec<f32>,
    s: &mut ConvScratch,
    keep_cols: bool,
) {
    let (pos, kc) = (g.positions(), g.col_rows());
    y.resize(rows * g.out_len(), 0.0);
    if keep_cols {
        grow(&mut s.cols, kc * rows * pos);
    }
    for r in g.chunks(rows, s.chunk_floats) {
        let n = r.len();
        let cols = match keep_cols {
            true => &mut s.cols[kc * r.start * pos..kc * r.end * pos],
            false => grow(&mut s.cols, kc * n * pos),
        };
        im2col(g, &x[r.start * g.in_len()..r.end * g.in_len()], n, cols);
        let t = grow(&mut s.t, g.c_out * n * pos);
        matmul(g.c_out, n * pos, kc, w, false, cols, false, t, false);
        let out = &mut y[r.start * g.out_len()..r.end * g.out_len()];
        to_image_major(t, n, g.c_out, pos, Some(b), act, out);
    }
}

/// Gradients of [`conv_forward`] for gradient `dy` (w.r.t. the pre-activation output): with
/// `params`, the weight and bias gradients (set; from the columns the forward pass kept
/// with `keep_cols`); with `dx`, the input gradient (set, then the epilogue applied).
pub fn conv_backward(
    g: &ConvGeom,
    w: &[f32],
    rows: usize,
    dy: &[f32],
    mut params: Option<(&mut Vec<f32>, &mut Vec<f32>)>,
    mut dx: Option<(&mut Vec<f32>, Epilogue)>,
    s: &mut ConvScratch,
) {
    let (pos, kc) = (g.positions(), g.col_rows());
    if let Some((gw, gb)) = &mut params {
        assert!(s.cols.len() >= kc * rows * pos, "columns not kept");
        gw.clear();
        gw.resize(g.c_out * kc, 0.0);
        gb.clear();
        gb.resize(g.c_out, 0.0);
    }
    if let Some((dx, _)) = &mut dx {
        dx.resize(rows * g.in_len(), 0.0);
    }
    for r in g.chunks(rows, s.chunk_floats) {
        let n = r.len();
        let dy = &dy[r.start * g.out_len()..r.end * g.out_len()];
        let t = grow(&mut s.t, g.c_out * n * pos);
        to_channel_major(dy, n, g.c_out, pos, t);
        if let Some((gw, gb)) = &mut params {
            let cols = &s.cols[kc * r.start * pos..kc * r.end * pos];
            matmul(g.c_out, kc, n * pos, t, false, cols, true, gw, true);
            gb.par_iter_mut()
                .zip(t.par_chunks(n * pos))
                .for_each(|(gb, t)| *gb += sum_map(t, |v| v) as f32);
        }
        if let Some((dx, epi)) = &mut dx {
            let u = grow(&mut s.u, kc * n * pos);
            matmul(kc, n * pos, g.c_out, w, true, t, false, u, false);
            let dx = &mut dx[r.start * g.in_len()..r.end * g.in_len()];
            col2im(g, u, n, dx, epi.skip_rows(r.start, g.in_len()));
        }
    }
}

/// Transposed convolution `y = act(Wᵀ ⋆ x + b)`: the adjoint of the convolution `g` from
/// `y` (`g.c_in × g.h_in × g.w_in`) to `x` (`g.c_out × g.h_out × g.w_out`), so it maps `x`
/// to `y`. `w` is burn's transposed-convolution weight `[g.c_out, g.c_in, k, k]` (its
/// `[c_in, c_out, k, k]`).
#[allow(clippy::too_many_arguments)]
pub fn conv_t_forward(
    g: &ConvGeom,
    w: &[f32],
    b: &[f32],
    x: &[f32],
    rows: usize,
    act: Act,
    y: &mut Vec<f32>,
    s: &mut ConvScratch,
) {
    let (pos, kc) = (g.positions(), g.col_rows());
    y.resize(rows * g.in_len(), 0.0);
    for r in g.chunks(rows, s.chunk_floats) {
        let n = r.len();
        let x = &x[r.start * g.out_len()..r.end * g.out_len()];
        let t = grow(&mut s.t, g.c_out * n * pos);
        to_channel_major(x, n, g.c_out, pos, t);
        let u = grow(&mut s.u, kc * n * pos);
        matmul(kc, n * pos, g.c_out, w, true, t, false, u, false);
        let y = &mut y[r.start * g.in_len()..r.end * g.in_len()];
        col2im(g, u, n, y, Epilogue::Bias(b, act));
    }
}

/// Gradients of [`conv_t_forward`] for gradient `dy` (w.r.t. the pre-activation output);
/// the input gradient, if wanted, is multiplied by `act'(x)` (`act` produced `x`).
#[allow(clippy::too_many_arguments)]
pub fn conv_t_backward(
    g: &ConvGeom,
    w: &[f32],
    x: &[f32],
    rows: usize,
    dy: &[f32],
    gw: &mut Vec<f32>,
    gb: &mut Vec<f32>,
    mut dx: Option<(&mut Vec<f32>, Act)>,
    s: &mut ConvScratch,
) {
    let (pos, kc) = (g.positions(), g.col_rows());
    let hw = g.h_in * g.w_in;
    gw.clear();
    gw.resize(g.c_out * kc, 0.0);
    gb.clear();
    gb.resize(g.c_in, 0.0);
    gb.par_iter_mut().enumerate().for_each(|(c, gb)| {
        let planes = dy
            .chunks_exact(g.in_len())
            .map(|img| &img[c * hw..(c + 1) * hw]);
        *gb = planes.map(|p| sum_map(p, |v| v)).sum::<f64>() as f32;
    });
    if let Some((dx, _)) = &mut dx {
        dx.resize(rows * g.out_len(), 0.0);
    }
    for r in g.chunks(rows, s.chunk_floats) {
        let n = r.len();
        let cols = grow(&mut s.cols, kc * n * pos);
        im2col(g, &dy[r.start * g.in_len()..r.end * g.in_len()], n, cols);
        let x = &x[r.start * g.out_len()..r.end * g.out_len()];
        let t = grow(&mut s.t, g.c_out * n * pos);
        to_channel_major(x, n, g.c_out, pos, t);
        matmul(g.c_out, kc, n * pos, t, false, cols, true, gw, true);
        if let Some((dx, act)) = &mut dx {
            let u = grow(&mut s.u, g.c_out * n * pos);
            matmul(g.c_out, n * pos, kc, w, false, cols, false, u, false);
            let dx = &mut dx[r.start * g.out_len()..r.end * g.out_len()];
            to_image_major(u, n, g.c_out, pos, None, Act::Identity, dx);
            act.backward(x, dx);
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;

    use super::*;
    use crate::data::SplitMix64;
    use crate::model::conv_vae::{down_conv, up_conv};
    use crate::train::read_f32;

    fn random(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            worst <= 1e-5 * scale.max(1.0),
            "{what}: largest difference {worst}"
        );
    }

    #[test]
    fn conv_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let (rows, c_in, c_out, h) = (3, 2, 5, 10);
        let conv = down_conv(c_in, c_out, &device);
        let g = ConvGeom::new(c_in, c_out, 4, 2, 1, h, h);
        assert_eq!((g.h_out, g.w_out), (5, 5));
        let mut rng = SplitMix64::new(1);
        let x = random(&mut rng, rows * c_in * h * h);
        let r = random(&mut rng, rows * g.out_len());
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [rows, c_in, h, h]), &device)
            .require_grad();
        let yt = conv.forward(xt.clone());
        let rt = Tensor::<4>::from_data(TensorData::new(r.clone(), yt.dims()), &device);
        let grads = (yt.clone() * rt).sum().backward();
        let w = read_f32(conv.weight.val()).unwrap();
        let b = read_f32(conv.bias.as_ref().unwrap().val()).unwrap();
        let want_y = read_f32(yt).unwrap();
        let want_gw = read_f32(conv.weight.val().grad(&grads).unwrap()).unwrap();
        let want_gb = read_f32(conv.bias.as_ref().unwrap().val().grad(&grads).unwrap()).unwrap();
        let want_dx = read_f32(xt.grad(&grads).unwrap()).unwrap();
        // The gradient through a leaky ReLU whose output `act_y` is the convolution's input
        // (the epilogue of an input gradient).
        let leaky = Act::LeakyRelu(0.2);
        let act_y = random(&mut rng, x.len());
        let want_dx_act: Vec<f32> = want_dx
            .iter()
            .zip(&act_y)
            .map(|(&d, &y)| if y <= 0.0 { 0.2 * d } else { d })
            .collect();
        // One chunk, one image per chunk, and uneven chunks (2 + 1 images).
        for chunk in [CHUNK_FLOATS, 1, 2 * 800] {
            let mut s = ConvScratch {
                chunk_floats: chunk,
                ..ConvScratch::default()
            };
            let mut y = Vec::new();
            conv_forward(&g, &w, &b, &x, rows, Act::Identity, &mut y, &mut s, true);
            close(&y, &want_y, "forward");
            let (mut gw, mut gb, mut dx) = (vec![9.0], vec![9.0], vec![9.0]);
            let params = Some((&mut gw, &mut gb));
            conv_backward(
                &g,
                &w,
                rows,
                &r,
                params,
                Some((&mut dx, Epilogue::None)),
                &mut s,
            );
            close(&gw, &want_gw, "weight grad");
            close(&gb, &want_gb, "bias grad");
            close(&dx, &want_dx, "input grad");
            // Columns not kept (one chunk's at a time): the input gradient only, here
            // through the activation epilogue.
            conv_forward(&g, &w, &b, &x, rows, Act::Identity, &mut y, &mut s, false);
            close(&y, &want_y, "forward, columns not kept");
            let epi = Epilogue::ActGrad(leaky, &act_y);
            conv_backward(&g, &w, rows, &r, None, Some((&mut dx, epi)), &mut s);
            close(&dx, &want_dx_act, "input grad through the activation");
        }
    }

    #[test]
    fn transposed_conv_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let (rows, c_in, c_out, h) = (3, 6, 3, 5);
        let conv = up_conv(c_in, c_out, &device);
        // The adjoint convolution: from the 10×10 output back to the 5×5 input.
        let g = ConvGeom::new(c_out, c_in, 4, 2, 1, 2 * h, 2 * h);
        assert_eq!((g.h_out, g.w_out), (h, h));
        let mut rng = SplitMix64::new(2);
        let x = random(&mut rng, rows * c_in * h * h);
        let r = random(&mut rng, rows * c_out * 4 * h * h);
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [rows, c_in, h, h]), &device)
            .require_grad();
        let yt = conv.forward(xt.clone());
        assert_eq!(yt.dims(), [rows, c_out, 2 * h, 2 * h]);
        let rt = Tensor::<4>::from_data(TensorData::new(r.clone(), yt.dims()), &device);
        let grads = (yt.clone() * rt).sum().backward();
        let w = read_f32(conv.weight.val()).unwrap();
        let b = read_f32(conv.bias.as_ref().unwrap().val()).unwrap();
        let want_y = read_f32(yt).unwrap();
        let want_gw = read_f32(conv.weight.val().grad(&grads).unwrap()).unwrap();
        let want_gb = read_f32(conv.bias.as_ref().unwrap().val().grad(&grads).unwrap()).unwrap();
        let want_dx = read_f32(xt.grad(&grads).unwrap()).unwrap();
        // One chunk, one image per chunk, 2 + 1 images (48 column rows × 25 positions each).
        for chunk in [CHUNK_FLOATS, 1, 2 * 1200] {
            let mut s = ConvScratch {
                chunk_floats: chunk,
                ..ConvScratch::default()
            };
            let mut y = Vec::new();
            conv_t_forward(&g, &w, &b, &x, rows, Act::Identity, &mut y, &mut s);
            close(&y, &want_y, "forward");
            let (mut gw, mut gb, mut dx) = (vec![9.0], vec![9.0], vec![9.0]);
            let dx_out = Some((&mut dx, Act::Identity));
            conv_t_backward(&g, &w, &x, rows, &r, &mut gw, &mut gb, dx_out, &mut s);
            close(&gw, &want_gw, "weight grad");
            close(&gb, &want_gb, "bias grad");
            close(&dx, &want_dx, "input grad");
        }
    }

    /// im2col against its definition, and col2im as its adjoint (`⟨im2col x, u⟩ = ⟨x,
    /// col2im u⟩`), for geometries the DCGAN does not use: other kernels, strides, paddings
    /// and odd sizes.
    #[test]
    fn im2col_matches_its_definition_and_col2im_is_its_adjoint() {
        let mut rng = SplitMix64::new(5);
        for (c_in, k, st, p, h, w) in [
            (2, 3, 1, 1, 5, 6),
            (1, 4, 2, 1, 9, 7),
            (3, 5, 3, 2, 11, 8),
            (2, 2, 2, 0, 6, 6),
            (1, 3, 2, 0, 7, 5),
            (2, 1, 1, 0, 3, 4),
            // Stride above the kernel, and kernel columns entirely in the padding.
            (1, 2, 3, 1, 7, 8),
            (1, 3, 3, 1, 5, 1),
            (2, 4, 4, 1, 2, 2),
            (1, 2, 3, 1, 1, 1),
        ] {
            let g = ConvGeom::new(c_in, 1, k, st, p, h, w);
            let rows = 3;
            let x = random(&mut rng, rows * g.in_len());
            let n = g.col_rows() * rows * g.positions();
            let mut cols = vec![f32::NAN; n];
            im2col(&g, &x, rows, &mut cols);
            let pos = g.positions();
            for c in 0..c_in {
                for (ky, kx) in (0..k).flat_map(|ky| (0..k).map(move |kx| (ky, kx))) {
                    for (r, oy, ox) in (0..rows).flat_map(|r| {
                        (0..g.h_out).flat_map(move |oy| (0..g.w_out).map(move |ox| (r, oy, ox)))
                    }) {
                        let iy = (oy * st + ky) as isize - p as isize;
                        let ix = (ox * st + kx) as isize - p as isize;
                        let want = if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix)
                        {
                            x[r * g.in_len() + c * h * w + iy as usize * w + ix as usize]
                        } else {
                            0.0
                        };
                        let got = cols
                            [((c * k + ky) * k + kx) * rows * pos + r * pos + oy * g.w_out + ox];
                        assert_eq!(got, want, "{g:?} c{c} tap ({ky},{kx}) r{r} ({oy},{ox})");
                    }
                }
            }
            let u = random(&mut rng, n);
            let mut back = vec![f32::NAN; x.len()];
            col2im(&g, &u, rows, &mut back, Epilogue::None);
            let dot =
                |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| (a * b) as f64).sum::<f64>();
            let (lhs, rhs) = (dot(&cols, &u), dot(&x, &back));
            assert!(
                (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
                "{g:?}: {lhs} vs {rhs}"
            );
        }
    }
}
