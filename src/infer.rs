//! Inference on a frozen copy of a model: decode latents to images, encode images to latents.
//!
//! The worker sends the UI an [`Inference`] on the CPU every few hundred steps, so that
//! slider decodes never queue behind training work on the training device.

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::checkpoint::Checkpoint;
use crate::images::ImageBatch;
use crate::model::{ModelSpec, Networks};
use crate::train::{read_f32, TrainError};

#[derive(Clone, Debug)]
pub struct Inference {
    pub spec: ModelSpec,
    /// Inference copies (`valid()`: no autodiff, batch norm in eval mode).
    nets: Networks,
    device: Device,
    /// Training step these weights are from.
    pub step: u64,
    /// Plain-Rust copy of an MLP decoder for single latents ([`Inference::with_fast_decode`]).
    fast: Option<Arc<PlainMlp>>,
}

/// Latent counts up to this go through [`PlainMlp`] when there is one.
const FAST_DECODE_MAX: usize = 4;

#[derive(Clone, Copy, Debug)]
enum Act {
    Relu,
    Leaky(f32),
    /// Logits → Bernoulli mean.
    Sigmoid,
    /// tanh, mapped from [-1, 1] to [0, 1].
    TanhUnit,
}

impl Act {
    fn apply(self, v: &mut [f32]) {
        match self {
            Act::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
            Act::Leaky(a) => v.iter_mut().for_each(|x| {
                if *x < 0.0 {
                    *x *= a
                }
            }),
            Act::Sigmoid => v.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
            Act::TanhUnit => v.iter_mut().for_each(|x| *x = (x.tanh() + 1.0) * 0.5),
        }
    }
}

/// An MLP decoder as plain `f32` arrays. One latent through burn's CPU backend costs ~0.5 ms of
/// dispatch and thread hand-offs for ~0.3 M multiply-adds; straight loops take a few
/// microseconds and never wait for a busy thread pool (the slider path).
#[derive(Debug)]
struct PlainMlp {
    /// `(in, out, weight [in × out] row-major as burn stores it, bias [out])`.
    layers: Vec<(usize, usize, Vec<f32>, Vec<f32>)>,
    hidden: Act,
    output: Act,
}

impl PlainMlp {
    fn from_layers(
        layers: &[&burn::nn::Linear],
        hidden: Act,
        output: Act,
    ) -> Result<Self, TrainError> {
        let mut out = Vec::with_capacity(layers.len());
        for l in layers {
            let [i, o] = l.weight.val().dims();
            let w = read_f32(l.weight.val())?;
            let b = match &l.bias {
                Some(b) => read_f32(b.val())?,
                None => vec![0.0; o],
            };
            out.push((i, o, w, b));
        }
        Ok(Self {
            layers: out,
            hidden,
            output,
        })
    }

    /// Decode `latents` (`n × in`) into `out` (`n × pixels`).
    fn decode(&self, latents: &[f32], n: usize, out: &mut Vec<f32>) {
        let d = latents.len() / n;
        let mut h: Vec<f32> = Vec::new();
        let mut y: Vec<f32> = Vec::new();
        for r in 0..n {
            h.clear();
            h.extend_from_slice(&latents[r * d..(r + 1) * d]);
            let last = self.layers.len() - 1;
            for (k, (inp, o, w, b)) in self.layers.iter().enumerate() {
                y.clear();
                y.extend_from_slice(b);
                // y += Σ_i h[i] · W[i, :]: contiguous rows, vectorised; ReLU zeros skipped.
                for (i, &hi) in h.iter().enumerate().take(*inp) {
                    if hi != 0.0 {
                        let row = &w[i * o..(i + 1) * o];
                        for (yj, wj) in y.iter_mut().zip(row) {
                            *yj += hi * wj;
                        }
                    }
                }
                if k == last {
                    self.output.apply(&mut y);
                } else {
                    self.hidden.apply(&mut y);
                }
                std::mem::swap(&mut h, &mut y);
            }
            out.extend_from_slice(&h);
        }
    }
}

impl Networks {
    /// Inference copy on `device`.
    pub fn inference_copy(&self, device: &Device) -> Networks {
        match self {
            Networks::Vae(m) => Networks::Vae(m.valid().to_device(device)),
            Networks::Gan { gen, disc } => Networks::Gan {
                gen: gen.valid().to_device(device),
                disc: disc.valid().to_device(device),
            },
        }
    }
}

impl Inference {
    /// Freeze `nets` onto `device` (e.g. `Device::flex()` for the UI).
    pub fn new(spec: ModelSpec, nets: &Networks, device: &Device, step: u64) -> Self {
        Self {
            spec,
            nets: nets.inference_copy(device),
            device: device.clone(),
            step,
            fast: None,
        }
    }

    /// Also keep a plain-Rust copy of an MLP decoder (MLP VAE or MLP GAN), so that decoding a
    /// few latents skips the tensor backend. Other families are unchanged.
    pub fn with_fast_decode(mut self) -> Self {
        let plain = match &self.nets {
            Networks::Vae(crate::model::VaeNet::Mlp(m)) => {
                PlainMlp::from_layers(&m.decoder_layers(), Act::Relu, Act::Sigmoid)
            }
            Networks::Gan {
                gen: crate::model::GenNet::Mlp(g),
                ..
            } => PlainMlp::from_layers(
                &g.layers(),
                Act::Leaky(crate::model::gan::LEAKY_SLOPE as f32),
                Act::TanhUnit,
            ),
            _ => return self,
        };
        // A failed read-back only costs the fast path.
        self.fast = plain.ok().map(Arc::new);
        self
    }

