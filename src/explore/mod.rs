//! Latent-space analysis of a frozen model ([`Inference`]), on plain buffers: principal
//! directions (PCA of the encoder means for a VAE; GANSpace — PCA of the generator's first
//! hidden activations over sampled latents, regressed back onto the latent — for a GAN),
//! traversal grids, 2-D projections of encoded data (PCA, t-SNE), attribute vectors, and the
//! k-nearest-neighbour accuracy that says how well a projection keeps classes apart.
//!
//! No GUI here: the app runs these on its analysis thread (never the training thread), the
//! CLI (`traverse`, `directions`, `project`) calls them directly.

pub mod tsne;

use crate::error::TrainError;
use crate::infer::{normal_latents, Inference};
use crate::linalg::{canonical_sign, pca, pca_2d};

/// How a set of principal directions was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectionMethod {
    /// PCA of the encoder's posterior means over test images (VAEs).
    EncoderMeans,
    /// GANSpace on the generator's first hidden layer.
    GanSpaceHidden,
    /// GANSpace on the generated pixels (families that do not expose a hidden layer).
    GanSpaceOutput,
}

impl DirectionMethod {
    pub fn describe(self) -> &'static str {
        match self {
            DirectionMethod::EncoderMeans => "PCA of the encoder means of test images",
            DirectionMethod::GanSpaceHidden => {
                "GANSpace: PCA of the generator's first hidden layer over sampled latents"
            }
            DirectionMethod::GanSpaceOutput => {
                "GANSpace on the generated pixels (this family exposes no hidden layer)"
            }
        }
    }
}

/// Principal directions of a model's latent space, largest variance first (or in the order
/// of an earlier set, after [`Directions::align_to`]).
#[derive(Clone, Debug)]
pub struct Directions {
    /// Unit vectors of `latent_dim` values.
    pub vectors: Vec<Vec<f32>>,
    /// The fraction of the analysed variance along each (of the encoder means, or of the
    /// generator's activations for GANSpace).
    pub explained: Vec<f64>,
    /// The standard deviation of the analysed latents along each direction (slider ranges).
    pub spread: Vec<f32>,
    pub method: DirectionMethod,
    /// Images encoded or latents sampled.
    pub samples: usize,
}

/// Encoder outputs of a set of images.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    /// `n × d` posterior means.
    pub mu: Vec<f32>,
    /// `n × d` posterior log-variances.
    pub logvar: Vec<f32>,
    pub n: usize,
    pub d: usize,
}

impl Encoded {
    /// The mean KL divergence from the prior of each latent dimension (nats).
    pub fn kl_per_dim(&self) -> Vec<f64> {
        let mut kl = vec![0.0; self.d];
        for (m, l) in self
            .mu
            .chunks_exact(self.d)
            .zip(self.logvar.chunks_exact(self.d))
        {
            for ((k, &m), &l) in kl.iter_mut().zip(m).zip(l) {
                let (m, l) = (m as f64, l as f64);
                *k += 0.5 * (m * m + l.exp() - l - 1.0);
            }
        }
        kl.iter_mut().for_each(|k| *k /= self.n.max(1) as f64);
        kl
    }

    /// The means of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.mu[i * self.d..(i + 1) * self.d]
    }
}

/// Rows per forward pass (bounds the memory of a pass over thousands of images).
const CHUNK: usize = 250;

/// Encode `images` (`n × pixels` in [0, 1]) with their `labels` (conditional models; empty
/// otherwise), in chunks.
pub fn encode_set(
    model: &Inference,
    images: &[f32],
    labels: &[u32],
) -> Result<Encoded, TrainError> {
    let p = model.spec.shape.numel();
    let d = model.latent_dim();
    let n = images.len() / p.max(1);
    let conditional = model.classes().is_some();
    if conditional && labels.len() < n {
        return Err(TrainError::Invalid(format!(
            "{} is conditional: encoding needs each image's class",
            model.spec.kind
        )));
    }
    let mut out = Encoded {
        mu: Vec::with_capacity(n * d),
        logvar: Vec::with_capacity(n * d),
        n,
        d,
    };
    for (c, chunk) in images[..n * p].chunks(CHUNK * p).enumerate() {
        let (mu, logvar) = if conditional {
            let rows = chunk.len() / p;
            model.encode_labelled(chunk, &labels[c * CHUNK..c * CHUNK + rows])?
        } else {
            model.encode(chunk)?
        };
        out.mu.extend(mu);
        out.logvar.extend(logvar);
    }
    Ok(out)
}

