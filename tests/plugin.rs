//! A model family is one file: this test writes a class-conditional MLP VAE (Sohn et al.
//! 2015; the one-hot label joins the encoder's and the decoder's input) against the public
//! plug-in traits only, outside the crate, and trains, evaluates and decodes it through them.
//! Labels reach its step from the dataset with no plumbing of its own.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use latent_lab::backend::Backend;
use latent_lab::model::family::parse_config;
use latent_lab::model::gan_objective::{DiscModule, GanArch, GanNets, GenModule, GAN_OBJECTIVE};
use latent_lab::model::vae_objective::{VaeArch, VaeModule, VaeNets, VAE_OBJECTIVE};
use latent_lab::model::{
    ArchConfig, Batch, Family, ImageShape, ModelError, ModelOverrides, Nets, Objective, Preset,
    StepTerms, TrainerSetup,
};
use latent_lab::run::{EvalReport, TrainConfig, TrainDefaults};

mod common;

/// `x` with the condition appended (zeros without one): the one-hot label joins the input of
/// both test families' networks.
fn join(x: Tensor<2>, cond: Option<Tensor<2>>, classes: usize) -> Tensor<2> {
    let cond = cond.unwrap_or_else(|| Tensor::zeros([x.dims()[0], classes], &x.device()));
    Tensor::cat(vec![x, cond], 1)
}

// ---- the family: what would be `src/model/cvae.rs` -----------------------------------------

struct CondVaeFamily;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct CondVaeConfig {
    pixels: usize,
    classes: usize,
    hidden: usize,
    latent: usize,
}

#[derive(Module, Debug)]
struct CondVae {
    enc: Linear,
    mu: Linear,
    logvar: Linear,
    dec: Linear,
    out: Linear,
    classes: usize,
}

impl Family for CondVaeFamily {
    fn id(&self) -> &'static str {
        "test-cvae"
    }
    fn presets(&self) -> &'static [Preset] {
        &[Preset {
            name: "test-cvae",
            about: "class-conditional MLP VAE (test)",
        }]
    }
    fn objective(&self) -> &'static Objective {
        &VAE_OBJECTIVE
    }
    fn train_defaults(&self) -> TrainDefaults {
        TrainDefaults {
            learning_rate: 1e-3,
            adam_beta1: 0.9,
            batch_size: 64,
        }
    }
    fn config(
        &self,
        _preset: &str,
        shape: ImageShape,
        o: &ModelOverrides,
    ) -> Result<Box<dyn ArchConfig>, ModelError> {
        Ok(Box::new(CondVaeConfig {
            pixels: shape.numel(),
            classes: 10,
            hidden: o.hidden.as_ref().map_or(64, |h| h[0]),
            latent: o.latent_dim.unwrap_or(4),
        }))
    }
    fn parse(&self, value: serde_json::Value) -> Result<Box<dyn ArchConfig>, String> {
        parse_config::<CondVaeConfig>(value)
    }
}

impl ArchConfig for CondVaeConfig {
    fn family(&self) -> &'static dyn Family {
        &CondVaeFamily
    }
    fn latent_dim(&self) -> usize {
        self.latent
    }
    fn validate(&self, shape: ImageShape) -> Result<bool, ModelError> {
        Ok(self.pixels == shape.numel() && self.classes > 0)
    }
    fn describe(&self) -> String {
        format!(
            "{}+{}-{}-{}",
            self.pixels, self.classes, self.hidden, self.latent
        )
    }
    fn overrides(&self) -> ModelOverrides {
        ModelOverrides {
            latent_dim: Some(self.latent),
            hidden: Some(vec![self.hidden]),
            ..Default::default()
        }
    }
    fn networks(&self, device: &Device) -> Box<dyn Nets> {
        Box::new(VaeNets::new(self.clone(), self.init_module(device)))
    }
}

