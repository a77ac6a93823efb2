//! The MLP GAN step over plain buffers: the same non-saturating losses and update order as
//! `model::gan_objective`'s step (D on real and detached fake, then G through the updated D).

use super::{
    adam_record_bytes, backward_chain, disc_loss_and_grad, fill_normal, forward_chain, gan_terms,
    gen_loss_and_grad, Act, AdamHyper, Dense,
};
use crate::data::SplitMix64;
use crate::error::TrainError;

/// An MLP generator and discriminator with their Adam states.
#[derive(Clone)]
pub struct FusedGan {
    pub(crate) g_hidden: Vec<Dense>,
    pub(crate) g_out: Dense,
    pub(crate) d_hidden: Vec<Dense>,
    pub(crate) d_out: Dense,
    /// The hidden layers' activation (the family's, read from its description).
    pub(crate) leaky: Act,
    pub(crate) rng: SplitMix64,
    pub(crate) work: Work,
}

#[derive(Default)]
pub(crate) struct Work {
    z: Vec<f32>,
    g_acts: Vec<Vec<f32>>,
    fake: Vec<f32>,
    both: Vec<f32>,
    d_acts: Vec<Vec<f32>>,
    logits: Vec<f32>,
    d1: Vec<f32>,
    d2: Vec<f32>,
}

impl Clone for Work {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl FusedGan {
    /// Adam states of (generator, discriminator) as burn optimiser-record bytes.
    pub fn optim_bytes(&self) -> Result<(Vec<u8>, Vec<u8>), TrainError> {
        Ok((
            adam_record_bytes(self.g_hidden.iter().chain([&self.g_out]))?,
            adam_record_bytes(self.d_hidden.iter().chain([&self.d_out]))?,
        ))
    }

    /// Restart the latent stream (after a rollback, so that the same steps are not replayed).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = SplitMix64::new(seed);
    }

    /// One step on `real` (`rows` images in [-1, 1]) with fresh latents; returns
    /// `[d_loss, g_loss, D(x), D(G(z))]`.
    pub fn step(&mut self, real: &[f32], rows: usize, lr: f32, h: AdamHyper) -> [f32; 4] {
        let latent = self.g_hidden.first().map_or(self.g_out.inp, |l| l.inp);
        let mut z = std::mem::take(&mut self.work.z);
        fill_normal(&mut self.rng, &mut z, rows * latent);
        let terms = self.step_with_latents(real, rows, &z, lr, h);
        self.work.z = z;
        terms
    }

    /// [`FusedGan::step`] with given latents `z` (`rows × latent`).
    pub fn step_with_latents(
        &mut self,
        real: &[f32],
        rows: usize,
        z: &[f32],
        lr: f32,
        h: AdamHyper,
    ) -> [f32; 4] {
        let pixels = self.g_out.out;
        assert_eq!(real.len(), rows * pixels, "batch size");
        let leaky = self.leaky;
        let w = &mut self.work;

        // G(z).
        forward_chain(&self.g_hidden, z, rows, &mut w.g_acts, leaky);
        let g_in: &[f32] = w.g_acts.last().map_or(z, |v| v);
        self.g_out.forward(g_in, rows, &mut w.fake, Act::Tanh);

        // D on [real; fake] as one batch of 2·rows; loss gradient per half.
        w.both.clear();
        w.both.extend_from_slice(real);
        w.both.extend_from_slice(&w.fake);
        let n2 = 2 * rows;
        forward_chain(&self.d_hidden, &w.both, n2, &mut w.d_acts, leaky);
        let d_in: &[f32] = w.d_acts.last().map_or(&w.both, |v| v);
        self.d_out.forward(d_in, n2, &mut w.logits, Act::Identity);
        let d_sums = disc_loss_and_grad(&mut w.logits, rows);
        w.d1.clear();
        self.d_out
            .backward(d_in, n2, &w.logits, Some(false), Some((&mut w.d1, false)));
        backward_chain(
            &mut self.d_hidden,
            &w.both,
            n2,
            &w.d_acts,
            leaky,
            &mut w.d1,
            &mut w.d2,
            true,
            false,
        );
        for l in self.d_hidden.iter_mut().chain([&mut self.d_out]) {
            l.adam(lr, h);
        }

        // G through the updated D: gradients reach the fake images only.
        forward_chain(&self.d_hidden, &w.fake, rows, &mut w.d_acts, leaky);
        let d_in: &[f32] = w.d_acts.last().map_or(&w.fake, |v| v);
        self.d_out.forward(d_in, rows, &mut w.logits, Act::Identity);
        let g_loss = gen_loss_and_grad(&mut w.logits);
        self.d_out
            .backward(d_in, rows, &w.logits, None, Some((&mut w.d1, false)));
        backward_chain(
            &mut self.d_hidden,
            &w.fake,
            rows,
            &w.d_acts,
            leaky,
            &mut w.d1,
            &mut w.d2,
            false,
            true,
        );
        // d fake → G, through tanh.
        Act::Tanh.backward(&w.fake, &mut w.d1);
        self.g_out
            .backward(g_in, rows, &w.d1, Some(false), Some((&mut w.d2, false)));
        std::mem::swap(&mut w.d1, &mut w.d2);
        backward_chain(
            &mut self.g_hidden,
            z,
            rows,
            &w.g_acts,
            leaky,
            &mut w.d1,
            &mut w.d2,
            true,
            false,
        );
        for l in self.g_hidden.iter_mut().chain([&mut self.g_out]) {
            l.adam(lr, h);
        }

        gan_terms(&d_sums, g_loss, rows)
    }
}
