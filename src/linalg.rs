//! Small dense linear algebra on plain buffers, for the analyses (no tensors, no GPU):
//! moments, the symmetric eigen-decomposition (cyclic Jacobi) and principal component
//! analysis, exact for narrow data and by randomised subspace iteration for wide data
//! (a generator's hidden layer has thousands of features).

use rayon::prelude::*;

use crate::data::SplitMix64;

/// Mean and covariance of `x` (`n × d`, row-major).
pub fn moments(x: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (x.len() / d).max(1);
    let mut mean = vec![0.0; d];
    for row in x.chunks(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / n as f64;
        }
    }
    let mut cov = vec![0.0; d * d];
    for row in x.chunks(d) {
        for i in 0..d {
            let a = row[i] - mean[i];
            for j in i..d {
                cov[i * d + j] += a * (row[j] - mean[j]);
            }
        }
    }
    let denom = (n.max(2) - 1) as f64;
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / denom;
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    (mean, cov)
}

/// Eigenvalues and eigenvectors (columns of `v`) of the symmetric `d × d` matrix `a`
/// (cyclic Jacobi rotations).
pub fn sym_eigen(mut a: Vec<f64>, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j].powi(2))
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let sign = if theta >= 0.0 { 1.0 } else { -1.0 };
                let t = sign / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let akp = a[k * d + p];
                    let akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let apk = a[p * d + k];
                    let aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let vkp = v[k * d + p];
                    let vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

/// Principal components of a data set.
#[derive(Clone, Debug)]
pub struct Pca {
    /// The mean row (`d`).
    pub mean: Vec<f64>,
    /// Unit principal axes, largest variance first (`k` rows of `d`).
    pub components: Vec<Vec<f64>>,
    /// The variance along each axis (eigenvalues of the covariance).
    pub variance: Vec<f64>,
    /// The total variance (trace of the covariance), for explained-variance fractions.
    pub total_variance: f64,
}

impl Pca {
    /// Coordinates of `row` (`d` values) along the components.
    pub fn project(&self, row: &[f32]) -> Vec<f64> {
        self.components
            .iter()
            .map(|c| {
                c.iter()
                    .zip(row.iter().zip(&self.mean))
                    .map(|(c, (&x, m))| c * (x as f64 - m))
                    .sum()
            })
            .collect()
    }

    /// The fraction of the total variance each component explains.
    pub fn explained(&self) -> Vec<f64> {
        let t = self.total_variance.max(f64::MIN_POSITIVE);
        self.variance.iter().map(|v| v / t).collect()
    }
}

/// Up to this many features, PCA decomposes the covariance exactly; above, it uses
/// randomised subspace iteration (Halko, Martinsson & Tropp 2011) on the centred data.
const EXACT_MAX_FEATURES: usize = 128;

