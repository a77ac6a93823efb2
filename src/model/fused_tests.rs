//! The fused path must take exactly the steps burn's autodiff takes.

use burn::nn::Linear;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Bytes;

use super::conv_vae::FusedConvVae;
use super::gan::FusedGan;
use super::gan_objective::{gan_step_with_latents, GanLoss};
use super::tensors::{optim_bytes, read_f32};
use super::vae::FusedMlpVae;
use super::vae_objective::{vae_step_with_noise, VaeModule};
use super::{ConvVae, ConvVaeConfig, MlpGanConfig, MlpVae, MlpVaeConfig};
use crate::cpu::{AdamHyper, Decoder, Encoder, FusedVae};
use crate::data::SplitMix64;
use crate::infer::normal_latents;

const H: AdamHyper = AdamHyper {
    beta1: 0.5,
    beta2: 0.999,
    epsilon: 1e-8,
};

fn adam() -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(H.beta1)
        .with_beta_2(H.beta2)
        .with_epsilon(H.epsilon)
        .init()
}

fn uniform(rng: &mut SplitMix64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| lo + (hi - lo) * rng.next_f32()).collect()
}

fn tensor(v: &[f32], rows: usize, device: &Device) -> Tensor<2> {
    let cols = v.len() / rows;
    Tensor::from_data(TensorData::new(v.to_vec(), [rows, cols]), device)
}

fn weights<'a>(layers: impl IntoIterator<Item = &'a Linear>) -> Vec<f32> {
    let mut out = Vec::new();
    for l in layers {
        out.extend(read_f32(l.weight.val()).unwrap());
        out.extend(read_f32(l.bias.as_ref().unwrap().val()).unwrap());
    }
    out
}

fn vae_weights(m: &crate::model::MlpVae) -> Vec<f32> {
    let (enc, mu, lv, dec, out) = m.parts();
    weights(enc.iter().chain([mu, lv]).chain(dec).chain([out]))
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 2e-6 + 2e-5 * scale,
        "{what}: largest difference {worst} (scale {scale})"
    );
}

fn conv_weights(c: &burn::nn::conv::Conv2d) -> Vec<f32> {
    let mut out = read_f32(c.weight.val()).unwrap();
    out.extend(read_f32(c.bias.as_ref().unwrap().val()).unwrap());
    out
}

fn conv_t_weights(c: &burn::nn::conv::ConvTranspose2d) -> Vec<f32> {
    let mut out = read_f32(c.weight.val()).unwrap();
    out.extend(read_f32(c.bias.as_ref().unwrap().val()).unwrap());
    out
}

/// Every weight of a VAE, in a fixed order.
trait AllWeights {
    fn all_weights(&self) -> Vec<f32>;
}

impl AllWeights for MlpVae {
    fn all_weights(&self) -> Vec<f32> {
        vae_weights(self)
    }
}

impl AllWeights for ConvVae {
    fn all_weights(&self) -> Vec<f32> {
        let m = self;
        let mut out = conv_weights(&m.c1);
        out.extend(conv_weights(&m.c2));
        out.extend(weights([&m.fc, &m.mu, &m.logvar, &m.d_fc, &m.d_fc2]));
        out.extend(conv_t_weights(&m.t1));
        out.extend(conv_t_weights(&m.t2));
        out
    }
}

fn any_vae_weights<M: AllWeights>(m: &M) -> Vec<f32> {
    m.all_weights()
}

