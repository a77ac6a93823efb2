//! The sample history a run records (and keeps in its checkpoint), and KL warm-up.

mod common;

use common::{kind, mnist, run_steps, session};
use latent_lab::backend::Backend;
use latent_lab::checkpoint::Checkpoint;
use latent_lab::train::Session;

#[test]
fn a_run_records_its_sample_history_and_its_checkpoint_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vae.llck");
    let mut s = session(kind("vae"), |c| c.log_every = 10);
    let mut grids = Vec::new();
    for _ in 0..3 {
        grids.push(s.record_images().unwrap());
        run_steps(&mut s, 10);
    }
    let tl = s.timeline();
    assert_eq!(
        tl.frames().iter().map(|f| f.step).collect::<Vec<_>>(),
        [0, 10, 20]
    );
    // What was recorded is what was decoded (8-bit), reconstructions included.
    let (samples, recon, measures) = &grids[1];
    // MNIST is labelled: each grid's label coverage is measured, with its diversity.
    let coverage = measures.coverage;
    assert!(
        coverage.is_some_and(|c| c > 0.0 && c <= 1.0),
        "{coverage:?}"
    );
    assert_eq!(tl.frames()[1].coverage, coverage);
    assert!(measures.diversity > 0.0);
    let kept = tl.samples(1).unwrap();
    assert_eq!(kept.count(), 64);
    let worst = samples
        .pixels
        .iter()
        .zip(&kept.pixels)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 0.5 / 255.0 + 1e-6, "{worst}");
    let (o, r) = tl.reconstructions(1).unwrap();
    let (ro, rr) = recon.as_ref().unwrap();
    assert_eq!(o.count(), ro.count());
    assert!((r.pixels[100] - rr.pixels[100]).abs() <= 0.5 / 255.0 + 1e-6);
    // Training changed the samples between frames.
    assert_ne!(tl.samples(0), tl.samples(2));

    s.checkpoint().unwrap().save(&path).unwrap();
    let ckpt = Checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.timeline().unwrap().frames(), s.timeline().frames());
    // A resumed run goes on recording after what it had.
    let mut r = Session::from_checkpoint(&ckpt, mnist(), Backend::cpu()).unwrap();
    assert_eq!(r.timeline().len(), 3);
    run_steps(&mut r, 5);
    r.record_images().unwrap();
    assert_eq!(
        r.timeline()
            .frames()
            .iter()
            .map(|f| f.step)
            .collect::<Vec<_>>(),
        [0, 10, 20, 35]
    );

    // A file without the section (all files before it existed) opens with no history.
    let mut old = ckpt.clone();
    old.blobs
        .retain(|(n, _)| n != latent_lab::timeline::SECTION);
    let r = Session::from_checkpoint(&old, mnist(), Backend::cpu()).unwrap();
    assert!(r.timeline().is_empty());
    // A damaged section is named in the error.
    let mut bad = ckpt.clone();
    for (n, b) in &mut bad.blobs {
        if n == latent_lab::timeline::SECTION {
            b.truncate(b.len() / 2);
        }
    }
    let e = Session::from_checkpoint(&bad, mnist(), Backend::cpu())
        .err()
        .expect("a truncated history is an error")
        .to_string();
    assert!(e.contains("sample history"), "{e}");
}

#[test]
fn kl_warm_up_starts_beta_at_zero_and_reaches_it() {
    let cfg = |c: &mut latent_lab::train::TrainConfig| {
        c.log_every = 1;
        c.kl_warmup_steps = 100;
    };
    let warm = session(kind("vae"), cfg);
    assert!(warm
        .history()
        .markers
        .iter()
        .any(|m| m.step == 0 && m.text == "KL warm-up over 100 steps"));
    let c = warm.config().clone();
    assert_eq!(c.beta_at(0), 0.01);
    assert_eq!(c.beta_at(49), 0.5);
    assert_eq!(c.beta_at(99), 1.0);
    assert_eq!(c.beta_at(5000), 1.0);

    // Switched on mid-run (the Latent health remedy), once the KL is large: from the next
    // step, loss = recon + β kl with β = 1/10, marked.
    let mut s = session(kind("vae"), |c| c.log_every = 1);
    run_steps(&mut s, 40);
    let v = &run_steps(&mut s, 1)[0];
    assert!(v[2] > 3.0, "a KL worth weighing: {v:?}");
    assert!((v[0] - (v[1] + v[2])).abs() < 1e-3 * v[0], "{v:?}");
    s.set_kl_warmup(10).unwrap();
    assert!(s.config().warming_up(41));
    let v = &run_steps(&mut s, 1)[0];
    assert!((v[0] - (v[1] + 0.1 * v[2])).abs() < 1e-3 * v[0], "{v:?}");
    for _ in 0..9 {
        run_steps(&mut s, 1);
    }
    assert!(!s.config().warming_up(s.step_count()));
    let v = &run_steps(&mut s, 1)[0];
    assert!(
        (v[0] - (v[1] + v[2])).abs() < 1e-3 * v[0],
        "β is back: {v:?}"
    );
    assert!(s
        .history()
        .markers
        .iter()
        .any(|m| m.step == 41 && m.text == "KL warm-up over 10 steps"));
    // A GAN has no KL term to warm up.
    let mut g = session(kind("gan"), |_| {});
    assert!(g.set_kl_warmup(10).is_err());
}