impl VaeArch for CondVaeConfig {
    type Module = CondVae;
    fn init_module(&self, device: &Device) -> CondVae {
        let l = |i, o| LinearConfig::new(i, o).init(device);
        CondVae {
            enc: l(self.pixels + self.classes, self.hidden),
            mu: l(self.hidden, self.latent),
            logvar: l(self.hidden, self.latent),
            dec: l(self.latent + self.classes, self.hidden),
            out: l(self.hidden, self.pixels),
            classes: self.classes,
        }
    }
}

impl VaeModule for CondVae {
    fn encode(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        self.encode_with(x, None)
    }
    fn decode_logits(&self, z: Tensor<2>) -> Tensor<2> {
        self.decode_logits_with(z, None)
    }
    fn classes(&self) -> Option<usize> {
        Some(self.classes)
    }
    fn encode_with(&self, x: Tensor<2>, cond: Option<Tensor<2>>) -> (Tensor<2>, Tensor<2>) {
        let h = relu(self.enc.forward(join(x, cond, self.classes)));
        (self.mu.forward(h.clone()), self.logvar.forward(h))
    }
    fn decode_logits_with(&self, z: Tensor<2>, cond: Option<Tensor<2>>) -> Tensor<2> {
        self.out
            .forward(relu(self.dec.forward(join(z, cond, self.classes))))
    }
}

// ---- the test ------------------------------------------------------------------------------

fn values(t: StepTerms) -> Vec<f32> {
    match t {
        StepTerms::Device(t) => t.into_data().try_to_vec::<f32>().unwrap(),
        StepTerms::Host(v) => v,
    }
}

#[test]
fn a_conditional_family_plugs_in_from_one_file() {
    let data = common::mnist();
    let cpu = Backend::cpu().device;
    let device = cpu.clone().autodiff();
    device.seed(5);
    let arch = CondVaeFamily
        .config(
            "test-cvae",
            ImageShape::new(1, 28, 28),
            &ModelOverrides::default(),
        )
        .unwrap();
    assert!(arch.validate(ImageShape::new(1, 28, 28)).unwrap());
    let nets = arch.networks(&device);
    assert_eq!(nets.classes(), Some(10));
    let config = TrainConfig::with_defaults(CondVaeFamily.train_defaults());
    let (mut trainer, off) = nets
        .trainer(TrainerSetup {
            config: &config,
            device: &device,
            optims: None,
            fused: true,
            seed: 1,
        })
        .unwrap();
    // No fast CPU path: the family trains through burn's autodiff, and nothing is "off".
    assert!(trainer.path().is_none() && off.is_none());

    let mut buf = Vec::new();
    let mut losses = Vec::new();
    for step in 0..1400 {
        let idx: Vec<usize> = ((step % 140) * 64..(step % 140 + 1) * 64).collect();
        let batch = Batch {
            data: &data,
            idx: &idx,
        };
        losses.push(values(trainer.step(&batch, &config, &mut buf).unwrap())[0]);
    }
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[1395..].iter().sum::<f32>() / 5.0;
    assert!(last < 0.6 * first, "loss {first} → {last}");

    // The condition reaches the decoder: the same latent decoded as class c looks like the
    // training images of class c (nearest class mean) for nearly every class.
    let frozen = trainer.nets().inference_copy(&cpu);
    let classes: Vec<u32> = (0..10).collect();
    let z = Tensor::<2>::zeros([10, 4], &cpu);
    let images = frozen
        .decode_labelled(z, &classes)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let labels = data.labels.as_ref().unwrap();
    let mut means = vec![vec![0.0f32; 784]; 10];
    let mut counts = [0usize; 10];
    let mut px = Vec::new();
    data.gather_f32(&(0..9_000).collect::<Vec<_>>(), &mut px);
    for (i, img) in px.chunks(784).enumerate() {
        let c = labels[i] as usize;
        counts[c] += 1;
        for (m, v) in means[c].iter_mut().zip(img) {
            *m += v;
        }
    }
    for (m, n) in means.iter_mut().zip(counts) {
        m.iter_mut().for_each(|v| *v /= n as f32);
    }
    let dist = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>();
    let right = images
        .chunks(784)
        .enumerate()
        .filter(|(c, img)| {
            let nearest = (0..10)
                .min_by(|&i, &j| dist(img, &means[i]).total_cmp(&dist(img, &means[j])))
                .unwrap();
            nearest == *c
        })
        .count();
    assert!(
        right >= 7,
        "only {right} of 10 conditional decodes look like their class"
    );

    // Evaluation hands the test labels to the model too.
    let test: Vec<usize> = (9_000..9_500).collect();
    let EvalReport::Vae(r) = frozen.evaluate(&data, &test, 5, &cpu).unwrap() else {
        panic!("a VAE report");
    };
    assert!(r.neg_elbo.is_finite() && r.iwae_nll.is_some_and(|v| v <= r.neg_elbo + 1.0));

    // Data without labels is refused in words, not trained on with a zero condition.
    let mut unlabelled = latent_lab::data::DataSource::Shapes {
        count: 64,
        size: 28,
        seed: 1,
    }
    .load()
    .unwrap();
    unlabelled.labels = None;
    let idx: Vec<usize> = (0..16).collect();
    let batch = Batch {
        data: &unlabelled,
        idx: &idx,
    };
    let err = match trainer.step(&batch, &config, &mut buf) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("trained on unlabelled data"),
    };
    assert!(err.contains("needs class labels"), "{err}");
}

