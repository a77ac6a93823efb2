//! The SN-GAN family (Miyato et al. 2018), preset `sngan`: the hinge loss with a spectrally
//! normalised critic. WGAN-GP's gradient penalty needs gradients of gradients, which burn
//! 0.22's autodiff does not have (tracel-ai/burn#1942); spectral normalisation bounds the
//! critic's Lipschitz constant without them, and the hinge loss's critic gap
//! `E[D(x)] − E[D(G(z))]` is plotted as the critic's estimate.
//!
//! G: the DCGAN generator (`dcgan.rs`). D: one spectrally normalised stride-2 4×4 conv per
//! halving of the side (widths w, 2w, 4w, …) with LeakyReLU(0.1) and no batch norm, then a
//! spectrally normalised dense layer to one score. Trains through burn's autodiff on every
//! device (no fast CPU path).

use burn::prelude::*;

use super::checks::{conv_config_ok, conv_describe, conv_shape, conv_stages};
use super::dcgan::{DcGenerator, DcganConfig};
use super::family::{parse_config_with, ArchConfig, Family, Nets, Objective, Preset};
use super::gan_objective::{DiscModule, GanArch, GanLoss, GanNets};
use super::spectral::{SnConv2d, SnLinear};
use super::{ImageShape, ModelError, ModelOverrides};
use crate::cpu::Act;
use crate::run::TrainDefaults;

/// The SN-GAN family.
pub struct SnganFamily;

impl Family for SnganFamily {
    fn id(&self) -> &'static str {
        "sngan"
    }

    fn presets(&self) -> &'static [Preset] {
        &[Preset {
            name: "sngan",
            about: "hinge-loss GAN with a spectrally normalised critic (Miyato et al.)",
        }]
    }

    fn objective(&self) -> &'static Objective {
        GanLoss::Hinge.objective()
    }

    fn train_defaults(&self) -> TrainDefaults {
        // Miyato et al.'s setting C (α 2e-4, β1 0.5, β2 0.999, one critic step per G step).
        TrainDefaults {
            learning_rate: 2e-4,
            adam_beta1: 0.5,
            batch_size: 64,
        }
    }

    fn config(
        &self,
        _preset: &str,
        shape: ImageShape,
        o: &ModelOverrides,
    ) -> Result<Box<dyn ArchConfig>, ModelError> {
        conv_shape(shape, "sngan")?;
        let mut cfg =
            SnganConfig::new(shape.channels, shape.height).with_stages(conv_stages(shape.height));
        if let Some(l) = o.latent_dim {
            cfg = cfg.with_latent(l);
        }
        if let Some(h) = &o.hidden {
            cfg = cfg.with_width(h[0]);
        }
        Ok(Box::new(cfg))
    }

    fn parse(&self, value: serde_json::Value) -> Result<Box<dyn ArchConfig>, String> {
        // Files from before the stages scaled with the side have two.
        parse_config_with::<SnganConfig>(value, &[("stages", serde_json::json!(2))])
    }
}

#[derive(Config, Debug)]
pub struct SnganConfig {
    pub channels: usize,
    /// Image side; divisible by 4.
    pub size: usize,
    #[config(default = 100)]
    pub latent: usize,
    /// Base channel count of G and D.
    #[config(default = 32)]
    pub width: usize,
    /// Stride-2 stages of G and D.
    #[config(default = 2)]
    pub stages: usize,
}

/// D's activation.
const LEAKY: Act = Act::LeakyRelu(0.1);

#[derive(Module, Debug)]
pub struct SnDiscriminator {
    convs: Vec<SnConv2d>,
    out: SnLinear,
    channels: usize,
    size: usize,
}

impl SnganConfig {
    fn generator_config(&self) -> DcganConfig {
        DcganConfig::new(self.channels, self.size)
            .with_latent(self.latent)
            .with_width(self.width)
            .with_stages(self.stages)
    }

    pub fn init_discriminator(&self, device: &Device) -> SnDiscriminator {
        let stages = self.stages;
        let mut convs = Vec::new();
        let mut c_in = self.channels;
        for i in 0..stages {
            let c_out = self.width << i;
            convs.push(SnConv2d::new(c_in, c_out, (4, 2, 1), device));
            c_in = c_out;
        }
        let side = self.size >> stages;
        SnDiscriminator {
            convs,
            out: SnLinear::new(c_in * side * side, 1, device),
            channels: self.channels,
            size: self.size,
        }
    }
}

impl DiscModule for SnDiscriminator {
    /// `[batch, c·s·s]` → scores `[batch, 1]`.
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [b, _] = x.dims();
        let mut h = x.reshape([b, self.channels, self.size, self.size]);
        for conv in &self.convs {
            h = LEAKY.tensor(conv.forward(h));
        }
        self.out.forward(h.flatten(1, 3))
    }

    fn refresh(self) -> Self {
        Self {
            convs: self.convs.into_iter().map(SnConv2d::refresh).collect(),
            out: self.out.refresh(),
            ..self
        }
    }
}

impl ArchConfig for SnganConfig {
    fn family(&self) -> &'static dyn Family {
        &SnganFamily
    }

    fn latent_dim(&self) -> usize {
        self.latent
    }

    fn validate(&self, s: ImageShape) -> Result<bool, ModelError> {
        let dims = (self.channels, self.size, self.stages);
        conv_config_ok(s, "sngan", dims, self.latent, self.width)
    }

    fn overrides(&self) -> ModelOverrides {
        ModelOverrides {
            latent_dim: Some(self.latent),
            hidden: Some(vec![self.width]),
            ..Default::default()
        }
    }

    fn describe(&self) -> String {
        let conv = conv_describe(self.width, self.stages);
        format!("{conv}, SN critic, z {}", self.latent)
    }

    fn networks(&self, device: &Device) -> Box<dyn Nets> {
        GanNets::init(self, device)
    }
}

impl GanArch for SnganConfig {
    type Gen = DcGenerator;
    type Disc = SnDiscriminator;

    fn init_gen(&self, device: &Device) -> DcGenerator {
        self.generator_config().init_generator(device)
    }

    fn init_disc(&self, device: &Device) -> SnDiscriminator {
        self.init_discriminator(device)
    }

    fn loss(&self) -> GanLoss {
        GanLoss::Hinge
    }
}
