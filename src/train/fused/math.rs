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

/// `(σ(l), softplus(l))` from one `exp`: `softplus(l) = max(l, 0) + ln(1 + e^{-|l|})`.
#[inline(always)]
pub fn sigmoid_softplus(l: f32) -> (f32, f32) {
    let t = exp(-l.abs());
    let q = 1.0 / (1.0 + t);
    let sig = if l >= 0.0 { q } else { t * q };
    (sig, l.max(0.0) + log1p_unit(t))
}

/// `tanh(x)` from one `exp`, odd-symmetric, exact to float precision away from 0 and
/// `x` itself near 0.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let t = exp(-2.0 * x.abs());
    let y = (1.0 - t) / (1.0 + t);
    let y = if x.abs() < 1e-4 { x.abs() } else { y };
    y.copysign(x)
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
    fn log1p_and_sigmoid_softplus_match_libm() {
        let mut worst = 0.0f64;
        for i in 0..=100_000 {
            let t = i as f32 / 100_000.0;
            if t > 0.0 {
                worst = worst.max(rel(log1p_unit(t), (t as f64).ln_1p()));
            }
        }
        assert!(worst < 3e-7, "log1p worst relative error {worst}");
        assert!(rel(log1p_unit(1e-9), 1e-9) < 1e-6);
        for &l in &[-90.0f32, -20.0, -3.0, -0.5, 0.0, 0.25, 2.0, 17.0, 90.0] {
            let (s, sp) = sigmoid_softplus(l);
            let l64 = l as f64;
            let s_ref = 1.0 / (1.0 + (-l64).exp());
            let sp_ref = l64.max(0.0) + (-l64.abs()).exp().ln_1p();
            assert!(
                (s as f64 - s_ref).abs() < 1e-6,
                "σ({l}) = {s}, want {s_ref}"
            );
            assert!(
                rel(sp, sp_ref) < 1e-6 || (sp as f64 - sp_ref).abs() < 1e-30,
                "softplus({l})"
            );
        }
    }

    #[test]
    fn tanh_matches_libm() {
        let mut x = -12.0f32;
        while x < 12.0 {
            let want = (x as f64).tanh();
            assert!(
                (tanh(x) as f64 - want).abs() < 3e-7,
                "tanh({x}) = {}, want {want}",
                tanh(x)
            );
            x += 0.0071;
        }
        assert_eq!(tanh(0.0), 0.0);
    }
}
