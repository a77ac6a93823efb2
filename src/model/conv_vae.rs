//! The conv-VAE family: a small convolutional VAE for square images (28×28, 32×32, …), 1 or 3
//! channels; preset `conv-vae`.
//!
//! Encoder: conv 4×4/2 (width) → conv 4×4/2 (2·width) → [conv 4×4/2, doubling] → dense →
//! (mu, logvar), with one stride-2 stage per doubling of the side beyond 28/32 px
//! ([`conv_stages`]; those further stages live in `extra`/`d_extra`, empty at 28/32 px).
//! Decoder mirrors it with transposed convolutions and emits Bernoulli logits.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::checks::{conv_config_ok, conv_describe, conv_shape, conv_stages, MAX_WIDTH};
use super::family::{parse_config_with, ArchConfig, Family, Nets, Objective, Preset};
use super::vae_objective::{FusedVaeNet, VaeArch, VaeModule, VaeNets, VAE_OBJECTIVE};
use super::{ImageShape, ModelError, ModelOverrides};
use crate::cpu::{
    clone_empty, Act, AdamHyper, AdamState, ConvLayer, ConvScratch, Decoder, Dense, Encoder,
    Epilogue, FusedVae, ParamBuf, Params,
};
use crate::error::TrainError;
use crate::run::TrainDefaults;

/// The conv-VAE family.
pub struct ConvVaeFamily;

impl Family for ConvVaeFamily {
    fn id(&self) -> &'static str {
        "conv-vae"
    }

    fn presets(&self) -> &'static [Preset] {
        &[Preset {
            name: "conv-vae",
            about: "small convolutional VAE",
        }]
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
        _preset: &str,
        shape: ImageShape,
        o: &ModelOverrides,
    ) -> Result<Box<dyn ArchConfig>, ModelError> {
        conv_shape(shape, "conv-vae")?;
        let mut cfg =
            ConvVaeConfig::new(shape.channels, shape.height).with_stages(conv_stages(shape.height));
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
        parse_config_with::<ConvVaeConfig>(value, &[("stages", serde_json::json!(2))])
    }
}

#[derive(Config, Debug)]
pub struct ConvVaeConfig {
    pub channels: usize,
    /// Image side; divisible by 4.
    pub size: usize,
    #[config(default = 16)]
    pub latent: usize,
    /// Channels of the first convolution (the second has twice as many).
    #[config(default = 32)]
    pub width: usize,
    #[config(default = 256)]
    pub dense: usize,
    /// Stride-2 stages (checkpoints from before the side scaled have none saved: 2).
    #[config(default = 2)]
    pub stages: usize,
}

#[derive(Module, Debug)]
pub struct ConvVae {
    pub(crate) c1: Conv2d,
    pub(crate) c2: Conv2d,
    /// Encoder stages beyond the first two (none at 28/32 px).
    pub(crate) extra: Vec<Conv2d>,
    pub(crate) fc: Linear,
    pub(crate) mu: Linear,
    pub(crate) logvar: Linear,
    pub(crate) d_fc: Linear,
    pub(crate) d_fc2: Linear,
    /// Decoder stages beyond the last two, widest first (none at 28/32 px).
    pub(crate) d_extra: Vec<ConvTranspose2d>,
    pub(crate) t1: ConvTranspose2d,
    pub(crate) t2: ConvTranspose2d,
    pub(crate) channels: usize,
    pub(crate) size: usize,
    pub(crate) width: usize,
}

pub(crate) fn down_conv(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    down_conv_with(c_in, c_out, None, device)
}

pub(crate) fn up_conv(c_in: usize, c_out: usize, device: &Device) -> ConvTranspose2d {
    up_conv_with(c_in, c_out, None, device)
}

/// A 4×4 stride-2 convolution halving the planes; `init` replaces burn's initialiser.
pub(crate) fn down_conv_with(
    c_in: usize,
    c_out: usize,
    init: Option<&Initializer>,
    device: &Device,
) -> Conv2d {
    let mut cfg = Conv2dConfig::new([c_in, c_out], [4, 4])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
    if let Some(i) = init {
        cfg = cfg.with_initializer(i.clone());
    }
    cfg.init(device)
}

/// A 4×4 stride-2 transposed convolution doubling the planes; `init` as [`down_conv_with`].
pub(crate) fn up_conv_with(
    c_in: usize,
    c_out: usize,
    init: Option<&Initializer>,
    device: &Device,
) -> ConvTranspose2d {
    let mut cfg = ConvTranspose2dConfig::new([c_in, c_out], [4, 4])
        .with_stride([2, 2])
        .with_padding([1, 1]);
    if let Some(i) = init {
        cfg = cfg.with_initializer(i.clone());
    }
    cfg.init(device)
}

