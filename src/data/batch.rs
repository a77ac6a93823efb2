//! Deterministic randomness and resumable, seeded mini-batch plans.

/// SplitMix64: a tiny, fast, well-mixed deterministic PRNG (Steele, Lea & Flood 2014).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in [0, n) (unbiased, Lemire's method); returns 0 when `n == 0`.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as usize;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, s: &mut [T]) {
        for i in (1..s.len()).rev() {
            let j = self.below(i + 1);
            s.swap(i, j);
        }
    }
}

/// Seeded epoch shuffler + fixed-size batches.
///
/// The last partial batch of an epoch is dropped so tensor shapes stay fixed, unless the whole
/// set is smaller than one batch, in which case there is one smaller batch per epoch.
/// Each epoch's order depends only on `(seed, epoch)`, so training can resume anywhere.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    indices: Vec<usize>,
    batch_size: usize,
    seed: u64,
    cached_epoch: Option<usize>,
    perm: Vec<usize>,
}

impl BatchPlan {
    /// `batch_size` 0 is treated as 1.
    pub fn new(indices: Vec<usize>, batch_size: usize, seed: u64) -> Self {
        BatchPlan {
            indices,
            batch_size: batch_size.max(1),
            seed,
            cached_epoch: None,
            perm: Vec::new(),
        }
    }

    pub fn batches_per_epoch(&self) -> usize {
        let n = self.indices.len();
        if n == 0 {
            0
        } else if n < self.batch_size {
            1
        } else {
            n / self.batch_size
        }
    }

    /// Size of every batch (`min(batch_size, number of indices)`).
    pub fn batch_size(&self) -> usize {
        self.batch_size.min(self.indices.len())
    }

    /// The indices this plan draws from (in the given order).
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The full shuffled order of `epoch` (including any dropped remainder at the end).
    pub fn epoch_permutation(&self, epoch: usize) -> Vec<usize> {
        let mut perm = self.indices.clone();
        let mixed = self.seed.wrapping_add(
            (epoch as u64)
                .wrapping_add(1)
                .wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let mut rng = SplitMix64::new(SplitMix64::new(mixed).next_u64());
        rng.shuffle(&mut perm);
        perm
    }

    /// Indices of batch `b` of epoch `epoch`; empty if `b >= batches_per_epoch()`.
    pub fn batch(&mut self, epoch: usize, b: usize) -> Vec<usize> {
        if b >= self.batches_per_epoch() {
            return Vec::new();
        }
        if self.cached_epoch != Some(epoch) {
            self.perm = self.epoch_permutation(epoch);
            self.cached_epoch = Some(epoch);
        }
        let bs = self.batch_size();
        self.perm[b * bs..(b + 1) * bs].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // Reference outputs of SplitMix64 seeded with 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut r = SplitMix64::new(42);
        for _ in 0..10_000 {
            let f = r.next_f32();
            assert!((0.0..1.0).contains(&f));
            assert!(r.below(7) < 7);
        }
        assert_eq!(r.below(0), 0);
        let mut v: Vec<u32> = (0..100).collect();
        r.shuffle(&mut v);
        let mut s = v.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
    }

    #[test]
    fn batches_are_deterministic_permutations() {
        let idx: Vec<usize> = (100..203).collect(); // 103 items
        let mut plan = BatchPlan::new(idx.clone(), 10, 7);
        assert_eq!(plan.batches_per_epoch(), 10);
        let mut epochs = Vec::new();
        for epoch in 0..3 {
            let mut seen = Vec::new();
            for b in 0..plan.batches_per_epoch() {
                let batch = plan.batch(epoch, b);
                assert_eq!(batch.len(), 10);
                seen.extend(batch);
            }
            assert!(plan.batch(epoch, 10).is_empty());
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 100, "no repeats within an epoch");
            assert!(sorted.iter().all(|i| idx.contains(i)));
            epochs.push(seen);
        }
        assert_ne!(epochs[0], epochs[1]);
        assert_ne!(epochs[1], epochs[2]);
        // resume: a fresh plan asked out of order gives the same batches
        let mut fresh = BatchPlan::new(idx.clone(), 10, 7);
        assert_eq!(fresh.batch(2, 3), epochs[2][30..40].to_vec());
        assert_eq!(fresh.batch(0, 9), epochs[0][90..100].to_vec());
        assert_eq!(fresh.batch(2, 3), plan.batch(2, 3));
        // another seed differs
        let mut other = BatchPlan::new(idx, 10, 8);
        assert_ne!(other.batch(0, 0), epochs[0][..10].to_vec());
    }

    #[test]
    fn small_sets() {
        let mut plan = BatchPlan::new(vec![4, 5, 6], 64, 1);
        assert_eq!(plan.batches_per_epoch(), 1);
        let mut b = plan.batch(0, 0);
        b.sort_unstable();
        assert_eq!(b, vec![4, 5, 6]);
        let mut empty = BatchPlan::new(vec![], 8, 1);
        assert_eq!(empty.batches_per_epoch(), 0);
        assert!(empty.batch(0, 0).is_empty());
        let mut zero = BatchPlan::new(vec![1, 2], 0, 1);
        assert_eq!(zero.batches_per_epoch(), 2);
        assert_eq!(zero.batch(0, 0).len(), 1);
    }
}
