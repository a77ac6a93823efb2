//! Convolutions for the fused CPU path (the DCGAN's): 2-D convolution and transposed
//! convolution, square kernels, as a batched im2col/col2im + one sgemm per layer for the
//! whole batch, in burn's weight layouts.

use rayon::prelude::*;

use super::math::sum_map;
use super::matmul;

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

    fn in_len(&self) -> usize {
        self.c_in * self.h_in * self.w_in
    }
    fn out_len(&self) -> usize {
        self.c_out * self.h_out * self.w_out
    }
    fn col_rows(&self) -> usize {
        self.c_in * self.k * self.k
    }
    fn positions(&self) -> usize {
        self.h_out * self.w_out
    }

    /// For each (kernel offset, output index) the input index, or `None` in the padding.
    #[inline(always)]
    fn src(&self, o: usize, kk: usize, n: usize) -> Option<usize> {
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

/// im2col of a whole batch: `cols[(c·k + ky)·k + kx, r·pos + oy·w_out + ox] =
/// x[r, c, oy·s + ky − p, ox·s + kx − p]` (0 in the padding), one row per kernel tap, built in
/// parallel over the rows.
pub fn im2col(g: &ConvGeom, x: &[f32], rows: usize, cols: &mut Vec<f32>) {
    let pos = g.positions();
    let (hw, in_len) = (g.h_in * g.w_in, g.in_len());
    cols.resize(g.col_rows() * rows * pos, 0.0);
    let xr = valid_range_all(g);
    cols.par_chunks_mut(rows * pos)
        .enumerate()
        .for_each(|(row, dst)| {
            let (c, ky, kx) = (row / (g.k * g.k), row / g.k % g.k, row % g.k);
            let ox_range = xr[kx].clone();
            for r in 0..rows {
                let plane = &x[r * in_len + c * hw..r * in_len + (c + 1) * hw];
                let block = &mut dst[r * pos..(r + 1) * pos];
                for oy in 0..g.h_out {
                    let line = &mut block[oy * g.w_out..(oy + 1) * g.w_out];
                    let Some(iy) = g.src(oy, ky, g.h_in) else {
                        line.fill(0.0);
                        continue;
                    };
                    let src = &plane[iy * g.w_in..(iy + 1) * g.w_in];
                    line[..ox_range.start].fill(0.0);
                    line[ox_range.end..].fill(0.0);
                    let first = ox_range.start * g.s + kx - g.p;
                    let taps = src[first..].iter().step_by(g.s);
                    for (d, &v) in line[ox_range.clone()].iter_mut().zip(taps) {
                        *d = v;
                    }
                }
            }
        });
}

fn valid_range_all(g: &ConvGeom) -> Vec<std::ops::Range<usize>> {
    (0..g.k)
        .map(|kx| valid_range(g, kx, g.w_in, g.w_out))
        .collect()
}

/// The adjoint of [`im2col`]: adds every column entry onto the input position it came from
/// (`x` is accumulated into), in parallel over the images.
pub fn col2im(g: &ConvGeom, cols: &[f32], rows: usize, x: &mut [f32]) {
    let pos = g.positions();
    let (hw, in_len) = (g.h_in * g.w_in, g.in_len());
    let xr = valid_range_all(g);
    x[..rows * in_len]
        .par_chunks_mut(in_len)
        .enumerate()
        .for_each(|(r, img)| {
            for c in 0..g.c_in {
                let plane = &mut img[c * hw..(c + 1) * hw];
                for ky in 0..g.k {
                    for (kx, ox_range) in xr.iter().enumerate() {
                        let row = (c * g.k + ky) * g.k + kx;
                        let block =
                            &cols[row * rows * pos + r * pos..row * rows * pos + (r + 1) * pos];
                        for oy in 0..g.h_out {
                            let Some(iy) = g.src(oy, ky, g.h_in) else {
                                continue;
                            };
                            let dst = &mut plane[iy * g.w_in..(iy + 1) * g.w_in];
                            let line = &block[oy * g.w_out..(oy + 1) * g.w_out];
                            let range = ox_range.clone();
                            let first = range.start * g.s + kx - g.p;
                            let taps = dst[first..].iter_mut().step_by(g.s);
                            for (&v, d) in line[range].iter().zip(taps) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        });
}

/// `[rows, c, pos]` → `[c, rows·pos]`.
fn to_channel_major(x: &[f32], rows: usize, c: usize, pos: usize, out: &mut Vec<f32>) {
    out.resize(rows * c * pos, 0.0);
    for r in 0..rows {
        for ch in 0..c {
            out[(ch * rows + r) * pos..(ch * rows + r + 1) * pos]
                .copy_from_slice(&x[(r * c + ch) * pos..(r * c + ch + 1) * pos]);
        }
    }
}

/// `[c, rows·pos]` (+ bias per channel) → `[rows, c, pos]`.
fn to_image_major(
    t: &[f32],
    rows: usize,
    c: usize,
    pos: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    for r in 0..rows {
        for ch in 0..c {
            let src = &t[(ch * rows + r) * pos..(ch * rows + r + 1) * pos];
            let dst = &mut out[(r * c + ch) * pos..(r * c + ch + 1) * pos];
            let b = bias.map_or(0.0, |b| b[ch]);
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s + b);
        }
    }
}

/// Scratch buffers of the batched convolutions.
#[derive(Default)]
pub struct ConvScratch {
    cols: Vec<f32>,
    t: Vec<f32>,
    u: Vec<f32>,
}

/// Convolution `y = W ⋆ x + b` over a batch; `w` is burn's `[c_out, c_in, k, k]`.
pub fn conv_forward(
    g: &ConvGeom,
    w: &[f32],
    b: &[f32],
    x: &[f32],
    rows: usize,
    y: &mut Vec<f32>,
    s: &mut ConvScratch,
) {
    let pos = g.positions();
    y.resize(rows * g.out_len(), 0.0);
    im2col(g, x, rows, &mut s.cols);
    s.t.resize(g.c_out * rows * pos, 0.0);
    matmul(
        g.c_out,
        rows * pos,
        g.col_rows(),
        w,
        false,
        &s.cols,
        false,
        &mut s.t,
        false,
    );
    to_image_major(&s.t, rows, g.c_out, pos, Some(b), y);
}

/// What [`conv_backward`] computes besides nothing.
pub struct ConvGrads<'a> {
    /// Weight and bias gradients (set), if wanted.
    pub params: Option<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
    /// Input gradient (set), if wanted.
    pub dx: Option<&'a mut Vec<f32>>,
    /// `s.cols` already holds `im2col(x)` (left there by [`conv_forward`] on the same `x`).
    pub cols_ready: bool,
}

/// Gradients of [`conv_forward`] on `x` for output gradient `dy`.
pub fn conv_backward(
    g: &ConvGeom,
    w: &[f32],
    x: &[f32],
    rows: usize,
    dy: &[f32],
    out: ConvGrads,
    s: &mut ConvScratch,
) {
    let pos = g.positions();
    let ConvGrads {
        params,
        dx,
        cols_ready,
    } = out;
    to_channel_major(dy, rows, g.c_out, pos, &mut s.t);
    if let Some((gw, gb)) = params {
        if !cols_ready {
            im2col(g, x, rows, &mut s.cols);
        }
        gw.resize(g.c_out * g.col_rows(), 0.0);
        matmul(
            g.c_out,
            g.col_rows(),
            rows * pos,
            &s.t,
            false,
            &s.cols,
            true,
            gw,
            false,
        );
        gb.clear();
        gb.extend(
            s.t.chunks_exact(rows * pos)
                .map(|c| sum_map(c, |v| v) as f32),
        );
    }
    if let Some(dx) = dx {
        s.u.resize(g.col_rows() * rows * pos, 0.0);
        matmul(
            g.col_rows(),
            rows * pos,
            g.c_out,
            w,
            true,
            &s.t,
            false,
            &mut s.u,
            false,
        );
        dx.clear();
        dx.resize(rows * g.in_len(), 0.0);
        col2im(g, &s.u, rows, dx);
    }
}

/// Transposed convolution: the adjoint of the convolution `g` from `y` (`g.c_in × g.h_in ×
/// g.w_in`) to `x` (`g.c_out × g.h_out × g.w_out`), so it maps `x` to `y`. `w` is burn's
/// transposed-convolution weight `[g.c_out, g.c_in, k, k]` (its `[c_in, c_out, k, k]`).
pub fn conv_t_forward(
    g: &ConvGeom,
    w: &[f32],
    b: &[f32],
    x: &[f32],
    rows: usize,
    y: &mut Vec<f32>,
    s: &mut ConvScratch,
) {
    let pos = g.positions();
    to_channel_major(x, rows, g.c_out, pos, &mut s.t);
    s.cols.resize(g.col_rows() * rows * pos, 0.0);
    matmul(
        g.col_rows(),
        rows * pos,
        g.c_out,
        w,
        true,
        &s.t,
        false,
        &mut s.cols,
        false,
    );
    y.clear();
    y.resize(rows * g.in_len(), 0.0);
    col2im(g, &s.cols, rows, y);
    let hw = g.h_in * g.w_in;
    for img in y.chunks_exact_mut(g.in_len()) {
        for (plane, &bias) in img.chunks_exact_mut(hw).zip(b) {
            plane.iter_mut().for_each(|v| *v += bias);
        }
    }
}

/// Gradients of [`conv_t_forward`].
#[allow(clippy::too_many_arguments)]
pub fn conv_t_backward(
    g: &ConvGeom,
    w: &[f32],
    x: &[f32],
    rows: usize,
    dy: &[f32],
    gw: &mut Vec<f32>,
    gb: &mut Vec<f32>,
    dx: Option<&mut Vec<f32>>,
    s: &mut ConvScratch,
) {
    let pos = g.positions();
    let hw = g.h_in * g.w_in;
    im2col(g, dy, rows, &mut s.cols);
    to_channel_major(x, rows, g.c_out, pos, &mut s.t);
    gw.resize(g.c_out * g.col_rows(), 0.0);
    matmul(
        g.c_out,
        g.col_rows(),
        rows * pos,
        &s.t,
        false,
        &s.cols,
        true,
        gw,
        false,
    );
    gb.clear();
    gb.resize(g.c_in, 0.0);
    for img in dy.chunks_exact(g.in_len()) {
        for (plane, gb) in img.chunks_exact(hw).zip(gb.iter_mut()) {
            *gb += sum_map(plane, |v| v) as f32;
        }
    }
    if let Some(dx) = dx {
        s.u.resize(g.c_out * rows * pos, 0.0);
        matmul(
            g.c_out,
            rows * pos,
            g.col_rows(),
            w,
            false,
            &s.cols,
            false,
            &mut s.u,
            false,
        );
        dx.resize(rows * g.out_len(), 0.0);
        to_image_major(&s.u, rows, g.c_out, pos, None, dx);
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
        let (mut y, mut cols) = (Vec::new(), ConvScratch::default());
        conv_forward(&g, &w, &b, &x, rows, &mut y, &mut cols);
        close(&y, &read_f32(yt).unwrap(), "forward");
        let (mut gw, mut gb, mut dx) = (Vec::new(), Vec::new(), Vec::new());
        conv_backward(
            &g,
            &w,
            &x,
            rows,
            &r,
            ConvGrads {
                params: Some((&mut gw, &mut gb)),
                dx: Some(&mut dx),
                cols_ready: true,
            },
            &mut cols,
        );
        close(
            &gw,
            &read_f32(conv.weight.val().grad(&grads).unwrap()).unwrap(),
            "weight grad",
        );
        close(
            &gb,
            &read_f32(conv.bias.as_ref().unwrap().val().grad(&grads).unwrap()).unwrap(),
            "bias grad",
        );
        close(
            &dx,
            &read_f32(xt.grad(&grads).unwrap()).unwrap(),
            "input grad",
        );
    }

    #[test]
    fn transposed_conv_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let (rows, c_in, c_out, h) = (2, 6, 3, 5);
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
        let (mut y, mut cols) = (Vec::new(), ConvScratch::default());
        conv_t_forward(&g, &w, &b, &x, rows, &mut y, &mut cols);
        close(&y, &read_f32(yt).unwrap(), "forward");
        let (mut gw, mut gb, mut dx) = (Vec::new(), Vec::new(), Vec::new());
        conv_t_backward(
            &g,
            &w,
            &x,
            rows,
            &r,
            &mut gw,
            &mut gb,
            Some(&mut dx),
            &mut cols,
        );
        close(
            &gw,
            &read_f32(conv.weight.val().grad(&grads).unwrap()).unwrap(),
            "weight grad",
        );
        close(
            &gb,
            &read_f32(conv.bias.as_ref().unwrap().val().grad(&grads).unwrap()).unwrap(),
            "bias grad",
        );
        close(
            &dx,
            &read_f32(xt.grad(&grads).unwrap()).unwrap(),
            "input grad",
        );
    }
}
