//! The MLP VAE family with a Bernoulli decoder (Kingma & Welling 2014), default 784-400-20;
//! presets `vae` and `seed-vae`. Everything about the family is here: its configuration, burn
//! module, presets, and the fast CPU path and slider decoder built from the same layers.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::checks::{latent_ok, widths_ok};
use super::family::{parse_config, ArchConfig, Family, Nets, Objective, Preset};
use super::vae_objective::{FusedVaeNet, VaeArch, VaeModule, VaeNets, VAE_OBJECTIVE};
use super::{linear_chain, mlp_stack, ImageShape, ModelError, ModelOverrides};
use crate::cpu::{
    backward_chain, clone_empty, dense_params, dense_params_mut, forward_chain, Act, AdamHyper,
    AdamState, Decoder, Dense, Encoder, FusedVae, ParamBuf, Params, PlainMlp, PlainOut,
};
use crate::error::TrainError;
use crate::run::TrainDefaults;

/// The hidden layers' activation, in the burn module and on the fast CPU path.
const HIDDEN: Act = Act::Relu;

/// The MLP VAE family.
pub struct MlpVaeFamily;

impl Family for MlpVaeFamily {
    fn id(&self) -> &'static str {
        "vae"
    }

    fn presets(&self) -> &'static [Preset] {
        &[
            Preset {
                name: "vae",
                about: "MLP VAE, 784-400-20 (Kingma & Welling)",
            },
            Preset {
                name: "seed-vae",
                about: "the source article's VAE: 784 -> 128 -> 64 -> z 32 and mirror",
            },
        ]
    }

    fn objective(&self) -> &'static Objective {
        &VAE_OBJECTIVE
    }

    fn train_defaults(&self) -> TrainDefaults {
        TrainDefaults {
            learning_rate: 1e-3,
            adam_beta1: 0.9,
            batch_size: 128,
        }
    }

    fn config(
        &self,
        preset: &str,
        shape: ImageShape,
        o: &ModelOverrides,
    ) -> Result<Box<dyn ArchConfig>, ModelError> {
        let mut cfg = MlpVaeConfig::new(shape.numel());
        if preset == "seed-vae" {
            cfg = cfg.with_hidden(vec![128, 64]).with_latent(32);
        }
        if let Some(l) = o.latent_dim {
            cfg = cfg.with_latent(l);
        }
        if let Some(h) = &o.hidden {
            cfg = cfg.with_hidden(h.clone());
        }
        Ok(Box::new(cfg))
    }

    fn parse(&self, value: serde_json::Value) -> Result<Box<dyn ArchConfig>, String> {
        parse_config::<MlpVaeConfig>(value)
    }
}

#[derive(Config, Debug)]
pub struct MlpVaeConfig {
    /// Pixels per image (channels × height × width).
    pub input: usize,
    /// Encoder hidden widths; the decoder mirrors them.
    #[config(default = "vec![400]")]
    pub hidden: Vec<usize>,
    #[config(default = 20)]
    pub latent: usize,
}

#[derive(Module, Debug)]
pub struct MlpVae {
    enc: Vec<Linear>,
    mu: Linear,
    logvar: Linear,
    dec: Vec<Linear>,
    out: Linear,
}

impl MlpVaeConfig {
    pub fn init(&self, device: &Device) -> MlpVae {
        let mut enc_widths = vec![self.input];
        enc_widths.extend(&self.hidden);
        let last = *enc_widths.last().unwrap_or(&self.input);
        let mut dec_widths = vec![self.latent];
        dec_widths.extend(self.hidden.iter().rev());
        let dec_last = *dec_widths.last().unwrap_or(&self.latent);
        MlpVae {
            enc: linear_chain(&enc_widths, device),
            mu: LinearConfig::new(last, self.latent).init(device),
            logvar: LinearConfig::new(last, self.latent).init(device),
            dec: linear_chain(&dec_widths, device),
            out: LinearConfig::new(dec_last, self.input).init(device),
        }
    }
}

impl VaeModule for MlpVae {
    /// `[batch, input]` → `(mu, logvar)`, `[batch, latent]` each.
    fn encode(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let h = mlp_stack(&self.enc, x, |t| HIDDEN.tensor(t));
        (self.mu.forward(h.clone()), self.logvar.forward(h))
    }

    /// `[batch, latent]` → logits `[batch, input]`.
    fn decode_logits(&self, z: Tensor<2>) -> Tensor<2> {
        self.out
            .forward(mlp_stack(&self.dec, z, |t| HIDDEN.tensor(t)))
    }
}

