//! The fused path must take exactly the steps burn's autodiff takes.

use burn::nn::Linear;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Bytes;

use super::{AdamHyper, FusedGan, FusedVae};
use crate::checkpoint::optim_bytes;
use crate::data::SplitMix64;
use crate::infer::normal_latents;
use crate::model::{DiscNet, GenNet, MlpGanConfig, MlpVaeConfig, VaeNet};
use crate::train::read_f32;
use crate::train::session::{gan_step_with_latents, vae_step_with_noise};

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

#[test]
fn vae_steps_equal_burn_autodiff_steps() {
    let device = Device::flex().autodiff();
    device.seed(7);
    let (pixels, latent, rows, lr, beta) = (12, 3, 5, 1e-2, 0.7);
    let init = MlpVaeConfig::new(pixels)
        .with_hidden(vec![9, 7])
        .with_latent(latent)
        .init(&device);
    let mut optim = adam();
    let mut fused = FusedVae::new(&init, optim_bytes(&optim).unwrap(), 1).unwrap();
    let mut model = VaeNet::Mlp(init);
    let mut rng = SplitMix64::new(3);
    let burn_step = |model: VaeNet, optim: &mut ModuleOptimizer, x: &[f32], eps: &[f32]| {
        let xt = tensor(x, rows, &device);
        let enc = model.encode(xt.clone());
        let (m, terms) =
            vae_step_with_noise(model, optim, xt, enc, tensor(eps, rows, &device), lr, beta);
        (m, read_f32(terms).unwrap())
    };
    for step in 0..4 {
        let x = uniform(&mut rng, rows * pixels, 0.0, 1.0);
        let eps = normal_latents(rows, latent, step);
        let (m, want) = burn_step(model, &mut optim, &x, &eps);
        model = m;
        let got = fused.step_with_noise(&x, rows, &eps, lr as f32, beta as f32, H);
        assert_close(&got, &want, &format!("loss terms at step {step}"));
        let VaeNet::Mlp(m) = &model else {
            unreachable!()
        };
        assert_close(
            &vae_weights(&fused.model(&device)),
            &vae_weights(m),
            &format!("weights after step {step}"),
        );
    }
    // The Adam state crosses between the two paths through burn's optimiser record: one more
    // step from either state on either path gives the same weights.
    let VaeNet::Mlp(m) = &model else {
        unreachable!()
    };
    let mut from_burn = FusedVae::new(m, optim_bytes(&optim).unwrap(), 5).unwrap();
    let mut from_fused = adam()
        .from_bytes(Bytes::from_bytes_vec(fused.optim_bytes().unwrap()))
        .unwrap();
    let x = uniform(&mut rng, rows * pixels, 0.0, 1.0);
    let eps = normal_latents(rows, latent, 99);
    let fused_model = VaeNet::Mlp(fused.model(&device));
    let (burn_a, terms_a) = burn_step(model, &mut optim, &x, &eps);
    let (burn_b, terms_b) = burn_step(fused_model, &mut from_fused, &x, &eps);
    let terms_c = fused.step_with_noise(&x, rows, &eps, lr as f32, beta as f32, H);
    let terms_d = from_burn.step_with_noise(&x, rows, &eps, lr as f32, beta as f32, H);
    let (VaeNet::Mlp(burn_a), VaeNet::Mlp(burn_b)) = (burn_a, burn_b) else {
        unreachable!()
    };
    let want = vae_weights(&burn_a);
    assert_close(
        &vae_weights(&burn_b),
        &want,
        "burn step from the fused Adam state",
    );
    assert_close(&vae_weights(&fused.model(&device)), &want, "fused step");
    assert_close(
        &vae_weights(&from_burn.model(&device)),
        &want,
        "fused step from burn's Adam state",
    );
    for t in [&terms_b[..], &terms_c, &terms_d] {
        assert_close(t, &terms_a, "terms after the hand-over");
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
    let (mut gen, mut disc) = (GenNet::Mlp(g0), DiscNet::Mlp(d0));
    let mut rng = SplitMix64::new(5);
    for step in 0..4 {
        let real = uniform(&mut rng, rows * pixels, -1.0, 1.0);
        let z = normal_latents(rows, latent, step);
        let (g, d, terms) = gan_step_with_latents(
            gen,
            disc,
            &mut opt_g,
            &mut opt_d,
            tensor(&real, rows, &device),
            tensor(&z, rows, &device),
            lr,
        );
        (gen, disc) = (g, d);
        let want = read_f32(terms).unwrap();
        let got = fused.step_with_latents(&real, rows, &z, lr as f32, H);
        assert_close(&got, &want, &format!("loss terms at step {step}"));
        let (GenNet::Mlp(g), DiscNet::Mlp(d)) = (&gen, &disc) else {
            unreachable!()
        };
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
