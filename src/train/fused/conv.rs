//! Convolutions for the fused CPU path (groundwork for DCGAN / conv-VAE; not wired into
//! training yet): 2-D convolution and transposed convolution, square kernels, as
//! im2col/col2im + one sgemm per image, in burn's weight layouts.

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

/// `cols[(c·k + ky)·k + kx, oy·w_out + ox] = x[c, oy·s + ky − p, ox·s + kx − p]` (0 in the
/// padding) for one image `x`.
pub fn im2col(g: &ConvGeom, x: &[f32], cols: &mut [f32]) {
    let pos = g.positions();
    for c in 0..g.c_in {
        let plane = &x[c * g.h_in * g.w_in..(c + 1) * g.h_in * g.w_in];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = ((c * g.k + ky) * g.k + kx) * pos;
                let dst = &mut cols[row..row + pos];
                for oy in 0..g.h_out {
                    let line = &mut dst[oy * g.w_out..(oy + 1) * g.w_out];
                    let Some(iy) = g.src(oy, ky, g.h_in) else {
                        line.fill(0.0);
                        continue;
                    };
                    for (ox, v) in line.iter_mut().enumerate() {
                        *v = g
                            .src(ox, kx, g.w_in)
                            .map_or(0.0, |ix| plane[iy * g.w_in + ix]);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each column entry back onto the input position it came
/// from (`x` is accumulated into, not overwritten).
pub fn col2im(g: &ConvGeom, cols: &[f32], x: &mut [f32]) {
    let pos = g.positions();
    for c in 0..g.c_in {
        let plane = &mut x[c * g.h_in * g.w_in..(c + 1) * g.h_in * g.w_in];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = ((c * g.k + ky) * g.k + kx) * pos;
                let src = &cols[row..row + pos];
                for oy in 0..g.h_out {
                    let Some(iy) = g.src(oy, ky, g.h_in) else {
                        continue;
                    };
                    for ox in 0..g.w_out {
                        if let Some(ix) = g.src(ox, kx, g.w_in) {
                            plane[iy * g.w_in + ix] += src[oy * g.w_out + ox];
                        }
                    }
                }
            }
        }
    }
}

/// Convolution `y = W ⋆ x + b` over a batch; `w` is burn's `[c_out, c_in, k, k]`.
pub fn conv_forward(
    g: &ConvGeom,
    w: &[f32],
    b: &[f32],
    x: &[f32],
    rows: usize,
    y: &mut Vec<f32>,
    cols: &mut Vec<f32>,
) {
    y.resize(rows * g.out_len(), 0.0);
    cols.resize(g.col_rows() * g.positions(), 0.0);
    for r in 0..rows {
        im2col(g, &x[r * g.in_len()..(r + 1) * g.in_len()], cols);
        let out = &mut y[r * g.out_len()..(r + 1) * g.out_len()];
        matmul(
            g.c_out,
            g.positions(),
            g.col_rows(),
            w,
            false,
            cols,
            false,
            out,
            false,
        );
        for (plane, &bias) in out.chunks_exact_mut(g.positions()).zip(b) {
            plane.iter_mut().for_each(|v| *v += bias);
        }
    }
}

/// Gradients of [`conv_forward`]: `gw`, `gb` are set; `dx` (if given) is set.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward(
    g: &ConvGeom,
    w: &[f32],
    x: &[f32],
    rows: usize,
    dy: &[f32],
    gw: &mut Vec<f32>,
    gb: &mut Vec<f32>,
    dx: Option<&mut Vec<f32>>,
    cols: &mut Vec<f32>,
) {
    gw.clear();
    gw.resize(g.c_out * g.col_rows(), 0.0);
    gb.clear();
    gb.resize(g.c_out, 0.0);
    cols.resize(g.col_rows() * g.positions(), 0.0);
    let mut dx = dx;
    if let Some(dx) = dx.as_deref_mut() {
        dx.clear();
        dx.resize(rows * g.in_len(), 0.0);
    }
    let mut dcols = vec![0.0; g.col_rows() * g.positions()];
    for r in 0..rows {
        let dy_r = &dy[r * g.out_len()..(r + 1) * g.out_len()];
        im2col(g, &x[r * g.in_len()..(r + 1) * g.in_len()], cols);
        matmul(
            g.c_out,
            g.col_rows(),
            g.positions(),
            dy_r,
            false,
            cols,
            true,
            gw,
            true,
        );
        for (plane, gb) in dy_r.chunks_exact(g.positions()).zip(gb.iter_mut()) {
            *gb += plane.iter().sum::<f32>();
        }
        if let Some(dx) = dx.as_deref_mut() {
            matmul(
                g.col_rows(),
                g.positions(),
                g.c_out,
                w,
                true,
                dy_r,
                false,
                &mut dcols,
                false,
            );
            col2im(g, &dcols, &mut dx[r * g.in_len()..(r + 1) * g.in_len()]);
        }
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
    cols: &mut Vec<f32>,
) {
    y.clear();
    y.resize(rows * g.in_len(), 0.0);
    cols.resize(g.col_rows() * g.positions(), 0.0);
    for r in 0..rows {
        let x_r = &x[r * g.out_len()..(r + 1) * g.out_len()];
        // cols[c_out_t·k·k, HWi] = Wᵀ · x_r, W as [c_in_t, c_out_t·k·k]
        matmul(
            g.col_rows(),
            g.positions(),
            g.c_out,
            w,
            true,
            x_r,
            false,
            cols,
            false,
        );
        let out = &mut y[r * g.in_len()..(r + 1) * g.in_len()];
        col2im(g, cols, out);
        for (plane, &bias) in out.chunks_exact_mut(g.h_in * g.w_in).zip(b) {
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
    cols: &mut Vec<f32>,
) {
    gw.clear();
    gw.resize(g.c_out * g.col_rows(), 0.0);
    gb.clear();
    gb.resize(g.c_in, 0.0);
    cols.resize(g.col_rows() * g.positions(), 0.0);
    let mut dx = dx;
    if let Some(dx) = dx.as_deref_mut() {
        dx.clear();
        dx.resize(rows * g.out_len(), 0.0);
    }
    for r in 0..rows {
        let dy_r = &dy[r * g.in_len()..(r + 1) * g.in_len()];
        let x_r = &x[r * g.out_len()..(r + 1) * g.out_len()];
        im2col(g, dy_r, cols);
        // gW [c_in_t, c_out_t·k·k] += x_r [c_in_t, HWi] · colsᵀ
        matmul(
            g.c_out,
            g.col_rows(),
            g.positions(),
            x_r,
            false,
            cols,
            true,
            gw,
            true,
        );
        for (plane, gb) in dy_r.chunks_exact(g.h_in * g.w_in).zip(gb.iter_mut()) {
            *gb += plane.iter().sum::<f32>();
        }
        if let Some(dx) = dx.as_deref_mut() {
            let out = &mut dx[r * g.out_len()..(r + 1) * g.out_len()];
            matmul(
                g.c_out,
                g.positions(),
                g.col_rows(),
                w,
                false,
                cols,
                false,
                out,
                false,
            );
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
        let (mut y, mut cols) = (Vec::new(), Vec::new());
        conv_forward(&g, &w, &b, &x, rows, &mut y, &mut cols);
        close(&y, &read_f32(yt).unwrap(), "forward");
        let (mut gw, mut gb, mut dx) = (Vec::new(), Vec::new(), Vec::new());
        conv_backward(
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
        let (mut y, mut cols) = (Vec::new(), Vec::new());
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
