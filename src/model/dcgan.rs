//! The DCGAN family for small square images (Radford et al. 2016, scaled to 28×28 / 32×32);
//! preset `dcgan`.
//!
//! G: z → dense → (2w, s/4, s/4) BN ReLU → convT → (w, s/2, s/2) BN ReLU → convT → (c, s, s) tanh.
//! D: conv (w) LeakyReLU → conv (2w) BN LeakyReLU → dense → 1 logit.

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, tanh};

use super::checks::{conv_shape, latent_ok};
use super::conv_vae::{down_conv, up_conv};
use super::family::{parse_config, ArchConfig, Family, Nets, Objective, Preset};
use super::gan_objective::{DiscModule, FusedGanNet, GanArch, GanNets, GenModule, GAN_OBJECTIVE};
use super::{ImageShape, ModelError, ModelOverrides};
use crate::cpu::{Act, AdamHyper, AdamState, Bn, ConvLayer, Dense, FusedDcgan};
use crate::data::SplitMix64;
use crate::error::TrainError;
use crate::run::TrainDefaults;

/// The DCGAN family.
pub struct DcganFamily;

impl Family for DcganFamily {
    fn id(&self) -> &'static str {
        "dcgan"
    }

    fn presets(&self) -> &'static [Preset] {
        &[Preset {
            name: "dcgan",
            about: "convolutional GAN with batch norm",
        }]
    }

    fn objective(&self) -> &'static Objective {
        &GAN_OBJECTIVE
    }

    fn train_defaults(&self) -> TrainDefaults {
        TrainDefaults {
            learning_rate: 2e-4,
            adam_beta1: 0.5,
            // The DCGAN needs updates more than batch size: on the 9,000-image built-in split,
            // batch 64 gives 1,400 updates in 10 epochs (batch 128: 700, visibly blotchier
            // digits).
            batch_size: 64,
        }
    }

    fn config(
        &self,
        _preset: &str,
        shape: ImageShape,
        o: &ModelOverrides,
    ) -> Result<Box<dyn ArchConfig>, ModelError> {
        conv_shape(shape, "dcgan")?;
        let mut cfg = DcganConfig::new(shape.channels, shape.height);
        if let Some(l) = o.latent_dim {
            cfg = cfg.with_latent(l);
        }
        if let Some(h) = &o.hidden {
            cfg = cfg.with_width(h[0]);
        }
        Ok(Box::new(cfg))
    }

    fn parse(&self, value: serde_json::Value) -> Result<Box<dyn ArchConfig>, String> {
        parse_config::<DcganConfig>(value)
    }
}

#[derive(Config, Debug)]
pub struct DcganConfig {
    pub channels: usize,
    /// Image side; divisible by 4.
    pub size: usize,
    #[config(default = 100)]
    pub latent: usize,
    /// Base channel count (the inner layers have twice as many).
    #[config(default = 32)]
    pub width: usize,
}

#[derive(Module, Debug)]
pub struct DcGenerator {
    pub(crate) fc: Linear,
    pub(crate) bn0: BatchNorm,
    pub(crate) t1: ConvTranspose2d,
    pub(crate) bn1: BatchNorm,
    pub(crate) t2: ConvTranspose2d,
    pub(crate) width: usize,
    pub(crate) size: usize,
}

#[derive(Module, Debug)]
pub struct DcDiscriminator {
    pub(crate) c1: Conv2d,
    pub(crate) c2: Conv2d,
    pub(crate) bn2: BatchNorm,
    pub(crate) out: Linear,
    pub(crate) channels: usize,
    pub(crate) size: usize,
}

/// D's activation, in the burn module and on the fast CPU path.
const LEAKY: Act = Act::LeakyRelu(0.2);

impl DcganConfig {
    pub fn init_generator(&self, device: &Device) -> DcGenerator {
        let q = self.size / 4;
        DcGenerator {
            fc: LinearConfig::new(self.latent, 2 * self.width * q * q).init(device),
            bn0: BatchNormConfig::new(2 * self.width).init(device),
            t1: up_conv(2 * self.width, self.width, device),
            bn1: BatchNormConfig::new(self.width).init(device),
            t2: up_conv(self.width, self.channels, device),
            width: self.width,
            size: self.size,
        }
    }

    pub fn init_discriminator(&self, device: &Device) -> DcDiscriminator {
        let q = self.size / 4;
        DcDiscriminator {
            c1: down_conv(self.channels, self.width, device),
            c2: down_conv(self.width, 2 * self.width, device),
            bn2: BatchNormConfig::new(2 * self.width).init(device),
            out: LinearConfig::new(2 * self.width * q * q, 1).init(device),
            channels: self.channels,
            size: self.size,
        }
    }
}

impl GenModule for DcGenerator {
    /// `[batch, latent]` → `[batch, c·s·s]` in [-1, 1].
    fn forward(&self, z: Tensor<2>) -> Tensor<2> {
        let [b, _] = z.dims();
        let q = self.size / 4;
        let h = self.fc.forward(z).reshape([b, 2 * self.width, q, q]);
        let h = relu(self.bn0.forward(h));
        let h = relu(self.bn1.forward(self.t1.forward(h))); // [b, w, s/2, s/2]
        tanh(self.t2.forward(h)).flatten(1, 3) // [b, c·s·s]
    }
}

impl DiscModule for DcDiscriminator {
    /// `[batch, c·s·s]` → logits `[batch, 1]`.
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [b, _] = x.dims();
        let x = x.reshape([b, self.channels, self.size, self.size]);
        let h = LEAKY.tensor(self.c1.forward(x));
        let h = LEAKY.tensor(self.bn2.forward(self.c2.forward(h)));
        self.out.forward(h.flatten(1, 3))
    }
}

