//! Inference on a frozen copy of a model: decode latents to images, encode images to latents.
//!
//! The worker sends the UI an [`Inference`] on the CPU every few hundred steps, so that
//! slider decodes never queue behind training work on the training device.

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
        }
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

    /// Decode `latents` (`n × latent_dim`, row-major) to `n` images in [0, 1].
    pub fn decode(&self, latents: &[f32]) -> Result<ImageBatch, TrainError> {
        let d = self.latent_dim();
        if latents.is_empty() || latents.len() % d != 0 {
            return Err(TrainError::Invalid(format!(
                "expected a multiple of {d} latent values, got {}",
                latents.len()
            )));
        }
        let z = Tensor::<2>::from_data(
            TensorData::new(latents.to_vec(), [latents.len() / d, d]),
            &self.device,
        );
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