/// The model's principal directions: for a model with an encoder, PCA of the means of
/// `images` (with `labels` for a conditional model); for a GAN, GANSpace over `samples`
/// latents drawn from `seed`.
pub fn principal_directions(
    model: &Inference,
    images: &[f32],
    labels: &[u32],
    k: usize,
    samples: usize,
    seed: u64,
) -> Result<Directions, TrainError> {
    if model.spec.has_encoder() {
        if images.is_empty() {
            return Err(TrainError::Invalid(
                "principal directions of a VAE need test images to encode".into(),
            ));
        }
        let e = encode_set(model, images, labels)?;
        Ok(directions_of_means(&e.mu, e.n, e.d, k))
    } else {
        gan_space(model, k, samples, seed)
    }
}

/// PCA of the `n × d` posterior means `mu`.
pub fn directions_of_means(mu: &[f32], n: usize, d: usize, k: usize) -> Directions {
    let p = pca(mu, n, d, k);
    Directions {
        explained: p.explained(),
        spread: p.variance.iter().map(|v| v.sqrt() as f32).collect(),
        vectors: p
            .components
            .iter()
            .map(|c| c.iter().map(|&x| x as f32).collect())
            .collect(),
        method: DirectionMethod::EncoderMeans,
        samples: n,
    }
}

