//! The MLP GAN family: z 100 → 128-256-512 → image (tanh); D 512-256-128 → 1 logit,
//! LeakyReLU 0.2; presets `gan` and `seed-gan`.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::tanh;

use super::checks::{latent_ok, widths_ok};
use super::family::{parse_config, ArchConfig, Family, Nets, Objective, Preset};
use super::gan_objective::{DiscModule, FusedGanNet, GanArch, GanNets, GenModule, GAN_OBJECTIVE};
use super::{linear_chain, mlp_stack, ImageShape, ModelError, ModelOverrides};
use crate::cpu::{Act, AdamHyper, AdamState, Dense, FusedGan, PlainMlp, PlainOut};
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
                about: "MLP GAN (z 100 → 128-256-512 → image; D 512-256-128 → 1)",
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
        }
    }

    fn describe(&self) -> String {
        format!(
            "z {} → {:?} → {}; D {:?}",
            self.latent, self.g_hidden, self.output, self.d_hidden
        )
    }

    fn networks(&self, device: &Device) -> Box<dyn Nets> {
        Box::new(GanNets::new(
            self.clone(),
            self.init_generator(device),
            self.init_discriminator(device),
        ))
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