/// Four steps of `init` through burn's autodiff and through the fused VAE built by `new`
/// (read back as burn's model by `net`) give the same loss terms and weights, and one more
/// step from either path's Adam state on either path agrees.
fn check_vae_steps<M: VaeModule + AllWeights, E: Encoder, D: Decoder>(
    init: M,
    pixels: usize,
    latent: usize,
    new: impl Fn(&M, Vec<u8>, u64) -> FusedVae<E, D>,
    net: impl Fn(&FusedVae<E, D>) -> M,
    device: &Device,
) {
    let (rows, lr, beta) = (5, 1e-2, 0.7);
    let mut optim = adam();
    let mut fused = new(&init, optim_bytes(&optim).unwrap(), 1);
    let mut model = init;
    let mut rng = SplitMix64::new(3);
    let burn_step = |model: M, optim: &mut ModuleOptimizer, x: &[f32], eps: &[f32]| {
        let xt = tensor(x, rows, device);
        let enc = model.encode(xt.clone());
        let (m, terms) = vae_step_with_noise(
            model,
            optim,
            (xt, None),
            enc,
            tensor(eps, rows, device),
            lr,
            beta,
        );
        (m, read_f32(terms).unwrap())
    };
    for step in 0..4 {
        let x = uniform(&mut rng, rows * pixels, 0.0, 1.0);
        let eps = normal_latents(rows, latent, step);
        let (m, want) = burn_step(model, &mut optim, &x, &eps);
        model = m;
        let got = fused.step_with_noise(&x, rows, &eps, lr as f32, beta as f32, H);
        assert_close(&got, &want, &format!("loss terms at step {step}"));
        assert_close(
            &any_vae_weights(&net(&fused)),
            &any_vae_weights(&model),
            &format!("weights after step {step}"),
        );
    }
    // The Adam state crosses between the two paths through burn's optimiser record: one more
    // step from either state on either path gives the same weights.
    let mut from_burn = new(&model, optim_bytes(&optim).unwrap(), 5);
    let mut from_fused = adam()
        .from_bytes(Bytes::from_bytes_vec(fused.optim_bytes().unwrap()))
        .unwrap();
    let x = uniform(&mut rng, rows * pixels, 0.0, 1.0);
    let eps = normal_latents(rows, latent, 99);
    let fused_model = net(&fused);
    let (burn_a, terms_a) = burn_step(model, &mut optim, &x, &eps);
    let (burn_b, terms_b) = burn_step(fused_model, &mut from_fused, &x, &eps);
    let terms_c = fused.step_with_noise(&x, rows, &eps, lr as f32, beta as f32, H);
    let terms_d = from_burn.step_with_noise(&x, rows, &eps, lr as f32, beta as f32, H);
    let want = any_vae_weights(&burn_a);
    assert_close(
        &any_vae_weights(&burn_b),
        &want,
        "burn step from the fused Adam state",
    );
    assert_close(&any_vae_weights(&net(&fused)), &want, "fused step");
    assert_close(
        &any_vae_weights(&net(&from_burn)),
        &want,
        "fused step from burn's Adam state",
    );
    for t in [&terms_b[..], &terms_c, &terms_d] {
        assert_close(t, &terms_a, "terms after the hand-over");
    }
}

#[test]
fn vae_steps_equal_burn_autodiff_steps() {
    let device = Device::flex().autodiff();
    device.seed(7);
    let (pixels, latent) = (12, 3);
    let init = MlpVaeConfig::new(pixels)
        .with_hidden(vec![9, 7])
        .with_latent(latent)
        .init(&device);
    let new = |m: &MlpVae, bytes, seed| FusedMlpVae::new(m, bytes, seed).unwrap();
    let net = |f: &FusedMlpVae| f.model(&device);
    check_vae_steps(init, pixels, latent, new, net, &device);
}

#[test]
fn conv_vae_steps_equal_burn_autodiff_steps() {
    // Greyscale 8×8, and RGB 12×12 (whose second convolution ends on odd 3×3 planes).
    for (channels, size) in [(1, 8), (3, 12)] {
        let device = Device::flex().autodiff();
        device.seed(8);
        let latent = 3;
        let shell = ConvVaeConfig::new(channels, size)
            .with_latent(latent)
            .with_width(4)
            .with_dense(10)
            .init(&device);
        let new = |m: &ConvVae, bytes, seed| FusedConvVae::new(m, bytes, seed).unwrap();
        let net = |f: &FusedConvVae| f.model(&shell, &device);
        let pixels = channels * size * size;
        check_vae_steps(shell.clone(), pixels, latent, new, net, &device);
    }
}