/// The top `k` principal components of the `n` rows of `data` (`n × d`, row-major).
/// `k` is clamped to `min(d, n)`; each axis's sign is fixed so that its largest-magnitude
/// entry is positive (the same data always gives the same axes).
pub fn pca(data: &[f32], n: usize, d: usize, k: usize) -> Pca {
    let n = n.min(data.len() / d.max(1));
    let k = k.min(d).min(n);
    let mut mean = vec![0.0f64; d];
    for row in data.chunks_exact(d).take(n) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let denom = (n.max(2) - 1) as f64;
    let total_variance = data
        .par_chunks_exact(d.max(1))
        .take(n)
        .map(|row| {
            row.iter()
                .zip(&mean)
                .map(|(&x, m)| (x as f64 - m).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        / denom;
    let (mut variance, mut components) = if k == 0 {
        (Vec::new(), Vec::new())
    } else if d <= EXACT_MAX_FEATURES {
        let x: Vec<f64> = data[..n * d].iter().map(|&v| v as f64).collect();
        let (_, cov) = moments(&x, d);
        let (values, vectors) = sym_eigen(cov, d);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        order.truncate(k);
        (
            order.iter().map(|&i| values[i].max(0.0)).collect(),
            order
                .iter()
                .map(|&i| (0..d).map(|r| vectors[r * d + i]).collect())
                .collect(),
        )
    } else {
        randomised(data, n, d, k, &mean, denom)
    };
    for c in &mut components {
        canonical_sign(c);
    }
    // Exact ties aside, the order is already by variance; keep it so for the randomised path.
    let mut order: Vec<usize> = (0..variance.len()).collect();
    order.sort_by(|&a, &b| variance[b].total_cmp(&variance[a]));
    variance = order.iter().map(|&i| variance[i]).collect();
    components = order.iter().map(|&i| components[i].clone()).collect();
    Pca {
        mean,
        components,
        variance,
        total_variance,
    }
}

/// The coordinates of the `n` rows of `data` (`n × d`) on their first two principal axes
/// (0 where the data has fewer).
pub fn pca_2d(data: &[f32], n: usize, d: usize) -> Vec<[f64; 2]> {
    let p = pca(data, n, d, 2);
    data.chunks_exact(d.max(1))
        .take(n)
        .map(|r| {
            let c = p.project(r);
            [
                c.first().copied().unwrap_or(0.0),
                c.get(1).copied().unwrap_or(0.0),
            ]
        })
        .collect()
}

/// Flip `v` so that its largest-magnitude entry is positive.
pub fn canonical_sign(v: &mut [f64]) {
    let big = v
        .iter()
        .copied()
        .max_by(|a, b| a.abs().total_cmp(&b.abs()))
        .unwrap_or(0.0);
    if big < 0.0 {
        v.iter_mut().for_each(|x| *x = -*x);
    }
}

/// `X·B` for the centred data `X` (`n × d`) and `B` (`d × l`, column-major: `l` columns of `d`):
/// `l` columns of `n`.
fn times(data: &[f32], n: usize, d: usize, mean: &[f64], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let rows: Vec<Vec<f64>> = data[..n * d]
        .par_chunks_exact(d)
        .map(|row| {
            b.iter()
                .map(|col| {
                    row.iter()
                        .zip(mean)
                        .zip(col)
                        .map(|((&x, m), c)| (x as f64 - m) * c)
                        .sum()
                })
                .collect()
        })
        .collect();
    (0..b.len())
        .map(|j| rows.iter().map(|r| r[j]).collect())
        .collect()
}

/// `Xᵀ·Y` for the centred data `X` (`n × d`) and `l` columns `Y` of `n`: `l` columns of `d`.
fn times_t(data: &[f32], n: usize, d: usize, mean: &[f64], y: &[Vec<f64>]) -> Vec<Vec<f64>> {
    y.par_iter()
        .map(|col| {
            let mut out = vec![0.0; d];
            for (row, &w) in data[..n * d].chunks_exact(d).zip(col) {
                for ((o, &x), m) in out.iter_mut().zip(row).zip(mean) {
                    *o += w * (x as f64 - m);
                }
            }
            out
        })
        .collect()
}

/// Orthonormalise the columns in place (modified Gram–Schmidt; a vanishing column becomes 0).
fn orthonormalise(cols: &mut [Vec<f64>]) {
    for j in 0..cols.len() {
        let (done, rest) = cols.split_at_mut(j);
        let c = &mut rest[0];
        for q in done.iter() {
            let dot: f64 = q.iter().zip(c.iter()).map(|(a, b)| a * b).sum();
            c.iter_mut().zip(q).for_each(|(x, q)| *x -= dot * q);
        }
        let norm = c.iter().map(|x| x * x).sum::<f64>().sqrt();
        let inv = if norm > 1e-12 { 1.0 / norm } else { 0.0 };
        c.iter_mut().for_each(|x| *x *= inv);
    }
}

fn randomised(
    data: &[f32],
    n: usize,
    d: usize,
    k: usize,
    mean: &[f64],
    denom: f64,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let l = (k + 10).min(d).min(n);
    let mut rng = SplitMix64::new(0x05ee_d9ca);
    let omega: Vec<Vec<f64>> = (0..l)
        .map(|_| (0..d).map(|_| rng.next_f32() as f64 - 0.5).collect())
        .collect();
    let mut y = times(data, n, d, mean, &omega);
    orthonormalise(&mut y);
    for _ in 0..4 {
        let mut z = times_t(data, n, d, mean, &y);
        orthonormalise(&mut z);
        y = times(data, n, d, mean, &z);
        orthonormalise(&mut y);
    }
    // B = Yᵀ X (l × d) holds X's top singular subspace; eigen-decompose B Bᵀ (l × l).
    let bt = times_t(data, n, d, mean, &y); // l rows of d: the rows of B
    let mut g = vec![0.0; l * l];
    for i in 0..l {
        for j in i..l {
            let v: f64 = bt[i].iter().zip(&bt[j]).map(|(a, b)| a * b).sum();
            g[i * l + j] = v;
            g[j * l + i] = v;
        }
    }
    let (values, vectors) = sym_eigen(g, l);
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    order.truncate(k);
    let comps = order
        .iter()
        .map(|&i| {
            // Bᵀ u is the right singular vector times the singular value.
            let mut c = vec![0.0; d];
            for (r, row) in bt.iter().enumerate() {
                let w = vectors[r * l + i];
                c.iter_mut().zip(row).for_each(|(c, b)| *c += w * b);
            }
            let norm = c.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
            c.iter_mut().for_each(|x| *x /= norm);
            c
        })
        .collect();
    (
        order.iter().map(|&i| values[i].max(0.0) / denom).collect(),
        comps,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` rows `x = A·s + mean` with independent standard-normal `s`, for a known `A`.
    fn mixed(n: usize, axes: &[(f64, Vec<f64>)], mean: &[f64], seed: u64) -> Vec<f32> {
        let d = mean.len();
        let z = crate::infer::normal_latents(n, axes.len(), seed);
        let mut out = Vec::with_capacity(n * d);
        for i in 0..n {
            for j in 0..d {
                let v: f64 = axes
                    .iter()
                    .enumerate()
                    .map(|(a, (sd, u))| sd * u[j] * z[i * axes.len() + a] as f64)
                    .sum();
                out.push((v + mean[j]) as f32);
            }
        }
        out
    }

    fn unit(v: Vec<f64>) -> Vec<f64> {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    /// Orthonormal axes in `d` dimensions with known standard deviations 3, 2, 1, 0.5.
    fn known(d: usize) -> Vec<(f64, Vec<f64>)> {
        let mut axes: Vec<Vec<f64>> = (0..4)
            .map(|a| {
                (0..d)
                    .map(|j| ((j * (a + 2) + a) as f64 * 0.37).sin())
                    .collect()
            })
            .collect();
        orthonormalise(&mut axes);
        [3.0, 2.0, 1.0, 0.5]
            .into_iter()
            .zip(axes.into_iter().map(unit))
            .collect()
    }

    fn check(d: usize) {
        let axes = known(d);
        let mean: Vec<f64> = (0..d).map(|j| j as f64 * 0.1 - 1.0).collect();
        let x = mixed(20_000, &axes, &mean, 9);
        let p = pca(&x, 20_000, d, 3);
        assert_eq!(p.components.len(), 3);
        for (i, (sd, u)) in axes.iter().take(3).enumerate() {
            let cos: f64 = p.components[i].iter().zip(u).map(|(a, b)| a * b).sum();
            assert!(cos.abs() > 0.999, "d {d}, axis {i}: |cos| {cos}");
            let rel = (p.variance[i] - sd * sd).abs() / (sd * sd);
            assert!(
                rel < 0.05,
                "d {d}, axis {i}: variance {} vs {}",
                p.variance[i],
                sd * sd
            );
        }
        let total = 9.0 + 4.0 + 1.0 + 0.25;
        assert!(
            (p.total_variance - total).abs() / total < 0.05,
            "{}",
            p.total_variance
        );
        let e = p.explained();
        assert!((e[0] - 9.0 / total).abs() < 0.02, "{e:?}");
        assert!((p.mean[d - 1] - mean[d - 1]).abs() < 0.05);
        // The sign convention: each axis's largest entry is positive.
        for c in &p.components {
            let big = c.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs()));
            assert!(big.unwrap_or(0.0) > 0.0);
        }
    }

    #[test]
    fn pca_recovers_a_known_decomposition_exactly_and_randomised() {
        check(12); // covariance + Jacobi
        check(300); // randomised subspace iteration
    }

    #[test]
    fn jacobi_finds_eigenvalues() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        let (mut e, _) = sym_eigen(vec![2.0, 1.0, 1.0, 2.0], 2);
        e.sort_by(f64::total_cmp);
        assert!(
            (e[0] - 1.0).abs() < 1e-9 && (e[1] - 3.0).abs() < 1e-9,
            "{e:?}"
        );
    }

    #[test]
    fn pca_of_tiny_or_flat_data_does_not_fail() {
        let p = pca(&[1.0, 2.0], 1, 2, 2);
        assert!(p.variance.iter().all(|v| v.is_finite()));
        let flat = vec![0.5f32; 300 * 200];
        let p = pca(&flat, 300, 200, 4);
        assert!(p.variance.iter().all(|v| *v == 0.0), "{:?}", p.variance);
        assert_eq!(pca(&[], 0, 3, 2).components.len(), 0);
    }
}
