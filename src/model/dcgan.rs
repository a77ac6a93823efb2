//! The DCGAN family for small square images (Radford et al. 2016, scaled to 28×28 / 32×32);
//! preset `dcgan`.
//!
//! With `n` stride-2 stages (2 at 28/32 px, one more per doubling: [`conv_stages`]):
//! G: z → dense → (2ⁿ⁻¹w, s/2ⁿ) BN ReLU → [convT → BN ReLU, halving the channels] → … →
//!    convT → (w, s/2, s/2) BN ReLU → convT → (c, s, s) tanh.
//! D: conv (w) LeakyReLU → conv (2w) BN LeakyReLU → [conv → BN LeakyReLU, doubling] → … →
//!    dense → 1 logit.
//! Stages beyond the first two live in `extra` (empty at 28/32 px, so those modules and
//! their checkpoints are what they were before the side scaled).

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, tanh};

use super::checks::{conv_config_ok, conv_describe, conv_shape, conv_stages};
use super::conv_vae::{down_conv_with, up_conv_with};
use super::family::{parse_config_with, ArchConfig, Family, Nets, Objective, Preset};
use super::gan_objective::{DiscModule, FusedGanNet, GanArch, GanNets, GenModule, GAN_OBJECTIVE};
use super::{ImageShape, ModelError, ModelOverrides};
use crate::cpu::{
    adam_record_bytes_of, disc_loss_and_grad, fill_normal, gan_terms, gen_loss_and_grad, Act,
    AdamHyper, AdamState, Bn, BnStats, ConvLayer, ConvScratch, Dense, Epilogue,
};
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
        let mut cfg =
            DcganConfig::new(shape.channels, shape.height).with_stages(conv_stages(shape.height));
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
        parse_config_with::<DcganConfig>(value, &[("stages", serde_json::json!(2))])
    }
}

#[derive(Config, Debug)]
pub struct DcganConfig {
    pub channels: usize,
    /// Image side; divisible by 4.
    pub size: usize,
    #[config(default = 100)]
    pub latent: usize,
    /// Base channel count (each further stage inward has twice as many).
    #[config(default = 32)]
    pub width: usize,
    /// Stride-2 stages (checkpoints from before the side scaled have none saved: 2).
    #[config(default = 2)]
    pub stages: usize,
}

/// A transposed convolution and its batch norm (a stage of G beyond the first two).
#[derive(Module, Debug)]
pub struct UpBlock {
    pub(crate) conv: ConvTranspose2d,
    pub(crate) bn: BatchNorm,
}

/// A convolution and its batch norm (a stage of D beyond the first two).
#[derive(Module, Debug)]
pub struct DownBlock {
    pub(crate) conv: Conv2d,
    pub(crate) bn: BatchNorm,
}

#[derive(Module, Debug)]
pub struct DcGenerator {
    pub(crate) fc: Linear,
    pub(crate) bn0: BatchNorm,
    /// Stages beyond the first two, widest first (none at 28/32 px).
    pub(crate) extra: Vec<UpBlock>,
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
    /// Stages beyond the first two (none at 28/32 px).
    pub(crate) extra: Vec<DownBlock>,
    pub(crate) out: Linear,
    pub(crate) channels: usize,
    pub(crate) size: usize,
}

/// D's activation, in the burn module and on the fast CPU path.
const LEAKY: Act = Act::LeakyRelu(0.2);

impl DcganConfig {
    /// The innermost map: (channels, side).
    fn inner(&self) -> (usize, usize) {
        (self.width << (self.stages - 1), self.size >> self.stages)
    }

    /// G with burn's initialisers (cdcgan, sngan); the `dcgan` family's own uses
    /// [`PAPER_INIT`].
    pub fn init_generator(&self, device: &Device) -> DcGenerator {
        self.init_generator_with(None, device)
    }

    /// D with burn's initialisers, as [`DcganConfig::init_generator`].
    pub fn init_discriminator(&self, device: &Device) -> DcDiscriminator {
        self.init_discriminator_with(None, device)
    }

