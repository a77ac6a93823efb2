//! Rolling samples for the status bar (frame times, decode latencies).

use std::collections::VecDeque;

#[derive(Clone, Debug)]
pub struct Rolling {
    values: VecDeque<f64>,
    cap: usize,
    /// Every sample ever recorded (for benchmark summaries).
    pub total: u64,
}

impl Rolling {
    pub fn new(cap: usize) -> Self {
        Self {
            values: VecDeque::with_capacity(cap),
            cap,
            total: 0,
        }
    }

    pub fn push(&mut self, v: f64) {
        if self.values.len() == self.cap {
            self.values.pop_front();
        }
        self.values.push_back(v);
        self.total += 1;
    }

    pub fn last(&self) -> Option<f64> {
        self.values.back().copied()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The `p`-th percentile (0–100) of the kept samples, nearest rank.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.values.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.values.iter().copied().collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        Some(v[rank.clamp(1, v.len()) - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank_over_the_window() {
        let mut r = Rolling::new(100);
        for i in 1..=200 {
            r.push(i as f64);
        }
        assert_eq!(r.len(), 100);
        assert_eq!(r.percentile(50.0), Some(150.0));
        assert_eq!(r.percentile(99.0), Some(199.0));
        assert_eq!(r.percentile(100.0), Some(200.0));
        assert_eq!(r.total, 200);
    }
}