/// GANSpace (Härkönen et al. 2020): PCA of the generator's first hidden activations `y(z)`
/// over sampled latents, then each principal axis `u_j` mapped back to a latent direction by
/// least squares: `v_j = argmin Σ_i (x_ij − ⟨z_i, v⟩)²` where `x_ij = ⟨y(z_i) − ȳ, u_j⟩`...
/// solved the other way round as in the paper (`z ≈ Σ_j x_ij v_j`, the coordinates being
/// uncorrelated: `v_j = Σ_i x_ij z_i / Σ_i x_ij²`), then normalised.
pub fn gan_space(
    model: &Inference,
    k: usize,
    samples: usize,
    seed: u64,
) -> Result<Directions, TrainError> {
    let d = model.latent_dim();
    let samples = samples.max(2);
    let z = normal_latents(samples, d, seed);
    let mut feats = Vec::new();
    let mut width = 0;
    let mut method = DirectionMethod::GanSpaceHidden;
    for chunk in z.chunks(CHUNK * d) {
        match model.first_hidden(chunk)? {
            Some((h, w)) if method == DirectionMethod::GanSpaceHidden => {
                feats.extend(h);
                width = w;
            }
            _ => {
                method = DirectionMethod::GanSpaceOutput;
                break;
            }
        }
    }
    if method == DirectionMethod::GanSpaceOutput {
        feats.clear();
        for chunk in z.chunks(CHUNK * d) {
            feats.extend(model.decode(chunk)?.pixels);
        }
        width = model.spec.shape.numel();
    }
    let p = pca(&feats, samples, width, k.min(d));
    let mut vectors = Vec::with_capacity(p.components.len());
    let mut spread = Vec::with_capacity(p.components.len());
    let coords: Vec<Vec<f64>> = feats.chunks_exact(width).map(|r| p.project(r)).collect();
    for j in 0..p.components.len() {
        let mut v = vec![0.0f64; d];
        let mut xx = 0.0;
        for (zi, x) in z.chunks_exact(d).zip(&coords) {
            let x = x[j];
            xx += x * x;
            v.iter_mut().zip(zi).for_each(|(v, &z)| *v += x * z as f64);
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        canonical_sign(&mut v);
        let v: Vec<f32> = if xx > 0.0 && norm > 0.0 {
            v.iter().map(|x| (x / norm) as f32).collect()
        } else {
            axis(d, j)
        };
        // The spread of the sampled latents along it (≈ 1 for a standard normal prior).
        let proj: Vec<f64> = z.chunks_exact(d).map(|zi| dot(zi, &v) as f64).collect();
        let m = proj.iter().sum::<f64>() / samples as f64;
        let var = proj.iter().map(|p| (p - m).powi(2)).sum::<f64>() / (samples - 1) as f64;
        spread.push(var.sqrt() as f32);
        vectors.push(v);
    }
    Ok(Directions {
        explained: p.explained(),
        spread,
        vectors,
        method,
        samples,
    })
}

impl Directions {
    /// Keep the meaning of each slot steady from one snapshot to the next: slot `i` takes
    /// the new direction closest (|cos|) to the previous slot `i`, if it is close enough
    /// (|cos| ≥ 0.5), with its sign flipped to agree; the rest fill the free slots in order of
    /// variance.
    pub fn align_to(&mut self, prev: &Directions) {
        let k = self.vectors.len();
        if prev.vectors.first().map(Vec::len) != self.vectors.first().map(Vec::len) {
            return;
        }
        let mut slot_of: Vec<Option<usize>> = vec![None; k]; // new index → slot
        let mut taken = vec![false; k]; // slots
        for (slot, p) in prev.vectors.iter().enumerate().take(k) {
            let best = (0..k)
                .filter(|&j| slot_of[j].is_none())
                .map(|j| (j, dot(p, &self.vectors[j])))
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
            if let Some((j, c)) = best.filter(|(_, c)| c.abs() >= 0.5) {
                slot_of[j] = Some(slot);
                taken[slot] = true;
                if c < 0.0 {
                    self.vectors[j].iter_mut().for_each(|x| *x = -*x);
                }
            }
        }
        for (j, s) in slot_of.iter_mut().enumerate() {
            if s.is_none() {
                let free = (0..k).find(|&t| !taken[t]).unwrap_or(j);
                taken[free] = true;
                *s = Some(free);
            }
        }
        let mut order: Vec<usize> = (0..k).collect(); // slot → new index
        for (j, s) in slot_of.iter().enumerate() {
            if let Some(s) = *s {
                order[s] = j;
            }
        }
        self.vectors = order.iter().map(|&j| self.vectors[j].clone()).collect();
        self.explained = order.iter().map(|&j| self.explained[j]).collect();
        self.spread = order.iter().map(|&j| self.spread[j]).collect();
    }
}

/// `Σ a_i b_i`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The unit vector along latent dimension `i` of `d`.
pub fn axis(d: usize, i: usize) -> Vec<f32> {
    let mut v = vec![0.0; d];
    if let Some(x) = v.get_mut(i) {
        *x = 1.0;
    }
    v
}

/// `z`'s coordinate along `v`: `⟨z, v⟩ / ‖v‖²` (α such that moving by `Δα · v` changes it by Δα).
pub fn coordinate(z: &[f32], v: &[f32]) -> f32 {
    let vv = dot(v, v);
    if vv > 0.0 {
        dot(z, v) / vv
    } else {
        0.0
    }
}

/// Move `z` along `v` until its [`coordinate`] is `alpha` (the other coordinates stay).
pub fn set_coordinate(z: &mut [f32], v: &[f32], alpha: f32) {
    let delta = alpha - coordinate(z, v);
    z.iter_mut().zip(v).for_each(|(z, v)| *z += delta * v);
}

/// The latents of a traversal grid: one row per axis in `axes`, `steps` values from
/// `base − range·axis` to `base + range·axis` (`rows · steps × d`, row-major).
pub fn traversal(base: &[f32], axes: &[Vec<f32>], steps: usize, range: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(axes.len() * steps * base.len());
    for a in axes {
        for s in 0..steps {
            let t = if steps > 1 {
                -range + 2.0 * range * s as f32 / (steps - 1) as f32
            } else {
                0.0
            };
            out.extend(base.iter().zip(a).map(|(b, a)| b + t * a));
        }
    }
    out
}

/// Dimension indices by decreasing KL (ties by index).
pub fn dims_by_kl(kl: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..kl.len()).collect();
    order.sort_by(|&a, &b| kl[b].total_cmp(&kl[a]).then(a.cmp(&b)));
    order
}

/// The mean of the latents of group `a` minus that of group `b` (rows of `mu`, `n × d`):
/// an attribute vector ("mean 8 − mean 3"). `None` when a group is empty.
pub fn attribute_vector(mu: &[f32], d: usize, a: &[usize], b: &[usize]) -> Option<Vec<f32>> {
    let mean = |g: &[usize]| -> Option<Vec<f32>> {
        let rows: Vec<&[f32]> = g
            .iter()
            .filter_map(|&i| mu.get(i * d..(i + 1) * d))
            .collect();
        if rows.is_empty() {
            return None;
        }
        let mut m = vec![0.0f32; d];
        for r in &rows {
            m.iter_mut().zip(*r).for_each(|(m, x)| *m += x);
        }
        m.iter_mut().for_each(|m| *m /= rows.len() as f32);
        Some(m)
    };
    let (ma, mb) = (mean(a)?, mean(b)?);
    Some(ma.iter().zip(&mb).map(|(a, b)| a - b).collect())
}

/// A 2-D projection method for encoded data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Projection {
    /// The first two principal components.
    Pca,
    /// Exact t-SNE ([`tsne`]).
    Tsne,
}

