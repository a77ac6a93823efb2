//! One real training step on the wgpu backend (Mesa's lavapipe on CI).
//!
//! Set `LATENT_LAB_SKIP_WGPU=1` to skip on a machine with no Vulkan driver at all;
//! CI installs `mesa-vulkan-drivers` and does not skip.

use latent_lab::backend::{Backend, BackendChoice};
use latent_lab::train::{Session, StepOutcome, TrainConfig};

mod common;

#[test]
fn vae_trains_a_step_on_wgpu() {
    if std::env::var_os("LATENT_LAB_SKIP_WGPU").is_some() {
        eprintln!("skipping: LATENT_LAB_SKIP_WGPU is set");
        return;
    }
    let backend =
        Backend::select(BackendChoice::Wgpu).expect("a wgpu adapter (install mesa-vulkan-drivers)");
    eprintln!("wgpu adapter: {}", backend.describe());
    let mut config = TrainConfig::for_kind(common::kind("vae"));
    config.log_every = 2;
    config.batch_size = 64;
    let mut s = Session::new(
        common::mnist_spec(common::kind("vae")),
        config,
        common::mnist(),
        backend,
    )
    .unwrap();
    let mut points = Vec::new();
    for _ in 0..4 {
        if let StepOutcome::Ran { point: Some(p), .. } = s.step().unwrap() {
            points.push(p.values[0]);
        }
    }
    assert_eq!(points.len(), 2);
    assert!(
        points.iter().all(|v| v.is_finite() && *v > 0.0),
        "{points:?}"
    );
    // The frozen CPU copy decodes what the GPU trained.
    let img = s
        .inference(&burn::tensor::Device::flex())
        .decode(&[0.0; 20])
        .unwrap();
    assert!(img.pixels.iter().all(|v| (0.0..=1.0).contains(v)));

    // A run moves between burn's path (here on wgpu) and the fused CPU path through
    // checkpoints, both ways, weights and Adam state included.
    let ckpt = s.checkpoint().unwrap();
    let mut cpu = Session::from_checkpoint(&ckpt, common::mnist(), Backend::cpu()).unwrap();
    if std::env::var("LATENT_LAB_CPU_TRAINING").as_deref() != Ok("burn") {
        let d = cpu.describe_backend();
        assert!(d.contains("fused"), "{d}");
    }
    let mut cpu_losses = Vec::new();
    for _ in 0..2 {
        if let StepOutcome::Ran { point: Some(p), .. } = cpu.step().unwrap() {
            cpu_losses.push(p.values[0]);
        }
    }
    assert_eq!(cpu.step_count(), 6);
    assert!(
        cpu_losses.iter().all(|v| v.is_finite() && *v > 0.0),
        "{cpu_losses:?}"
    );
    let back = cpu.checkpoint().unwrap();
    let mut gpu = Session::from_checkpoint(&back, common::mnist(), s.backend().clone()).unwrap();
    assert!(
        gpu.describe_backend().starts_with("wgpu"),
        "{}",
        gpu.describe_backend()
    );
    for _ in 0..2 {
        gpu.step().unwrap();
    }
    let p = gpu.flush().unwrap();
    assert!(matches!(&p, Some(StepOutcome::Ran { .. }) | None), "{p:?}");
    assert_eq!(gpu.step_count(), 8);
    assert!(gpu
        .history()
        .points
        .iter()
        .all(|p| p.values.iter().all(|v| v.is_finite())));
}

#[test]
fn auto_backend_picks_a_real_gpu_or_says_why_not() {
    let b = Backend::select(BackendChoice::Auto).unwrap();
    match &b.adapter {
        Some(a) => {
            // A software adapter is never chosen automatically.
            assert_ne!(a.device_type, "Cpu", "{a:?}");
            assert!(b.notice.is_none(), "{:?}", b.notice);
        }
        None => {
            let why = b.notice.as_deref().expect("auto on the CPU says why");
            assert!(
                why.contains("software GPU adapter") || why.contains("no GPU adapter"),
                "{why}"
            );
        }
    }
    // Where the only adapter is a software one (CI: lavapipe), auto trains on the CPU and
    // names the adapter it passed over.
    if std::env::var_os("LATENT_LAB_SKIP_WGPU").is_none() {
        let w = Backend::select(BackendChoice::Wgpu).expect("a wgpu adapter");
        let a = w.adapter.as_ref().expect("wgpu has an adapter");
        if a.device_type == "Cpu" {
            assert!(!b.is_gpu());
            assert!(
                b.notice.as_deref().is_some_and(|n| n.contains(&a.name)),
                "{:?}",
                b.notice
            );
        }
    }
}
