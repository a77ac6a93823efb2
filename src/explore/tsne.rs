//! t-SNE (van der Maaten & Hinton 2008) with exact gradients.
//!
//! What it computes, and how it matches scikit-learn's `TSNE` (1.x defaults):
//! - input affinities from the `3·perplexity + 1` nearest neighbours of each point (squared
//!   euclidean distances), a per-point binary search for the Gaussian width that gives the
//!   wanted perplexity, then symmetrised and normalised (`P = (P + Pᵀ) / ΣP`) — as
//!   scikit-learn's Barnes-Hut method;
//! - a Student-t (one degree of freedom) output kernel, initialised from PCA scaled to a
//!   standard deviation of 1e-4 along the first axis;
//! - gradient descent with momentum (0.5 during 250 iterations of early exaggeration 12, then
//!   0.8), per-coordinate gains (+0.2 / ×0.8, at least 0.01), learning rate `max(n / 12 / 4, 50)`,
//!   1,000 iterations in all.
//!
//! Unlike Barnes-Hut, the repulsive forces are summed exactly over all pairs, `O(n²)` per
//! iteration but in one fused, vectorisable pass across rayon's threads; at the few thousand
//! points the app projects this is as fast as the tree and has no approximation error.
//! Deterministic: the same data and options give the same points, on any thread count.

use rayon::prelude::*;

use crate::data::SplitMix64;
use crate::linalg::pca_2d;

/// t-SNE's settings (defaults as scikit-learn's).
#[derive(Clone, Debug)]
pub struct TsneOptions {
    /// The effective number of neighbours each point's affinity spreads over; clamped to
    /// `[1, (n − 1) / 3]`.
    pub perplexity: f64,
    /// Gradient-descent iterations in all (early exaggeration included).
    pub iterations: usize,
    /// How much the input affinities are multiplied by at first, to form clusters.
    pub early_exaggeration: f64,
    /// How many of the first iterations exaggerate.
    pub exaggeration_iterations: usize,
    /// The step size; `None` for `max(n / early_exaggeration / 4, 50)`.
    pub learning_rate: Option<f64>,
    /// Seeds the random start used when the data has no spread for PCA to start from.
    pub seed: u64,
}

impl Default for TsneOptions {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            iterations: 1000,
            early_exaggeration: 12.0,
            exaggeration_iterations: 250,
            learning_rate: None,
            seed: 0,
        }
    }
}

/// A t-SNE embedding.
#[derive(Clone, Debug)]
pub struct Tsne {
    /// One 2-D point per input row.
    pub points: Vec<[f32; 2]>,
    /// The Kullback-Leibler divergence `KL(P‖Q)` the embedding reached.
    pub kl: f64,
}

/// The symmetric input affinities, one sparse row per point (`P` sums to one).
struct Affinities {
    /// Row `i`'s entries are `cols[start[i]..start[i + 1]]`.
    start: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<f64>,
}

impl Affinities {
    fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let r = self.start[i]..self.start[i + 1];
        self.cols[r.clone()]
            .iter()
            .zip(&self.vals[r])
            .map(|(&j, &p)| (j as usize, p))
    }
}