    /// Load the networks of a checkpoint onto `device`.
    pub fn from_checkpoint(ckpt: &Checkpoint, device: &Device) -> Result<Self, TrainError> {
        let nets = ckpt.networks(device)?;
        Ok(Self::new(
            ckpt.header.model.clone(),
            &nets,
            device,
            ckpt.header.step,
        ))
    }

    pub fn networks(&self) -> &Networks {
        &self.nets
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn latent_dim(&self) -> usize {
        self.spec.latent_dim()
    }

    /// Whether decoding `values` latent values takes the plain-Rust path (no tensor backend).
    pub fn decodes_without_backend(&self, values: usize) -> bool {
        let d = self.latent_dim();
        self.fast.is_some() && values > 0 && values % d == 0 && values / d <= FAST_DECODE_MAX
    }

    /// Decode `latents` (`n × latent_dim`, row-major) to `n` images in [0, 1].
    pub fn decode(&self, latents: &[f32]) -> Result<ImageBatch, TrainError> {
        let d = self.latent_dim();
        if latents.is_empty() || latents.len() % d != 0 {
            return Err(TrainError::Invalid(format!(
                "expected a multiple of {d} latent values, got {}",
                latents.len()
            )));
        }
        let n = latents.len() / d;
        if let Some(fast) = self
            .fast
            .as_ref()
            .filter(|_| self.decodes_without_backend(latents.len()))
        {
            let mut pixels = Vec::with_capacity(n * self.spec.shape.numel());
            fast.decode(latents, n, &mut pixels);
            return Ok(ImageBatch {
                shape: self.spec.shape,
                pixels,
            });
        }
        let z = Tensor::<2>::from_data(TensorData::new(latents.to_vec(), [n, d]), &self.device);
        let images = match &self.nets {
            Networks::Vae(m) => sigmoid(m.decode_logits(z)),
            Networks::Gan { gen, .. } => (gen.forward(z) + 1.0).mul_scalar(0.5),
        };
        Ok(ImageBatch {
            shape: self.spec.shape,
            pixels: read_f32(images)?,
        })
    }

    /// Encode images (pixels in [0, 1], `n × pixels`) to their posterior means and
    /// log-variances (`n × latent_dim` each). VAEs only.
    pub fn encode(&self, images: &[f32]) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        let Networks::Vae(m) = &self.nets else {
            return Err(TrainError::Invalid(
                "a GAN has no encoder; only VAEs can encode images".into(),
            ));
        };
        let p = self.spec.shape.numel();
        if images.is_empty() || images.len() % p != 0 {
            return Err(TrainError::Invalid(format!(
                "expected a multiple of {p} pixel values, got {}",
                images.len()
            )));
        }
        let x = Tensor::<2>::from_data(
            TensorData::new(images.to_vec(), [images.len() / p, p]),
            &self.device,
        );
        let (mu, logvar) = m.encode(x);
        Ok((read_f32(mu)?, read_f32(logvar)?))
    }
}

/// Spherical interpolation between `a` and `b` at `t ∈ [0, 1]`; falls back to linear
/// interpolation when the vectors are (anti)parallel or one is zero.
pub fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let na = a.iter().map(|v| v * v).sum::<f32>().sqrt();
    let nb = b.iter().map(|v| v * v).sum::<f32>().sqrt();
    if na < 1e-8 || nb < 1e-8 {
        return lerp(a, b, t);
    }
    let cos = (a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (na * nb)).clamp(-1.0, 1.0);
    let omega = cos.acos();
    let so = omega.sin();
    if so.abs() < 1e-5 {
        return lerp(a, b, t);
    }
    let (wa, wb) = (((1.0 - t) * omega).sin() / so, (t * omega).sin() / so);
    a.iter().zip(b).map(|(x, y)| wa * x + wb * y).collect()
}

pub fn lerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + (y - x) * t).collect()
}

/// `n` standard-normal latents of dimension `d` from `seed` (Box–Muller), row-major.
pub fn normal_latents(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = crate::data::SplitMix64::new(seed);
    (0..n * d)
        .map(|_| {
            let u1 = rng.next_f32().max(1e-7);
            let u2 = rng.next_f32();
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slerp_keeps_norm_between_orthogonal_unit_vectors() {
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        let m = slerp(&a, &b, 0.5);
        let norm = (m[0] * m[0] + m[1] * m[1]).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        assert!((m[0] - m[1]).abs() < 1e-6);
        assert_eq!(slerp(&a, &b, 0.0), vec![1.0, 0.0]);
        let l = lerp(&a, &b, 0.5);
        assert!((l[0] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn normal_latents_look_standard_normal() {
        let z = normal_latents(1000, 10, 7);
        let mean = z.iter().sum::<f32>() / z.len() as f32;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / z.len() as f32;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.1, "var {var}");
        assert_eq!(z, normal_latents(1000, 10, 7));
    }
}