    fn init_generator_with(&self, init: Option<&Initializer>, device: &Device) -> DcGenerator {
        let (c, q) = self.inner();
        let extra = (2..self.stages)
            .rev()
            .map(|i| UpBlock {
                conv: up_conv_with(self.width << i, self.width << (i - 1), init, device),
                bn: BatchNormConfig::new(self.width << (i - 1)).init(device),
            })
            .collect();
        DcGenerator {
            fc: linear(self.latent, c * q * q, init, device),
            bn0: BatchNormConfig::new(c).init(device),
            extra,
            t1: up_conv_with(2 * self.width, self.width, init, device),
            bn1: BatchNormConfig::new(self.width).init(device),
            t2: up_conv_with(self.width, self.channels, init, device),
            width: self.width,
            size: self.size,
        }
    }

    fn init_discriminator_with(
        &self,
        init: Option<&Initializer>,
        device: &Device,
    ) -> DcDiscriminator {
        let (c, q) = self.inner();
        let extra = (2..self.stages)
            .map(|i| DownBlock {
                conv: down_conv_with(self.width << (i - 1), self.width << i, init, device),
                bn: BatchNormConfig::new(self.width << i).init(device),
            })
            .collect();
        DcDiscriminator {
            c1: down_conv_with(self.channels, self.width, init, device),
            c2: down_conv_with(self.width, 2 * self.width, init, device),
            bn2: BatchNormConfig::new(2 * self.width).init(device),
            extra,
            out: linear(c * q * q, 1, init, device),
            channels: self.channels,
            size: self.size,
        }
    }
}

/// A dense layer; `init` replaces burn's initialiser.
fn linear(d_in: usize, d_out: usize, init: Option<&Initializer>, device: &Device) -> Linear {
    let mut cfg = LinearConfig::new(d_in, d_out);
    if let Some(i) = init {
        cfg = cfg.with_initializer(i.clone());
    }
    cfg.init(device)
}

/// The DCGAN paper's initialisation (Radford et al. 2016, §4): convolution and dense weights
/// (and here their biases) from N(0, 0.02); batch-norm scales stay 1. burn's default
/// (Kaiming-uniform, like PyTorch's) left the 10-epoch MNIST DCGAN at FID 25.7 (median of 3
/// seeds, `latent-lab score`); with this it is 18.3 (PyTorch's same net: 28.2 and 16.6).
/// As burn's own initialisers it is lazy: a module about to load a checkpoint allocates
/// and draws nothing.
pub const PAPER_INIT: Initializer = Initializer::Normal {
    mean: 0.0,
    std: 0.02,
};

impl DcGenerator {
    /// The first layer: `z` projected to the smallest feature map, after batch norm and ReLU.
    fn projected(&self, z: Tensor<2>) -> Tensor<4> {
        let [b, _] = z.dims();
        let stages = self.extra.len() + 2;
        let q = self.size >> stages;
        let h = self
            .fc
            .forward(z)
            .reshape([b, self.width << (stages - 1), q, q]);
        relu(self.bn0.forward(h))
    }
}

impl GenModule for DcGenerator {
    /// `[batch, latent]` → `[batch, c·s·s]` in [-1, 1].
    fn forward(&self, z: Tensor<2>) -> Tensor<2> {
        let mut h = self.projected(z);
        for block in &self.extra {
            h = relu(block.bn.forward(block.conv.forward(h)));
        }
        let h = relu(self.bn1.forward(self.t1.forward(h))); // [b, w, s/2, s/2]
        tanh(self.t2.forward(h)).flatten(1, 3) // [b, c·s·s]
    }

    /// The projected latent after its batch norm and ReLU, flattened to `[b, features]`.
    fn first_hidden(&self, z: Tensor<2>) -> Option<Tensor<2>> {
        Some(self.projected(z).flatten(1, 3))
    }
}

impl DcDiscriminator {
    /// `[batch, c·s·s]` → the features the output layer reads, `[batch, flat]` (also a
    /// projection discriminator's, `cdcgan.rs`).
    pub(crate) fn features(&self, x: Tensor<2>) -> Tensor<2> {
        let [b, _] = x.dims();
        let x = x.reshape([b, self.channels, self.size, self.size]);
        let h = LEAKY.tensor(self.c1.forward(x));
        let mut h = LEAKY.tensor(self.bn2.forward(self.c2.forward(h)));
        for block in &self.extra {
            h = LEAKY.tensor(block.bn.forward(block.conv.forward(h)));
        }
        h.flatten(1, 3)
    }

    /// The width of [`DcDiscriminator::features`].
    pub(crate) fn feature_width(&self) -> usize {
        self.out.weight.dims()[0]
    }
}

