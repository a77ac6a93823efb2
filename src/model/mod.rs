//! Model families. One file per family, each with a burn `Config` that rebuilds it.
//!
//! All networks take and return flat images, `[batch, channels * height * width]`,
//! so the training loop, checkpoints and the UI never care about the layout.
//! VAEs work on pixels in `[0, 1]` and decode to Bernoulli logits; GANs work on
//! pixels in `[-1, 1]` (tanh output).

pub mod conv_vae;
pub mod dcgan;
pub mod gan;
pub mod vae;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use conv_vae::{ConvVae, ConvVaeConfig};
pub use dcgan::{DcDiscriminator, DcGenerator, DcganConfig};
pub use gan::{MlpDiscriminator, MlpGanConfig, MlpGenerator};
pub use vae::{MlpVae, MlpVaeConfig};

/// A model or configuration that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{model} needs square images of a size divisible by 4 between 8 and 128 with 1 or 3 channels, got {shape}")]
    UnsupportedShape {
        model: &'static str,
        shape: ImageShape,
    },
    #[error("invalid model setting: {0}")]
    Invalid(String),
}

/// The model presets of the CLI (`--model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// MLP VAE, 784-400-20 (Kingma & Welling).
    Vae,
    /// Small convolutional VAE.
    ConvVae,
    /// MLP GAN (z 100 → 128-256-512 → image; D 512-256-128 → 1).
    Gan,
    /// Convolutional GAN with batch norm.
    Dcgan,
    /// The source article's VAE: 784 → 128 → 64 → z 32 and mirror.
    SeedVae,
    /// The source article's GAN (the MLP GAN, with correct objectives).
    SeedGan,
}

impl ModelKind {
    pub const ALL: [ModelKind; 6] = [
        ModelKind::Vae,
        ModelKind::ConvVae,
        ModelKind::Gan,
        ModelKind::Dcgan,
        ModelKind::SeedVae,
        ModelKind::SeedGan,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Vae => "vae",
            ModelKind::ConvVae => "conv-vae",
            ModelKind::Gan => "gan",
            ModelKind::Dcgan => "dcgan",
            ModelKind::SeedVae => "seed-vae",
            ModelKind::SeedGan => "seed-gan",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    pub fn is_vae(self) -> bool {
        matches!(
            self,
            ModelKind::Vae | ModelKind::ConvVae | ModelKind::SeedVae
        )
    }

    /// Default learning rate and Adam β1 for this family.
    pub fn default_optim(self) -> (f64, f64) {
        if self.is_vae() {
            (1e-3, 0.9)
        } else {
            (2e-4, 0.5)
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Shape of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
        }
    }

    /// Number of values in one image (`channels * height * width`).
    pub fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }

