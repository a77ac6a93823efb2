//! Element-wise math written so that the compiler vectorises it: branch-free polynomial
//! `exp` and `log1p` (no libm calls), and loops over fixed chunks of [`LANES`] values.

/// Values processed together by the chunked loops (two SSE or one AVX register).
pub const LANES: usize = 8;

/// `e^x` for `x ≤ 0` (and moderate `x > 0`), Cephes' `expf`: relative error ≈ 1e-7 on
/// `[-87, 88]`; inputs below −87 return a tiny positive number, not zero.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r2 + r + 1.0;
    // 2^n through the exponent bits.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    y * scale
}

/// `ln(1 + t)` for `t ∈ [0, 1]`: `2·atanh(t / (2 + t))` by its odd series, relative error
/// below 2e-7 on the whole range and exact to first order for tiny `t`.
#[inline(always)]
pub fn log1p_unit(t: f32) -> f32 {
    let s = t / (2.0 + t); // ∈ [0, 1/3]
    let s2 = s * s;
    let p = ((((((s2 / 15.0 + 1.0 / 13.0) * s2 + 1.0 / 11.0) * s2 + 1.0 / 9.0) * s2 + 1.0 / 7.0)
        * s2
        + 1.0 / 5.0)
        * s2
        + 1.0 / 3.0)
        * s2
        + 1.0;
    2.0 * s * p
}

/// `σ(l)` and `ln(1 + e^{−|l|})` from one `exp`. With the second, both softplus terms are
/// exact: `softplus(l) = max(l, 0) + it` and `softplus(−l) = −log σ(l) = max(−l, 0) + it`
/// (no cancellation for large `|l|`).
#[inline(always)]
pub fn sigmoid_log1p(l: f32) -> (f32, f32) {
    let t = exp(-l.abs());
    let q = 1.0 / (1.0 + t);
    let sig = if l >= 0.0 { q } else { t * q };
    (sig, log1p_unit(t))
}

/// `tanh(x)`: an odd polynomial for `|x| < 0.625` (Cephes' `tanhf`), `(1 − t)/(1 + t)` with
/// `t = e^{−2|x|}` beyond; relative error below 1e-6 everywhere; NaN stays NaN.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328e-1)
            * z
            * x
            + x;
    let t = exp(-2.0 * a);
    let large = ((1.0 - t) / (1.0 + t)).copysign(x);
    if a < 0.625 {
        small
    } else {
        large
    }
}

/// `Σ f(a[i], b[i])` in f64, over [`LANES`] independent partial sums so that it vectorises
/// (a single running sum is one long chain of dependent additions).
#[inline(always)]
pub fn sum_zip(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..LANES {
            acc[k] += f(x[k], y[k]) as f64;
        }
    }
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y) as f64)
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// `Σ f(a[i])` in f64 (see [`sum_zip`]).
#[inline(always)]
pub fn sum_map(a: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    sum_zip(a, a, |x, _| f(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f32, b: f64) -> f64 {
        ((a as f64 - b) / b.abs().max(1e-30)).abs()
    }

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            worst = worst.max(rel(exp(x), (x as f64).exp()));
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
    }

    #[test]
    fn log1p_and_sigmoid_match_libm() {
        let mut worst = 0.0f64;
        for i in 0..=100_000 {
            let t = i as f32 / 100_000.0;
            if t > 0.0 {
                worst = worst.max(rel(log1p_unit(t), (t as f64).ln_1p()));
            }
        }
        assert!(worst < 3e-7, "log1p worst relative error {worst}");
        assert!(rel(log1p_unit(1e-9), 1e-9) < 1e-6);
        for &l in &[
            -90.0f32, -20.0, -16.0, -3.0, -0.5, 0.0, 0.25, 2.0, 10.0, 16.0, 90.0,
        ] {
            let (s, lg) = sigmoid_log1p(l);
            let l64 = l as f64;
            let s_ref = 1.0 / (1.0 + (-l64).exp());
            assert!(
                (s as f64 - s_ref).abs() < 1e-6,
                "σ({l}) = {s}, want {s_ref}"
            );
            // Both softplus terms, relatively accurate even where one is tiny.
            for sign in [1.0f64, -1.0] {
                let v = (sign * l64).max(0.0) as f32 + lg;
                let want = (sign * l64).max(0.0) + (-l64.abs()).exp().ln_1p();
                assert!(
                    rel(v, want) < 1e-6,
                    "softplus({}) = {v}, want {want}",
                    sign * l64
                );
            }
        }
        assert!(sigmoid_log1p(f32::NAN).0.is_nan() && sigmoid_log1p(f32::NAN).1.is_nan());
    }

    #[test]
    fn tanh_matches_libm() {
        let mut x = -12.0f32;
        while x < 12.0 {
            let want = (x as f64).tanh();
            assert!(
                rel(tanh(x), want) < 1e-6,
                "tanh({x}) = {}, want {want}",
                tanh(x)
            );
            x += 0.0071;
        }
        for x in [1e-4f32, -3e-5, 1e-8, 0.6249, 0.6251] {
            assert!(rel(tanh(x), (x as f64).tanh()) < 1e-6, "tanh({x})");
        }
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(-0.0), 0.0);
        assert!(tanh(f32::NAN).is_nan());
    }
}
