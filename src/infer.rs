//! Inference on a frozen copy of a model: decode latents to images, encode images to latents.
//!
//! The worker sends the UI an [`Inference`] on the CPU every few hundred steps, so that
//! slider decodes never queue behind training work on the training device.

use std::sync::Arc;

use burn::prelude::*;

use crate::checkpoint::Checkpoint;
use crate::cpu::PlainMlp;
use crate::error::TrainError;
use crate::images::ImageBatch;
use crate::model::tensors::read_f32;
use crate::model::{ModelSpec, Nets};

#[derive(Debug)]
pub struct Inference {
    pub spec: ModelSpec,
    /// Inference copies (`valid()`: no autodiff, batch norm in eval mode).
    nets: Box<dyn Nets>,
    device: Device,
    /// Training step these weights are from.
    pub step: u64,
    /// Plain-Rust copy of an MLP decoder for single latents ([`Inference::with_fast_decode`]).
    fast: Option<Arc<PlainMlp>>,
}

/// Latent counts up to this go through [`PlainMlp`] when there is one.
const FAST_DECODE_MAX: usize = 4;

impl Clone for Inference {
    fn clone(&self) -> Self {
        Self {
            spec: self.spec.clone(),
            nets: self.nets.clone_box(),
            device: self.device.clone(),
            step: self.step,
            fast: self.fast.clone(),
        }
    }
}

impl Inference {
    /// Freeze `nets` onto `device` (e.g. `Device::flex()` for the UI).
    pub fn new(spec: ModelSpec, nets: &dyn Nets, device: &Device, step: u64) -> Self {
        Self {
            spec,
            nets: nets.inference_copy(device),
            device: device.clone(),
            step,
            fast: None,
        }
    }

    /// Also keep the family's plain-Rust decoder, if it has one (the MLP VAE and MLP GAN), so
    /// that decoding a few latents skips the tensor backend. Other families are unchanged.
    pub fn with_fast_decode(mut self) -> Self {
        // A failed read-back only costs the fast path.
        self.fast = self.nets.fast_decoder().map(Arc::new);
        self
    }

    /// Load the networks of a checkpoint onto `device`.
    pub fn from_checkpoint(ckpt: &Checkpoint, device: &Device) -> Result<Self, TrainError> {
        let nets = ckpt.networks(device)?;
        Ok(Self::new(
            ckpt.header.model.clone(),
            nets.as_ref(),
            device,
            ckpt.header.step,
        ))
    }

    /// A checkpoint's networks on the CPU with the fast decoder: a model to decode with
    /// beside the training one (the app's reference run).
    pub fn from_checkpoint_on_cpu(ckpt: &Checkpoint) -> Result<Self, TrainError> {
        Ok(Self::from_checkpoint(ckpt, &Device::flex())?.with_fast_decode())
    }

