//! A plain-Rust MLP decoder for the slider path: a few latents at a time without the tensor
//! backend.

use super::Act;
use crate::error::TrainError;

/// The output of a [`PlainMlp`], mapped to pixels in [0, 1].
#[derive(Clone, Copy, Debug)]
pub enum PlainOut {
    /// Logits → Bernoulli mean.
    Sigmoid,
    /// tanh, mapped from [-1, 1] to [0, 1].
    TanhUnit,
}

impl PlainOut {
    fn apply(self, v: &mut [f32]) {
        match self {
            PlainOut::Sigmoid => v.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
            PlainOut::TanhUnit => v.iter_mut().for_each(|x| *x = (x.tanh() + 1.0) * 0.5),
        }
    }
}

/// An MLP decoder as plain `f32` arrays. One latent through burn's CPU backend costs ~0.5 ms of
/// dispatch and thread hand-offs for ~0.3 M multiply-adds; straight loops take a few
/// microseconds and never wait for a busy thread pool (the slider path).
#[derive(Debug)]
pub struct PlainMlp {
    /// `(in, out, weight [in × out] row-major as burn stores it, bias [out])`.
    layers: Vec<(usize, usize, Vec<f32>, Vec<f32>)>,
    hidden: Act,
    output: PlainOut,
}

impl PlainMlp {
    /// From burn's linear layers in order (`hidden` after each but the last, `output` after
    /// the last).
    pub fn from_layers(
        layers: &[&burn::nn::Linear],
        hidden: Act,
        output: PlainOut,
    ) -> Result<Self, TrainError> {
        let mut out = Vec::with_capacity(layers.len());
        for l in layers {
            let [i, o] = l.weight.val().dims();
            let w = super::read_f32(l.weight.val())?;
            let b = match &l.bias {
                Some(b) => super::read_f32(b.val())?,
                None => vec![0.0; o],
            };
            out.push((i, o, w, b));
        }
        Ok(Self {
            layers: out,
            hidden,
            output,
        })
    }

    /// Decode `latents` (`n × in`) into `out` (`n × pixels`).
    pub fn decode(&self, latents: &[f32], n: usize, out: &mut Vec<f32>) {
        let d = latents.len() / n;
        let mut h: Vec<f32> = Vec::new();
        let mut y: Vec<f32> = Vec::new();
        for r in 0..n {
            h.clear();
            h.extend_from_slice(&latents[r * d..(r + 1) * d]);
            let last = self.layers.len() - 1;
            for (k, (inp, o, w, b)) in self.layers.iter().enumerate() {
                y.clear();
                y.extend_from_slice(b);
                // y += Σ_i h[i] · W[i, :]: contiguous rows, vectorised; ReLU zeros skipped.
                for (i, &hi) in h.iter().enumerate().take(*inp) {
                    if hi != 0.0 {
                        let row = &w[i * o..(i + 1) * o];
                        for (yj, wj) in y.iter_mut().zip(row) {
                            *yj += hi * wj;
                        }
                    }
                }
                if k == last {
                    self.output.apply(&mut y);
                } else {
                    self.hidden.apply_in_place(&mut y, 0.0);
                }
                std::mem::swap(&mut h, &mut y);
            }
            out.extend_from_slice(&h);
        }
    }
}
