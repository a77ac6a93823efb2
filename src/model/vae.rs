//! MLP VAE with a Bernoulli decoder (Kingma & Welling 2014), default 784-400-20.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::{linear_chain, mlp_stack};

#[derive(Config, Debug)]
pub struct MlpVaeConfig {
    /// Pixels per image (channels × height × width).
    pub input: usize,
    /// Encoder hidden widths; the decoder mirrors them.
    #[config(default = "vec![400]")]
    pub hidden: Vec<usize>,
    #[config(default = 20)]
    pub latent: usize,
}

#[derive(Module, Debug)]
pub struct MlpVae {
    enc: Vec<Linear>,
    mu: Linear,
    logvar: Linear,
    dec: Vec<Linear>,
    out: Linear,
}

impl MlpVaeConfig {
    pub fn init(&self, device: &Device) -> MlpVae {
        let mut enc_widths = vec![self.input];
        enc_widths.extend(&self.hidden);
        let last = *enc_widths.last().unwrap_or(&self.input);
        let mut dec_widths = vec![self.latent];
        dec_widths.extend(self.hidden.iter().rev());
        let dec_last = *dec_widths.last().unwrap_or(&self.latent);
        MlpVae {
            enc: linear_chain(&enc_widths, device),
            mu: LinearConfig::new(last, self.latent).init(device),
            logvar: LinearConfig::new(last, self.latent).init(device),
            dec: linear_chain(&dec_widths, device),
            out: LinearConfig::new(dec_last, self.input).init(device),
        }
    }
}

impl MlpVae {
    /// `[batch, input]` → `(mu, logvar)`, `[batch, latent]` each.
    pub fn encode(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let h = mlp_stack(&self.enc, x, relu);
        (self.mu.forward(h.clone()), self.logvar.forward(h))
    }

    /// `[batch, latent]` → logits `[batch, input]`.
    pub fn decode_logits(&self, z: Tensor<2>) -> Tensor<2> {
        self.out.forward(mlp_stack(&self.dec, z, relu))
    }
}

impl MlpVae {
    /// The decoder's layers in order (hidden layers with ReLU, then the logits layer).
    /// The layers: (encoder hidden, mu head, logvar head, decoder hidden, logits layer).
    pub(crate) fn parts(&self) -> (&[Linear], &Linear, &Linear, &[Linear], &Linear) {
        (&self.enc, &self.mu, &self.logvar, &self.dec, &self.out)
    }

    /// The inverse of [`MlpVae::parts`].
    pub(crate) fn from_parts(
        enc: Vec<Linear>,
        mu: Linear,
        logvar: Linear,
        dec: Vec<Linear>,
        out: Linear,
    ) -> Self {
        Self {
            enc,
            mu,
            logvar,
            dec,
            out,
        }
    }

    pub(crate) fn decoder_layers(&self) -> Vec<&Linear> {
        self.dec.iter().chain(std::iter::once(&self.out)).collect()
    }
}