    fn check_conv(&self, model: &'static str) -> Result<(), ModelError> {
        let ok = self.height == self.width
            && self.height % 4 == 0
            && (8..=128).contains(&self.height)
            && (self.channels == 1 || self.channels == 3);
        if ok {
            Ok(())
        } else {
            Err(ModelError::UnsupportedShape {
                model,
                shape: *self,
            })
        }
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

/// User overrides applied on top of a preset.
#[derive(Clone, Debug, Default)]
pub struct ModelOverrides {
    pub latent_dim: Option<usize>,
    /// Hidden widths (MLP families) or base channel count (conv families, first value).
    pub hidden: Option<Vec<usize>>,
}

/// Everything needed to rebuild a model: the preset it came from and the family config.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelSpec {
    pub kind: ModelKind,
    pub shape: ImageShape,
    pub arch: Architecture,
}

/// Family configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "kebab-case")]
pub enum Architecture {
    Vae(MlpVaeConfig),
    ConvVae(ConvVaeConfig),
    Gan(MlpGanConfig),
    Dcgan(DcganConfig),
}

impl ModelSpec {
    /// Build the spec of preset `kind` for images of `shape`, with `overrides`.
    pub fn new(
        kind: ModelKind,
        shape: ImageShape,
        overrides: &ModelOverrides,
    ) -> Result<Self, ModelError> {
        if shape.numel() == 0 {
            return Err(ModelError::Invalid("empty image shape".into()));
        }
        if let Some(0) = overrides.latent_dim {
            return Err(ModelError::Invalid(
                "latent dimension must be at least 1".into(),
            ));
        }
        if let Some(h) = &overrides.hidden {
            if h.is_empty() || h.contains(&0) {
                return Err(ModelError::Invalid(
                    "hidden widths must be a non-empty list of positive numbers".into(),
                ));
            }
        }
        let input = shape.numel();
        let latent = overrides.latent_dim;
        let hidden = overrides.hidden.clone();
        let arch = match kind {
            ModelKind::Vae | ModelKind::SeedVae => {
                let mut cfg = MlpVaeConfig::new(input);
                if kind == ModelKind::SeedVae {
                    cfg = cfg.with_hidden(vec![128, 64]).with_latent(32);
                }
                if let Some(l) = latent {
                    cfg = cfg.with_latent(l);
                }
                if let Some(h) = hidden {
                    cfg = cfg.with_hidden(h);
                }
                Architecture::Vae(cfg)
            }
            ModelKind::Gan | ModelKind::SeedGan => {
                let mut cfg = MlpGanConfig::new(input);
                if let Some(l) = latent {
                    cfg = cfg.with_latent(l);
                }
                if let Some(h) = hidden {
                    // Generator widths as given; discriminator mirrors them.
                    let mut d = h.clone();
                    d.reverse();
                    cfg = cfg.with_g_hidden(h).with_d_hidden(d);
                }
                Architecture::Gan(cfg)
            }
            ModelKind::ConvVae => {
                shape.check_conv("conv-vae")?;
                let mut cfg = ConvVaeConfig::new(shape.channels, shape.height);
                if let Some(l) = latent {
                    cfg = cfg.with_latent(l);
                }
                if let Some(h) = hidden {
                    cfg = cfg.with_width(h[0]);
                }
                Architecture::ConvVae(cfg)
            }
            ModelKind::Dcgan => {
                shape.check_conv("dcgan")?;
                let mut cfg = DcganConfig::new(shape.channels, shape.height);
                if let Some(l) = latent {
                    cfg = cfg.with_latent(l);
                }
                if let Some(h) = hidden {
                    cfg = cfg.with_width(h[0]);
                }
                Architecture::Dcgan(cfg)
            }
        };
        Ok(Self { kind, shape, arch })
    }

    /// Check a spec read from a file before anything is allocated from it.
    pub fn validate(&self) -> Result<(), ModelError> {
        const MAX_WIDTH: usize = 1 << 16;
        let bad = |m: String| Err(ModelError::Invalid(m));
        let s = self.shape;
        if s.numel() == 0 || s.numel() > 4096 * 4096 * 3 || !(s.channels == 1 || s.channels == 3) {
            return bad(format!("implausible image shape {s}"));
        }
        let widths_ok = |w: &[usize]| {
            !w.is_empty() && w.len() <= 16 && w.iter().all(|&x| (1..=MAX_WIDTH).contains(&x))
        };
        let latent_ok = |l: usize| (1..=4096).contains(&l);
        let ok = match &self.arch {
            Architecture::Vae(c) => {
                c.input == s.numel() && widths_ok(&c.hidden) && latent_ok(c.latent)
            }
            Architecture::Gan(c) => {
                c.output == s.numel()
                    && widths_ok(&c.g_hidden)
                    && widths_ok(&c.d_hidden)
                    && latent_ok(c.latent)
            }
            Architecture::ConvVae(c) => {
                s.check_conv("conv-vae")?;
                c.channels == s.channels
                    && c.size == s.height
                    && latent_ok(c.latent)
                    && (1..=1024).contains(&c.width)
                    && (1..=MAX_WIDTH).contains(&c.dense)
            }
            Architecture::Dcgan(c) => {
                s.check_conv("dcgan")?;
                c.channels == s.channels
                    && c.size == s.height
                    && latent_ok(c.latent)
                    && (1..=1024).contains(&c.width)
            }
        };
        if ok {
            Ok(())
        } else {
            bad(format!(
                "implausible {} configuration for {s} images",
                self.kind
            ))
        }
    }

    pub fn latent_dim(&self) -> usize {
        match &self.arch {
            Architecture::Vae(c) => c.latent,
            Architecture::ConvVae(c) => c.latent,
            Architecture::Gan(c) => c.latent,
            Architecture::Dcgan(c) => c.latent,
        }
    }

    pub fn is_vae(&self) -> bool {
        matches!(self.arch, Architecture::Vae(_) | Architecture::ConvVae(_))
    }

