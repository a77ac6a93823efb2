//! DCGAN step over plain buffers: the same layers, batch-norm statistics (three running
//! updates of D's batch norm per step, in burn's order) and losses as `model::gan_objective`'s step.

use burn::module::{Module, ModuleVisitor, Param, ParamId, RunningState};
use burn::nn::BatchNorm;
use burn::prelude::*;
use rayon::prelude::*;

use super::conv::{ConvLayer, ConvScratch, Epilogue};
use super::{
    adam_record_bytes_of, disc_loss_and_grad, fill_normal, gan_terms, gen_loss_and_grad, math, Act,
    AdamHyper, AdamState, Dense, ParamBuf,
};
use crate::data::SplitMix64;
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
            running_mean: super::read_param(&bn.running_mean.value_sync())?,
            running_var: super::read_param(&bn.running_var.value_sync())?,
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
    fn forward(
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
    fn backward(
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

    fn adam(&mut self, lr: f32, h: AdamHyper) {
        self.gamma.adam(lr, h);
        self.beta.adam(lr, h);
    }
}

/// Back through one generator block, `t(relu(bn(a)))` with `t_in = relu(bn(a))`, from
/// `d_out` (the gradient w.r.t. t's output) via `d_in` (w.r.t. `t_in`) to `d_a` (w.r.t.
/// `a`); t's and bn's parameter gradients are set.
#[allow(clippy::too_many_arguments)]
fn up_block_backward(
    t: &mut ConvLayer,
    bn: &mut Bn,
    t_in: &[f32],
    a: &[f32],
    st: &mut BnStats,
    rows: usize,
    d_out: &[f32],
    d_in: &mut Vec<f32>,
    d_a: &mut Vec<f32>,
    scratch: &mut ConvScratch,
) {
    t.t_backward(t_in, rows, d_out, Some((&mut *d_in, Act::Relu)), scratch);
    d_a.resize(d_in.len(), 0.0);
    bn.gamma.zero_grad();
    bn.beta.zero_grad();
    let hw = t.geom.h_out * t.geom.w_out;
    bn.backward(a, rows, hw, d_in, st, d_a, true);
}

/// One pass through D: its activations, gradients and convolution scratch. The D step's
/// pass (over 2·B images) and the G step's (over B) each have their own, as every buffer in
/// [`Work`] has one use, so that none changes size from step to step (growing a `Vec` zeroes
/// the new part: megabytes per step, on one core).
#[derive(Default)]
pub(crate) struct DPass {
    a3: Vec<f32>,
    a4: Vec<f32>,
    n4: Vec<f32>,
    logits: Vec<f32>,
    s_real: BnStats,
    s_fake: BnStats,
    /// The columns of the forward pass, reused by the backward pass.
    cc1: ConvScratch,
    cc2: ConvScratch,
    d1: Vec<f32>,
    d2: Vec<f32>,
    d3: Vec<f32>,
    /// Gradient w.r.t. D's input (when asked for).
    dx: Vec<f32>,
}

#[derive(Default)]
pub(crate) struct Work {
    z: Vec<f32>,
    // generator
    a0: Vec<f32>,
    n0: Vec<f32>,
    a1: Vec<f32>,
    n1: Vec<f32>,
    fake: Vec<f32>,
    s0: BnStats,
    s1: BnStats,
    ct1: ConvScratch,
    ct2: ConvScratch,
    // generator gradients: w.r.t. n1, a1, n0, a0
    e_n1: Vec<f32>,
    e_a1: Vec<f32>,
    e_n0: Vec<f32>,
    e_a0: Vec<f32>,
    // discriminator: [real; fake] in the D step, fake in the G step
    both: Vec<f32>,
    d_step: DPass,
    g_step: DPass,
}

impl Clone for Work {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// DCGAN generator and discriminator with their Adam states.
#[derive(Clone)]
pub struct FusedDcgan<S> {
    pub(crate) fc: Dense,
    pub(crate) bn0: Bn,
    pub(crate) t1: ConvLayer,
    pub(crate) bn1: Bn,
    pub(crate) t2: ConvLayer,
    pub(crate) c1: ConvLayer,
    pub(crate) c2: ConvLayer,
    pub(crate) bn2: Bn,
    pub(crate) out: Dense,
    /// The burn modules the weights go back into (configuration, padding).
    pub(crate) shells: S,
    /// (channels, size) of the images.
    pub(crate) dims: (usize, usize),
    /// D's activation (the family's, read from its description).
    pub(crate) leaky: Act,
    pub(crate) rng: SplitMix64,
    pub(crate) work: Work,
}

impl<S: Clone> FusedDcgan<S> {
    pub fn reseed(&mut self, seed: u64) {
        self.rng = SplitMix64::new(seed);
    }

    pub fn optim_bytes(&self) -> Result<(Vec<u8>, Vec<u8>), TrainError> {
        let g = adam_record_bytes_of(
            [&self.fc],
            self.t1
                .params()
                .into_iter()
                .chain(self.t2.params())
                .chain(self.bn0.params())
                .chain(self.bn1.params()),
        )?;
        let d = adam_record_bytes_of(
            [&self.out],
            self.c1
                .params()
                .into_iter()
                .chain(self.c2.params())
                .chain(self.bn2.params()),
        )?;
        Ok((g, d))
    }

    pub fn step(&mut self, real: &[f32], rows: usize, lr: f32, h: AdamHyper) -> [f32; 4] {
        let latent = self.fc.inp;
        let mut z = std::mem::take(&mut self.work.z);
        fill_normal(&mut self.rng, &mut z, rows * latent);
        let terms = self.step_with_latents(real, rows, &z, lr, h);
        self.work.z = z;
        terms
    }

    /// D's layers up to the logits on `x` (`rows` images), in the D step's pass or the G
    /// step's. With `split = Some(k)`, batch norm takes its statistics separately over the
    /// first `k` rows and the rest (burn runs D once on the real and once on the fake batch).
    fn d_forward(&mut self, x: &[f32], rows: usize, split: Option<usize>, d_step: bool) {
        let leaky = self.leaky;
        let w = if d_step {
            &mut self.work.d_step
        } else {
            &mut self.work.g_step
        };
        // Only the D step computes D's weight gradients, from the columns kept here.
        let keep = d_step;
        self.c1.forward(x, rows, leaky, &mut w.a3, &mut w.cc1, keep);
        let id = Act::Identity;
        self.c2
            .forward(&w.a3, rows, id, &mut w.a4, &mut w.cc2, keep);
        let g2 = &self.c2.geom;
        let hw = g2.h_out * g2.w_out;
        let per = g2.c_out * hw;
        w.n4.resize(rows * per, 0.0);
        match split {
            Some(k) => {
                let (x1, x2) = w.a4.split_at(k * per);
                let (y1, y2) = w.n4.split_at_mut(k * per);
                self.bn2.forward(x1, k, hw, leaky, y1, &mut w.s_real);
                self.bn2.forward(x2, rows - k, hw, leaky, y2, &mut w.s_fake);
            }
            None => self
                .bn2
                .forward(&w.a4, rows, hw, leaky, &mut w.n4, &mut w.s_fake),
        }
        self.out.forward(&w.n4, rows, &mut w.logits, Act::Identity);
    }

    /// Back through D from the pass's `logits` (holding d loss / d logits) to its input. In
    /// the D step D's parameter gradients are set; in the G step the input gradient goes
    /// into the pass's `dx` instead (no parameter gradients).
    fn d_backward(&mut self, rows: usize, split: Option<usize>, d_step: bool) {
        let leaky = self.leaky;
        let params = d_step;
        let w = if d_step {
            &mut self.work.d_step
        } else {
            &mut self.work.g_step
        };
        self.out.backward(
            &w.n4,
            rows,
            &w.logits,
            params.then_some(false),
            Some((&mut w.d1, false)),
        );
        leaky.backward(&w.n4, &mut w.d1);
        let hw = self.c2.geom.h_out * self.c2.geom.w_out;
        let per = self.c2.geom.c_out * hw;
        w.d2.resize(rows * per, 0.0);
        if params {
            self.bn2.gamma.zero_grad();
            self.bn2.beta.zero_grad();
        }
        match split {
            Some(k) => {
                let (x1, x2) = w.a4.split_at(k * per);
                let (g1, g2) = w.d1.split_at(k * per);
                let (o1, o2) = w.d2.split_at_mut(k * per);
                self.bn2.backward(x1, k, hw, g1, &mut w.s_real, o1, params);
                self.bn2
                    .backward(x2, rows - k, hw, g2, &mut w.s_fake, o2, params);
            }
            None => self
                .bn2
                .backward(&w.a4, rows, hw, &w.d1, &mut w.s_fake, &mut w.d2, params),
        }
        // d a4 in d2 → c2 → leaky → d (pre-leaky h3) in d3 → c1 (params, or input into
        // dx). The columns d_forward left in cc1/cc2 are reused.
        let dx = Some((&mut w.d3, Epilogue::ActGrad(leaky, &w.a3)));
        self.c2.backward(rows, &w.d2, params, dx, &mut w.cc2);
        let dx = (!params).then_some((&mut w.dx, Epilogue::None));
        self.c1.backward(rows, &w.d3, params, dx, &mut w.cc1);
    }

    pub fn step_with_latents(
        &mut self,
        real: &[f32],
        rows: usize,
        z: &[f32],
        lr: f32,
        h: AdamHyper,
    ) -> [f32; 4] {
        let (channels, size) = self.dims;
        let q = size / 4;
        assert_eq!(real.len(), rows * channels * size * size, "batch size");

        // G(z), train-mode batch norm.
        {
            let w = &mut self.work;
            self.fc.forward(z, rows, &mut w.a0, Act::Identity);
            w.n0.resize(w.a0.len(), 0.0);
            self.bn0
                .forward(&w.a0, rows, q * q, Act::Relu, &mut w.n0, &mut w.s0);
            let id = Act::Identity;
            self.t1.t_forward(&w.n0, rows, id, &mut w.a1, &mut w.ct1);
            w.n1.resize(w.a1.len(), 0.0);
            self.bn1
                .forward(&w.a1, rows, 4 * q * q, Act::Relu, &mut w.n1, &mut w.s1);
            let tanh = Act::Tanh;
            self.t2
                .t_forward(&w.n1, rows, tanh, &mut w.fake, &mut w.ct2);
            w.both.clear();
            w.both.extend_from_slice(real);
            w.both.extend_from_slice(&w.fake);
        }

        // D on real, then on the detached fake (separate batch statistics).
        let both = std::mem::take(&mut self.work.both);
        self.d_forward(&both, 2 * rows, Some(rows), true);
        let d_sums = disc_loss_and_grad(&mut self.work.d_step.logits, rows);
        self.d_backward(2 * rows, Some(rows), true);
        self.work.both = both;
        self.c1.adam(lr, h);
        self.c2.adam(lr, h);
        self.bn2.adam(lr, h);
        self.out.adam(lr, h);

        // G through the updated D.
        let fake = std::mem::take(&mut self.work.fake);
        self.d_forward(&fake, rows, None, false);
        let g_loss = gen_loss_and_grad(&mut self.work.g_step.logits);
        self.d_backward(rows, None, false);
        {
            let w = &mut self.work;
            let d_fake = &mut w.g_step.dx;
            Act::Tanh.backward(&fake, d_fake); // d a2
            up_block_backward(
                &mut self.t2,
                &mut self.bn1,
                &w.n1,
                &w.a1,
                &mut w.s1,
                rows,
                d_fake,
                &mut w.e_n1,
                &mut w.e_a1,
                &mut w.ct2,
            );
            up_block_backward(
                &mut self.t1,
                &mut self.bn0,
                &w.n0,
                &w.a0,
                &mut w.s0,
                rows,
                &w.e_a1,
                &mut w.e_n0,
                &mut w.e_a0,
                &mut w.ct1,
            );
            self.fc.backward(z, rows, &w.e_a0, Some(false), None);
        }
        self.work.fake = fake;
        self.fc.adam(lr, h);
        self.t1.adam(lr, h);
        self.t2.adam(lr, h);
        self.bn0.adam(lr, h);
        self.bn1.adam(lr, h);

        gan_terms(&d_sums, g_loss, rows)
    }
}