    pub fn networks(&self) -> &dyn Nets {
        self.nets.as_ref()
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

    /// The number of classes of a conditional model; `None` for unconditional ones.
    pub fn classes(&self) -> Option<usize> {
        self.nets.classes()
    }

    /// Decode `latents` (`n × latent_dim`) with one class label each (conditional models).
    pub fn decode_labelled(
        &self,
        latents: &[f32],
        labels: &[u32],
    ) -> Result<ImageBatch, TrainError> {
        let z = self.latents_tensor(latents)?;
        self.check_labels(labels, z.dims()[0])?;
        let images = self.nets.decode_labelled(z, labels);
        Ok(ImageBatch {
            shape: self.spec.shape,
            pixels: read_f32(images)?,
        })
    }

    /// Decode `latents` (`n × latent_dim`) with a condition row each (`cond`, `n × classes`):
    /// one-hot rows, or mixtures of two classes for a walk from one to the other
    /// ([`class_walk`]). Conditional models only.
    pub fn decode_conditioned(
        &self,
        latents: &[f32],
        cond: &[f32],
    ) -> Result<ImageBatch, TrainError> {
        let z = self.latents_tensor(latents)?;
        let n = z.dims()[0];
        let k = self.conditional_classes()?;
        if cond.len() != n * k || !cond.iter().all(|v| v.is_finite()) {
            return Err(TrainError::Invalid(format!(
                "expected {n} × {k} finite condition values, got {}",
                cond.len()
            )));
        }
        let c = Tensor::<2>::from_data(TensorData::new(cond.to_vec(), [n, k]), &self.device);
        Ok(ImageBatch {
            shape: self.spec.shape,
            pixels: read_f32(self.nets.decode_with(z, c))?,
        })
    }

    /// The class count of this model, or the error that it is not conditional.
    fn conditional_classes(&self) -> Result<usize, TrainError> {
        self.classes().filter(|&k| k > 0).ok_or_else(|| {
            TrainError::Invalid(format!(
                "{} is not a conditional model: it takes no class",
                self.spec.kind
            ))
        })
    }

    /// `labels` fit this conditional model and `n` rows; the number of classes.
    fn check_labels(&self, labels: &[u32], n: usize) -> Result<usize, TrainError> {
        let k = self.conditional_classes()?;
        if labels.len() != n {
            return Err(TrainError::Invalid(format!(
                "{} class labels for {n} images",
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= k) {
            return Err(TrainError::Invalid(format!(
                "class {bad} is out of range: the model has {k} classes (0–{})",
                k - 1
            )));
        }
        Ok(k)
    }

    /// The number of latents in `latents` (`n × latent_dim` values, `n ≥ 1`).
    fn latent_rows(&self, latents: &[f32]) -> Result<usize, TrainError> {
        let d = self.latent_dim();
        if latents.is_empty() || latents.len() % d != 0 {
            return Err(TrainError::Invalid(format!(
                "expected a multiple of {d} latent values, got {}",
                latents.len()
            )));
        }
        Ok(latents.len() / d)
    }

    fn latents_tensor(&self, latents: &[f32]) -> Result<Tensor<2>, TrainError> {
        let n = self.latent_rows(latents)?;
        Ok(Tensor::<2>::from_data(
            TensorData::new(latents.to_vec(), [n, self.latent_dim()]),
            &self.device,
        ))
    }

    /// Decode `latents` (`n × latent_dim`, row-major) to `n` images in [0, 1]. A conditional
    /// model decodes row `i` as class `i mod classes` (the sample grid's layout).
    pub fn decode(&self, latents: &[f32]) -> Result<ImageBatch, TrainError> {
        let n = self.latent_rows(latents)?;
        if let Some(k) = self.classes() {
            let labels: Vec<u32> = (0..n).map(|i| (i % k.max(1)) as u32).collect();
            return self.decode_labelled(latents, &labels);
        }
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
        let z = self.latents_tensor(latents)?;
        let images = self.nets.decode(z);
        Ok(ImageBatch {
            shape: self.spec.shape,
            pixels: read_f32(images)?,
        })
    }

    /// The generator's first hidden activations for `latents` (`n × latent_dim`), as
    /// `n × features` values and the feature count; `None` where the family does not expose
    /// them (VAEs, conditional GANs).
    pub fn first_hidden(&self, latents: &[f32]) -> Result<Option<(Vec<f32>, usize)>, TrainError> {
        if self.classes().is_some() {
            return Ok(None);
        }
        let z = self.latents_tensor(latents)?;
        let Some(h) = self.nets.first_hidden(z) else {
            return Ok(None);
        };
        let features = h.dims()[1];
        Ok(Some((read_f32(h)?, features)))
    }

    /// Encode images (pixels in [0, 1], `n × pixels`) to their posterior means and
    /// log-variances (`n × latent_dim` each). Families with an encoder (VAEs) only.
    pub fn encode(&self, images: &[f32]) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        self.encode_inner(images, None)
    }

    /// [`Inference::encode`] with each image's class label (conditional models).
    pub fn encode_labelled(
        &self,
        images: &[f32],
        labels: &[u32],
    ) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        self.encode_inner(images, Some(labels))
    }

    fn encode_inner(
        &self,
        images: &[f32],
        labels: Option<&[u32]>,
    ) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        if !self.spec.has_encoder() {
            return Err(TrainError::Invalid(
                "a GAN has no encoder; only VAEs can encode images".into(),
            ));
        }
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
        let rows = images.len() / p;
        let encoded = match (labels, self.classes()) {
            (Some(l), _) => {
                self.check_labels(l, rows)?;
                self.nets.encode_labelled(x, l)
            }
            (None, Some(_)) => {
                return Err(TrainError::Invalid(format!(
                    "{} is conditional: encoding needs each image's class",
                    self.spec.kind
                )))
            }
            (None, None) => self.nets.encode(x),
        };
        let (mu, logvar) = encoded
            .ok_or_else(|| TrainError::Invalid(format!("{} has no encoder", self.spec.kind)))?;
        Ok((read_f32(mu)?, read_f32(logvar)?))
    }
}

/// A grid of one row per class for `rows` classes: the latents `row` (`cols × latent_dim`)
/// repeated in every row, and each latent's class (row `r` is class `r`).
pub fn class_rows(row: &[f32], cols: usize, rows: usize) -> (Vec<f32>, Vec<u32>) {
    let labels = (0..rows * cols).map(|i| (i / cols) as u32).collect();
    (row.repeat(rows), labels)
}

/// The condition rows of a walk from class `a` to class `b` of `k` in `steps` steps: the
/// one-hot of `a` blended linearly into the one-hot of `b` (`steps × k` values).
pub fn class_walk(a: u32, b: u32, steps: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; steps * k];
    for s in 0..steps {
        let t = if steps > 1 {
            s as f32 / (steps - 1) as f32
        } else {
            0.0
        };
        let row = &mut out[s * k..(s + 1) * k];
        if let Some(v) = row.get_mut(a as usize) {
            *v += 1.0 - t;
        }
        if let Some(v) = row.get_mut(b as usize) {
            *v += t;
        }
    }
    out
}

