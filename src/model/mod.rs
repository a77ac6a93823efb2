//! Model families. A family is one file that implements the traits of [`family`], listed
//! once in [`FAMILIES`]; its objective (the VAE's ELBO, the GAN's loss) is shared code in
//! [`vae_objective`] / [`gan_objective`].
//!
//! All networks take and return flat images, `[batch, channels * height * width]`,
//! so the training loop, checkpoints and the UI never care about the layout.
//! VAEs work on pixels in `[0, 1]` and decode to Bernoulli logits; GANs work on
//! pixels in `[-1, 1]` (tanh output).

pub mod cdcgan;
pub mod conv_vae;
pub mod cvae;
pub mod dcgan;
pub mod family;
pub mod gan;
pub mod gan_objective;
pub mod losses;
pub mod sngan;
pub mod spectral;
pub mod tensors;
pub mod vae;
pub mod vae_objective;

#[cfg(test)]
mod fused_tests;

use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::data::ImageShape;
pub use crate::error::ModelError;
pub use conv_vae::{ConvVae, ConvVaeConfig};
pub use dcgan::{DcDiscriminator, DcGenerator, DcganConfig};
pub use family::{
    ArchConfig, Batch, Capabilities, ConfigBase, Family, Nets, Objective, PlotGroup, Preset,
    StepTerms, Trainer, TrainerSetup,
};
pub use gan::{MlpDiscriminator, MlpGanConfig, MlpGenerator};
pub use vae::{MlpVae, MlpVaeConfig};

use crate::cpu::AdamHyper;
use crate::run::TrainConfig;

/// Every model family, in menu order. Adding a family: one file in `model/`, one line here.
pub static FAMILIES: &[&dyn Family] = &[
    &vae::MlpVaeFamily,
    &conv_vae::ConvVaeFamily,
    &gan::MlpGanFamily,
    &dcgan::DcganFamily,
    &cvae::CvaeFamily,
    &cdcgan::CdcganFamily,
    &sngan::SnganFamily,
];

/// The family whose configuration is tagged `id` in checkpoints.
pub fn family(id: &str) -> Option<&'static dyn Family> {
    FAMILIES.iter().copied().find(|f| f.id() == id)
}

/// A model preset (the CLI's `--model`, the app's model menu): a family and the defaults it
/// starts from. Stored in checkpoints as its name.
#[derive(Clone, Copy)]
pub struct ModelKind {
    family: &'static dyn Family,
    preset: &'static Preset,
}

impl ModelKind {
    /// Every preset: the first preset of every family in registry order, then the others
    /// (`vae, conv-vae, gan, dcgan, seed-vae, seed-gan`: the menu and `--model` order).
    pub fn all() -> Vec<ModelKind> {
        let presets = |first: bool| {
            FAMILIES.iter().flat_map(move |&family| {
                let p = family.presets();
                let range = if first {
                    &p[..p.len().min(1)]
                } else {
                    &p[p.len().min(1)..]
                };
                range.iter().map(move |preset| ModelKind { family, preset })
            })
        };
        presets(true).chain(presets(false)).collect()
    }

    /// The presets' names, comma-separated (for messages).
    pub fn names() -> String {
        Self::all()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::all().into_iter().find(|k| k.name() == s)
    }

    /// [`ModelKind::parse`] with an error that lists the presets.
    pub fn named(s: &str) -> Result<Self, ModelError> {
        Self::parse(s).ok_or_else(|| ModelError::Unknown {
            name: s.to_string(),
            available: Self::names(),
        })
    }

    pub fn name(self) -> &'static str {
        self.preset.name
    }

    pub fn about(self) -> &'static str {
        self.preset.about
    }

    pub fn family(self) -> &'static dyn Family {
        self.family
    }

    pub fn objective(self) -> &'static Objective {
        self.family.objective()
    }

    pub fn capabilities(self) -> Capabilities {
        self.objective().capabilities
    }
}

/// The preselected model: the first preset of the first family (`vae`).
impl Default for ModelKind {
    fn default() -> Self {
        let family = FAMILIES[0];
        ModelKind {
            family,
            preset: &family.presets()[0],
        }
    }
}

impl PartialEq for ModelKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}
impl Eq for ModelKind {}

impl std::fmt::Debug for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelKind({})", self.name())
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ModelKind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::named(s)
    }
}

/// Written as a unit variant, as the enum it replaced was: a string in JSON (checkpoints), a
/// bare name in RON (the app's persisted settings), so files of either kind keep loading.
impl Serialize for ModelKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = Self::all().iter().position(|k| k == self).unwrap_or(0);
        s.serialize_unit_variant("ModelKind", index as u32, self.name())
    }
}

