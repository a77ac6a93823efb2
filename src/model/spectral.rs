//! Spectral normalisation (Miyato et al. 2018) for burn layers: a layer's output is divided by
//! σ(W), an estimate of the largest singular value of its weight (as a matrix
//! `[out, fan-in]`), so that the layer is 1-Lipschitz. σ comes from one power-iteration step
//! per training step ([`SnConv2d::refresh`], called through `DiscModule::refresh`): the
//! left singular vector estimate `u` is stored in the module (saved with it, not trained by
//! gradients), `v = normalise(Wᵀu)`, `σ = uᵀWv`, and σ's gradient flows into W with u and v
//! held fixed, as in the paper. Dividing the output by σ is dividing the weight by σ (the
//! layer is linear in W); the bias is added after, unscaled.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;

/// `t / ‖t‖` for a row `[1, n]`.
fn normalise(t: Tensor<2>) -> Tensor<2> {
    let norm = t.clone().powf_scalar(2.0).sum().sqrt().add_scalar(1e-12);
    t / norm.unsqueeze::<2>()
}

/// A fresh `u`: a random unit row `[1, out]`, not trained by gradients.
fn fresh_u(out: usize, device: &Device) -> Param<Tensor<2>> {
    let u = normalise(Tensor::random(
        [1, out],
        Distribution::Normal(0.0, 1.0),
        device,
    ));
    Param::from_tensor(u).set_require_grad(false)
}

/// One power-iteration step for `w` `[out, fan_in]` from `u` `[1, out]`: the new `u`
/// (no gradient).
fn power_step(w: Tensor<2>, u: Tensor<2>) -> Tensor<2> {
    let w = w.detach();
    let v = normalise(u.detach().matmul(w.clone())); // [1, fan_in]
    normalise(v.matmul(w.transpose())) // [1, out]
}

/// `σ = uᵀ W v` with `v = normalise(Wᵀu)`, u and v fixed, as `[1]`.
fn sigma(w: Tensor<2>, u: Tensor<2>) -> Tensor<1> {
    let u = u.detach();
    let v = normalise(u.clone().matmul(w.clone().detach()));
    (u * v.matmul(w.transpose())).sum()
}

/// A spectrally normalised 2-D convolution.
#[derive(Module, Debug)]
pub struct SnConv2d {
    /// The convolution, without bias.
    pub conv: Conv2d,
    pub bias: Param<Tensor<1>>,
    /// The left singular vector estimate, `[1, out]`.
    pub u: Param<Tensor<2>>,
}

impl SnConv2d {
    /// `k`×`k` kernel, `stride`, padding `pad` on every side.
    pub fn new(
        c_in: usize,
        c_out: usize,
        (k, stride, pad): (usize, usize, usize),
        device: &Device,
    ) -> Self {
        let conv = Conv2dConfig::new([c_in, c_out], [k, k])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(false)
            .init(device);
        Self {
            conv,
            bias: Param::from_tensor(Tensor::zeros([c_out], device)),
            u: fresh_u(c_out, device),
        }
    }

    fn matrix(&self) -> Tensor<2> {
        self.conv.weight.val().flatten(1, 3)
    }

    /// The current estimate of the weight's largest singular value.
    pub fn sigma(&self) -> Tensor<1> {
        sigma(self.matrix(), self.u.val())
    }

    /// One power-iteration step (before a training step).
    pub fn refresh(mut self) -> Self {
        let u = power_step(self.matrix(), self.u.val());
        self.u = self.u.map(|_| u);
        self
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [c] = self.bias.dims();
        let s = self.sigma().reshape([1, 1, 1, 1]);
        self.conv.forward(x) / s + self.bias.val().reshape([1, c, 1, 1])
    }
}

/// A spectrally normalised dense layer.
#[derive(Module, Debug)]
pub struct SnLinear {
    /// The layer, without bias (burn's weight is `[in, out]`).
    pub linear: Linear,
    pub bias: Param<Tensor<1>>,
    /// The left singular vector estimate, `[1, out]`.
    pub u: Param<Tensor<2>>,
}

impl SnLinear {
    pub fn new(d_in: usize, d_out: usize, device: &Device) -> Self {
        Self {
            linear: LinearConfig::new(d_in, d_out).with_bias(false).init(device),
            bias: Param::from_tensor(Tensor::zeros([d_out], device)),
            u: fresh_u(d_out, device),
        }
    }

    fn matrix(&self) -> Tensor<2> {
        self.linear.weight.val().transpose()
    }

    pub fn sigma(&self) -> Tensor<1> {
        sigma(self.matrix(), self.u.val())
    }

    pub fn refresh(mut self) -> Self {
        let u = power_step(self.matrix(), self.u.val());
        self.u = self.u.map(|_| u);
        self
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let s = self.sigma().unsqueeze::<2>();
        self.linear.forward(x) / s + self.bias.val().unsqueeze::<2>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// After a few refreshes σ is the weight's largest singular value, so the normalised
    /// layer stretches no input by more than 1 and some input by nearly 1.
    #[test]
    fn power_iteration_finds_the_largest_singular_value() {
        let device = Backend::cpu().device;
        let mut layer = SnLinear::new(6, 4, &device);
        // W (as [out, in]) = diag(3, 2, 1, 0.5) padded: σ_max = 3.
        let mut w = [0.0f32; 24];
        for (i, s) in [3.0, 2.0, 1.0, 0.5].into_iter().enumerate() {
            w[i * 4 + i] = s; // burn's [in, out] layout: row i (input), column i (output)
        }
        layer.linear.weight = layer
            .linear
            .weight
            .map(|_| Tensor::<1>::from_floats(&w[..], &device).reshape([6, 4]));
        for _ in 0..30 {
            layer = layer.refresh();
        }
        let s = values(layer.sigma())[0];
        assert!((s - 3.0).abs() < 1e-3, "σ = {s}");
        // The normalised layer maps e0 (the top singular direction) to a unit vector.
        let mut e0 = [0.0f32; 6];
        e0[0] = 1.0;
        let y = values(layer.forward(Tensor::<1>::from_floats(&e0[..], &device).reshape([1, 6])));
        let norm = y.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "‖W_sn e0‖ = {norm}");
    }

    /// The convolution's σ is that of its weight as a matrix: dividing the weights by σ by
    /// hand gives the same outputs; and gradients reach the weight through σ.
    #[test]
    fn the_conv_divides_by_sigma_and_trains_through_it() {
        let device = Backend::cpu().device.autodiff();
        let mut layer = SnConv2d::new(2, 3, (4, 2, 1), &device);
        for _ in 0..20 {
            layer = layer.refresh();
        }
        let x = Tensor::<4>::random([2, 2, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let y = layer.forward(x.clone());
        let s = values(layer.sigma())[0];
        assert!(s > 0.0);
        let plain = layer.conv.forward(x) / s;
        let diff = values((y.clone() - plain).abs().max())[0];
        assert!(diff < 1e-5, "{diff}");
        let grads = y.sum().backward();
        let g = layer.conv.weight.grad(&grads).expect("a weight gradient");
        assert!(values(g.abs().sum())[0] > 0.0);
        assert!(layer.u.grad(&grads).is_none(), "u is not trained");
    }
}