#[test]
fn gan_steps_equal_burn_autodiff_steps() {
    let device = Device::flex().autodiff();
    device.seed(11);
    let (pixels, latent, rows, lr) = (12, 4, 6, 5e-3);
    let cfg = MlpGanConfig::new(pixels)
        .with_latent(latent)
        .with_g_hidden(vec![6, 8])
        .with_d_hidden(vec![8, 5]);
    let (g0, d0) = (cfg.init_generator(&device), cfg.init_discriminator(&device));
    let (mut opt_g, mut opt_d) = (adam(), adam());
    let mut fused = FusedGan::new(
        &g0,
        &d0,
        optim_bytes(&opt_g).unwrap(),
        optim_bytes(&opt_d).unwrap(),
        1,
    )
    .unwrap();
    let (mut gen, mut disc) = (g0, d0);
    let mut rng = SplitMix64::new(5);
    for step in 0..4 {
        let real = uniform(&mut rng, rows * pixels, -1.0, 1.0);
        let z = normal_latents(rows, latent, step);
        let (g, d, terms) = gan_step_with_latents(
            gen,
            disc,
            (&mut opt_g, &mut opt_d),
            tensor(&real, rows, &device),
            (tensor(&z, rows, &device), None),
            (lr, GanLoss::NonSaturating),
        );
        (gen, disc) = (g, d);
        let want = read_f32(terms).unwrap();
        let got = fused.step_with_latents(&real, rows, &z, lr as f32, H);
        assert_close(&got, &want, &format!("loss terms at step {step}"));
        let (g, d) = (&gen, &disc);
        let parts = |p: (&[Linear], &Linear)| weights(p.0.iter().chain([p.1]));
        assert_close(
            &parts(fused.generator(&device).parts()),
            &parts(g.parts()),
            &format!("generator after step {step}"),
        );
        assert_close(
            &parts(fused.discriminator(&device).parts()),
            &parts(d.parts()),
            &format!("discriminator after step {step}"),
        );
    }
    let (bg, bd) = fused.optim_bytes().unwrap();
    let g_steps = adam().from_bytes(Bytes::from_bytes_vec(bg)).unwrap();
    let d_steps = adam().from_bytes(Bytes::from_bytes_vec(bd)).unwrap();
    // Both records hold state for every parameter (weights and biases of each layer).
    assert_eq!(g_steps.to_record().len(), 2 * 2 * 3);
    assert_eq!(d_steps.to_record().len(), 2 * 2 * 3);
}

/// `steps` steps at full size through burn and through `fused` from the same weights and
/// noise give the same loss terms (sums over whole batches are added in a different order,
/// and split across threads, on the two paths); returns burn's model.
fn full_size_steps<M: VaeModule, E: Encoder, D: Decoder>(
    fused: &mut FusedVae<E, D>,
    mut model: M,
    optim: &mut ModuleOptimizer,
    (rows, pixels, latent): (usize, usize, usize),
    steps: u64,
    device: &Device,
) -> M {
    let (lr, beta) = (1e-3, 1.0);
    let mut rng = SplitMix64::new(8);
    for step in 0..steps {
        let x = uniform(&mut rng, rows * pixels, 0.0, 1.0);
        let eps = normal_latents(rows, latent, 40 + step);
        let xt = tensor(&x, rows, device);
        let enc = model.encode(xt.clone());
        let eps_t = tensor(&eps, rows, device);
        let (m, terms) = vae_step_with_noise(model, optim, (xt, None), enc, eps_t, lr, beta);
        model = m;
        let want = read_f32(terms).unwrap();
        let got = fused.step_with_noise(&x, rows, &eps, lr as f32, beta as f32, H);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "step {step}: terms {got:?} vs {want:?}"
            );
        }
    }
    model
}

