//! Sample quality of a generator judged by a classifier of the run's own data (the kind of
//! evaluator behind published FIDs, on a small scale): an MLP classifier is trained on the
//! training split (seeded, a few seconds on a CPU), and its penultimate features give
//!
//! * **FID** (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to the
//!   features of generated images and of the test images (lower is better; real-vs-real, the
//!   training images against the test images, is the floor);
//! * **confidence**: the mean top-class probability of the samples (blurry or broken samples
//!   score low);
//! * **class coverage**: how many classes hold at least half their fair share of the samples
//!   (a collapsed generator covers few), and the class histogram;
//! * **class accuracy** of a conditional model: how often a sample of class `k` is classified
//!   as `k`.

use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use serde::Serialize;

use crate::data::{Dataset, SplitMix64};
use crate::error::TrainError;
use crate::linalg::{moments, sym_eigen};
use crate::model::tensors::read_f32;

/// Feature width of the classifier (the dimension of the FID Gaussians).
pub const FEATURES: usize = 64;
const HIDDEN: usize = 256;
const EPOCHS: usize = 6;
const BATCH: usize = 128;

#[derive(Module, Debug)]
struct Classifier {
    l1: Linear,
    l2: Linear,
    out: Linear,
}

impl Classifier {
    fn features(&self, x: Tensor<2>) -> Tensor<2> {
        relu(self.l2.forward(relu(self.l1.forward(x))))
    }
}

/// A trained classifier of a dataset and the feature statistics of its test images.
pub struct Scorer {
    net: Classifier,
    classes: usize,
    pixels: usize,
    device: Device,
    /// Test-split accuracy of the classifier itself.
    pub accuracy: f64,
    /// Features of the test images, `[n, FEATURES]`.
    test_features: Vec<f64>,
}

/// What [`Scorer::score`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct ScoreReport {
    pub fid: f64,
    /// FID of the training images against the test images (the same number of images).
    pub real_fid: f64,
    pub confidence: f64,
    /// Classes with at least half their fair share (`n / classes / 2`) of the samples.
    pub coverage: usize,
    pub classes: usize,
    pub histogram: Vec<usize>,
    /// Conditional models: the fraction of samples classified as the class asked for.
    pub class_accuracy: Option<f64>,
    /// The classifier's own test accuracy.
    pub classifier_accuracy: f64,
    pub samples: usize,
}

impl Scorer {
    /// Train the classifier on images `train` of `data` (it needs labels) and measure its
    /// test images `test`.
    pub fn train(
        data: &Dataset,
        train: &[usize],
        test: &[usize],
        seed: u64,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let labels = data.labels.as_ref().ok_or_else(|| {
            TrainError::Invalid(format!(
                "scoring samples needs a labelled dataset to train its classifier on, and {} has none",
                data.source.describe()
            ))
        })?;
        let classes = data.classes().unwrap_or(1).max(2);
        let pixels = data.image_len();
        let ad = device.clone().autodiff();
        ad.seed(seed);
        let mut net = Classifier {
            l1: LinearConfig::new(pixels, HIDDEN).init(&ad),
            l2: LinearConfig::new(HIDDEN, FEATURES).init(&ad),
            out: LinearConfig::new(FEATURES, classes).init(&ad),
        };
        let mut optim = AdamConfig::new().init();
        let mut order = train.to_vec();
        let mut rng = SplitMix64::new(seed);
        let mut buf = Vec::new();
        for _ in 0..EPOCHS {
            rng.shuffle(&mut order);
            for chunk in order.chunks(BATCH) {
                data.gather_f32(chunk, &mut buf);
                let x = Tensor::<2>::from_data(
                    TensorData::new(buf.clone(), [chunk.len(), pixels]),
                    &ad,
                );
                let y: Vec<u32> = chunk.iter().map(|&i| labels[i]).collect();
                let target = crate::model::tensors::one_hot(&y, classes, &ad);
                let logits = net.out.forward(net.features(x));
                let logp = burn::tensor::activation::log_softmax(logits, 1);
                let loss = (logp * target).sum().neg().div_scalar(chunk.len() as f64);
                let grads = GradientsParams::from_grads(loss.backward(), &net);
                net = optim.step(1e-3, net, grads);
            }
        }
        let mut scorer = Self {
            net: net.valid().to_device(device),
            classes,
            pixels,
            device: device.clone(),
            accuracy: 0.0,
            test_features: Vec::new(),
        };
        data.gather_f32(test, &mut buf);
        let (feats, probs) = scorer.features_and_probs(&buf)?;
        let right = probs
            .chunks(classes)
            .zip(test)
            .filter(|(p, &i)| argmax(p) == labels[i] as usize)
            .count();
        scorer.accuracy = right as f64 / test.len().max(1) as f64;
        scorer.test_features = feats;
        Ok(scorer)
    }