/// Embed the `n` rows of `data` (`n × d`, row-major) in 2-D. `progress(fraction)` is called
/// every few iterations; returning false cancels (then `None`).
pub fn tsne(
    data: &[f32],
    n: usize,
    d: usize,
    opts: &TsneOptions,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Option<Tsne> {
    let n = n.min(data.len() / d.max(1));
    if n <= 1 {
        return Some(Tsne {
            points: vec![[0.0; 2]; n],
            kl: 0.0,
        });
    }
    let data = &data[..n * d];
    let perplexity = opts.perplexity.min((n - 1) as f64 / 3.0).max(1.0);
    let k = ((3.0 * perplexity + 1.0) as usize).clamp(1, n - 1);
    let p = affinities(data, n, d, k, perplexity);
    if !progress(0.02) {
        return None;
    }
    let mut y = initial(data, n, d, opts.seed);
    let lr = opts
        .learning_rate
        .unwrap_or((n as f64 / opts.early_exaggeration / 4.0).max(50.0));
    let mut update = vec![0.0f64; 2 * n];
    let mut gains = vec![1.0f64; 2 * n];
    for it in 0..opts.iterations {
        let early = it < opts.exaggeration_iterations;
        let (exaggeration, momentum) = if early {
            (opts.early_exaggeration, 0.5)
        } else {
            (1.0, 0.8)
        };
        let (grad, _) = gradient(&p, &y, exaggeration);
        for (((yi, u), g), &gr) in y.iter_mut().zip(&mut update).zip(&mut gains).zip(&grad) {
            // Grow the gain where the gradient turned against the last step, shrink it where
            // the step keeps its direction (Jacobs 1988, as every t-SNE does).
            *g = if *u * gr < 0.0 { *g + 0.2 } else { *g * 0.8 }.max(0.01);
            *u = momentum * *u - lr * *g * gr;
            *yi += *u;
        }
        if (it + 1) % 10 == 0 && !progress(0.02 + 0.98 * (it + 1) as f32 / opts.iterations as f32) {
            return None;
        }
    }
    let kl = divergence(&p, &y);
    Some(Tsne {
        points: y
            .chunks_exact(2)
            .map(|c| [c[0] as f32, c[1] as f32])
            .collect(),
        kl,
    })
}

/// Squared euclidean distance of two rows.
fn dist2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let t = x as f64 - y as f64;
            t * t
        })
        .sum()
}

/// The `k` nearest neighbours of every row (exact), their conditional affinities at the given
/// perplexity, symmetrised and normalised.
fn affinities(data: &[f32], n: usize, d: usize, k: usize, perplexity: f64) -> Affinities {
    let rows: Vec<Vec<(u32, f64)>> = (0..n)
        .into_par_iter()
        .with_min_len(8)
        .map(|i| {
            let a = &data[i * d..(i + 1) * d];
            let mut near: Vec<(u32, f64)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (j as u32, dist2(a, &data[j * d..(j + 1) * d])))
                .collect();
            let by = |x: &(u32, f64), y: &(u32, f64)| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0));
            if k < near.len() {
                near.select_nth_unstable_by(k, by);
                near.truncate(k);
            }
            near.sort_unstable_by(by);
            let dists: Vec<f64> = near.iter().map(|x| x.1).collect();
            let cond = conditional_row(&dists, perplexity);
            near.iter().zip(cond).map(|(&(j, _), p)| (j, p)).collect()
        })
        .collect();
    // P_ij + P_ji: every entry once at (i, j) and once at (j, i), merged per row.
    let mut both: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
    for (i, row) in rows.iter().enumerate() {
        for &(j, p) in row {
            both[i].push((j, p));
            both[j as usize].push((i as u32, p));
        }
    }
    let mut start = Vec::with_capacity(n + 1);
    let mut cols = Vec::new();
    let mut vals = Vec::new();
    start.push(0);
    for mut row in both {
        row.sort_unstable_by_key(|e| e.0);
        for (j, p) in row {
            if cols.len() > *start.last().unwrap_or(&0) && cols.last() == Some(&j) {
                if let Some(v) = vals.last_mut() {
                    *v += p;
                }
            } else {
                cols.push(j);
                vals.push(p);
            }
        }
        start.push(cols.len());
    }
    let total: f64 = vals.iter().sum();
    let total = total.max(f64::MIN_POSITIVE);
    vals.iter_mut().for_each(|v| *v /= total);
    Affinities { start, cols, vals }
}

/// One point's conditional affinities `p_{j|i} ∝ exp(−β·d_j)` over its neighbours' squared
/// distances `dists`, with `β` found by bisection so that the entropy is `ln(perplexity)`.
fn conditional_row(dists: &[f64], perplexity: f64) -> Vec<f64> {
    let target = perplexity.ln();
    // Shift by the nearest distance: the same distribution, no underflow for far points.
    let d0 = dists.iter().copied().fold(f64::INFINITY, f64::min);
    let shifted: Vec<f64> = dists.iter().map(|d| d - d0).collect();
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    let mut beta = 1.0f64;
    let mut p = vec![0.0; dists.len()];
    for _ in 0..200 {
        let mut sum = 0.0;
        let mut weighted = 0.0;
        for (pj, &dj) in p.iter_mut().zip(&shifted) {
            *pj = (-beta * dj).exp();
            sum += *pj;
            weighted += dj * *pj;
        }
        let entropy = sum.ln() + beta * weighted / sum;
        let miss = entropy - target;
        p.iter_mut().for_each(|x| *x /= sum);
        if miss.abs() < 1e-6 {
            break;
        }
        if miss > 0.0 {
            // Too spread: narrow the kernel.
            lo = beta;
            beta = if hi.is_finite() {
                (beta + hi) / 2.0
            } else {
                beta * 2.0
            };
        } else {
            hi = beta;
            beta = (beta + lo) / 2.0;
        }
    }
    p
}