#[test]
fn full_size_vae_steps_match_burn_on_the_threaded_paths() {
    // 784-400-20 at batch 128: the gemm calls and the Adam update run split across threads.
    let device = Device::flex().autodiff();
    device.seed(21);
    let (pixels, latent, rows, lr) = (784, 20, 128, 1e-3);
    let init = MlpVaeConfig::new(pixels).init(&device);
    let mut optim = adam();
    let mut fused = FusedMlpVae::new(&init, optim_bytes(&optim).unwrap(), 1).unwrap();
    let model = full_size_steps(
        &mut fused,
        init,
        &mut optim,
        (rows, pixels, latent),
        2,
        &device,
    );
    // Sums over 100,352 values are added in a different order on the two paths, and Adam's
    // first steps move a weight by ≈ lr whatever the size of its gradient, so a gradient that
    // is pure rounding noise may move either way: nearly all weights agree to 1e-6, every
    // weight to within the two steps' reach.
    let (got, want) = (vae_weights(&fused.model(&device)), vae_weights(&model));
    let close = got
        .iter()
        .zip(&want)
        .filter(|(a, b)| (*a - *b).abs() <= 1e-6)
        .count();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        close as f64 >= 0.999 * want.len() as f64,
        "{close} of {} weights agree",
        want.len()
    );
    assert!(worst <= 4.0 * lr as f32, "largest difference {worst}");
}

#[test]
fn unusable_optimiser_records_are_errors_not_panics() {
    use crate::cpu::{adam_record_bytes, AdamState, Dense};
    let device = Device::flex().autodiff();
    let cfg = MlpVaeConfig::new(12).with_hidden(vec![9]).with_latent(3);
    let a = cfg.init(&device);
    // A record with state for every parameter of `a`, taken from burn after one step.
    let mut optim = adam();
    let x = tensor(&[0.5; 24], 2, &device);
    let enc = a.encode(x.clone());
    let eps = tensor(&[0.1; 6], 2, &device);
    let (a, _) = vae_step_with_noise(a, &mut optim, (x, None), enc, eps, 1e-3, 1.0);
    let record = optim_bytes(&optim).unwrap();
    assert!(FusedMlpVae::new(&a, record.clone(), 0).is_ok());

    // Another model of the same shape has other parameter ids: the state fits nothing.
    let b = cfg.init(&device);
    let e = FusedMlpVae::new(&b, record.clone(), 0)
        .err()
        .expect("foreign record refused");
    assert!(e.to_string().contains("does not have"), "{e}");
    // A model of another shape.
    let (enc, ..) = a.parts();
    let wide = Linear {
        weight: burn::module::Param::initialized(
            enc[0].weight.id,
            Tensor::zeros([12, 10], &device),
        ),
        bias: enc[0].bias.clone(),
    };
    let e = Dense::from_linear(
        &wide,
        "enc.0".into(),
        &mut AdamState::from_record_bytes(record).unwrap(),
    )
    .expect_err("shape mismatch refused");
    assert!(e.to_string().contains("does not fit"), "{e}");
    // Not a record at all, and a record claiming an absurd step count.
    assert!(FusedMlpVae::new(&a, b"not burnpack".to_vec(), 0).is_err());
    let mut d = Dense::from_linear(&enc[0], "enc.0".into(), &mut AdamState::default()).unwrap();
    d.w.t = u32::MAX as usize + 7;
    let bytes = adam_record_bytes([&d]).unwrap();
    assert!(AdamState::from_record_bytes(bytes).is_err());
}

#[test]
fn a_nan_weight_shows_in_the_loss() {
    // ReLU must not turn NaN into 0: the loss has to go NaN so that the session rolls back.
    let device = Device::flex().autodiff();
    let m = MlpVaeConfig::new(12)
        .with_hidden(vec![9])
        .with_latent(3)
        .init(&device);
    let (enc, mu, lv, dec, out) = m.parts();
    let mut w = read_f32(enc[0].weight.val()).unwrap();
    w[5] = f32::NAN;
    let broken = Linear {
        weight: burn::module::Param::initialized(enc[0].weight.id, tensor(&w, 12, &device)),
        bias: enc[0].bias.clone(),
    };
    let m = crate::model::MlpVae::from_parts(
        vec![broken],
        mu.clone(),
        lv.clone(),
        dec.to_vec(),
        out.clone(),
    );
    let mut fused = FusedMlpVae::new(&m, optim_bytes(&adam()).unwrap(), 0).unwrap();
    let x = vec![0.5; 2 * 12];
    let terms = fused.step_with_noise(&x, 2, &[0.0; 6], 1e-3, 1.0, H);
    assert!(terms.iter().all(|t| t.is_nan()), "{terms:?}");
}