impl ArchConfig for DcganConfig {
    fn family(&self) -> &'static dyn Family {
        &DcganFamily
    }

    fn latent_dim(&self) -> usize {
        self.latent
    }

    fn validate(&self, s: ImageShape) -> Result<bool, ModelError> {
        conv_shape(s, "dcgan")?;
        Ok(self.channels == s.channels
            && self.size == s.height
            && latent_ok(self.latent)
            && (1..=1024).contains(&self.width))
    }

    fn overrides(&self) -> ModelOverrides {
        ModelOverrides {
            latent_dim: Some(self.latent),
            hidden: Some(vec![self.width]),
        }
    }

    fn describe(&self) -> String {
        format!("conv {}, z {}", self.width, self.latent)
    }

    fn networks(&self, device: &Device) -> Box<dyn Nets> {
        Box::new(GanNets::new(
            self.clone(),
            self.init_generator(device),
            self.init_discriminator(device),
        ))
    }
}

impl GanArch for DcganConfig {
    type Gen = DcGenerator;
    type Disc = DcDiscriminator;

    fn init_gen(&self, device: &Device) -> DcGenerator {
        self.init_generator(device)
    }

    fn init_disc(&self, device: &Device) -> DcDiscriminator {
        self.init_discriminator(device)
    }

    fn fused(
        &self,
        gen: &DcGenerator,
        disc: &DcDiscriminator,
        (opt_g, opt_d): (Vec<u8>, Vec<u8>),
        seed: u64,
    ) -> Option<Result<Box<dyn FusedGanNet<DcGenerator, DcDiscriminator>>, TrainError>> {
        let fast = DcganFast::new(gen, disc, opt_g, opt_d, seed);
        Some(fast.map(|f| Box::new(f) as Box<dyn FusedGanNet<_, _>>))
    }
}

/// The DCGAN on the fast CPU path, with burn's modules for the configuration the weights go
/// back into.
pub(crate) type DcganFast = FusedDcgan<(DcGenerator, DcDiscriminator)>;

impl FusedGanNet<DcGenerator, DcDiscriminator> for DcganFast {
    fn step(&mut self, real: &[f32], rows: usize, lr: f32, h: AdamHyper) -> [f32; 4] {
        FusedDcgan::step(self, real, rows, lr, h)
    }
    fn reseed(&mut self, seed: u64) {
        FusedDcgan::reseed(self, seed)
    }
    fn modules(&self, device: &Device) -> (DcGenerator, DcDiscriminator) {
        (self.generator(device), self.discriminator(device))
    }
    fn optim_bytes(&self) -> Result<(Vec<u8>, Vec<u8>), TrainError> {
        FusedDcgan::optim_bytes(self)
    }
    fn clone_box(&self) -> Box<dyn FusedGanNet<DcGenerator, DcDiscriminator>> {
        Box::new(self.clone())
    }
    fn path(&self) -> &'static str {
        "fused conv training"
    }
}

impl DcganFast {
    pub fn new(
        gen: &DcGenerator,
        disc: &DcDiscriminator,
        opt_g: Vec<u8>,
        opt_d: Vec<u8>,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let mut sg = AdamState::from_record_bytes(opt_g)?;
        let mut sd = AdamState::from_record_bytes(opt_d)?;
        // Geometry (kernels, strides, padding) comes from the burn layers themselves.
        let (channels, size) = (disc.channels, gen.size);
        let half = size / 2;
        let net = Self {
            fc: Dense::from_linear(&gen.fc, "fc".into(), &mut sg)?,
            bn0: Bn::from_burn(&gen.bn0, "bn0", &mut sg)?,
            t1: ConvLayer::from_conv_t(&gen.t1, "t1", half, &mut sg)?,
            bn1: Bn::from_burn(&gen.bn1, "bn1", &mut sg)?,
            t2: ConvLayer::from_conv_t(&gen.t2, "t2", size, &mut sg)?,
            c1: ConvLayer::from_conv(&disc.c1, "c1", size, &mut sd)?,
            c2: ConvLayer::from_conv(&disc.c2, "c2", half, &mut sd)?,
            bn2: Bn::from_burn(&disc.bn2, "bn2", &mut sd)?,
            out: Dense::from_linear(&disc.out, "out".into(), &mut sd)?,
            shells: (gen.clone(), disc.clone()),
            dims: (channels, size),
            leaky: LEAKY,
            rng: SplitMix64::new(seed),
            work: Default::default(),
        };
        sg.finish()?;
        sd.finish()?;
        Ok(net)
    }

    pub fn generator(&self, device: &Device) -> DcGenerator {
        let g = &self.shells.0;
        DcGenerator {
            fc: self.fc.to_linear(device),
            bn0: self.bn0.to_burn(&g.bn0, device),
            t1: self.t1.to_conv_t(&g.t1, device),
            bn1: self.bn1.to_burn(&g.bn1, device),
            t2: self.t2.to_conv_t(&g.t2, device),
            ..g.clone()
        }
    }

    pub fn discriminator(&self, device: &Device) -> DcDiscriminator {
        let d = &self.shells.1;
        DcDiscriminator {
            c1: self.c1.to_conv(&d.c1, device),
            c2: self.c2.to_conv(&d.c2, device),
            bn2: self.bn2.to_burn(&d.bn2, device),
            out: self.out.to_linear(device),
            ..d.clone()
        }
    }
}
