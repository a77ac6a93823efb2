//! The MLP GAN family: z 100 → 128-256-512 → image (tanh); D 512-256-128 → 1 logit,
//! LeakyReLU 0.2; presets `gan` and `seed-gan`.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::tanh;

use super::checks::{latent_ok, widths_ok};
use super::family::{parse_config, ArchConfig, Family, Nets, Objective, Preset};
use super::gan_objective::{DiscModule, FusedGanNet, GanArch, GanNets, GenModule, GAN_OBJECTIVE};
use super::{linear_chain, mlp_stack, ImageShape, ModelError, ModelOverrides};
use crate::cpu::{
    adam_record_bytes, backward_chain, disc_loss_and_grad, fill_normal, forward_chain, gan_terms,
    gen_loss_and_grad, Act, AdamHyper, AdamState, Dense, PlainMlp, PlainOut,
};
use crate::data::SplitMix64;
use crate::error::TrainError;
use crate::run::TrainDefaults;

/// The hidden layers' activation (G and D), in the burn modules and on the fast CPU path.
const LEAKY: Act = Act::LeakyRelu(0.2);

/// The MLP GAN family.
pub struct MlpGanFamily;

impl Family for MlpGanFamily {
    fn id(&self) -> &'static str {
        "gan"
    }

    fn presets(&self) -> &'static [Preset] {
        &[
            Preset {
                name: "gan",
                about: "MLP GAN (z 100 -> 128-256-512 -> image; D 512-256-128 -> 1)",
            },
            Preset {
                name: "seed-gan",
                about: "the source article's GAN (the MLP GAN, with correct objectives)",
            },
        ]
    }

    fn objective(&self) -> &'static Objective {
        &GAN_OBJECTIVE
    }

    fn train_defaults(&self) -> TrainDefaults {
        TrainDefaults {
            learning_rate: 2e-4,
            adam_beta1: 0.5,
            batch_size: 128,
        }
    }

    fn config(
        &self,
        _preset: &str,
        shape: ImageShape,
        o: &ModelOverrides,
    ) -> Result<Box<dyn ArchConfig>, ModelError> {
        let mut cfg = MlpGanConfig::new(shape.numel());
        if let Some(l) = o.latent_dim {
            cfg = cfg.with_latent(l);
        }
        if let Some(h) = &o.hidden {
            // Generator widths as given; discriminator mirrors them.
            let mut d = h.clone();
            d.reverse();
            cfg = cfg.with_g_hidden(h.clone()).with_d_hidden(d);
        }
        Ok(Box::new(cfg))
    }

    fn parse(&self, value: serde_json::Value) -> Result<Box<dyn ArchConfig>, String> {
        parse_config::<MlpGanConfig>(value)
    }
}

#[derive(Config, Debug)]
pub struct MlpGanConfig {
    /// Pixels per image.
    pub output: usize,
    #[config(default = 100)]
    pub latent: usize,
    #[config(default = "vec![128, 256, 512]")]
    pub g_hidden: Vec<usize>,
    #[config(default = "vec![512, 256, 128]")]
    pub d_hidden: Vec<usize>,
}

#[derive(Module, Debug)]
pub struct MlpGenerator {
    hidden: Vec<Linear>,
    out: Linear,
}

#[derive(Module, Debug)]
pub struct MlpDiscriminator {
    hidden: Vec<Linear>,
    out: Linear,
}

impl MlpGanConfig {
    pub fn init_generator(&self, device: &Device) -> MlpGenerator {
        let mut widths = vec![self.latent];
        widths.extend(&self.g_hidden);
        let last = *widths.last().unwrap_or(&self.latent);
        MlpGenerator {
            hidden: linear_chain(&widths, device),
            out: LinearConfig::new(last, self.output).init(device),
        }
    }

    pub fn init_discriminator(&self, device: &Device) -> MlpDiscriminator {
        let mut widths = vec![self.output];
        widths.extend(&self.d_hidden);
        let last = *widths.last().unwrap_or(&self.output);
        MlpDiscriminator {
            hidden: linear_chain(&widths, device),
            out: LinearConfig::new(last, 1).init(device),
        }
    }
}

impl MlpGenerator {
    /// The layers: (hidden layers, output layer).
    pub(crate) fn parts(&self) -> (&[Linear], &Linear) {
        (&self.hidden, &self.out)
    }

    /// The inverse of [`MlpGenerator::parts`].
    pub(crate) fn from_parts(hidden: Vec<Linear>, out: Linear) -> Self {
        Self { hidden, out }
    }
}

impl GenModule for MlpGenerator {
    /// `[batch, latent]` → `[batch, output]` in [-1, 1].
    fn forward(&self, z: Tensor<2>) -> Tensor<2> {
        tanh(
            self.out
                .forward(mlp_stack(&self.hidden, z, |t| LEAKY.tensor(t))),
        )
    }

    fn first_hidden(&self, z: Tensor<2>) -> Option<Tensor<2>> {
        Some(LEAKY.tensor(self.hidden.first()?.forward(z)))
    }
}

impl MlpDiscriminator {
    /// The layers: (hidden layers, output layer).
    pub(crate) fn parts(&self) -> (&[Linear], &Linear) {
        (&self.hidden, &self.out)
    }

    /// The inverse of [`MlpDiscriminator::parts`].
    pub(crate) fn from_parts(hidden: Vec<Linear>, out: Linear) -> Self {
        Self { hidden, out }
    }
}

impl DiscModule for MlpDiscriminator {
    /// `[batch, output]` → logits `[batch, 1]`.
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.out
            .forward(mlp_stack(&self.hidden, x, |t| LEAKY.tensor(t)))
    }
}