/// `c` with one weight replaced by NaN.
fn with_nan_weight(c: &burn::nn::conv::Conv2d, device: &Device) -> burn::nn::conv::Conv2d {
    let mut w = read_f32(c.weight.val()).unwrap();
    w[3] = f32::NAN;
    let t = Tensor::<4>::from_data(TensorData::new(w, c.weight.dims()), device);
    burn::nn::conv::Conv2d {
        weight: burn::module::Param::initialized(c.weight.id, t),
        ..c.clone()
    }
}

#[test]
fn a_nan_conv_weight_shows_in_the_loss() {
    // Through the conv layers' activations, batch norm and the col2im epilogues.
    use super::dcgan::DcganFast as FusedDcgan;
    use crate::model::DcganConfig;
    let device = Device::flex().autodiff();
    let mut vae = ConvVaeConfig::new(1, 8)
        .with_latent(3)
        .with_width(4)
        .with_dense(10)
        .init(&device);
    vae.c2 = with_nan_weight(&vae.c2, &device);
    let mut fused = FusedConvVae::new(&vae, optim_bytes(&adam()).unwrap(), 0).unwrap();
    let terms = fused.step_with_noise(&[0.5; 2 * 64], 2, &[0.0; 6], 1e-3, 1.0, H);
    assert!(terms.iter().all(|t| t.is_nan()), "conv-VAE: {terms:?}");

    let cfg = DcganConfig::new(1, 8).with_latent(5).with_width(4);
    let (g, mut d) = (cfg.init_generator(&device), cfg.init_discriminator(&device));
    d.c1 = with_nan_weight(&d.c1, &device);
    let bytes = || optim_bytes(&adam()).unwrap();
    let mut fused = FusedDcgan::new(&g, &d, bytes(), bytes(), 0).unwrap();
    let terms = fused.step_with_latents(&[0.5; 2 * 64], 2, &[0.1; 10], 1e-3, H);
    assert!(terms.iter().all(|t| t.is_nan()), "DCGAN: {terms:?}");
}