    /// One-line human description, e.g. `vae (784-400-20)`.
    pub fn describe(&self) -> String {
        let detail = match &self.arch {
            Architecture::Vae(c) => {
                let widths: Vec<String> = std::iter::once(c.input)
                    .chain(c.hidden.iter().copied())
                    .chain(std::iter::once(c.latent))
                    .map(|w| w.to_string())
                    .collect();
                widths.join("-")
            }
            Architecture::ConvVae(c) => format!("conv {}, z {}", c.width, c.latent),
            Architecture::Gan(c) => format!(
                "z {} → {:?} → {}; D {:?}",
                c.latent, c.g_hidden, c.output, c.d_hidden
            ),
            Architecture::Dcgan(c) => format!("conv {}, z {}", c.width, c.latent),
        };
        format!("{} ({detail})", self.kind)
    }

    /// Initialise fresh networks on `device`.
    pub fn init(&self, device: &Device) -> Networks {
        match &self.arch {
            Architecture::Vae(c) => Networks::Vae(VaeNet::Mlp(c.init(device))),
            Architecture::ConvVae(c) => Networks::Vae(VaeNet::Conv(c.init(device))),
            Architecture::Gan(c) => Networks::Gan {
                gen: GenNet::Mlp(c.init_generator(device)),
                disc: DiscNet::Mlp(c.init_discriminator(device)),
            },
            Architecture::Dcgan(c) => Networks::Gan {
                gen: GenNet::Conv(c.init_generator(device)),
                disc: DiscNet::Conv(c.init_discriminator(device)),
            },
        }
    }
}

/// The trainable networks of one model.
#[derive(Clone, Debug)]
// A handful of long-lived values: boxing variants buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Networks {
    Vae(VaeNet),
    Gan { gen: GenNet, disc: DiscNet },
}

/// Any VAE: encoder to (mean, log-variance), decoder to Bernoulli logits.
#[derive(Module, Debug)]
// A handful of long-lived values: boxing variants buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum VaeNet {
    Mlp(MlpVae),
    Conv(ConvVae),
}

impl VaeNet {
    /// `x: [batch, pixels]` in [0, 1] → `(mu, logvar)`, each `[batch, latent]`.
    pub fn encode(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        match self {
            VaeNet::Mlp(m) => m.encode(x),
            VaeNet::Conv(m) => m.encode(x),
        }
    }

    /// `z: [batch, latent]` → logits `[batch, pixels]`.
    pub fn decode_logits(&self, z: Tensor<2>) -> Tensor<2> {
        match self {
            VaeNet::Mlp(m) => m.decode_logits(z),
            VaeNet::Conv(m) => m.decode_logits(z),
        }
    }
}

/// Any generator: `z: [batch, latent]` → images `[batch, pixels]` in [-1, 1].
#[derive(Module, Debug)]
// A handful of long-lived values: boxing variants buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum GenNet {
    Mlp(MlpGenerator),
    Conv(DcGenerator),
}

impl GenNet {
    pub fn forward(&self, z: Tensor<2>) -> Tensor<2> {
        match self {
            GenNet::Mlp(m) => m.forward(z),
            GenNet::Conv(m) => m.forward(z),
        }
    }
}

/// Any discriminator: images `[batch, pixels]` in [-1, 1] → logits `[batch, 1]`.
#[derive(Module, Debug)]
// A handful of long-lived values: boxing variants buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum DiscNet {
    Mlp(MlpDiscriminator),
    Conv(DcDiscriminator),
}

impl DiscNet {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            DiscNet::Mlp(m) => m.forward(x),
            DiscNet::Conv(m) => m.forward(x),
        }
    }
}

/// Apply `layers` with an activation after each.
pub(crate) fn mlp_stack(
    layers: &[nn::Linear],
    mut h: Tensor<2>,
    act: impl Fn(Tensor<2>) -> Tensor<2>,
) -> Tensor<2> {
    for layer in layers {
        h = act(layer.forward(h));
    }
    h
}

/// Linear layers `widths[0] → widths[1] → …`.
pub(crate) fn linear_chain(widths: &[usize], device: &Device) -> Vec<nn::Linear> {
    widths
        .windows(2)
        .map(|w| nn::LinearConfig::new(w[0], w[1]).init(device))
        .collect()
}
