//! The class-conditional MLP VAE (Sohn et al. 2015), preset `cvae`: the one-hot class label
//! joins the encoder's input and the decoder's input, so that the latent is free to hold the
//! style and the label says which digit (`sample --class 7`, "same style, every class").
//! Default (784+10)-400-20 and mirror, the `vae` preset's widths. It trains through burn's
//! autodiff on every device (no fast CPU path yet).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::checks::{classes, classes_ok, latent_ok, widths_ok};
use super::family::{parse_config, ArchConfig, Family, Nets, Objective, Preset};
use super::tensors::{condition_or_cycle, join_condition};
use super::vae_objective::{VaeArch, VaeModule, VaeNets, VAE_OBJECTIVE};
use super::{linear_chain, mlp_stack, ImageShape, ModelError, ModelOverrides};
use crate::cpu::Act;
use crate::run::TrainDefaults;

/// The hidden layers' activation.
const HIDDEN: Act = Act::Relu;

/// The conditional MLP VAE family.
pub struct CvaeFamily;

impl Family for CvaeFamily {
    fn id(&self) -> &'static str {
        "cvae"
    }

    fn presets(&self) -> &'static [Preset] {
        &[Preset {
            name: "cvae",
            about: "class-conditional MLP VAE, (784+classes)-400-20 (Sohn et al.)",
        }]
    }

    fn objective(&self) -> &'static Objective {
        &VAE_OBJECTIVE
    }

    fn train_defaults(&self) -> TrainDefaults {
        // The `vae` preset's, so that the two compare at the same budget.
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
        let mut cfg = CvaeConfig::new(shape.numel(), classes(o, "cvae")?);
        if let Some(l) = o.latent_dim {
            cfg = cfg.with_latent(l);
        }
        if let Some(h) = &o.hidden {
            cfg = cfg.with_hidden(h.clone());
        }
        Ok(Box::new(cfg))
    }

    fn parse(&self, value: serde_json::Value) -> Result<Box<dyn ArchConfig>, String> {
        parse_config::<CvaeConfig>(value)
    }
}

#[derive(Config, Debug)]
pub struct CvaeConfig {
    /// Pixels per image (channels × height × width).
    pub input: usize,
    /// Classes of the condition (labels `0..classes`).
    pub classes: usize,
    /// Encoder hidden widths; the decoder mirrors them.
    #[config(default = "vec![400]")]
    pub hidden: Vec<usize>,
    #[config(default = 20)]
    pub latent: usize,
}

#[derive(Module, Debug)]
pub struct Cvae {
    enc: Vec<Linear>,
    mu: Linear,
    logvar: Linear,
    dec: Vec<Linear>,
    out: Linear,
    classes: usize,
}

impl CvaeConfig {
    pub fn init(&self, device: &Device) -> Cvae {
        let mut enc = vec![self.input + self.classes];
        enc.extend(&self.hidden);
        let mut dec = vec![self.latent];
        dec.extend(self.hidden.iter().rev());
        let (enc_last, dec_last) = (enc[enc.len() - 1], dec[dec.len() - 1]);
        let k = self.classes;
        // Every decoder layer reads the condition beside its input.
        let dec = dec
            .windows(2)
            .map(|w| LinearConfig::new(w[0] + k, w[1]).init(device))
            .collect();
        Cvae {
            enc: linear_chain(&enc, device),
            mu: LinearConfig::new(enc_last, self.latent).init(device),
            logvar: LinearConfig::new(enc_last, self.latent).init(device),
            dec,
            out: LinearConfig::new(dec_last + k, self.input).init(device),
            classes: self.classes,
        }
    }
}

impl VaeModule for Cvae {
    fn encode(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        self.encode_with(x, None)
    }

    fn decode_logits(&self, z: Tensor<2>) -> Tensor<2> {
        self.decode_logits_with(z, None)
    }

    fn classes(&self) -> Option<usize> {
        Some(self.classes)
    }

    /// `[batch, input]` and the one-hot `[batch, classes]` → `(mu, logvar)`.
    fn encode_with(&self, x: Tensor<2>, cond: Option<Tensor<2>>) -> (Tensor<2>, Tensor<2>) {
        let x = join_condition(x, cond, self.classes);
        let h = mlp_stack(&self.enc, x, |t| HIDDEN.tensor(t));
        (self.mu.forward(h.clone()), self.logvar.forward(h))
    }

    /// `[batch, latent]` and the one-hot condition → logits `[batch, input]`.
    fn decode_logits_with(&self, z: Tensor<2>, cond: Option<Tensor<2>>) -> Tensor<2> {
        let y = condition_or_cycle(cond, z.dims()[0], self.classes, &z.device());
        // The condition beside every layer's input.
        let mut h = Tensor::cat(vec![z, y.clone()], 1);
        for layer in &self.dec {
            h = Tensor::cat(vec![HIDDEN.tensor(layer.forward(h)), y.clone()], 1);
        }
        self.out.forward(h)
    }
}

impl ArchConfig for CvaeConfig {
    fn family(&self) -> &'static dyn Family {
        &CvaeFamily
    }

    fn latent_dim(&self) -> usize {
        self.latent
    }

    fn validate(&self, shape: ImageShape) -> Result<bool, ModelError> {
        Ok(self.input == shape.numel()
            && classes_ok(self.classes)
            && widths_ok(&self.hidden)
            && latent_ok(self.latent))
    }

    fn overrides(&self) -> ModelOverrides {
        ModelOverrides {
            latent_dim: Some(self.latent),
            hidden: Some(self.hidden.clone()),
            classes: Some(self.classes),
        }
    }

    fn describe(&self) -> String {
        let mut widths = vec![format!("{}+{}", self.input, self.classes)];
        widths.extend(self.hidden.iter().map(|w| w.to_string()));
        widths.push(self.latent.to_string());
        widths.join("-")
    }

    fn networks(&self, device: &Device) -> Box<dyn Nets> {
        Box::new(VaeNets::new(self.clone(), self.init(device)))
    }
}

impl VaeArch for CvaeConfig {
    type Module = Cvae;

    fn init_module(&self, device: &Device) -> Cvae {
        self.init(device)
    }
}