impl MlpVae {
    /// The layers: (encoder hidden, mu head, logvar head, decoder hidden, logits layer).
    pub(crate) fn parts(&self) -> (&[Linear], &Linear, &Linear, &[Linear], &Linear) {
        (&self.enc, &self.mu, &self.logvar, &self.dec, &self.out)
    }

    /// The inverse of [`MlpVae::parts`].
    pub(crate) fn from_parts(
        enc: Vec<Linear>,
        mu: Linear,
        logvar: Linear,
        dec: Vec<Linear>,
        out: Linear,
    ) -> Self {
        Self {
            enc,
            mu,
            logvar,
            dec,
            out,
        }
    }

    /// The decoder's layers in order (hidden layers, then the logits layer).
    pub(crate) fn decoder_layers(&self) -> Vec<&Linear> {
        self.dec.iter().chain(std::iter::once(&self.out)).collect()
    }
}

impl ArchConfig for MlpVaeConfig {
    fn family(&self) -> &'static dyn Family {
        &MlpVaeFamily
    }

    fn latent_dim(&self) -> usize {
        self.latent
    }

    fn validate(&self, shape: ImageShape) -> Result<bool, ModelError> {
        Ok(self.input == shape.numel() && widths_ok(&self.hidden) && latent_ok(self.latent))
    }

    fn overrides(&self) -> ModelOverrides {
        ModelOverrides {
            latent_dim: Some(self.latent),
            hidden: Some(self.hidden.clone()),
            ..Default::default()
        }
    }

    fn describe(&self) -> String {
        let widths: Vec<String> = std::iter::once(self.input)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.latent))
            .map(|w| w.to_string())
            .collect();
        widths.join("-")
    }

    fn networks(&self, device: &Device) -> Box<dyn Nets> {
        Box::new(VaeNets::new(self.clone(), self.init(device)))
    }
}

impl VaeArch for MlpVaeConfig {
    type Module = MlpVae;

    fn init_module(&self, device: &Device) -> MlpVae {
        self.init(device)
    }

    fn fused(
        &self,
        model: &MlpVae,
        optim: Vec<u8>,
        seed: u64,
    ) -> Option<Result<Box<dyn FusedVaeNet<MlpVae>>, TrainError>> {
        Some(
            FusedMlpVae::new(model, optim, seed)
                .map(|f| Box::new(f) as Box<dyn FusedVaeNet<MlpVae>>),
        )
    }

    fn fast_decoder(&self, model: &MlpVae) -> Option<PlainMlp> {
        PlainMlp::from_layers(&model.decoder_layers(), HIDDEN, PlainOut::Sigmoid).ok()
    }
}

// ---- the fast CPU path: the same layers as dense layers of `crate::cpu` ---------------------

/// The MLP VAE on the fast CPU path.
pub(crate) type FusedMlpVae = FusedVae<MlpEncoder, MlpDecoder>;

/// The MLP VAE's encoder: dense layers, each followed by ReLU.
#[derive(Clone)]
pub(crate) struct MlpEncoder {
    pub(crate) layers: Vec<Dense>,
    /// The activation after each layer.
    pub(crate) act: Act,
    pub(crate) buf: MlpBufs,
}

/// The MLP VAE's decoder: dense layers with ReLU, then the logits layer.
#[derive(Clone)]
pub(crate) struct MlpDecoder {
    pub(crate) layers: Vec<Dense>,
    /// The activation after each hidden layer.
    pub(crate) act: Act,
    pub(crate) out: Dense,
    pub(crate) buf: MlpBufs,
}

#[derive(Default)]
pub(crate) struct MlpBufs {
    pub(crate) acts: Vec<Vec<f32>>,
    pub(crate) d: Vec<f32>,
    pub(crate) scratch: Vec<f32>,
}

impl Params for MlpEncoder {
    fn params(&self) -> Vec<&ParamBuf> {
        dense_params(&self.layers)
    }
    fn params_mut(&mut self) -> Vec<&mut ParamBuf> {
        dense_params_mut(&mut self.layers)
    }
}