impl ConvVaeConfig {
    pub fn init(&self, device: &Device) -> ConvVae {
        let q = self.size >> self.stages;
        let flat = (self.width << (self.stages - 1)) * q * q;
        let w = self.width;
        ConvVae {
            c1: down_conv(self.channels, w, device),
            c2: down_conv(w, 2 * w, device),
            extra: (2..self.stages)
                .map(|i| down_conv(w << (i - 1), w << i, device))
                .collect(),
            d_extra: (2..self.stages)
                .rev()
                .map(|i| up_conv(w << i, w << (i - 1), device))
                .collect(),
            fc: LinearConfig::new(flat, self.dense).init(device),
            mu: LinearConfig::new(self.dense, self.latent).init(device),
            logvar: LinearConfig::new(self.dense, self.latent).init(device),
            d_fc: LinearConfig::new(self.latent, self.dense).init(device),
            d_fc2: LinearConfig::new(self.dense, flat).init(device),
            t1: up_conv(2 * self.width, self.width, device),
            t2: up_conv(self.width, self.channels, device),
            channels: self.channels,
            size: self.size,
            width: self.width,
        }
    }
}

impl VaeModule for ConvVae {
    /// `[batch, c·s·s]` → `(mu, logvar)`.
    fn encode(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let [b, _] = x.dims();
        let x = x.reshape([b, self.channels, self.size, self.size]);
        let h = relu(self.c1.forward(x)); // [b, w, s/2, s/2]
        let mut h = relu(self.c2.forward(h)); // [b, 2w, s/4, s/4]
        for conv in &self.extra {
            h = relu(conv.forward(h));
        }
        let h: Tensor<2> = h.flatten(1, 3);
        let h = relu(self.fc.forward(h));
        (self.mu.forward(h.clone()), self.logvar.forward(h))
    }

    /// `[batch, latent]` → logits `[batch, c·s·s]`.
    fn decode_logits(&self, z: Tensor<2>) -> Tensor<2> {
        let [b, _] = z.dims();
        let stages = self.extra.len() + 2;
        let q = self.size >> stages;
        let h = relu(self.d_fc.forward(z));
        let mut h = relu(self.d_fc2.forward(h)).reshape([b, self.width << (stages - 1), q, q]);
        for conv in &self.d_extra {
            h = relu(conv.forward(h));
        }
        let h = relu(self.t1.forward(h)); // [b, w, s/2, s/2]
        let out = self.t2.forward(h); // [b, c, s, s]
        out.flatten(1, 3)
    }
}

impl ArchConfig for ConvVaeConfig {
    fn family(&self) -> &'static dyn Family {
        &ConvVaeFamily
    }

    fn latent_dim(&self) -> usize {
        self.latent
    }

    fn validate(&self, s: ImageShape) -> Result<bool, ModelError> {
        let dims = (self.channels, self.size, self.stages);
        Ok(
            conv_config_ok(s, "conv-vae", dims, self.latent, self.width)?
                && (1..=MAX_WIDTH).contains(&self.dense),
        )
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
        format!("{conv}, z {}", self.latent)
    }

    fn networks(&self, device: &Device) -> Box<dyn Nets> {
        Box::new(VaeNets::new(self.clone(), self.init(device)))
    }
}

impl VaeArch for ConvVaeConfig {
    type Module = ConvVae;

    fn init_module(&self, device: &Device) -> ConvVae {
        self.init(device)
    }

    fn fused(
        &self,
        model: &ConvVae,
        optim: Vec<u8>,
        seed: u64,
    ) -> Option<Result<Box<dyn FusedVaeNet<ConvVae>>, TrainError>> {
        if !model.extra.is_empty() {
            return Some(Err(TrainError::Invalid(format!(
                "the fast conv-VAE path has 2 stages, this {} px model {}",
                self.size, self.stages
            ))));
        }
        let fast = FusedConvVae::new(model, optim, seed).map(|net| ConvVaeFast {
            net,
            shell: model.clone(),
        });
        Some(fast.map(|f| Box::new(f) as Box<dyn FusedVaeNet<ConvVae>>))
    }
}

// ---- the fast CPU path: the same layers as `crate::cpu` layers ------------------------------