impl MlpGenerator {
    /// The layers in order (hidden layers, then the tanh output layer).
    pub(crate) fn layers(&self) -> Vec<&Linear> {
        self.hidden
            .iter()
            .chain(std::iter::once(&self.out))
            .collect()
    }
}

impl ArchConfig for MlpGanConfig {
    fn family(&self) -> &'static dyn Family {
        &MlpGanFamily
    }

    fn latent_dim(&self) -> usize {
        self.latent
    }

    fn validate(&self, s: ImageShape) -> Result<bool, ModelError> {
        Ok(self.output == s.numel()
            && widths_ok(&self.g_hidden)
            && widths_ok(&self.d_hidden)
            && latent_ok(self.latent))
    }

    fn overrides(&self) -> ModelOverrides {
        ModelOverrides {
            latent_dim: Some(self.latent),
            hidden: Some(self.g_hidden.clone()),
            ..Default::default()
        }
    }

    fn describe(&self) -> String {
        format!(
            "z {} -> {:?} -> {}; D {:?}",
            self.latent, self.g_hidden, self.output, self.d_hidden
        )
    }

    fn networks(&self, device: &Device) -> Box<dyn Nets> {
        GanNets::init(self, device)
    }
}

impl GanArch for MlpGanConfig {
    type Gen = MlpGenerator;
    type Disc = MlpDiscriminator;

    fn init_gen(&self, device: &Device) -> MlpGenerator {
        self.init_generator(device)
    }

    fn init_disc(&self, device: &Device) -> MlpDiscriminator {
        self.init_discriminator(device)
    }

    fn fused(
        &self,
        gen: &MlpGenerator,
        disc: &MlpDiscriminator,
        (opt_g, opt_d): (Vec<u8>, Vec<u8>),
        seed: u64,
    ) -> Option<Result<Box<dyn FusedGanNet<MlpGenerator, MlpDiscriminator>>, TrainError>> {
        let fast = FusedGan::new(gen, disc, opt_g, opt_d, seed);
        Some(fast.map(|f| Box::new(f) as Box<dyn FusedGanNet<_, _>>))
    }

    fn fast_decoder(&self, gen: &MlpGenerator) -> Option<PlainMlp> {
        PlainMlp::from_layers(&gen.layers(), LEAKY, PlainOut::TanhUnit).ok()
    }
}

// ---- the fast CPU path: the same layers as dense layers of `crate::cpu` ---------------------
//
// The step over plain buffers takes the same non-saturating losses and update order as
// `gan_objective`'s step (D on real and detached fake, then G through the updated D).

/// An MLP generator and discriminator with their Adam states.
#[derive(Clone)]
pub(crate) struct FusedGan {
    pub(crate) g_hidden: Vec<Dense>,
    pub(crate) g_out: Dense,
    pub(crate) d_hidden: Vec<Dense>,
    pub(crate) d_out: Dense,
    /// The hidden layers' activation (the family's, read from its description).
    pub(crate) leaky: Act,
    pub(crate) rng: SplitMix64,
    work: Work,
}

#[derive(Default)]
struct Work {
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

impl FusedGanNet<MlpGenerator, MlpDiscriminator> for FusedGan {
    fn step(&mut self, real: &[f32], rows: usize, lr: f32, h: AdamHyper) -> [f32; 4] {
        FusedGan::step(self, real, rows, lr, h)
    }
    fn reseed(&mut self, seed: u64) {
        FusedGan::reseed(self, seed)
    }
    fn modules(&self, device: &Device) -> (MlpGenerator, MlpDiscriminator) {
        (self.generator(device), self.discriminator(device))
    }
    fn optim_bytes(&self) -> Result<(Vec<u8>, Vec<u8>), TrainError> {
        FusedGan::optim_bytes(self)
    }
    fn clone_box(&self) -> Box<dyn FusedGanNet<MlpGenerator, MlpDiscriminator>> {
        Box::new(self.clone())
    }
    fn path(&self) -> &'static str {
        "fused MLP training"
    }
}

impl FusedGan {
    pub fn new(
        gen: &MlpGenerator,
        disc: &MlpDiscriminator,
        opt_g: Vec<u8>,
        opt_d: Vec<u8>,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let mut sg = AdamState::from_record_bytes(opt_g)?;
        let mut sd = AdamState::from_record_bytes(opt_d)?;
        let (gh, go) = gen.parts();
        let (dh, dout) = disc.parts();
        let hidden =
            |ls: &[burn::nn::Linear], state: &mut AdamState| -> Result<Vec<Dense>, TrainError> {
                ls.iter()
                    .enumerate()
                    .map(|(i, l)| Dense::from_linear(l, format!("hidden.{i}"), state))
                    .collect()
            };
        let gan = Self {
            g_hidden: hidden(gh, &mut sg)?,
            g_out: Dense::from_linear(go, "out".into(), &mut sg)?,
            d_hidden: hidden(dh, &mut sd)?,
            d_out: Dense::from_linear(dout, "out".into(), &mut sd)?,
            leaky: LEAKY,
            rng: SplitMix64::new(seed),
            work: Default::default(),
        };
        sg.finish()?;
        sd.finish()?;
        Ok(gan)
    }

    pub fn generator(&self, device: &Device) -> MlpGenerator {
        MlpGenerator::from_parts(
            self.g_hidden.iter().map(|l| l.to_linear(device)).collect(),
            self.g_out.to_linear(device),
        )
    }

    pub fn discriminator(&self, device: &Device) -> MlpDiscriminator {
        MlpDiscriminator::from_parts(
            self.d_hidden.iter().map(|l| l.to_linear(device)).collect(),
            self.d_out.to_linear(device),
        )
    }
}