    /// Features `[n, FEATURES]` and class probabilities `[n, classes]` of images in [0, 1].
    pub fn features_and_probs(&self, images: &[f32]) -> Result<(Vec<f64>, Vec<f32>), TrainError> {
        let n = images.len() / self.pixels.max(1);
        let mut feats = Vec::with_capacity(n * FEATURES);
        let mut probs = Vec::with_capacity(n * self.classes);
        for chunk in images.chunks(1000 * self.pixels) {
            let rows = chunk.len() / self.pixels;
            let x = Tensor::<2>::from_data(
                TensorData::new(chunk.to_vec(), [rows, self.pixels]),
                &self.device,
            );
            let f = self.net.features(x);
            let p = softmax(self.net.out.forward(f.clone()), 1);
            feats.extend(read_f32(f)?.into_iter().map(f64::from));
            probs.extend(read_f32(p)?);
        }
        Ok((feats, probs))
    }

    /// FID of `images` (`n × pixels`, in [0, 1]) against the test images.
    pub fn fid(&self, images: &[f32]) -> Result<f64, TrainError> {
        let (f, _) = self.features_and_probs(images)?;
        Ok(frechet(&f, &self.test_features, FEATURES))
    }

    /// Score generated `images`; `asked` are the classes a conditional model was asked for;
    /// `real_train` training images (as many as the test split) give the real-vs-real floor.
    pub fn score(
        &self,
        images: &[f32],
        asked: Option<&[u32]>,
        real_train: &[f32],
    ) -> Result<ScoreReport, TrainError> {
        let (f, p) = self.features_and_probs(images)?;
        let n = f.len() / FEATURES;
        let mut histogram = vec![0usize; self.classes];
        let mut confidence = 0.0f64;
        let mut right = 0usize;
        for (i, row) in p.chunks(self.classes).enumerate() {
            let c = argmax(row);
            histogram[c] += 1;
            confidence += row[c] as f64;
            if asked.and_then(|a| a.get(i)) == Some(&(c as u32)) {
                right += 1;
            }
        }
        let fair = n as f64 / self.classes as f64;
        Ok(ScoreReport {
            fid: frechet(&f, &self.test_features, FEATURES),
            real_fid: self.fid(real_train)?,
            confidence: confidence / n.max(1) as f64,
            coverage: histogram
                .iter()
                .filter(|&&h| h as f64 >= fair / 2.0)
                .count(),
            classes: self.classes,
            histogram,
            class_accuracy: asked.map(|_| right as f64 / n.max(1) as f64),
            classifier_accuracy: self.accuracy,
            samples: n,
        })
    }

    /// Test images the statistics were taken over.
    pub fn test_count(&self) -> usize {
        self.test_features.len() / FEATURES
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// `a · b` for `d × d` matrices.
fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                out[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    out
}

/// The Fréchet distance between Gaussians fitted to `x` and `y` (`n × d` each):
/// `‖μx − μy‖² + tr(Σx + Σy − 2 (Σx^½ Σy Σx^½)^½)`.
pub fn frechet(x: &[f64], y: &[f64], d: usize) -> f64 {
    let (mx, sx) = moments(x, d);
    let (my, sy) = moments(y, d);
    let (ev, vecs) = sym_eigen(sx.clone(), d);
    // Σx^½ = V diag(√λ) Vᵀ
    let mut root = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            root[i * d + j] = (0..d)
                .map(|k| vecs[i * d + k] * ev[k].max(0.0).sqrt() * vecs[j * d + k])
                .sum();
        }
    }
    let m = matmul(&matmul(&root, &sy, d), &root, d);
    let (em, _) = sym_eigen(m, d);
    let tr_cross: f64 = em.iter().map(|&e| e.max(0.0).sqrt()).sum();
    let tr: f64 = (0..d).map(|i| sx[i * d + i] + sy[i * d + i]).sum();
    let dm: f64 = mx.iter().zip(&my).map(|(a, b)| (a - b).powi(2)).sum();
    dm + tr - 2.0 * tr_cross
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(n: usize, d: usize, scale: &[f64], shift: f64, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
        let mut out = Vec::with_capacity(n * d);
        for _ in 0..n {
            for s in scale.iter().take(d) {
                // Box–Muller
                let u1 = (rng.next_f32() as f64).max(1e-12);
                let u2 = rng.next_f32() as f64;
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                out.push(z * s + shift);
            }
        }
        out
    }

    /// The closed form for diagonal Gaussians: ‖Δμ‖² + Σ (σx − σy)².
    #[test]
    fn frechet_distance_matches_the_closed_form() {
        let d = 4;
        let x = gaussian(20_000, d, &[1.0, 2.0, 0.5, 1.0], 0.0, 1);
        let y = gaussian(20_000, d, &[1.0, 1.0, 1.5, 1.0], 0.5, 2);
        let want = 4.0 * 0.25 + (2.0f64 - 1.0).powi(2) + (0.5f64 - 1.5).powi(2);
        let got = frechet(&x, &y, d);
        assert!((got - want).abs() < 0.1, "{got} vs {want}");
        let same = frechet(&x, &gaussian(20_000, d, &[1.0, 2.0, 0.5, 1.0], 0.0, 3), d);
        assert!(same < 0.02, "{same}");
    }
}