impl DiscModule for DcDiscriminator {
    /// `[batch, c·s·s]` → logits `[batch, 1]`.
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.out.forward(self.features(x))
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
        let dims = (self.channels, self.size, self.stages);
        conv_config_ok(s, "dcgan", dims, self.latent, self.width)
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
        GanNets::init(self, device)
    }
}

impl GanArch for DcganConfig {
    type Gen = DcGenerator;
    type Disc = DcDiscriminator;

    /// The DCGAN's networks start from [`PAPER_INIT`] (cdcgan and sngan, which reuse these
    /// modules, keep burn's: with it the projection discriminator of cdcgan won from the
    /// first epoch and its generator never recovered, FID 944).
    fn init_gen(&self, device: &Device) -> DcGenerator {
        self.init_generator_with(Some(&PAPER_INIT), device)
    }

    fn init_disc(&self, device: &Device) -> DcDiscriminator {
        self.init_discriminator_with(Some(&PAPER_INIT), device)
    }

    fn fused(
        &self,
        gen: &DcGenerator,
        disc: &DcDiscriminator,
        (opt_g, opt_d): (Vec<u8>, Vec<u8>),
        seed: u64,
    ) -> Option<Result<Box<dyn FusedGanNet<DcGenerator, DcDiscriminator>>, TrainError>> {
        if !gen.extra.is_empty() || !disc.extra.is_empty() {
            return Some(Err(TrainError::Invalid(format!(
                "the fast DCGAN path has 2 stages, this {} px model {}",
                self.size, self.stages
            ))));
        }
        let fast = DcganFast::new(gen, disc, opt_g, opt_d, seed);
        Some(fast.map(|f| Box::new(f) as Box<dyn FusedGanNet<_, _>>))
    }
}

// ---- the fast CPU path: the same layers as `crate::cpu` layers ------------------------------
//
// The step over plain buffers takes the same layers, batch-norm statistics (three running
// updates of D's batch norm per step, in burn's order) and losses as `gan_objective`'s step.

/// Back through one generator block, `t(relu(bn(a)))` with `t_in = relu(bn(a))`, from
/// `d_out` (the gradient w.r.t. t's output) via `d_in` (w.r.t. `t_in`) to `d_a` (w.r.t.
/// `a`); t's and bn's parameter gradients are set.
#[allow(clippy::too_many_arguments)]
fn up_block_backward(
    t: &mut ConvLayer,
    bn: &mut Bn,
    t_in: &[f32],
    a: &[f32],
    st: &mut BnStats,
    rows: usize,
    d_out: &[f32],
    d_in: &mut Vec<f32>,
    d_a: &mut Vec<f32>,
    scratch: &mut ConvScratch,
) {
    t.t_backward(t_in, rows, d_out, Some((&mut *d_in, Act::Relu)), scratch);
    d_a.resize(d_in.len(), 0.0);
    bn.gamma.zero_grad();
    bn.beta.zero_grad();
    let hw = t.geom.h_out * t.geom.w_out;
    bn.backward(a, rows, hw, d_in, st, d_a, true);
}

/// One pass through D: its activations, gradients and convolution scratch. The D step's
/// pass (over 2·B images) and the G step's (over B) each have their own, as every buffer in
/// [`Work`] has one use, so that none changes size from step to step (growing a `Vec` zeroes
/// the new part: megabytes per step, on one core).
#[derive(Default)]
pub(crate) struct DPass {
    a3: Vec<f32>,
    a4: Vec<f32>,
    n4: Vec<f32>,
    logits: Vec<f32>,
    s_real: BnStats,
    s_fake: BnStats,
    /// The columns of the forward pass, reused by the backward pass.
    cc1: ConvScratch,
    cc2: ConvScratch,
    d1: Vec<f32>,
    d2: Vec<f32>,
    d3: Vec<f32>,
    /// Gradient w.r.t. D's input (when asked for).
    dx: Vec<f32>,
}

#[derive(Default)]
pub(crate) struct Work {
    z: Vec<f32>,
    // generator
    a0: Vec<f32>,
    n0: Vec<f32>,
    a1: Vec<f32>,
    n1: Vec<f32>,
    fake: Vec<f32>,
    s0: BnStats,
    s1: BnStats,
    ct1: ConvScratch,
    ct2: ConvScratch,
    // generator gradients: w.r.t. n1, a1, n0, a0
    e_n1: Vec<f32>,
    e_a1: Vec<f32>,
    e_n0: Vec<f32>,
    e_a0: Vec<f32>,
    // discriminator: [real; fake] in the D step, fake in the G step
    both: Vec<f32>,
    d_step: DPass,
    g_step: DPass,
}

