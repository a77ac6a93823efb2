//! Models, training, evaluation and checkpoints on the CPU backend.

mod common;

use std::sync::Arc;

use burn::prelude::*;
use common::*;
use latent_lab::backend::Backend;
use latent_lab::checkpoint::Checkpoint;
use latent_lab::eval::EvalReport;
use latent_lab::infer::{normal_latents, Inference};
use latent_lab::model::{ImageShape, ModelOverrides, ModelSpec};
use latent_lab::train::{Session, StepOutcome, TrainConfig};

#[test]
fn every_family_has_the_right_shapes() {
    let device = Backend::cpu().device;
    for (kind, shape) in [
        (kind("vae"), ImageShape::new(1, 28, 28)),
        (kind("seed-vae"), ImageShape::new(1, 28, 28)),
        (kind("conv-vae"), ImageShape::new(1, 28, 28)),
        (kind("conv-vae"), ImageShape::new(3, 32, 32)),
        (kind("gan"), ImageShape::new(1, 28, 28)),
        (kind("seed-gan"), ImageShape::new(1, 28, 28)),
        (kind("dcgan"), ImageShape::new(1, 28, 28)),
        (kind("dcgan"), ImageShape::new(3, 32, 32)),
    ] {
        let spec = ModelSpec::new(kind, shape, &ModelOverrides::default()).unwrap();
        let d = spec.latent_dim();
        let p = shape.numel();
        let z = Tensor::<2>::random([5, d], burn::tensor::Distribution::Default, &device);
        let x = Tensor::<2>::random([5, p], burn::tensor::Distribution::Default, &device);
        let nets = spec.init(&device);
        let images = nets.decode(z);
        assert_eq!(images.dims(), [5, p], "{kind} decoder");
        let (lo, hi) = (
            images.clone().min().into_scalar::<f32>(),
            images.clone().max().into_scalar::<f32>(),
        );
        assert!(
            (0.0..=1.0).contains(&lo) && hi <= 1.0,
            "{kind} decodes to [0, 1]"
        );
        if spec.has_encoder() {
            let (mu, lv) = nets.encode(x).expect("a VAE encodes");
            assert_eq!(mu.dims(), [5, d], "{kind} mu");
            assert_eq!(lv.dims(), [5, d], "{kind} logvar");
            assert!(nets.discriminate(images).is_none(), "{kind} has no critic");
        } else {
            assert!(nets.encode(x).is_none(), "{kind} has no encoder");
            let logits = nets.discriminate(images.mul_scalar(2.0) - 1.0);
            assert_eq!(
                logits.map(|l| l.dims()),
                Some([5, 1]),
                "{kind} discriminator"
            );
        }
    }
    // Presets match the issue: 784-400-20, seed-vae 784-128-64-32, GAN z 100.
    assert_eq!(mnist_spec(kind("vae")).describe(), "vae (784-400-20)");
    assert_eq!(
        mnist_spec(kind("seed-vae")).describe(),
        "seed-vae (784-128-64-32)"
    );
    assert_eq!(mnist_spec(kind("gan")).latent_dim(), 100);
    // Conv families refuse shapes they cannot handle.
    assert!(ModelSpec::new(
        kind("dcgan"),
        ImageShape::new(1, 30, 30),
        &Default::default()
    )
    .is_err());
}

#[test]
fn vae_training_lowers_the_loss_on_mnist() {
    let mut s = session(kind("vae"), |c| c.log_every = 10);
    let before = s.eval_report(0).unwrap().headline();
    let points = run_steps(&mut s, 150);
    let first = points.first().unwrap()[0];
    let last = points.last().unwrap()[0];
    assert!(last < first - 50.0, "train loss {first} -> {last}");
    let after = s.eval_report(0).unwrap().headline();
    assert!(after < before - 150.0, "test -ELBO {before} -> {after}");
    assert!(after < 200.0, "test -ELBO after 150 steps: {after}");
}