impl Encoder for MlpEncoder {
    fn forward(&mut self, x: &[f32], rows: usize) {
        forward_chain(&self.layers, x, rows, &mut self.buf.acts, self.act);
    }
    fn output<'a>(&'a self, x: &'a [f32]) -> &'a [f32] {
        self.buf.acts.last().map_or(x, |v| v)
    }
    fn backward(&mut self, x: &[f32], rows: usize, dy: &mut Vec<f32>) {
        let (b, act) = (&mut self.buf, self.act);
        let layers = &mut self.layers;
        backward_chain(
            layers,
            x,
            rows,
            &b.acts,
            act,
            dy,
            &mut b.scratch,
            true,
            false,
        );
    }
}

impl Params for MlpDecoder {
    fn params(&self) -> Vec<&ParamBuf> {
        dense_params(self.layers.iter().chain([&self.out]))
    }
    fn params_mut(&mut self) -> Vec<&mut ParamBuf> {
        dense_params_mut(self.layers.iter_mut().chain([&mut self.out]))
    }
}

impl Decoder for MlpDecoder {
    fn forward(&mut self, z: &[f32], rows: usize, logits: &mut Vec<f32>) {
        forward_chain(&self.layers, z, rows, &mut self.buf.acts, self.act);
        let h: &[f32] = self.buf.acts.last().map_or(z, |v| v);
        self.out.forward(h, rows, logits, Act::Identity);
    }
    fn backward(&mut self, z: &[f32], rows: usize, dlogits: &[f32], dz: &mut Vec<f32>) {
        let (b, act) = (&mut self.buf, self.act);
        let h: &[f32] = b.acts.last().map_or(z, |v| v);
        let d = &mut b.d;
        self.out
            .backward(h, rows, dlogits, Some(false), Some((&mut *d, false)));
        let layers = &mut self.layers;
        backward_chain(layers, z, rows, &b.acts, act, d, &mut b.scratch, true, true);
        dz.clear();
        dz.extend_from_slice(d);
    }
}

clone_empty!(MlpBufs);

impl FusedVaeNet<MlpVae> for FusedMlpVae {
    fn step(&mut self, x: &[f32], rows: usize, lr: f32, beta: f32, h: AdamHyper) -> [f32; 3] {
        FusedMlpVae::step(self, x, rows, lr, beta, h)
    }
    fn reseed(&mut self, seed: u64) {
        FusedMlpVae::reseed(self, seed)
    }
    fn module(&self, device: &Device) -> MlpVae {
        self.model(device)
    }
    fn optim_bytes(&self) -> Result<Vec<u8>, TrainError> {
        FusedMlpVae::optim_bytes(self)
    }
    fn clone_box(&self) -> Box<dyn FusedVaeNet<MlpVae>> {
        Box::new(self.clone())
    }
    fn path(&self) -> &'static str {
        "fused MLP training"
    }
}

impl FusedMlpVae {
    /// Take over `model`'s weights and the Adam state in `optim_bytes` (burn's record).
    pub fn new(model: &MlpVae, optim_bytes: Vec<u8>, seed: u64) -> Result<Self, TrainError> {
        let mut state = AdamState::from_record_bytes(optim_bytes)?;
        let (enc, mu, logvar, dec, out) = model.parts();
        let chain = |ls: &[burn::nn::Linear], name: &str, state: &mut AdamState| {
            ls.iter()
                .enumerate()
                .map(|(i, l)| Dense::from_linear(l, format!("{name}.{i}"), state))
                .collect::<Result<Vec<_>, _>>()
        };
        let enc = MlpEncoder {
            layers: chain(enc, "enc", &mut state)?,
            act: HIDDEN,
            buf: Default::default(),
        };
        let dec = MlpDecoder {
            layers: chain(dec, "dec", &mut state)?,
            out: Dense::from_linear(out, "out".into(), &mut state)?,
            act: HIDDEN,
            buf: Default::default(),
        };
        let mu = Dense::from_linear(mu, "mu".into(), &mut state)?;
        let logvar = Dense::from_linear(logvar, "logvar".into(), &mut state)?;
        state.finish()?;
        Ok(Self::from_parts(enc, mu, logvar, dec, seed))
    }

    /// burn's model with the current weights (same parameter ids), on `device`.
    pub fn model(&self, device: &Device) -> MlpVae {
        MlpVae::from_parts(
            self.enc
                .layers
                .iter()
                .map(|l| l.to_linear(device))
                .collect(),
            self.mu.to_linear(device),
            self.logvar.to_linear(device),
            self.dec
                .layers
                .iter()
                .map(|l| l.to_linear(device))
                .collect(),
            self.dec.out.to_linear(device),
        )
    }
}
