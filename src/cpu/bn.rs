//! Batch norm over plain buffers (training mode, burn's running-statistics updates), taken
//! over from and given back to burn's `BatchNorm`.

use burn::module::{Module, ModuleVisitor, Param, ParamId, RunningState};
use burn::nn::BatchNorm;
use burn::prelude::*;
use rayon::prelude::*;

use super::{math, Act, AdamHyper, AdamState, ParamBuf};
use crate::error::TrainError;

/// Batch norm over `[rows, c, hw]`, training mode.
#[derive(Clone, Debug)]
pub(crate) struct Bn {
    pub(crate) gamma: ParamBuf,
    pub(crate) beta: ParamBuf,
    pub(crate) running_mean: Vec<f32>,
    pub(crate) running_var: Vec<f32>,
    /// Parameter ids of the running mean and variance.
    pub(crate) ids: (ParamId, ParamId),
    pub(crate) momentum: f32,
    pub(crate) eps: f32,
}

/// The parameter id of a running statistic.
fn state_id(s: &RunningState<Tensor<1>>) -> ParamId {
    struct Id(Option<ParamId>);
    impl ModuleVisitor for Id {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.get_or_insert(p.id);
        }
    }
    let mut v = Id(None);
    s.visit(&mut v);
    v.0.unwrap_or_default()
}

/// Statistics of one batch-norm pass (for its backward pass), and the backward pass's
/// per-channel sums `(Σ dy, Σ dy·x̂)`.
#[derive(Clone, Default)]
pub(crate) struct BnStats {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    sums: Vec<(f64, f64)>,
}

impl Bn {
    pub(crate) fn from_burn(
        bn: &BatchNorm,
        path: &str,
        state: &mut AdamState,
    ) -> Result<Self, TrainError> {
        Ok(Self {
            gamma: ParamBuf::from_param(&bn.gamma, format!("{path}.gamma"), state)?,
            beta: ParamBuf::from_param(&bn.beta, format!("{path}.beta"), state)?,
            running_mean: super::read_f32(bn.running_mean.value_sync())?,
            running_var: super::read_f32(bn.running_var.value_sync())?,
            // The statistics keep their ids, so that every conversion back to burn records
            // the same module (a new id per conversion made equal weights differ).
            ids: (state_id(&bn.running_mean), state_id(&bn.running_var)),
            momentum: bn.momentum as f32,
            eps: bn.epsilon as f32,
        })
    }

    pub(crate) fn to_burn(&self, shell: &BatchNorm, device: &Device) -> BatchNorm {
        let c = self.running_mean.len();
        let t = |v: &Vec<f32>| Tensor::<1>::from_data(TensorData::new(v.clone(), [c]), device);
        BatchNorm {
            gamma: self.gamma.to_param(device),
            beta: self.beta.to_param(device),
            running_mean: RunningState::with_id(self.ids.0, t(&self.running_mean)),
            running_var: RunningState::with_id(self.ids.1, t(&self.running_var)),
            ..shell.clone()
        }
    }