impl<'de> Deserialize<'de> for ModelKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Kind;
        impl<'de> serde::de::Visitor<'de> for Kind {
            type Value = ModelKind;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a model preset ({})", ModelKind::names())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ModelKind, E> {
                ModelKind::named(v).map_err(E::custom)
            }
            fn visit_enum<A: serde::de::EnumAccess<'de>>(
                self,
                a: A,
            ) -> Result<ModelKind, A::Error> {
                use serde::de::{Error, VariantAccess};
                let (Name(name), variant) = a.variant()?;
                variant.unit_variant()?;
                ModelKind::named(&name).map_err(A::Error::custom)
            }
        }
        /// A variant's name, read as an identifier (a bare name in RON).
        struct Name(String);
        impl<'de> Deserialize<'de> for Name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Ident;
                impl serde::de::Visitor<'_> for Ident {
                    type Value = Name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a model preset name")
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name, E> {
                        Ok(Name(v.to_string()))
                    }
                }
                d.deserialize_identifier(Ident)
            }
        }
        d.deserialize_enum("ModelKind", &[], Kind)
    }
}

impl TrainConfig {
    /// Defaults that train well for `kind`.
    pub fn for_kind(kind: ModelKind) -> Self {
        Self::with_defaults(kind.family().train_defaults())
    }
}

/// User overrides applied on top of a preset.
#[derive(Clone, Debug, Default)]
pub struct ModelOverrides {
    pub latent_dim: Option<usize>,
    /// Hidden widths (MLP families) or base channel count (conv families, first value).
    pub hidden: Option<Vec<usize>>,
    /// The class count of the training data (labels `0..classes`), which a conditional
    /// family is built for; filled in from the dataset by whoever builds the spec, never
    /// asked of the user.
    pub classes: Option<usize>,
}

/// A family's configuration behind its type; serialised as the family's config with a
/// `family` tag (`{"family": "vae", "input": 784, …}`), as checkpoints have always stored it.
#[derive(Debug)]
pub struct Architecture(Box<dyn ArchConfig>);

impl Architecture {
    pub fn new(config: Box<dyn ArchConfig>) -> Self {
        Self(config)
    }

    pub fn config(&self) -> &dyn ArchConfig {
        self.0.as_ref()
    }

    pub fn family(&self) -> &'static dyn Family {
        self.0.family()
    }
}

impl Clone for Architecture {
    fn clone(&self) -> Self {
        Self(self.0.clone_box())
    }
}

impl Serialize for Architecture {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        // The tag first and the fields in declaration order, byte for byte what the
        // internally tagged enum of earlier versions wrote.
        let text = self.0.to_json_string().map_err(S::Error::custom)?;
        let fields: OrderedFields = serde_json::from_str(&text).map_err(S::Error::custom)?;
        let mut m = s.serialize_map(Some(fields.0.len() + 1))?;
        m.serialize_entry("family", self.family().id())?;
        for (k, v) in &fields.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A JSON object's fields in the order they were written.
struct OrderedFields(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for OrderedFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = OrderedFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a family configuration object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<OrderedFields, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    out.push(entry);
                }
                Ok(OrderedFields(out))
            }
        }
        d.deserialize_map(Fields)
    }
}

impl<'de> Deserialize<'de> for Architecture {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut v = serde_json::Value::deserialize(d)?;
        let tag = v
            .as_object_mut()
            .and_then(|m| m.remove("family"))
            .ok_or_else(|| D::Error::missing_field("family"))?;
        let id = tag
            .as_str()
            .ok_or_else(|| D::Error::custom("the family tag must be a string"))?;
        let fam = family(id).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown model family '{id}' (this build has: {})",
                FAMILIES
                    .iter()
                    .map(|f| f.id())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        fam.parse(v).map(Architecture).map_err(D::Error::custom)
    }
}

/// Everything needed to rebuild a model: the preset it came from and the family config.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelSpec {
    pub kind: ModelKind,
    pub shape: ImageShape,
    pub arch: Architecture,
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
        if let Some(0) = overrides.classes {
            return Err(ModelError::Invalid(
                "a class count must be at least 1".into(),
            ));
        }
        let arch = kind.family().config(kind.name(), shape, overrides)?;
        Ok(Self {
            kind,
            shape,
            arch: Architecture(arch),
        })
    }

    /// Check a spec read from a file before anything is allocated from it.
    pub fn validate(&self) -> Result<(), ModelError> {
        let s = self.shape;
        if s.numel() == 0 || s.numel() > 4096 * 4096 * 3 || !(s.channels == 1 || s.channels == 3) {
            return Err(ModelError::Invalid(format!("implausible image shape {s}")));
        }
        if self.kind.family().id() != self.arch.family().id() {
            return Err(ModelError::Invalid(format!(
                "preset {} is not of the {} family its configuration has",
                self.kind,
                self.arch.family().id()
            )));
        }
        if self.arch.config().validate(s)? {
            Ok(())
        } else {
            Err(ModelError::Invalid(format!(
                "implausible {} configuration for {s} images",
                self.kind
            )))
        }
    }

    pub fn family(&self) -> &'static dyn Family {
        self.arch.family()
    }

    pub fn objective(&self) -> &'static Objective {
        self.family().objective()
    }

    pub fn capabilities(&self) -> Capabilities {
        self.objective().capabilities
    }

    /// The family's networks encode images (VAEs).
    pub fn has_encoder(&self) -> bool {
        self.capabilities().encoder
    }

    pub fn latent_dim(&self) -> usize {
        self.arch.config().latent_dim()
    }

    /// The class count of a conditional model; `None` for the others.
    pub fn classes(&self) -> Option<usize> {
        self.arch.config().overrides().classes
    }

    /// One-line human description, e.g. `vae (784-400-20)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.kind, self.arch.config().describe())
    }

    /// The overrides of the preset that give this spec: only what differs from the preset's
    /// own latent size and widths (what the app's Model controls show for a loaded run).
    pub fn overrides(&self) -> ModelOverrides {
        let mine = self.arch.config().overrides();
        let base = ModelOverrides {
            classes: mine.classes,
            ..Default::default()
        };
        let preset = ModelSpec::new(self.kind, self.shape, &base)
            .map(|s| s.arch.config().overrides())
            .unwrap_or_default();
        ModelOverrides {
            latent_dim: mine.latent_dim.filter(|l| preset.latent_dim != Some(*l)),
            hidden: mine.hidden.filter(|h| preset.hidden.as_ref() != Some(h)),
            ..Default::default()
        }
    }

    /// Initialise fresh networks on `device`.
    pub fn init(&self, device: &Device) -> Box<dyn Nets> {
        self.arch.config().networks(device)
    }
}

