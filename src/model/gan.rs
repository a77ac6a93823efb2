//! MLP GAN: z 100 → 128-256-512 → image (tanh); D 512-256-128 → 1 logit, LeakyReLU 0.2.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, tanh};

use super::{linear_chain, mlp_stack};

#[derive(Config, Debug)]
pub struct MlpGanConfig {
    /// Pixels per image.
    pub output: usize,
    #[config(default = 100)]
    pub latent: usize,
    #[config(default = "vec![128, 256, 512]")]
    pub g_hidden: Vec<usize>,
    #[config(default = "vec![512, 256, 128]")]
    pub d_hidden: Vec<usize>,
}

#[derive(Module, Debug)]
pub struct MlpGenerator {
    hidden: Vec<Linear>,
    out: Linear,
}

#[derive(Module, Debug)]
pub struct MlpDiscriminator {
    hidden: Vec<Linear>,
    out: Linear,
}

const SLOPE: f64 = 0.2;

impl MlpGanConfig {
    pub fn init_generator(&self, device: &Device) -> MlpGenerator {
        let mut widths = vec![self.latent];
        widths.extend(&self.g_hidden);
        let last = *widths.last().unwrap_or(&self.latent);
        MlpGenerator {
            hidden: linear_chain(&widths, device),
            out: LinearConfig::new(last, self.output).init(device),
        }
    }

    pub fn init_discriminator(&self, device: &Device) -> MlpDiscriminator {
        let mut widths = vec![self.output];
        widths.extend(&self.d_hidden);
        let last = *widths.last().unwrap_or(&self.output);
        MlpDiscriminator {
            hidden: linear_chain(&widths, device),
            out: LinearConfig::new(last, 1).init(device),
        }
    }
}

impl MlpGenerator {
    /// The layers: (hidden layers, output layer).
    pub(crate) fn parts(&self) -> (&[Linear], &Linear) {
        (&self.hidden, &self.out)
    }

    /// The inverse of [`MlpGenerator::parts`].
    pub(crate) fn from_parts(hidden: Vec<Linear>, out: Linear) -> Self {
        Self { hidden, out }
    }

    /// `[batch, latent]` → `[batch, output]` in [-1, 1].
    pub fn forward(&self, z: Tensor<2>) -> Tensor<2> {
        tanh(
            self.out
                .forward(mlp_stack(&self.hidden, z, |t| leaky_relu(t, SLOPE))),
        )
    }
}

impl MlpDiscriminator {
    /// The layers: (hidden layers, output layer).
    pub(crate) fn parts(&self) -> (&[Linear], &Linear) {
        (&self.hidden, &self.out)
    }

    /// The inverse of [`MlpDiscriminator::parts`].
    pub(crate) fn from_parts(hidden: Vec<Linear>, out: Linear) -> Self {
        Self { hidden, out }
    }

    /// `[batch, output]` → logits `[batch, 1]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.out
            .forward(mlp_stack(&self.hidden, x, |t| leaky_relu(t, SLOPE)))
    }
}

impl MlpGenerator {
    /// The layers in order (hidden layers with LeakyReLU 0.2, then the tanh output layer).
    pub(crate) fn layers(&self) -> Vec<&Linear> {
        self.hidden
            .iter()
            .chain(std::iter::once(&self.out))
            .collect()
    }
}

/// LeakyReLU slope of the MLP GAN.
pub const LEAKY_SLOPE: f64 = SLOPE;