    /// `y = act(γ·(x − μ)/√(σ² + ε) + β)` with the batch's statistics; updates the running
    /// ones. Statistics in parallel over the channels, the output over the images.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &mut self,
        x: &[f32],
        rows: usize,
        hw: usize,
        act: Act,
        y: &mut [f32],
        st: &mut BnStats,
    ) {
        let c = self.running_mean.len();
        let n = (rows * hw) as f64;
        let planes = |ch: usize| (0..rows).map(move |r| &x[(r * c + ch) * hw..][..hw]);
        st.mean.resize(c, 0.0);
        st.inv_std.resize(c, 0.0);
        // Mean and (for now) variance per channel.
        st.mean
            .par_iter_mut()
            .zip(st.inv_std.par_iter_mut())
            .enumerate()
            .for_each(|(ch, (mean, var))| {
                let m = (planes(ch).map(|p| math::sum_map(p, |v| v)).sum::<f64>() / n) as f32;
                let v = planes(ch)
                    .map(|p| math::sum_map(p, |v| (v - m) * (v - m)))
                    .sum::<f64>()
                    / n;
                (*mean, *var) = (m, v as f32);
            });
        let m = self.momentum;
        for ch in 0..c {
            let (mean, var) = (st.mean[ch], st.inv_std[ch]);
            st.inv_std[ch] = 1.0 / (var + self.eps).sqrt();
            self.running_mean[ch] = self.running_mean[ch] * (1.0 - m) + mean * m;
            self.running_var[ch] = self.running_var[ch] * (1.0 - m) + var * m;
        }
        let (gamma, beta) = (&self.gamma.x, &self.beta.x);
        y[..rows * c * hw]
            .par_chunks_mut(c * hw)
            .zip(x.par_chunks(c * hw))
            .for_each(|(yi, xi)| {
                for (ch, (ys, xs)) in yi.chunks_exact_mut(hw).zip(xi.chunks_exact(hw)).enumerate() {
                    let (mean, scale) = (st.mean[ch], st.inv_std[ch] * gamma[ch]);
                    ys.iter_mut()
                        .zip(xs)
                        .for_each(|(y, &x)| *y = (x - mean) * scale);
                    act.apply_in_place(ys, beta[ch]);
                }
            });
    }

    /// Input gradient into `dx` (overwritten); γ/β gradients added when `params`. Sums in
    /// parallel over the channels, the input gradient over the images.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &mut self,
        x: &[f32],
        rows: usize,
        hw: usize,
        dy: &[f32],
        st: &mut BnStats,
        dx: &mut [f32],
        params: bool,
    ) {
        let c = self.running_mean.len();
        let n = (rows * hw) as f32;
        st.sums.resize(c, (0.0, 0.0));
        let (mean, inv_std) = (&st.mean, &st.inv_std);
        st.sums.par_iter_mut().enumerate().for_each(|(ch, sums)| {
            let (mean, inv_std) = (mean[ch], inv_std[ch]);
            *sums = (0..rows)
                .map(|r| {
                    let o = (r * c + ch) * hw;
                    let (d, xs) = (&dy[o..o + hw], &x[o..o + hw]);
                    (
                        math::sum_map(d, |v| v),
                        math::sum_zip(d, xs, |d, xv| d * (xv - mean) * inv_std),
                    )
                })
                .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        });
        let (sums, st) = (&st.sums, &*st);
        if params {
            for (ch, &(sum_dy, sum_dy_xhat)) in sums.iter().enumerate() {
                self.gamma.g[ch] += sum_dy_xhat as f32;
                self.beta.g[ch] += sum_dy as f32;
            }
        }
        let gamma = &self.gamma.x;
        dx[..rows * c * hw]
            .par_chunks_mut(c * hw)
            .zip(dy.par_chunks(c * hw))
            .zip(x.par_chunks(c * hw))
            .for_each(|((dxi, dyi), xi)| {
                for (ch, ((dxs, dys), xs)) in dxi
                    .chunks_exact_mut(hw)
                    .zip(dyi.chunks_exact(hw))
                    .zip(xi.chunks_exact(hw))
                    .enumerate()
                {
                    let (mean, inv_std) = (st.mean[ch], st.inv_std[ch]);
                    let (sum_dy, sum_dy_xhat) = sums[ch];
                    let (mean_dy, mean_dy_xhat) = (sum_dy as f32 / n, sum_dy_xhat as f32 / n);
                    let scale = gamma[ch] * inv_std;
                    for ((dxv, &d), &xv) in dxs.iter_mut().zip(dys).zip(xs) {
                        let xhat = (xv - mean) * inv_std;
                        *dxv = scale * (d - mean_dy - xhat * mean_dy_xhat);
                    }
                }
            });
    }

    pub(crate) fn params(&self) -> [&ParamBuf; 2] {
        [&self.gamma, &self.beta]
    }

    pub(crate) fn adam(&mut self, lr: f32, h: AdamHyper) {
        self.gamma.adam(lr, h);
        self.beta.adam(lr, h);
    }
}
