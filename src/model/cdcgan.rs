//! The class-conditional DCGAN family, preset `cdcgan`. The generator is the DCGAN generator
//! (`dcgan.rs`) with the one-hot label joined to z. The discriminator is a projection
//! discriminator (Miyato & Koyama 2018): the DCGAN discriminator's features `h` give
//! `D(x, y) = ψ(h) + ⟨embed(y), h⟩`. Projection rather than concatenating the label to D's
//! input as constant image planes: the planes would add `classes` input channels at full
//! resolution to every convolution and leave the first conv to learn label-dependent biases,
//! while the projection costs one inner product where the class evidence is (the top), and
//! is the conditioning that made conditional GANs train well (SN-GAN, BigGAN).
//! Non-saturating loss, DCGAN defaults; trains through burn's autodiff on every device (no
//! fast CPU path).

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;

use super::checks::{classes, classes_ok, conv_config_ok, conv_describe, conv_shape, conv_stages};
use super::dcgan::{DcDiscriminator, DcGenerator, DcganConfig, DcganFamily};
use super::family::{parse_config_with, ArchConfig, Family, Nets, Objective, Preset};
use super::gan_objective::{DiscModule, GanArch, GanNets, GenModule, GAN_OBJECTIVE};
use super::tensors::join_condition;
use super::{ImageShape, ModelError, ModelOverrides};
use crate::run::TrainDefaults;

/// The conditional DCGAN family.
pub struct CdcganFamily;

impl Family for CdcganFamily {
    fn id(&self) -> &'static str {
        "cdcgan"
    }

    fn presets(&self) -> &'static [Preset] {
        &[Preset {
            name: "cdcgan",
            about: "class-conditional DCGAN, projection discriminator",
        }]
    }

    fn objective(&self) -> &'static Objective {
        &GAN_OBJECTIVE
    }

    fn train_defaults(&self) -> TrainDefaults {
        DcganFamily.train_defaults()
    }

    fn config(
        &self,
        _preset: &str,
        shape: ImageShape,
        o: &ModelOverrides,
    ) -> Result<Box<dyn ArchConfig>, ModelError> {
        conv_shape(shape, "cdcgan")?;
        let mut cfg = CdcganConfig::new(shape.channels, shape.height, classes(o, "cdcgan")?)
            .with_stages(conv_stages(shape.height));
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
        parse_config_with::<CdcganConfig>(value, &[("stages", serde_json::json!(2))])
    }
}

#[derive(Config, Debug)]
pub struct CdcganConfig {
    pub channels: usize,
    /// Image side; divisible by 4.
    pub size: usize,
    /// Classes of the condition (labels `0..classes`).
    pub classes: usize,
    #[config(default = 100)]
    pub latent: usize,
    /// Base channel count (each further stage inward has twice as many).
    #[config(default = 32)]
    pub width: usize,
    /// Stride-2 stages (checkpoints from before the side scaled have none saved: 2).
    #[config(default = 2)]
    pub stages: usize,
}

/// The DCGAN generator on `[z, one-hot]`.
#[derive(Module, Debug)]
pub struct CondGenerator {
    net: DcGenerator,
    classes: usize,
}

/// The DCGAN discriminator's features, an unconditional head and the class projection.
#[derive(Module, Debug)]
pub struct ProjDiscriminator {
    net: DcDiscriminator,
    /// `embed(y)`: one row of feature weights per class (no bias).
    embed: Linear,
}

impl CdcganConfig {
    fn dcgan(&self, latent: usize) -> DcganConfig {
        DcganConfig::new(self.channels, self.size)
            .with_latent(latent)
            .with_width(self.width)
            .with_stages(self.stages)
    }
}

impl GenModule for CondGenerator {
    fn forward(&self, z: Tensor<2>) -> Tensor<2> {
        self.forward_with(z, None)
    }

    fn classes(&self) -> Option<usize> {
        Some(self.classes)
    }

    fn forward_with(&self, z: Tensor<2>, cond: Option<Tensor<2>>) -> Tensor<2> {
        self.net.forward(join_condition(z, cond, self.classes))
    }
}

impl DiscModule for ProjDiscriminator {
    /// Without a label: the unconditional part ψ(h) only.
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.net.out.forward(self.net.features(x))
    }

    fn forward_with(&self, x: Tensor<2>, cond: Option<Tensor<2>>) -> Tensor<2> {
        let h = self.net.features(x);
        let psi = self.net.out.forward(h.clone());
        match cond {
            Some(y) => psi + (self.embed.forward(y) * h).sum_dim(1),
            None => psi,
        }
    }
}

impl ArchConfig for CdcganConfig {
    fn family(&self) -> &'static dyn Family {
        &CdcganFamily
    }

    fn latent_dim(&self) -> usize {
        self.latent
    }

    fn validate(&self, s: ImageShape) -> Result<bool, ModelError> {
        let dims = (self.channels, self.size, self.stages);
        Ok(conv_config_ok(s, "cdcgan", dims, self.latent, self.width)? && classes_ok(self.classes))
    }

    fn overrides(&self) -> ModelOverrides {
        ModelOverrides {
            latent_dim: Some(self.latent),
            hidden: Some(vec![self.width]),
            classes: Some(self.classes),
        }
    }

    fn describe(&self) -> String {
        let conv = conv_describe(self.width, self.stages);
        format!("{conv}, z {} + {} classes", self.latent, self.classes)
    }

    fn networks(&self, device: &Device) -> Box<dyn Nets> {
        GanNets::init(self, device)
    }
}

impl GanArch for CdcganConfig {
    type Gen = CondGenerator;
    type Disc = ProjDiscriminator;

    fn init_gen(&self, device: &Device) -> CondGenerator {
        CondGenerator {
            net: self
                .dcgan(self.latent + self.classes)
                .init_generator(device),
            classes: self.classes,
        }
    }

    fn init_disc(&self, device: &Device) -> ProjDiscriminator {
        let net = self.dcgan(self.latent).init_discriminator(device);
        // At the scale of ψ's weights (fan-in = the feature width), not of a layer with
        // `classes` inputs: the projection sums over every feature, and at Kaiming scale
        // for 10 inputs it drowned ψ and let D win from the first steps.
        let f = net.feature_width();
        let bound = 1.0 / (f as f64).sqrt();
        let embed = LinearConfig::new(self.classes, f)
            .with_bias(false)
            .with_initializer(Initializer::Uniform {
                min: -bound,
                max: bound,
            })
            .init(device);
        ProjDiscriminator { net, embed }
    }
}