impl Clone for Work {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// DCGAN generator and discriminator with their Adam states.
#[derive(Clone)]
pub(crate) struct FusedDcgan<S> {
    pub(crate) fc: Dense,
    pub(crate) bn0: Bn,
    pub(crate) t1: ConvLayer,
    pub(crate) bn1: Bn,
    pub(crate) t2: ConvLayer,
    pub(crate) c1: ConvLayer,
    pub(crate) c2: ConvLayer,
    pub(crate) bn2: Bn,
    pub(crate) out: Dense,
    /// The burn modules the weights go back into (configuration, padding).
    pub(crate) shells: S,
    /// (channels, size) of the images.
    pub(crate) dims: (usize, usize),
    /// D's activation (the family's, read from its description).
    pub(crate) leaky: Act,
    pub(crate) rng: SplitMix64,
    pub(crate) work: Work,
}

impl<S: Clone> FusedDcgan<S> {
    pub fn reseed(&mut self, seed: u64) {
        self.rng = SplitMix64::new(seed);
    }

    pub fn optim_bytes(&self) -> Result<(Vec<u8>, Vec<u8>), TrainError> {
        let g = adam_record_bytes_of(
            [&self.fc],
            self.t1
                .params()
                .into_iter()
                .chain(self.t2.params())
                .chain(self.bn0.params())
                .chain(self.bn1.params()),
        )?;
        let d = adam_record_bytes_of(
            [&self.out],
            self.c1
                .params()
                .into_iter()
                .chain(self.c2.params())
                .chain(self.bn2.params()),
        )?;
        Ok((g, d))
    }

    pub fn step(&mut self, real: &[f32], rows: usize, lr: f32, h: AdamHyper) -> [f32; 4] {
        let latent = self.fc.inp;
        let mut z = std::mem::take(&mut self.work.z);
        fill_normal(&mut self.rng, &mut z, rows * latent);
        let terms = self.step_with_latents(real, rows, &z, lr, h);
        self.work.z = z;
        terms
    }

    /// D's layers up to the logits on `x` (`rows` images), in the D step's pass or the G
    /// step's. With `split = Some(k)`, batch norm takes its statistics separately over the
    /// first `k` rows and the rest (burn runs D once on the real and once on the fake batch).
    fn d_forward(&mut self, x: &[f32], rows: usize, split: Option<usize>, d_step: bool) {
        let leaky = self.leaky;
        let w = if d_step {
            &mut self.work.d_step
        } else {
            &mut self.work.g_step
        };
        // Only the D step computes D's weight gradients, from the columns kept here.
        let keep = d_step;
        self.c1.forward(x, rows, leaky, &mut w.a3, &mut w.cc1, keep);
        let id = Act::Identity;
        self.c2
            .forward(&w.a3, rows, id, &mut w.a4, &mut w.cc2, keep);
        let g2 = &self.c2.geom;
        let hw = g2.h_out * g2.w_out;
        let per = g2.c_out * hw;
        w.n4.resize(rows * per, 0.0);
        match split {
            Some(k) => {
                let (x1, x2) = w.a4.split_at(k * per);
                let (y1, y2) = w.n4.split_at_mut(k * per);
                self.bn2.forward(x1, k, hw, leaky, y1, &mut w.s_real);
                self.bn2.forward(x2, rows - k, hw, leaky, y2, &mut w.s_fake);
            }
            None => self
                .bn2
                .forward(&w.a4, rows, hw, leaky, &mut w.n4, &mut w.s_fake),
        }
        self.out.forward(&w.n4, rows, &mut w.logits, Act::Identity);
    }