/// The start: PCA of the data scaled to a standard deviation of 1e-4 along its first axis
/// (scikit-learn's `init="pca"`), or small random points when the data has no spread.
fn initial(data: &[f32], n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut y: Vec<f64> = pca_2d(data, n, d).into_iter().flatten().collect();
    let mean0 = y.iter().step_by(2).sum::<f64>() / n as f64;
    let std0 = (y
        .iter()
        .step_by(2)
        .map(|v| (v - mean0).powi(2))
        .sum::<f64>()
        / n as f64)
        .sqrt();
    if std0 > 1e-12 && y.iter().all(|v| v.is_finite()) {
        y.iter_mut().for_each(|v| *v *= 1e-4 / std0);
    } else {
        let mut rng = SplitMix64::new(seed);
        y.iter_mut()
            .for_each(|v| *v = (rng.next_f32() as f64 - 0.5) * 2e-4);
    }
    y
}

/// The gradient of `KL(exaggeration·P ‖ Q)` at the embedding `y` (`2n` values), and the
/// normaliser `Z = Σ_{i≠j} (1 + ‖yᵢ − yⱼ‖²)⁻¹`.
fn gradient(p: &Affinities, y: &[f64], exaggeration: f64) -> (Vec<f64>, f64) {
    let n = y.len() / 2;
    let xs: Vec<f64> = y.iter().step_by(2).copied().collect();
    let ys: Vec<f64> = y.iter().skip(1).step_by(2).copied().collect();
    // Per point: Σⱼ wᵢⱼ, the repulsion Σⱼ wᵢⱼ²(yᵢ − yⱼ) and the attraction Σⱼ pᵢⱼwᵢⱼ(yᵢ − yⱼ).
    let parts: Vec<[f64; 5]> = (0..n)
        .into_par_iter()
        .with_min_len(16)
        .map(|i| {
            let (xi, yi) = (xs[i], ys[i]);
            let (mut sw, mut rx, mut ry) = (0.0, 0.0, 0.0);
            for (&xj, &yj) in xs.iter().zip(&ys) {
                let dx = xi - xj;
                let dy = yi - yj;
                let w = 1.0 / (1.0 + dx * dx + dy * dy);
                sw += w;
                let w2 = w * w;
                rx += w2 * dx;
                ry += w2 * dy;
            }
            // The j = i term added w = 1 and no force.
            sw -= 1.0;
            let (mut ax, mut ay) = (0.0, 0.0);
            for (j, pij) in p.row(i) {
                let dx = xi - xs[j];
                let dy = yi - ys[j];
                let w = 1.0 / (1.0 + dx * dx + dy * dy);
                ax += pij * w * dx;
                ay += pij * w * dy;
            }
            [sw, rx, ry, ax, ay]
        })
        .collect();
    let z: f64 = parts
        .iter()
        .map(|q| q[0])
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let mut grad = Vec::with_capacity(2 * n);
    for q in &parts {
        grad.push(4.0 * (exaggeration * q[3] - q[1] / z));
        grad.push(4.0 * (exaggeration * q[4] - q[2] / z));
    }
    (grad, z)
}