// ---- a conditional GAN family: what would be `src/model/cgan.rs` ------------------------------

struct CondGanFamily;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct CondGanConfig {
    pixels: usize,
    classes: usize,
    hidden: usize,
    latent: usize,
}

#[derive(Module, Debug)]
struct CondGen {
    h: Linear,
    out: Linear,
    classes: usize,
}

#[derive(Module, Debug)]
struct CondDisc {
    h: Linear,
    out: Linear,
    classes: usize,
}

impl Family for CondGanFamily {
    fn id(&self) -> &'static str {
        "test-cgan"
    }
    fn presets(&self) -> &'static [Preset] {
        &[Preset {
            name: "test-cgan",
            about: "class-conditional MLP GAN (test)",
        }]
    }
    fn objective(&self) -> &'static Objective {
        &GAN_OBJECTIVE
    }
    fn train_defaults(&self) -> TrainDefaults {
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
        _o: &ModelOverrides,
    ) -> Result<Box<dyn ArchConfig>, ModelError> {
        Ok(Box::new(CondGanConfig {
            pixels: shape.numel(),
            classes: 10,
            hidden: 32,
            latent: 8,
        }))
    }
    fn parse(&self, value: serde_json::Value) -> Result<Box<dyn ArchConfig>, String> {
        parse_config::<CondGanConfig>(value)
    }
}

impl ArchConfig for CondGanConfig {
    fn family(&self) -> &'static dyn Family {
        &CondGanFamily
    }
    fn latent_dim(&self) -> usize {
        self.latent
    }
    fn validate(&self, shape: ImageShape) -> Result<bool, ModelError> {
        Ok(self.pixels == shape.numel())
    }
    fn describe(&self) -> String {
        format!(
            "z {}+{} → {} → {}",
            self.latent, self.classes, self.hidden, self.pixels
        )
    }
    fn overrides(&self) -> ModelOverrides {
        ModelOverrides::default()
    }
    fn networks(&self, device: &Device) -> Box<dyn Nets> {
        Box::new(GanNets::new(
            self.clone(),
            self.init_gen(device),
            self.init_disc(device),
        ))
    }
}

impl GanArch for CondGanConfig {
    type Gen = CondGen;
    type Disc = CondDisc;
    fn init_gen(&self, device: &Device) -> CondGen {
        CondGen {
            h: LinearConfig::new(self.latent + self.classes, self.hidden).init(device),
            out: LinearConfig::new(self.hidden, self.pixels).init(device),
            classes: self.classes,
        }
    }
    fn init_disc(&self, device: &Device) -> CondDisc {
        CondDisc {
            h: LinearConfig::new(self.pixels + self.classes, self.hidden).init(device),
            out: LinearConfig::new(self.hidden, 1).init(device),
            classes: self.classes,
        }
    }
}