    /// Back through D from the pass's `logits` (holding d loss / d logits) to its input. In
    /// the D step D's parameter gradients are set; in the G step the input gradient goes
    /// into the pass's `dx` instead (no parameter gradients).
    fn d_backward(&mut self, rows: usize, split: Option<usize>, d_step: bool) {
        let leaky = self.leaky;
        let params = d_step;
        let w = if d_step {
            &mut self.work.d_step
        } else {
            &mut self.work.g_step
        };
        self.out.backward(
            &w.n4,
            rows,
            &w.logits,
            params.then_some(false),
            Some((&mut w.d1, false)),
        );
        leaky.backward(&w.n4, &mut w.d1);
        let hw = self.c2.geom.h_out * self.c2.geom.w_out;
        let per = self.c2.geom.c_out * hw;
        w.d2.resize(rows * per, 0.0);
        if params {
            self.bn2.gamma.zero_grad();
            self.bn2.beta.zero_grad();
        }
        match split {
            Some(k) => {
                let (x1, x2) = w.a4.split_at(k * per);
                let (g1, g2) = w.d1.split_at(k * per);
                let (o1, o2) = w.d2.split_at_mut(k * per);
                self.bn2.backward(x1, k, hw, g1, &mut w.s_real, o1, params);
                self.bn2
                    .backward(x2, rows - k, hw, g2, &mut w.s_fake, o2, params);
            }
            None => self
                .bn2
                .backward(&w.a4, rows, hw, &w.d1, &mut w.s_fake, &mut w.d2, params),
        }
        // d a4 in d2 → c2 → leaky → d (pre-leaky h3) in d3 → c1 (params, or input into
        // dx). The columns d_forward left in cc1/cc2 are reused.
        let dx = Some((&mut w.d3, Epilogue::ActGrad(leaky, &w.a3)));
        self.c2.backward(rows, &w.d2, params, dx, &mut w.cc2);
        let dx = (!params).then_some((&mut w.dx, Epilogue::None));
        self.c1.backward(rows, &w.d3, params, dx, &mut w.cc1);
    }

    pub fn step_with_latents(
        &mut self,
        real: &[f32],
        rows: usize,
        z: &[f32],
        lr: f32,
        h: AdamHyper,
    ) -> [f32; 4] {
        let (channels, size) = self.dims;
        let q = size / 4;
        assert_eq!(real.len(), rows * channels * size * size, "batch size");

        // G(z), train-mode batch norm.
        {
            let w = &mut self.work;
            self.fc.forward(z, rows, &mut w.a0, Act::Identity);
            w.n0.resize(w.a0.len(), 0.0);
            self.bn0
                .forward(&w.a0, rows, q * q, Act::Relu, &mut w.n0, &mut w.s0);
            let id = Act::Identity;
            self.t1.t_forward(&w.n0, rows, id, &mut w.a1, &mut w.ct1);
            w.n1.resize(w.a1.len(), 0.0);
            self.bn1
                .forward(&w.a1, rows, 4 * q * q, Act::Relu, &mut w.n1, &mut w.s1);
            let tanh = Act::Tanh;
            self.t2
                .t_forward(&w.n1, rows, tanh, &mut w.fake, &mut w.ct2);
            w.both.clear();
            w.both.extend_from_slice(real);
            w.both.extend_from_slice(&w.fake);
        }

        // D on real, then on the detached fake (separate batch statistics).
        let both = std::mem::take(&mut self.work.both);
        self.d_forward(&both, 2 * rows, Some(rows), true);
        let d_sums = disc_loss_and_grad(&mut self.work.d_step.logits, rows);
        self.d_backward(2 * rows, Some(rows), true);
        self.work.both = both;
        self.c1.adam(lr, h);
        self.c2.adam(lr, h);
        self.bn2.adam(lr, h);
        self.out.adam(lr, h);

        // G through the updated D.
        let fake = std::mem::take(&mut self.work.fake);
        self.d_forward(&fake, rows, None, false);
        let g_loss = gen_loss_and_grad(&mut self.work.g_step.logits);
        self.d_backward(rows, None, false);
        {
            let w = &mut self.work;
            let d_fake = &mut w.g_step.dx;
            Act::Tanh.backward(&fake, d_fake); // d a2
            up_block_backward(
                &mut self.t2,
                &mut self.bn1,
                &w.n1,
                &w.a1,
                &mut w.s1,
                rows,
                d_fake,
                &mut w.e_n1,
                &mut w.e_a1,
                &mut w.ct2,
            );
            up_block_backward(
                &mut self.t1,
                &mut self.bn0,
                &w.n0,
                &w.a0,
                &mut w.s0,
                rows,
                &w.e_a1,
                &mut w.e_n0,
                &mut w.e_a0,
                &mut w.ct1,
            );
            self.fc.backward(z, rows, &w.e_a0, Some(false), None);
        }
        self.work.fake = fake;
        self.fc.adam(lr, h);
        self.t1.adam(lr, h);
        self.t2.adam(lr, h);
        self.bn0.adam(lr, h);
        self.bn1.adam(lr, h);

        gan_terms(&d_sums, g_loss, rows)
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