#[test]
fn dcgan_steps_equal_burn_autodiff_steps() {
    use super::dcgan::DcganFast as FusedDcgan;
    use crate::model::DcganConfig;
    let device = Device::flex().autodiff();
    device.seed(13);
    let (size, latent, rows, lr) = (8, 5, 4, 5e-3);
    let cfg = DcganConfig::new(1, size).with_latent(latent).with_width(4);
    let (g0, d0) = (cfg.init_generator(&device), cfg.init_discriminator(&device));
    let (mut opt_g, mut opt_d) = (adam(), adam());
    let mut fused = FusedDcgan::new(
        &g0,
        &d0,
        optim_bytes(&opt_g).unwrap(),
        optim_bytes(&opt_d).unwrap(),
        1,
    )
    .unwrap();
    let (mut gen, mut disc) = (g0, d0);
    let mut rng = SplitMix64::new(5);
    for step in 0..3 {
        let real = uniform(&mut rng, rows * size * size, -1.0, 1.0);
        let z = normal_latents(rows, latent, step);
        let (g, d, terms) = gan_step_with_latents(
            gen,
            disc,
            (&mut opt_g, &mut opt_d),
            tensor(&real, rows, &device),
            (tensor(&z, rows, &device), None),
            (lr, GanLoss::NonSaturating),
        );
        (gen, disc) = (g, d);
        let want = read_f32(terms).unwrap();
        let got = fused.step_with_latents(&real, rows, &z, lr as f32, H);
        assert_close(&got, &want, &format!("loss terms at step {step}"));
        // Every recorded float that has a real gradient agrees. Not compared: the biases
        // of layers followed by batch norm (fc, t1, c2): batch norm removes them, so their
        // gradient is rounding noise that Adam scales up to ±lr on either path, and with them
        // the running means fed by those layers. The loss terms above, computed in training
        // mode, do not depend on them and check everything else at every step.
        let (g, d) = (&gen, &disc);
        let (fg, fd) = (fused.generator(&device), fused.discriminator(&device));
        let v1 = |t: Tensor<1>| read_f32(t).unwrap();
        let v4 = |t: Tensor<4>| read_f32(t).unwrap();
        let b1 = |p: &Option<burn::module::Param<Tensor<1>>>| {
            read_f32(p.as_ref().unwrap().val()).unwrap()
        };
        let pairs: Vec<(&str, Vec<f32>, Vec<f32>)> = vec![
            (
                "fc.weight",
                read_f32(fg.fc.weight.val()).unwrap(),
                read_f32(g.fc.weight.val()).unwrap(),
            ),
            ("t1.weight", v4(fg.t1.weight.val()), v4(g.t1.weight.val())),
            ("t2.weight", v4(fg.t2.weight.val()), v4(g.t2.weight.val())),
            ("t2.bias", b1(&fg.t2.bias), b1(&g.t2.bias)),
            ("c1.weight", v4(fd.c1.weight.val()), v4(d.c1.weight.val())),
            ("c1.bias", b1(&fd.c1.bias), b1(&d.c1.bias)),
            ("c2.weight", v4(fd.c2.weight.val()), v4(d.c2.weight.val())),
            (
                "out.weight",
                read_f32(fd.out.weight.val()).unwrap(),
                read_f32(d.out.weight.val()).unwrap(),
            ),
            ("out.bias", b1(&fd.out.bias), b1(&d.out.bias)),
        ];
        for (name, got, want) in pairs {
            assert_close(&got, &want, &format!("{name} after step {step}"));
        }
        for (name, f, b) in [
            ("bn0", &fg.bn0, &g.bn0),
            ("bn1", &fg.bn1, &g.bn1),
            ("bn2", &fd.bn2, &d.bn2),
        ] {
            assert_close(
                &v1(f.gamma.val()),
                &v1(b.gamma.val()),
                &format!("{name}.gamma after step {step}"),
            );
            assert_close(
                &v1(f.beta.val()),
                &v1(b.beta.val()),
                &format!("{name}.beta after step {step}"),
            );
            assert_close(
                &v1(f.running_var.value_sync()),
                &v1(b.running_var.value_sync()),
                &format!("{name}.running_var after step {step}"),
            );
        }
    }
    // Hand-over: burn continuing from the fused weights, running statistics and Adam state
    // takes the same next step as the fused path (loss terms, and D's first layer).
    let (bg, bd) = fused.optim_bytes().unwrap();
    let mut og = adam().from_bytes(Bytes::from_bytes_vec(bg)).unwrap();
    let mut od = adam().from_bytes(Bytes::from_bytes_vec(bd)).unwrap();
    let real = uniform(&mut rng, rows * size * size, -1.0, 1.0);
    let z = normal_latents(rows, latent, 50);
    let (_, d2, terms) = gan_step_with_latents(
        fused.generator(&device),
        fused.discriminator(&device),
        (&mut og, &mut od),
        tensor(&real, rows, &device),
        (tensor(&z, rows, &device), None),
        (lr, GanLoss::NonSaturating),
    );
    let got = fused.step_with_latents(&real, rows, &z, lr as f32, H);
    assert_close(&got, &read_f32(terms).unwrap(), "terms after the hand-over");
    assert_close(
        &read_f32(fused.discriminator(&device).c1.weight.val()).unwrap(),
        &read_f32(d2.c1.weight.val()).unwrap(),
        "c1 after the hand-over",
    );
}

#[test]
fn full_size_conv_vae_steps_match_burn() {
    // The app's conv-VAE at batch 128: several cache-sized chunks per convolution, the
    // threaded im2col/col2im and matrix products.
    let device = Device::flex().autodiff();
    device.seed(22);
    let (size, rows, latent) = (28, 128, 16);
    let shell = ConvVaeConfig::new(1, size)
        .with_latent(latent)
        .init(&device);
    let mut optim = adam();
    let mut fused = FusedConvVae::new(&shell, optim_bytes(&optim).unwrap(), 1).unwrap();
    let model = shell;
    full_size_steps(
        &mut fused,
        model,
        &mut optim,
        (rows, size * size, latent),
        4,
        &device,
    );
}