/// `KL(P ‖ Q)` of the embedding `y`.
fn divergence(p: &Affinities, y: &[f64]) -> f64 {
    let n = y.len() / 2;
    let (_, z) = gradient(p, y, 1.0);
    (0..n)
        .map(|i| {
            p.row(i)
                .filter(|&(_, pij)| pij > 0.0)
                .map(|(j, pij)| {
                    let dx = y[2 * i] - y[2 * j];
                    let dy = y[2 * i + 1] - y[2 * j + 1];
                    let q = 1.0 / (1.0 + dx * dx + dy * dy) / z;
                    pij * (pij / q.max(f64::MIN_POSITIVE)).ln()
                })
                .sum::<f64>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::knn_accuracy;

    /// `per` points around each of `centres` (in `d` dimensions), spread `spread`.
    fn clusters(
        centres: usize,
        per: usize,
        d: usize,
        spread: f32,
        seed: u64,
    ) -> (Vec<f32>, Vec<u32>) {
        let mut rng = SplitMix64::new(seed);
        let mut x = Vec::new();
        let mut labels = Vec::new();
        for c in 0..centres {
            for _ in 0..per {
                for k in 0..d {
                    let centre = if k == c % d { 10.0 } else { 0.0 }
                        + if k == (c + 1) % d {
                            5.0 * c as f32
                        } else {
                            0.0
                        };
                    x.push(centre + spread * (rng.next_f32() - 0.5));
                }
                labels.push(c as u32);
            }
        }
        (x, labels)
    }

    fn flat(t: &Tsne) -> Vec<f32> {
        t.points.iter().flat_map(|p| [p[0], p[1]]).collect()
    }

    #[test]
    fn conditional_rows_reach_the_perplexity() {
        let dists: Vec<f64> = (0..90).map(|i| (i as f64 * 0.37).powf(1.3) + 0.5).collect();
        for perplexity in [5.0, 30.0] {
            let p = conditional_row(&dists, perplexity);
            let entropy: f64 = -p
                .iter()
                .filter(|&&v| v > 0.0)
                .map(|v| v * v.ln())
                .sum::<f64>();
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(
                (entropy.exp() - perplexity).abs() < 1e-3,
                "perplexity {} for {perplexity}",
                entropy.exp()
            );
            // Nearer neighbours get more.
            assert!(p.windows(2).all(|w| w[0] >= w[1]));
        }
    }

    #[test]
    fn gradient_is_the_derivative_of_the_divergence() {
        let (x, _) = clusters(3, 6, 4, 3.0, 1);
        let n = 18;
        let p = affinities(&x, n, 4, 10, 3.0);
        let mut rng = SplitMix64::new(2);
        let y: Vec<f64> = (0..2 * n)
            .map(|_| rng.next_f32() as f64 * 4.0 - 2.0)
            .collect();
        let (grad, _) = gradient(&p, &y, 1.0);
        for k in [0, 5, 17, 2 * n - 1] {
            let h = 1e-6;
            let mut a = y.clone();
            a[k] += h;
            let mut b = y.clone();
            b[k] -= h;
            let numeric = (divergence(&p, &a) - divergence(&p, &b)) / (2.0 * h);
            assert!(
                (numeric - grad[k]).abs() < 1e-5 * (1.0 + numeric.abs()),
                "coordinate {k}: {numeric} vs {}",
                grad[k]
            );
        }
    }

    #[test]
    fn separated_clusters_stay_apart_and_the_run_is_deterministic() {
        let (x, labels) = clusters(4, 40, 8, 2.0, 3);
        let n = labels.len();
        let opts = TsneOptions {
            iterations: 500,
            ..Default::default()
        };
        let a = tsne(&x, n, 8, &opts, &mut |_| true).expect("not cancelled");
        assert_eq!(a.points.len(), n);
        assert!(a
            .points
            .iter()
            .all(|p| p[0].is_finite() && p[1].is_finite()));
        assert_eq!(knn_accuracy(&flat(&a), 2, &labels, 5, 5), 1.0);
        // The clusters are far apart compared with their own size.
        let centre = |c: u32| {
            let m: Vec<&[f32; 2]> = a
                .points
                .iter()
                .zip(&labels)
                .filter(|(_, &l)| l == c)
                .map(|(p, _)| p)
                .collect();
            let cx = m.iter().map(|p| p[0]).sum::<f32>() / m.len() as f32;
            let cy = m.iter().map(|p| p[1]).sum::<f32>() / m.len() as f32;
            let r = m
                .iter()
                .map(|p| ((p[0] - cx).powi(2) + (p[1] - cy).powi(2)).sqrt())
                .sum::<f32>()
                / m.len() as f32;
            ([cx, cy], r)
        };
        let cs: Vec<_> = (0..4).map(centre).collect();
        for i in 0..4 {
            for j in i + 1..4 {
                let gap =
                    ((cs[i].0[0] - cs[j].0[0]).powi(2) + (cs[i].0[1] - cs[j].0[1]).powi(2)).sqrt();
                assert!(
                    gap > 2.0 * (cs[i].1 + cs[j].1),
                    "clusters {i} and {j}: gap {gap}, radii {} {}",
                    cs[i].1,
                    cs[j].1
                );
            }
        }
        let b = tsne(&x, n, 8, &opts, &mut |_| true).expect("not cancelled");
        assert_eq!(flat(&a), flat(&b));
        assert_eq!(a.kl.to_bits(), b.kl.to_bits());
    }

    /// A known embedding: points on a 2-D circle (embedded in 5-D) must keep their neighbours
    /// on the circle, and the divergence must be as low as scikit-learn's on the same data
    /// (`bench/tsne_reference.py circle`: `TSNE(perplexity=10)`, Barnes-Hut, which builds the
    /// same sparse affinities; its embedding's exact KL on them is 0.1874 for seeds 0, 1, 2 —
    /// it reports 0.1815, its tree's estimate; this implementation reaches 0.1895).
    #[test]
    fn a_circle_keeps_its_neighbours() {
        let n = 120;
        let x: Vec<f32> = (0..n)
            .flat_map(|i| {
                let t = i as f32 / n as f32 * std::f32::consts::TAU;
                [10.0 * t.cos(), 10.0 * t.sin(), 0.0, 1.0, -1.0]
            })
            .collect();
        let opts = TsneOptions {
            perplexity: 10.0,
            ..Default::default()
        };
        let t = tsne(&x, n, 5, &opts, &mut |_| true).expect("not cancelled");
        // Each point's two nearest embedded points are among its four nearest on the circle.
        let mut kept = 0;
        for i in 0..n {
            let mut near: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    (
                        (t.points[i][0] - t.points[j][0]).powi(2)
                            + (t.points[i][1] - t.points[j][1]).powi(2),
                        j,
                    )
                })
                .collect();
            near.sort_by(|a, b| a.0.total_cmp(&b.0));
            for &(_, j) in &near[..2] {
                let ring = (i as isize - j as isize).rem_euclid(n as isize);
                if ring.min(n as isize - ring) <= 2 {
                    kept += 1;
                }
            }
        }
        assert!(
            kept as f64 >= 0.95 * (2 * n) as f64,
            "{kept} of {} neighbours kept",
            2 * n
        );
        assert!(
            t.kl < 0.1874 * 1.03,
            "KL {} against scikit-learn's 0.1874",
            t.kl
        );
    }

    #[test]
    fn cancelling_stops_and_tiny_inputs_work() {
        let (x, labels) = clusters(2, 20, 3, 1.0, 4);
        let mut calls = 0;
        let r = tsne(&x, labels.len(), 3, &TsneOptions::default(), &mut |_| {
            calls += 1;
            calls < 3
        });
        assert!(r.is_none());
        assert_eq!(calls, 3);
        assert!(tsne(&[], 0, 3, &TsneOptions::default(), &mut |_| true)
            .unwrap()
            .points
            .is_empty());
        assert_eq!(
            tsne(&x[..3], 1, 3, &TsneOptions::default(), &mut |_| true)
                .unwrap()
                .points,
            vec![[0.0, 0.0]]
        );
        for n in 2..=4 {
            let t = tsne(&x[..3 * n], n, 3, &TsneOptions::default(), &mut |_| true).unwrap();
            assert_eq!(t.points.len(), n);
            assert!(
                t.points
                    .iter()
                    .all(|p| p[0].is_finite() && p[1].is_finite()),
                "{n}: {:?}",
                t.points
            );
        }
        // Identical points: no spread for PCA, a random start, still finite.
        let same = vec![1.0f32; 30];
        let t = tsne(&same, 10, 3, &TsneOptions::default(), &mut |_| true).unwrap();
        assert!(t
            .points
            .iter()
            .all(|p| p[0].is_finite() && p[1].is_finite()));
    }
}
