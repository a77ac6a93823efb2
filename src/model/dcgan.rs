//! DCGAN for small square images (Radford et al. 2016, scaled to 28×28 / 32×32).
//!
//! G: z → dense → (2w, s/4, s/4) BN ReLU → convT → (w, s/2, s/2) BN ReLU → convT → (c, s, s) tanh.
//! D: conv (w) LeakyReLU → conv (2w) BN LeakyReLU → dense → 1 logit.

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, relu, tanh};

use super::conv_vae::{down_conv, up_conv};

#[derive(Config, Debug)]
pub struct DcganConfig {
    pub channels: usize,
    /// Image side; divisible by 4.
    pub size: usize,
    #[config(default = 100)]
    pub latent: usize,
    /// Base channel count (the inner layers have twice as many).
    #[config(default = 32)]
    pub width: usize,
}

#[derive(Module, Debug)]
pub struct DcGenerator {
    pub(crate) fc: Linear,
    pub(crate) bn0: BatchNorm,
    pub(crate) t1: ConvTranspose2d,
    pub(crate) bn1: BatchNorm,
    pub(crate) t2: ConvTranspose2d,
    pub(crate) width: usize,
    pub(crate) size: usize,
}

#[derive(Module, Debug)]
pub struct DcDiscriminator {
    pub(crate) c1: Conv2d,
    pub(crate) c2: Conv2d,
    pub(crate) bn2: BatchNorm,
    pub(crate) out: Linear,
    pub(crate) channels: usize,
    pub(crate) size: usize,
}

const SLOPE: f64 = 0.2;

impl DcganConfig {
    pub fn init_generator(&self, device: &Device) -> DcGenerator {
        let q = self.size / 4;
        DcGenerator {
            fc: LinearConfig::new(self.latent, 2 * self.width * q * q).init(device),
            bn0: BatchNormConfig::new(2 * self.width).init(device),
            t1: up_conv(2 * self.width, self.width, device),
            bn1: BatchNormConfig::new(self.width).init(device),
            t2: up_conv(self.width, self.channels, device),
            width: self.width,
            size: self.size,
        }
    }

    pub fn init_discriminator(&self, device: &Device) -> DcDiscriminator {
        let q = self.size / 4;
        DcDiscriminator {
            c1: down_conv(self.channels, self.width, device),
            c2: down_conv(self.width, 2 * self.width, device),
            bn2: BatchNormConfig::new(2 * self.width).init(device),
            out: LinearConfig::new(2 * self.width * q * q, 1).init(device),
            channels: self.channels,
            size: self.size,
        }
    }
}

impl DcGenerator {
    /// `[batch, latent]` → `[batch, c·s·s]` in [-1, 1].
    pub fn forward(&self, z: Tensor<2>) -> Tensor<2> {
        let [b, _] = z.dims();
        let q = self.size / 4;
        let h = self.fc.forward(z).reshape([b, 2 * self.width, q, q]);
        let h = relu(self.bn0.forward(h));
        let h = relu(self.bn1.forward(self.t1.forward(h))); // [b, w, s/2, s/2]
        tanh(self.t2.forward(h)).flatten(1, 3) // [b, c·s·s]
    }
}

impl DcDiscriminator {
    /// `[batch, c·s·s]` → logits `[batch, 1]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [b, _] = x.dims();
        let x = x.reshape([b, self.channels, self.size, self.size]);
        let h = leaky_relu(self.c1.forward(x), SLOPE);
        let h = leaky_relu(self.bn2.forward(self.c2.forward(h)), SLOPE);
        self.out.forward(h.flatten(1, 3))
    }
}