#[test]
fn gan_step_moves_both_losses() {
    let mut s = session(kind("gan"), |c| c.log_every = 1);
    let z = normal_latents(4, s.spec().latent_dim(), 3);
    let g0 = s.inference(&Backend::cpu().device).decode(&z).unwrap();
    let a = run_steps(&mut s, 1).remove(0);
    let b = run_steps(&mut s, 50).pop().unwrap();
    // [d_loss, g_loss, d_real, d_fake]
    eprintln!("step 1: {a:?}; step 51: {b:?}");
    // G learnt: the same noise decodes to other images.
    let g1 = s.inference(&Backend::cpu().device).decode(&z).unwrap();
    let moved = max_diff(&g0.pixels, &g1.pixels);
    assert!(moved > 0.05, "G's images moved by {moved}");
    // D learnt: it tells the real images from G's (an untrained D scores both alike; a
    // frozen one falls behind a learning G) and its loss fell below the chance level 2·ln 2.
    assert!(
        b[2] - b[3] > 0.04,
        "D should score real above fake after 51 steps: {b:?}"
    );
    assert!(
        b[0] < 2.0 * std::f32::consts::LN_2 - 0.04 && b[0] < a[0] - 0.04,
        "D loss {} -> {}",
        a[0],
        b[0]
    );
    assert!((a[1] - b[1]).abs() > 1e-3, "G loss {} -> {}", a[1], b[1]);
}

#[test]
fn dcgan_and_conv_vae_train_a_step() {
    for kind in [kind("dcgan"), kind("conv-vae")] {
        let mut s = session(kind, |c| {
            c.log_every = 1;
            c.batch_size = 16;
        });
        let v = run_steps(&mut s, 2);
        assert!(v.iter().flatten().all(|x| x.is_finite()), "{kind}: {v:?}");
    }
}

#[test]
fn checkpoint_round_trip_gives_identical_outputs_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vae.llck");
    let mut s = session(kind("vae"), |c| c.log_every = 10);
    run_steps(&mut s, 40);
    s.evaluate().unwrap();
    s.checkpoint().unwrap().save(&path).unwrap();

    let cpu = Backend::cpu();
    let z = normal_latents(4, 20, 3);
    let before = s.inference(&cpu.device).decode(&z).unwrap();
    let ckpt = Checkpoint::load(&path).unwrap();
    let after = Inference::from_checkpoint(&ckpt, &cpu.device)
        .unwrap()
        .decode(&z)
        .unwrap();
    assert_eq!(
        before, after,
        "decoded images differ after a checkpoint round trip"
    );

    // Resuming continues step, position and history.
    let mut r = Session::from_checkpoint(&ckpt, mnist(), cpu.clone()).unwrap();
    assert_eq!(r.step_count(), 40);
    assert_eq!(r.history().points.len(), s.history().points.len());
    assert_eq!(r.history().test.len(), 1);
    run_steps(&mut r, 10);
    assert_eq!(r.step_count(), 50);
    assert_eq!(r.history().points.last().unwrap().step, 50);

    // Optimiser state came back too: the resumed run matches the uninterrupted one.
    let a = run_steps(&mut s, 10);
    let reloaded = Checkpoint::load(&path).unwrap();
    let mut r2 = Session::from_checkpoint(&reloaded, mnist(), cpu).unwrap();
    let b = run_steps(&mut r2, 10);
    for (x, y) in a[0].iter().zip(&b[0]) {
        // Different RNG draws for the reparameterisation noise after resume, same weights
        // and Adam moments: losses agree closely.
        assert!((x - y).abs() / x.abs().max(1.0) < 0.05, "{a:?} vs {b:?}");
    }
}

#[test]
fn gan_checkpoint_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gan.llck");
    let mut s = session(kind("dcgan"), |c| {
        c.log_every = 1;
        c.batch_size = 16;
    });
    run_steps(&mut s, 3);
    s.checkpoint().unwrap().save(&path).unwrap();
    let cpu = Backend::cpu();
    let z = normal_latents(3, 100, 9);
    let before = s.inference(&cpu.device).decode(&z).unwrap();
    let ckpt = Checkpoint::load(&path).unwrap();
    let after = Inference::from_checkpoint(&ckpt, &cpu.device)
        .unwrap()
        .decode(&z)
        .unwrap();
    assert_eq!(before, after);
    let mut r = Session::from_checkpoint(&ckpt, mnist(), cpu).unwrap();
    run_steps(&mut r, 1);
    assert_eq!(r.step_count(), 4);
}