impl Projection {
    pub const ALL: [Projection; 2] = [Projection::Pca, Projection::Tsne];

    pub fn name(self) -> &'static str {
        match self {
            Projection::Pca => "pca",
            Projection::Tsne => "tsne",
        }
    }

    /// How people write it: "PCA", "t-SNE".
    pub fn title(self) -> &'static str {
        match self {
            Projection::Pca => "PCA",
            Projection::Tsne => "t-SNE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| {
            p.name()
                .eq_ignore_ascii_case(s.trim().replace('-', "").as_str())
        })
    }
}

/// Project the `n` rows of `points` (`n × d`) to 2-D. `progress(fraction)` returning false
/// cancels (then `None`).
pub fn project(
    points: &[f32],
    n: usize,
    d: usize,
    method: Projection,
    seed: u64,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Option<Vec<[f32; 2]>> {
    match method {
        Projection::Pca => Some(
            pca_2d(points, n, d)
                .into_iter()
                .map(|[x, y]| [x as f32, y as f32])
                .collect(),
        ),
        Projection::Tsne => {
            let opts = tsne::TsneOptions {
                seed,
                ..Default::default()
            };
            tsne::tsne(points, n, d, &opts, progress).map(|t| t.points)
        }
    }
}

/// The accuracy of a `k`-nearest-neighbour classifier of `labels` on the `dim`-dimensional
/// `points`, by `folds`-fold cross-validation (stratified: each class split into contiguous
/// folds in its order, as scikit-learn's `StratifiedKFold`). Votes tie to the nearer label.
pub fn knn_accuracy(points: &[f32], dim: usize, labels: &[u32], k: usize, folds: usize) -> f64 {
    let n = labels.len().min(points.len() / dim.max(1));
    if n == 0 || k == 0 || folds < 2 {
        return 0.0;
    }
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut count = vec![0usize; classes];
    labels[..n].iter().for_each(|&l| count[l as usize] += 1);
    let mut seen = vec![0usize; classes];
    let fold: Vec<usize> = labels[..n]
        .iter()
        .map(|&l| {
            let l = l as usize;
            let f = seen[l] * folds / count[l].max(1);
            seen[l] += 1;
            f
        })
        .collect();
    let p = |i: usize| &points[i * dim..(i + 1) * dim];
    let correct: usize = (0..n)
        .filter(|&i| {
            let mut near: Vec<(f32, u32)> = (0..n)
                .filter(|&j| fold[j] != fold[i])
                .map(|j| {
                    let d2 = p(i).iter().zip(p(j)).map(|(a, b)| (a - b) * (a - b)).sum();
                    (d2, labels[j])
                })
                .collect();
            let k = k.min(near.len());
            if k == 0 {
                return false;
            }
            near.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
            let mut top = near[..k].to_vec();
            top.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut votes = vec![0usize; classes];
            top.iter().for_each(|&(_, l)| votes[l as usize] += 1);
            let best = votes.iter().copied().max().unwrap_or(0);
            // The nearest neighbour among the most-voted labels.
            let pick = top
                .iter()
                .find(|&&(_, l)| votes[l as usize] == best)
                .map(|&(_, l)| l);
            pick == Some(labels[i])
        })
        .count();
    correct as f64 / n as f64
}

/// The pair of raw latent dimensions whose 2-D coordinates give the best
/// [`knn_accuracy`] (5 neighbours, 5 folds), with that accuracy.
pub fn best_raw_pair(enc: &Encoded, labels: &[u32]) -> Option<((usize, usize), f64)> {
    let mut best: Option<((usize, usize), f64)> = None;
    for a in 0..enc.d {
        for b in a + 1..enc.d {
            let pts: Vec<f32> = (0..enc.n)
                .flat_map(|i| [enc.mu[i * enc.d + a], enc.mu[i * enc.d + b]])
                .collect();
            let acc = knn_accuracy(&pts, 2, labels, 5, 5);
            if best.is_none_or(|(_, b)| acc > b) {
                best = Some(((a, b), acc));
            }
        }
    }
    best
}

/// Mean absolute pixel change per unit step along `v`, over `bases` (`m × d` latents):
/// `mean |decode(z + step·v) − decode(z)| / step`. Says how much a direction does.
pub fn pixel_change(
    model: &Inference,
    bases: &[f32],
    v: &[f32],
    step: f32,
) -> Result<f64, TrainError> {
    let d = model.latent_dim();
    let moved: Vec<f32> = bases
        .chunks_exact(d)
        .flat_map(|z| {
            z.iter()
                .zip(v)
                .map(|(z, v)| z + step * v)
                .collect::<Vec<_>>()
        })
        .collect();
    let a = model.decode(bases)?.pixels;
    let b = model.decode(&moved)?.pixels;
    let total: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).abs() as f64).sum();
    Ok(total / a.len().max(1) as f64 / step.abs().max(f32::MIN_POSITIVE) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(vectors: Vec<Vec<f32>>) -> Directions {
        let k = vectors.len();
        Directions {
            explained: (0..k).map(|i| 1.0 / (i + 1) as f64).collect(),
            spread: vec![1.0; k],
            vectors,
            method: DirectionMethod::EncoderMeans,
            samples: 10,
        }
    }

    #[test]
    fn alignment_keeps_slots_and_signs_across_snapshots() {
        let prev = dirs(vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ]);
        // The next snapshot finds the first two swapped (their variances crossed), the
        // second flipped, and the third rotated a little.
        let mut next = dirs(vec![
            vec![0.0, -1.0, 0.0],
            vec![0.99, 0.0, 0.141],
            vec![-0.141, 0.0, 0.99],
        ]);
        next.align_to(&prev);
        assert_eq!(next.vectors[0], vec![0.99, 0.0, 0.141]);
        assert_eq!(next.vectors[1], vec![0.0, 1.0, 0.0]);
        assert_eq!(next.vectors[2], vec![-0.141, 0.0, 0.99]);
        assert_eq!(next.explained, vec![0.5, 1.0, 1.0 / 3.0]);
        // Directions unlike any before keep their variance order in the free slots.
        let mut odd = dirs(vec![
            vec![0.6, 0.8, 0.0],
            vec![-0.8, 0.6, 0.0],
            vec![0.0, 0.0, 1.0],
        ]);
        odd.align_to(&prev);
        assert_eq!(odd.vectors[2], vec![0.0, 0.0, 1.0]);
        assert!(dot(&odd.vectors[0], &prev.vectors[0]) > 0.0);
    }

    #[test]
    fn coordinates_move_along_a_direction_only() {
        let v = vec![2.0, 0.0, 0.0];
        let mut z = vec![1.0, 5.0, -1.0];
        assert!((coordinate(&z, &v) - 0.5).abs() < 1e-6);
        set_coordinate(&mut z, &v, 2.0);
        assert_eq!(z, vec![4.0, 5.0, -1.0]);
        assert!((coordinate(&z, &v) - 2.0).abs() < 1e-6);
    }

    #[test]
    fn traversal_rows_span_the_range_around_the_base() {
        let base = vec![0.5, -0.5];
        let g = traversal(&base, &[axis(2, 1), axis(2, 0)], 3, 2.0);
        assert_eq!(g.len(), 2 * 3 * 2);
        assert_eq!(&g[..6], &[0.5, -2.5, 0.5, -0.5, 0.5, 1.5]);
        assert_eq!(&g[6..], &[-1.5, -0.5, 0.5, -0.5, 2.5, -0.5]);
        assert_eq!(dims_by_kl(&[0.1, 2.0, 0.1, 1.0]), vec![1, 3, 0, 2]);
    }

    #[test]
    fn attribute_vectors_are_differences_of_group_means() {
        let mu = vec![1.0, 0.0, 3.0, 0.0, 0.0, 2.0, 0.0, 4.0];
        let v = attribute_vector(&mu, 2, &[0, 1], &[2, 3]).unwrap();
        assert_eq!(v, vec![2.0, -3.0]);
        assert!(attribute_vector(&mu, 2, &[], &[1]).is_none());
    }

    #[test]
    fn knn_accuracy_tells_separated_classes_from_mixed_ones() {
        // Two classes on a line: far apart → 1.0; labels that have nothing to do with the
        // positions → about chance.
        let labels: Vec<u32> = (0..200).map(|i| (i % 2) as u32).collect();
        let apart: Vec<f32> = (0..200)
            .map(|i| (i % 2) as f32 * 100.0 + i as f32 * 0.01)
            .collect();
        assert_eq!(knn_accuracy(&apart, 1, &labels, 5, 5), 1.0);
        let mut rng = crate::data::SplitMix64::new(3);
        let random: Vec<u32> = (0..200).map(|_| (rng.next_f32() < 0.5) as u32).collect();
        let line: Vec<f32> = (0..200).map(|i| i as f32).collect();
        let chance = knn_accuracy(&line, 1, &random, 5, 5);
        assert!((0.3..0.7).contains(&chance), "{chance}");
    }
}
