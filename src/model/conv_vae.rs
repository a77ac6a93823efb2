//! Small convolutional VAE for square images (28×28, 32×32, …), 1 or 3 channels.
//!
//! Encoder: conv 4×4/2 (width) → conv 4×4/2 (2·width) → dense → (mu, logvar).
//! Decoder mirrors it with transposed convolutions and emits Bernoulli logits.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

#[derive(Config, Debug)]
pub struct ConvVaeConfig {
    pub channels: usize,
    /// Image side; divisible by 4.
    pub size: usize,
    #[config(default = 16)]
    pub latent: usize,
    /// Channels of the first convolution (the second has twice as many).
    #[config(default = 32)]
    pub width: usize,
    #[config(default = 256)]
    pub dense: usize,
}

#[derive(Module, Debug)]
pub struct ConvVae {
    pub(crate) c1: Conv2d,
    pub(crate) c2: Conv2d,
    pub(crate) fc: Linear,
    pub(crate) mu: Linear,
    pub(crate) logvar: Linear,
    pub(crate) d_fc: Linear,
    pub(crate) d_fc2: Linear,
    pub(crate) t1: ConvTranspose2d,
    pub(crate) t2: ConvTranspose2d,
    pub(crate) channels: usize,
    pub(crate) size: usize,
    pub(crate) width: usize,
}

pub(crate) fn down_conv(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [4, 4])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

pub(crate) fn up_conv(c_in: usize, c_out: usize, device: &Device) -> ConvTranspose2d {
    ConvTranspose2dConfig::new([c_in, c_out], [4, 4])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .init(device)
}

impl ConvVaeConfig {
    pub fn init(&self, device: &Device) -> ConvVae {
        let q = self.size / 4;
        let flat = 2 * self.width * q * q;
        ConvVae {
            c1: down_conv(self.channels, self.width, device),
            c2: down_conv(self.width, 2 * self.width, device),
            fc: LinearConfig::new(flat, self.dense).init(device),
            mu: LinearConfig::new(self.dense, self.latent).init(device),
            logvar: LinearConfig::new(self.dense, self.latent).init(device),
            d_fc: LinearConfig::new(self.latent, self.dense).init(device),
            d_fc2: LinearConfig::new(self.dense, flat).init(device),
            t1: up_conv(2 * self.width, self.width, device),
            t2: up_conv(self.width, self.channels, device),
            channels: self.channels,
            size: self.size,
            width: self.width,
        }
    }
}

impl ConvVae {
    /// `[batch, c·s·s]` → `(mu, logvar)`.
    pub fn encode(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let [b, _] = x.dims();
        let x = x.reshape([b, self.channels, self.size, self.size]);
        let h = relu(self.c1.forward(x)); // [b, w, s/2, s/2]
        let h = relu(self.c2.forward(h)); // [b, 2w, s/4, s/4]
        let h: Tensor<2> = h.flatten(1, 3);
        let h = relu(self.fc.forward(h));
        (self.mu.forward(h.clone()), self.logvar.forward(h))
    }

    /// `[batch, latent]` → logits `[batch, c·s·s]`.
    pub fn decode_logits(&self, z: Tensor<2>) -> Tensor<2> {
        let [b, _] = z.dims();
        let q = self.size / 4;
        let h = relu(self.d_fc.forward(z));
        let h = relu(self.d_fc2.forward(h)).reshape([b, 2 * self.width, q, q]);
        let h = relu(self.t1.forward(h)); // [b, w, s/2, s/2]
        let out = self.t2.forward(h); // [b, c, s, s]
        out.flatten(1, 3)
    }
}