#[test]
fn bad_checkpoints_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.llck");
    let mut s = session(kind("seed-vae"), |_| {});
    run_steps(&mut s, 1);
    s.checkpoint().unwrap().save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.llck", vec![], "not a Latent Lab checkpoint"),
        (
            "foreign.llck",
            b"PK\x03\x04 this is a zip".to_vec(),
            "not a Latent Lab checkpoint",
        ),
        (
            "truncated.llck",
            bytes[..bytes.len() / 2].to_vec(),
            "truncated or corrupt",
        ),
        (
            "flipped.llck",
            {
                let mut b = bytes.clone();
                let i = b.len() / 3;
                b[i] ^= 0x40;
                b
            },
            "truncated or corrupt",
        ),
        (
            "future.llck",
            {
                let mut b = bytes.clone();
                b[8] = 99;
                b
            },
            "newer than this build",
        ),
    ];
    for (name, content, expect) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        let err = Checkpoint::load(&p).unwrap_err().to_string();
        assert!(err.contains(expect), "{name}: {err}");
        assert!(
            err.contains(name),
            "{name}: message must name the file: {err}"
        );
    }
    let missing = Checkpoint::load(&dir.path().join("nope.llck"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.llck"), "{missing}");

    // Weights that do not fit the declared model are refused, not half-loaded.
    let mut ckpt = Checkpoint::load(&good).unwrap();
    ckpt.header.model = mnist_spec(kind("vae"));
    let err = Inference::from_checkpoint(&ckpt, &Backend::cpu().device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not fit"), "{err}");
}

#[test]
fn vae_eval_reports_every_metric() {
    let mut s = session(kind("vae"), |c| c.log_every = 50);
    run_steps(&mut s, 100);
    let EvalReport::Vae(r) = s.eval_report(20).unwrap() else {
        panic!("VAE report expected")
    };
    assert_eq!(r.images, 1000);
    assert_eq!(r.kl_per_dim.len(), 20);
    assert!((r.kl - r.kl_per_dim.iter().sum::<f64>()).abs() < 1e-6);
    assert!((r.neg_elbo - (r.recon + r.kl)).abs() < 1e-6);
    assert!(
        r.active_units > 0 && r.active_units <= 20,
        "{}",
        r.active_units
    );
    let nll = r.iwae_nll.unwrap();
    // The IWAE bound is tighter than the ELBO (allowing for sampling noise).
    assert!(nll < r.neg_elbo + 1.0, "IWAE {nll} vs -ELBO {}", r.neg_elbo);
    assert!(nll > 50.0, "{nll}");
}

#[test]
fn non_finite_loss_pauses_and_keeps_the_last_good_weights() {
    let mut s = session(kind("vae"), |c| c.log_every = 5);
    let z = normal_latents(2, 20, 1);
    // What the weights of every step before the divergence decode `z` to.
    let decode = |s: &Session| s.inference(&Backend::cpu().device).decode(&z).unwrap();
    let mut decoded_at = std::collections::HashMap::from([(0, decode(&s))]);
    for _ in 0..10 {
        run_steps(&mut s, 1);
        decoded_at.insert(s.step_count(), decode(&s));
    }
    let good_step = s.step_count();
    s.set_learning_rate(1e12).unwrap();
    let mut diverged = None;
    for _ in 0..200 {
        match s.step().unwrap() {
            StepOutcome::Diverged {
                step,
                restored_step,
                ..
            } => {
                diverged = Some((step, restored_step));
                break;
            }
            _ => {
                decoded_at.insert(s.step_count(), decode(&s));
            }
        }
    }
    let (bad, restored) = diverged.expect("a learning rate of 1e12 must diverge");
    assert!(bad > good_step);
    assert_eq!(s.step_count(), restored);
    assert!(
        restored < bad,
        "restored step {restored} before the bad step {bad}"
    );
    let after = s.inference(&Backend::cpu().device).decode(&z).unwrap();
    assert!(after.pixels.iter().all(|v| v.is_finite()));
    // The weights are exactly those of the restored step, whichever it was.
    let expected = decoded_at
        .get(&restored)
        .unwrap_or_else(|| panic!("restored step {restored} was never a step of this run"));
    assert_eq!(expected, &after, "the weights of step {restored} are back");
    assert!(s
        .history()
        .markers
        .iter()
        .any(|m| m.text.contains("diverged")));
    // Continuing with a sane learning rate works.
    s.set_learning_rate(1e-3).unwrap();
    run_steps(&mut s, 5);
}

#[test]
fn mismatched_data_is_refused() {
    let spec =
        ModelSpec::new(kind("vae"), ImageShape::new(1, 32, 32), &Default::default()).unwrap();
    let err = Session::new(
        spec,
        TrainConfig::for_kind(kind("vae")),
        mnist(),
        Backend::cpu(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("expects"), "{err}");
    let data = Arc::new(
        latent_lab::data::DataSource::Shapes {
            count: 200,
            size: 28,
            seed: 1,
        }
        .load()
        .unwrap(),
    );
    let mut s = Session::new(
        mnist_spec(kind("vae")),
        TrainConfig::for_kind(kind("vae")),
        data,
        Backend::cpu(),
    )
    .unwrap();
    s.step().unwrap();
}

#[test]
fn the_fast_single_latent_decode_matches_the_tensor_path() {
    let cpu = Backend::cpu();
    for kind in [kind("vae"), kind("gan"), kind("seed-vae")] {
        let mut s = session(kind, |c| c.batch_size = 32);
        run_steps(&mut s, 5);
        let plain = s.inference(&cpu.device);
        let fast = plain.clone().with_fast_decode();
        for n in [1, 3, 9] {
            let z = normal_latents(n, plain.latent_dim(), n as u64);
            // The family's plain-Rust decoder really is used for a few latents.
            assert_eq!(
                fast.decodes_without_backend(z.len()),
                n <= 4,
                "{kind:?} n={n}"
            );
            assert!(!plain.decodes_without_backend(z.len()));
            let a = plain.decode(&z).unwrap();
            let b = fast.decode(&z).unwrap();
            assert_eq!(a.shape, b.shape);
            assert_eq!(a.pixels.len(), b.pixels.len());
            let worst = a
                .pixels
                .iter()
                .zip(&b.pixels)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "{kind:?} n={n}: max difference {worst}");
        }
    }
}

#[test]
fn labels_reach_the_step_and_inference_checks_conditions() {
    use latent_lab::model::Batch;
    let data = mnist();
    let idx = [0usize, 5, 9_999];
    let batch = Batch {
        data: &data,
        idx: &idx,
    };
    let labels = batch.labels().expect("MNIST has labels");
    let all = data.labels.as_ref().unwrap();
    assert_eq!(labels, vec![all[0], all[5], all[9_999]]);
    assert_eq!(batch.classes(), Some(10));
    let one_hot = batch
        .one_hot(10, &Backend::cpu().device)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    for (row, &l) in labels.iter().enumerate() {
        let r = &one_hot[row * 10..(row + 1) * 10];
        assert_eq!(r.iter().sum::<f32>(), 1.0);
        assert_eq!(r[l as usize], 1.0, "row {row} is class {l}");
    }
    // A dataset without labels has none to give.
    let mut unlabelled = latent_lab::data::DataSource::Shapes {
        size: 8,
        count: 64,
        seed: 1,
    }
    .load()
    .unwrap();
    unlabelled.labels = None;
    let b = Batch {
        data: &unlabelled,
        idx: &[0, 1],
    };
    assert!(b.labels().is_none() && b.classes().is_none());
    // An unconditional model refuses a class with a clear message.
    let s = session(kind("vae"), |_| {});
    let inf = s.inference(&Backend::cpu().device);
    assert_eq!(inf.classes(), None);
    let z = vec![0.0; inf.latent_dim()];
    let err = inf.decode_labelled(&z, &[3]).unwrap_err().to_string();
    assert!(err.contains("not a conditional model"), "{err}");
}

#[test]
fn a_rollback_snapshot_shares_no_state_with_the_trainer_on_either_path() {
    // Batch-norm running statistics are shared between clones of a burn module; a snapshot
    // must not move when the trainer it came from keeps training (any family, both paths).
    use latent_lab::model::{Batch, TrainerSetup};
    let cpu = Backend::cpu();
    let device = cpu.device.clone().autodiff();
    let data = mnist();
    let idx: Vec<usize> = (0..16).collect();
    let batch = Batch {
        data: &data,
        idx: &idx,
    };
    for name in ["vae", "conv-vae", "gan", "dcgan"] {
        let spec = ModelSpec::new(
            kind(name),
            ImageShape::new(1, 28, 28),
            &ModelOverrides {
                latent_dim: Some(4),
                hidden: Some(vec![4]),
                ..Default::default()
            },
        )
        .unwrap();
        let config = TrainConfig::for_kind(kind(name));
        for fused in [false, true] {
            let (mut trainer, off) = spec
                .init(&device)
                .trainer(TrainerSetup {
                    config: &config,
                    device: &device,
                    optims: None,
                    fused,
                    seed: 1,
                })
                .unwrap();
            assert!(off.is_none(), "{name}: {off:?}");
            assert_eq!(trainer.path().is_some(), fused, "{name} fused={fused}");
            let mut buf = Vec::new();
            trainer.step(&batch, &config, &mut buf).unwrap();
            let snap = trainer.snapshot().unwrap();
            let saved = snap.nets().save().unwrap();
            for _ in 0..2 {
                trainer.step(&batch, &config, &mut buf).unwrap();
            }
            assert!(
                snap.nets().save().unwrap() == saved,
                "{name} fused={fused}: the snapshot changed while the trainer trained"
            );
            assert!(
                trainer.nets().save().unwrap() != saved,
                "{name} fused={fused}: the trainer did not train"
            );
        }
    }
}