/// The conv-VAE's layers on the fast CPU path.
pub(crate) type FusedConvVae = FusedVae<ConvEncoder, ConvDecoder>;

/// The conv-VAE's encoder: conv → ReLU → conv → ReLU → dense → ReLU.
#[derive(Clone)]
pub(crate) struct ConvEncoder {
    pub(crate) c1: ConvLayer,
    pub(crate) c2: ConvLayer,
    pub(crate) fc: Dense,
    pub(crate) buf: ConvEncoderBufs,
}

#[derive(Default)]
pub(crate) struct ConvEncoderBufs {
    pub(crate) a1: Vec<f32>,
    pub(crate) a2: Vec<f32>,
    pub(crate) h: Vec<f32>,
    pub(crate) cc1: ConvScratch,
    pub(crate) cc2: ConvScratch,
    pub(crate) d2: Vec<f32>,
    pub(crate) d1: Vec<f32>,
}

/// The conv-VAE's decoder: dense → ReLU → dense → ReLU → transposed conv → ReLU →
/// transposed conv (the logits).
#[derive(Clone)]
pub(crate) struct ConvDecoder {
    pub(crate) fc1: Dense,
    pub(crate) fc2: Dense,
    pub(crate) t1: ConvLayer,
    pub(crate) t2: ConvLayer,
    pub(crate) buf: ConvDecoderBufs,
}

#[derive(Default)]
pub(crate) struct ConvDecoderBufs {
    pub(crate) h1: Vec<f32>,
    pub(crate) h2: Vec<f32>,
    pub(crate) n1: Vec<f32>,
    pub(crate) ct1: ConvScratch,
    pub(crate) ct2: ConvScratch,
    pub(crate) e1: Vec<f32>,
    pub(crate) e2: Vec<f32>,
    pub(crate) e3: Vec<f32>,
}

clone_empty!(ConvEncoderBufs, ConvDecoderBufs);

impl Params for ConvEncoder {
    fn params(&self) -> Vec<&ParamBuf> {
        let convs = self.c1.params().into_iter().chain(self.c2.params());
        convs.chain(self.fc.params()).collect()
    }
    fn params_mut(&mut self) -> Vec<&mut ParamBuf> {
        let convs = self.c1.params_mut().into_iter().chain(self.c2.params_mut());
        convs.chain(self.fc.params_mut()).collect()
    }
}

impl Encoder for ConvEncoder {
    fn forward(&mut self, x: &[f32], rows: usize) {
        let (relu, b) = (Act::Relu, &mut self.buf);
        self.c1.forward(x, rows, relu, &mut b.a1, &mut b.cc1, true);
        self.c2
            .forward(&b.a1, rows, relu, &mut b.a2, &mut b.cc2, true);
        self.fc.forward(&b.a2, rows, &mut b.h, relu);
    }
    fn output<'a>(&'a self, _: &'a [f32]) -> &'a [f32] {
        &self.buf.h
    }
    fn backward(&mut self, _: &[f32], rows: usize, dy: &mut Vec<f32>) {
        let b = &mut self.buf;
        Act::Relu.backward(&b.h, dy);
        self.fc
            .backward(&b.a2, rows, dy, Some(false), Some((&mut b.d2, false)));
        Act::Relu.backward(&b.a2, &mut b.d2);
        let dx = Some((&mut b.d1, Epilogue::ActGrad(Act::Relu, &b.a1)));
        self.c2.backward(rows, &b.d2, true, dx, &mut b.cc2);
        self.c1.backward(rows, &b.d1, true, None, &mut b.cc1);
    }
}

impl Params for ConvDecoder {
    fn params(&self) -> Vec<&ParamBuf> {
        let dense = self.fc1.params().into_iter().chain(self.fc2.params());
        dense
            .chain(self.t1.params())
            .chain(self.t2.params())
            .collect()
    }
    fn params_mut(&mut self) -> Vec<&mut ParamBuf> {
        let dense = self
            .fc1
            .params_mut()
            .into_iter()
            .chain(self.fc2.params_mut());
        dense
            .chain(self.t1.params_mut())
            .chain(self.t2.params_mut())
            .collect()
    }
}