/// Checks shared by the families' `validate`.
pub(crate) mod checks {
    use super::{ImageShape, ModelError, ModelOverrides};

    /// The class count a conditional family `model` is built for, or the error in words when
    /// the data has no labels.
    pub fn classes(o: &ModelOverrides, model: &str) -> Result<usize, ModelError> {
        o.classes.ok_or_else(|| {
            ModelError::Invalid(format!(
                "{model} is class-conditional: it needs a dataset with class labels (IDX images \
                 with a labels file, an image folder with one sub-folder per class, or shapes), \
                 and this one has none"
            ))
        })
    }

    /// A plausible class count in a configuration read from a file.
    pub fn classes_ok(k: usize) -> bool {
        (1..=10_000).contains(&k)
    }

    pub const MAX_WIDTH: usize = 1 << 16;

    pub fn widths_ok(w: &[usize]) -> bool {
        !w.is_empty() && w.len() <= 16 && w.iter().all(|&x| (1..=MAX_WIDTH).contains(&x))
    }

    pub fn latent_ok(l: usize) -> bool {
        (1..=4096).contains(&l)
    }

    /// The stride-2 stages of a conv network for images of side `size`: two, and one more for
    /// each further halving that leaves a map wider than 8 (28 and 32 px: 2, 64 px: 3,
    /// 128 px: 4).
    pub fn conv_stages(size: usize) -> usize {
        let mut stages = 2;
        while (size >> stages) > 8 && size % (1 << (stages + 1)) == 0 {
            stages += 1;
        }
        stages
    }

    /// A conv family's configuration read from a file fits images of `shape` (an error when
    /// the shape itself does not suit `model`): its channels and side, a plausible latent size
    /// and base width.
    pub fn conv_config_ok(
        shape: ImageShape,
        model: &'static str,
        (channels, size, stages): (usize, usize, usize),
        latent: usize,
        width: usize,
    ) -> Result<bool, ModelError> {
        conv_shape(shape, model)?;
        Ok(channels == shape.channels
            && size == shape.height
            && (2..=6).contains(&stages)
            && size % (1 << stages) == 0
            && latent_ok(latent)
            && (1..=1024).contains(&width)
            && (width << (stages - 1)) <= 1 << 14)
    }

    /// A conv family's layer summary: base width, and the stages where they are not the
    /// two every 28/32 px model has.
    pub fn conv_describe(width: usize, stages: usize) -> String {
        if stages == 2 {
            format!("conv {width}")
        } else {
            format!("conv {width}, {stages} stages")
        }
    }

    /// Square images of a side divisible by 4 in 8..=128, 1 or 3 channels (the conv families).
    pub fn conv_shape(shape: ImageShape, model: &'static str) -> Result<(), ModelError> {
        let ok = shape.height == shape.width
            && shape.height % 4 == 0
            && (8..=128).contains(&shape.height)
            && (shape.channels == 1 || shape.channels == 3);
        if ok {
            Ok(())
        } else {
            Err(ModelError::UnsupportedShape { model, shape })
        }
    }
}

/// Adam with a run's settings (burn's optimiser; the fast CPU path uses the same numbers).
pub(crate) fn adam(config: &TrainConfig) -> ModuleOptimizer {
    let h = adam_hyper(config);
    AdamConfig::new()
        .with_beta_1(h.beta1)
        .with_beta_2(h.beta2)
        .with_epsilon(h.epsilon)
        .init()
}

/// Adam's settings of a run for the fast CPU path.
pub(crate) fn adam_hyper(config: &TrainConfig) -> AdamHyper {
    AdamHyper {
        beta1: config.adam_beta1 as f32,
        beta2: config.adam_beta2 as f32,
        epsilon: 1e-8,
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