/// Spherical interpolation between `a` and `b` at `t ∈ [0, 1]`: the direction along the great
/// circle, the norm from |a| to |b| linearly. Linear interpolation when the vectors are
/// parallel or one is zero; a half turn through an orthogonal direction when they are
/// opposite (the straight line would pass through the origin).
pub fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let na = a.iter().map(|v| v * v).sum::<f32>().sqrt();
    let nb = b.iter().map(|v| v * v).sum::<f32>().sqrt();
    if na < 1e-8 || nb < 1e-8 {
        return lerp(a, b, t);
    }
    let cos = (a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (na * nb)).clamp(-1.0, 1.0);
    if cos > 1.0 - 1e-6 {
        // (Nearly) the same direction: the arc is a straight line.
        return lerp(a, b, t);
    }
    // Within about a degree of opposite, sin ω is too small to divide by in f32.
    if cos < -1.0 + 1e-4 {
        // Opposite directions: every great half-circle joins them, and a straight line
        // would pass through the origin (the image no latent of the prior looks like).
        // Turn through one direction orthogonal to `a`, the norm going from |a| to |b|.
        return half_turn(a, na, nb, t);
    }
    let omega = cos.acos();
    let so = omega.sin();
    // The direction along the great circle, the norm from |a| to |b| in a straight line
    // (on raw vectors of unequal norms the arc would bulge past the longer one).
    let r = na + (nb - na) * t;
    let (wa, wb) = (
        r * ((1.0 - t) * omega).sin() / (so * na),
        r * (t * omega).sin() / (so * nb),
    );
    a.iter().zip(b).map(|(x, y)| wa * x + wb * y).collect()
}

/// From `a` (norm `na`) to the opposite direction at norm `nb`, through a direction
/// orthogonal to `a` (the coordinate axis least aligned with it, made orthogonal).
fn half_turn(a: &[f32], na: f32, nb: f32, t: f32) -> Vec<f32> {
    let k = a
        .iter()
        .enumerate()
        .min_by(|x, y| x.1.abs().total_cmp(&y.1.abs()))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let ahat: Vec<f32> = a.iter().map(|v| v / na).collect();
    let mut e: Vec<f32> = ahat.iter().map(|v| -v * ahat[k]).collect();
    e[k] += 1.0;
    let ne = e.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    let (theta, r) = (std::f32::consts::PI * t, na + (nb - na) * t);
    ahat.iter()
        .zip(&e)
        .map(|(x, y)| r * (theta.cos() * x + theta.sin() * y / ne))
        .collect()
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

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn slerp_ends_where_it_should_on_every_kind_of_pair() {
        let z = normal_latents(2, 16, 3);
        let (a, b) = (&z[..16], &z[16..]);
        let scaled: Vec<f32> = b.iter().map(|v| v * 3.0).collect();
        let near: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, v)| v + 1e-4 * i as f32)
            .collect();
        let opposite: Vec<f32> = a.iter().map(|v| -2.0 * v).collect();
        for (what, b) in [
            ("random", b.to_vec()),
            ("unequal norms", scaled),
            ("near-parallel", near),
            ("antiparallel", opposite),
        ] {
            assert!(close(&slerp(a, &b, 0.0), a, 1e-5), "{what}: t = 0");
            assert!(close(&slerp(a, &b, 1.0), &b, 1e-5), "{what}: t = 1");
            let (na, nb) = (norm(a), norm(&b));
            for i in 1..10 {
                let m = slerp(a, &b, i as f32 / 10.0);
                assert!(m.iter().all(|v| v.is_finite()), "{what}");
                // The path never cuts towards the origin nor bulges: its norm goes from
                // one endpoint's to the other's (a straight line for near-parallel pairs
                // dips by at most the chord's sagitta, nothing here).
                let n = norm(&m);
                let (lo, hi) = (na.min(nb), na.max(nb));
                assert!(
                    n >= 0.999 * lo && n <= 1.001 * hi,
                    "{what}: |m| {n} not in [{lo}, {hi}]"
                );
            }
        }
        // Antiparallel endpoints of equal norm: the whole path keeps the norm.
        let minus: Vec<f32> = a.iter().map(|v| -v).collect();
        let m = slerp(a, &minus, 0.5);
        assert!((norm(&m) - norm(a)).abs() < 1e-4, "{}", norm(&m));
        // Unequal norms: slerp is not lerp in between.
        assert!(!close(&slerp(a, b, 0.5), &lerp(a, b, 0.5), 1e-3));
    }

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