impl Decoder for ConvDecoder {
    fn forward(&mut self, z: &[f32], rows: usize, logits: &mut Vec<f32>) {
        let (relu, b) = (Act::Relu, &mut self.buf);
        self.fc1.forward(z, rows, &mut b.h1, relu);
        self.fc2.forward(&b.h1, rows, &mut b.h2, relu);
        self.t1.t_forward(&b.h2, rows, relu, &mut b.n1, &mut b.ct1);
        self.t2
            .t_forward(&b.n1, rows, Act::Identity, logits, &mut b.ct2);
    }
    fn backward(&mut self, z: &[f32], rows: usize, dlogits: &[f32], dz: &mut Vec<f32>) {
        let b = &mut self.buf;
        let dx = Some((&mut b.e1, Act::Relu));
        self.t2.t_backward(&b.n1, rows, dlogits, dx, &mut b.ct2);
        let dx = Some((&mut b.e2, Act::Relu));
        self.t1.t_backward(&b.h2, rows, &b.e1, dx, &mut b.ct1);
        self.fc2
            .backward(&b.h1, rows, &b.e2, Some(false), Some((&mut b.e3, false)));
        Act::Relu.backward(&b.h1, &mut b.e3);
        self.fc1
            .backward(z, rows, &b.e3, Some(false), Some((dz, false)));
    }
}

/// The conv-VAE on the fast CPU path, with burn's module for the configuration (padding,
/// sizes) that the weights go back into.
#[derive(Clone)]
struct ConvVaeFast {
    net: FusedConvVae,
    shell: ConvVae,
}

impl FusedVaeNet<ConvVae> for ConvVaeFast {
    fn step(&mut self, x: &[f32], rows: usize, lr: f32, beta: f32, h: AdamHyper) -> [f32; 3] {
        self.net.step(x, rows, lr, beta, h)
    }
    fn reseed(&mut self, seed: u64) {
        self.net.reseed(seed)
    }
    fn module(&self, device: &Device) -> ConvVae {
        self.net.model(&self.shell, device)
    }
    fn optim_bytes(&self) -> Result<Vec<u8>, TrainError> {
        self.net.optim_bytes()
    }
    fn clone_box(&self) -> Box<dyn FusedVaeNet<ConvVae>> {
        Box::new(self.clone())
    }
    fn path(&self) -> &'static str {
        "fused conv training"
    }
}

impl FusedConvVae {
    /// Take over `model`'s weights and the Adam state in `optim_bytes` (burn's record).
    pub fn new(model: &ConvVae, optim_bytes: Vec<u8>, seed: u64) -> Result<Self, TrainError> {
        let mut st = AdamState::from_record_bytes(optim_bytes)?;
        // Geometry (kernels, strides, padding) comes from the burn layers themselves: c1 and
        // c2 halve the planes; the transposed convolutions are their adjoints.
        let (size, half) = (model.size, model.size / 2);
        let enc = ConvEncoder {
            c1: ConvLayer::from_conv(&model.c1, "c1", size, &mut st)?,
            c2: ConvLayer::from_conv(&model.c2, "c2", half, &mut st)?,
            fc: Dense::from_linear(&model.fc, "fc".into(), &mut st)?,
            buf: Default::default(),
        };
        let dec = ConvDecoder {
            fc1: Dense::from_linear(&model.d_fc, "d_fc".into(), &mut st)?,
            fc2: Dense::from_linear(&model.d_fc2, "d_fc2".into(), &mut st)?,
            t1: ConvLayer::from_conv_t(&model.t1, "t1", half, &mut st)?,
            t2: ConvLayer::from_conv_t(&model.t2, "t2", size, &mut st)?,
            buf: Default::default(),
        };
        let mu = Dense::from_linear(&model.mu, "mu".into(), &mut st)?;
        let logvar = Dense::from_linear(&model.logvar, "logvar".into(), &mut st)?;
        st.finish()?;
        Ok(Self::from_parts(enc, mu, logvar, dec, seed))
    }

    /// burn's model with the current weights (same parameter ids), on `device`; `shell`
    /// supplies the rest (configuration, padding).
    pub fn model(&self, shell: &ConvVae, device: &Device) -> ConvVae {
        let (e, d) = (&self.enc, &self.dec);
        ConvVae {
            c1: e.c1.to_conv(&shell.c1, device),
            c2: e.c2.to_conv(&shell.c2, device),
            fc: e.fc.to_linear(device),
            mu: self.mu.to_linear(device),
            logvar: self.logvar.to_linear(device),
            d_fc: d.fc1.to_linear(device),
            d_fc2: d.fc2.to_linear(device),
            t1: d.t1.to_conv_t(&shell.t1, device),
            t2: d.t2.to_conv_t(&shell.t2, device),
            ..shell.clone()
        }
    }
}