impl GenModule for CondGen {
    fn forward(&self, z: Tensor<2>) -> Tensor<2> {
        self.forward_with(z, None)
    }
    fn classes(&self) -> Option<usize> {
        Some(self.classes)
    }
    fn forward_with(&self, z: Tensor<2>, cond: Option<Tensor<2>>) -> Tensor<2> {
        let h = relu(self.h.forward(join(z, cond, self.classes)));
        burn::tensor::activation::tanh(self.out.forward(h))
    }
}

impl DiscModule for CondDisc {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward_with(x, None)
    }
    fn forward_with(&self, x: Tensor<2>, cond: Option<Tensor<2>>) -> Tensor<2> {
        let h = relu(self.h.forward(join(x, cond, self.classes)));
        self.out.forward(h)
    }
}

/// The rows of a `[in, out]` linear weight from row `from` on.
fn rows_from(l: &Linear, from: usize) -> Vec<f32> {
    let [_, out] = l.weight.dims();
    let w = l.weight.val().into_data().try_to_vec::<f32>().unwrap();
    w[from * out..].to_vec()
}

#[test]
fn a_conditional_gan_gets_the_labels_in_its_step_and_decodes_by_class() {
    let data = common::mnist();
    let cpu = Backend::cpu().device;
    let device = cpu.clone().autodiff();
    device.seed(6);
    let cfg = CondGanConfig {
        pixels: 784,
        classes: 10,
        hidden: 32,
        latent: 8,
    };
    let nets = cfg.networks(&device);
    assert_eq!(nets.classes(), Some(10));
    let before = nets
        .as_any()
        .downcast_ref::<GanNets<CondGanConfig>>()
        .unwrap();
    let (g_rows, d_rows) = (rows_from(&before.gen.h, 8), rows_from(&before.disc.h, 784));
    let config = TrainConfig::with_defaults(CondGanFamily.train_defaults());
    let (mut trainer, off) = nets
        .trainer(TrainerSetup {
            config: &config,
            device: &device,
            optims: None,
            fused: true,
            seed: 1,
        })
        .unwrap();
    assert!(trainer.path().is_none() && off.is_none());
    let mut buf = Vec::new();
    for step in 0..5 {
        let idx: Vec<usize> = (step * 64..(step + 1) * 64).collect();
        let batch = Batch {
            data: &data,
            idx: &idx,
        };
        let terms = values(trainer.step(&batch, &config, &mut buf).unwrap());
        assert!(terms.iter().all(|t| t.is_finite()), "{terms:?}");
    }
    // The one-hot inputs of both networks got gradients: the labels reached G and D.
    let trained = trainer.nets();
    let after = trained
        .as_any()
        .downcast_ref::<GanNets<CondGanConfig>>()
        .unwrap();
    assert_ne!(
        rows_from(&after.gen.h, 8),
        g_rows,
        "G's label inputs never trained"
    );
    assert_ne!(
        rows_from(&after.disc.h, 784),
        d_rows,
        "D's label inputs never trained"
    );
    // Labelled decoding: one latent, two classes, two images.
    let frozen = trained.inference_copy(&cpu);
    let z = Tensor::<2>::zeros([2, 8], &cpu);
    let px = frozen
        .decode_labelled(z, &[3, 8])
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_ne!(px[..784], px[784..], "the class does not reach the decoder");
    // Evaluation on the labelled test split, and unlabelled data refused.
    let test: Vec<usize> = (9_000..9_250).collect();
    let EvalReport::Gan(r) = frozen.evaluate(&data, &test, 0, &cpu).unwrap() else {
        panic!("a GAN report");
    };
    assert!(r.d_loss.is_finite() && (0.0..=1.0).contains(&r.d_real));
    let mut unlabelled = latent_lab::data::DataSource::Shapes {
        count: 64,
        size: 28,
        seed: 1,
    }
    .load()
    .unwrap();
    unlabelled.labels = None;
    let idx: Vec<usize> = (0..16).collect();
    let batch = Batch {
        data: &unlabelled,
        idx: &idx,
    };
    let err = match trainer.step(&batch, &config, &mut buf) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("trained on unlabelled data"),
    };
    assert!(err.contains("needs class labels"), "{err}");
}
