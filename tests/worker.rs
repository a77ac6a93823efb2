//! The worker protocol end to end: commands in, events out, on the CPU backend.

mod common;

use std::time::Duration;

use common::max_diff;
use latent_lab::backend::{Backend, BackendChoice};
use latent_lab::checkpoint::Checkpoint;
use latent_lab::data::DataSource;
use latent_lab::infer::Inference;
use latent_lab::model::{ModelKind, ModelOverrides};
use latent_lab::train::TrainConfig;
use latent_lab::worker::{Command, Event, TrainRequest, WorkerHandle, WorkerOptions};

fn wait_for(w: &WorkerHandle, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while std::time::Instant::now() < deadline {
        if let Some(ev) = w.recv_timeout(Duration::from_millis(200)) {
            if let Event::Error(e) = &ev {
                panic!("worker error while waiting for {what}: {e}");
            }
            if pred(&ev) {
                return ev;
            }
        }
    }
    panic!("timed out waiting for {what}");
}

fn assert_close(a: &[f32], b: &[f32]) {
    let d = max_diff(a, b);
    assert!(d < 1e-4, "differ by {d}");
}

fn request(kind: ModelKind) -> TrainRequest {
    let mut config = TrainConfig::for_kind(kind);
    config.epochs = 1;
    config.log_every = 5;
    config.sample_every = 20;
    TrainRequest {
        kind,
        overrides: ModelOverrides::default(),
        data: DataSource::Mnist,
        config,
        backend: BackendChoice::Cpu,
    }
}

#[test]
fn worker_trains_pauses_steps_saves_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.llck");
    let w = WorkerHandle::spawn(WorkerOptions {
        snapshot_every: Some(10),
        samples: true,
        waker: None,
        low_priority: true,
    })
    .unwrap();
    w.send(Command::Start(Box::new(request(kind("vae")))))
        .unwrap();
    let Event::Ready(info) = wait_for(&w, "ready", |e| matches!(e, Event::Ready(_))) else {
        unreachable!()
    };
    assert_eq!(info.train_images, 9000);
    assert_eq!(info.test_images, 1000);
    assert_eq!(info.batches_per_epoch, 70);
    assert_eq!(info.history.names, ["loss", "recon", "kl"]);

    // Single step while paused.
    w.send(Command::Step(1)).unwrap();
    wait_for(&w, "paused after one step", |e| {
        matches!(e, Event::Paused { step: 1 })
    });

    // Run, see metrics, a sample grid and a snapshot, change the learning rate, pause.
    w.send(Command::Train).unwrap();
    wait_for(
        &w,
        "metrics",
        |e| matches!(e, Event::Metrics(p) if p.step >= 10),
    );
    w.send(Command::SetLearningRate(5e-4)).unwrap();
    wait_for(
        &w,
        "config change",
        |e| matches!(e, Event::ConfigChanged(c) if c.learning_rate == 5e-4),
    );
    let Event::Samples { images, .. } = wait_for(
        &w,
        "samples",
        |e| matches!(e, Event::Samples { step, .. } if *step >= 20),
    ) else {
        unreachable!()
    };
    assert_eq!(images.count(), 64);
    let Event::Snapshot(snap) = wait_for(&w, "snapshot", |e| matches!(e, Event::Snapshot(_)))
    else {
        unreachable!()
    };
    // The snapshot decodes on the CPU without the worker.
    let img = snap.decode(&[0.0; 20]).unwrap();
    assert_eq!(img.pixels.len(), 784);
    w.send(Command::Pause).unwrap();
    let Event::Paused { step } = wait_for(&w, "pause", |e| matches!(e, Event::Paused { .. }))
    else {
        unreachable!()
    };
    assert!(step >= 20);

    // The UI decodes and encodes only on snapshots (the worker never decodes on the training
    // device): step to the next snapshot; it must carry the weights of that very step.
    let target = step + 10 - step % 10;
    assert!(
        target < 70,
        "paused at {step}: too late to step to a snapshot"
    );
    w.send(Command::Step(target - step)).unwrap();
    let Event::Snapshot(newest) = wait_for(
        &w,
        "snapshot of the step",
        |e| matches!(e, Event::Snapshot(s) if s.step == target),
    ) else {
        unreachable!()
    };
    wait_for(
        &w,
        "paused at the snapshot",
        |e| matches!(e, Event::Paused { step } if *step == target),
    );
    let step = target;

    // Save, then run to the end of the epoch: test metrics and Finished.
    w.send(Command::Save(ckpt.clone())).unwrap();
    wait_for(
        &w,
        "saved",
        |e| matches!(e, Event::Saved { step: s, .. } if *s == step),
    );
    // The snapshot decodes and encodes as the checkpoint of its step does, and its weights
    // are newer than those of the first snapshot.
    let saved =
        Inference::from_checkpoint(&Checkpoint::load(&ckpt).unwrap(), &Backend::cpu().device)
            .unwrap();
    let z: Vec<f32> = (0..40).map(|i| 2.0 * (i as f32 * 0.37).sin()).collect();
    let decoded = newest.decode(&z).unwrap();
    assert_eq!(decoded.count(), 2);
    assert_close(&decoded.pixels, &saved.decode(&z).unwrap().pixels);
    assert!(max_diff(&decoded.pixels, &snap.decode(&z).unwrap().pixels) > 1e-4);
    let x = &decoded.pixels[..784];
    let (mu, logvar) = newest.encode(x).unwrap();
    assert_eq!((mu.len(), logvar.len()), (20, 20));
    let (saved_mu, saved_logvar) = saved.encode(x).unwrap();
    assert_close(&mu, &saved_mu);
    assert_close(&logvar, &saved_logvar);
    w.send(Command::Train).unwrap();
    let Event::TestMetrics(t) =
        wait_for(&w, "test metrics", |e| matches!(e, Event::TestMetrics(_)))
    else {
        unreachable!()
    };
    assert_eq!(t.epoch, 1);
    assert!(t.value.is_finite() && t.value < 300.0, "{}", t.value);
    wait_for(&w, "finished", |e| {
        matches!(e, Event::Finished { step: 70, epoch: 1 })
    });

    // Load the checkpoint saved mid-epoch: position and history come back.
    w.send(Command::Load {
        path: ckpt.clone(),
        backend: BackendChoice::Cpu,
    })
    .unwrap();
    let Event::Ready(info) = wait_for(&w, "ready after load", |e| matches!(e, Event::Ready(_)))
    else {
        unreachable!()
    };
    assert_eq!(info.step, step);
    assert!(!info.history.points.is_empty());
    assert!(info
        .history
        .markers
        .iter()
        .any(|m| m.text.starts_with("lr =")));
    assert!(info.history.markers.iter().any(|m| m.text == "resumed"));
    let before = Checkpoint::load(&ckpt).unwrap().header.history;
    assert_eq!(info.history.points, before.points);

    // Train on from there and save again: the earlier points are kept as they were (none
    // cut, moved or rewritten), the new ones follow them.
    w.send(Command::Step(12)).unwrap();
    wait_for(
        &w,
        "paused after resuming",
        |e| matches!(e, Event::Paused { step: s } if *s == step + 12),
    );
    let again = dir.path().join("again.llck");
    w.send(Command::Save(again.clone())).unwrap();
    wait_for(&w, "saved again", |e| matches!(e, Event::Saved { .. }));
    let after = Checkpoint::load(&again).unwrap().header.history;
    let n = before.points.len();
    assert!(
        after.points.len() > n,
        "{} points after, {n} before",
        after.points.len()
    );
    assert_eq!(after.points[..n], before.points[..]);
    assert_eq!(after.test[..before.test.len()], before.test[..]);
    assert!(after.points[n..].iter().all(|p| p.step > step));
}

#[test]
fn worker_reports_bad_input_as_events() {
    let w = WorkerHandle::spawn(WorkerOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.llck");
    std::fs::write(&bad, b"garbage").unwrap();
    w.send(Command::Load {
        path: bad,
        backend: BackendChoice::Cpu,
    })
    .unwrap();
    let ev = loop {
        match w.recv_timeout(Duration::from_secs(60)) {
            Some(Event::Error(e)) => break e,
            Some(_) => {}
            None => panic!("no error event"),
        }
    };
    assert!(
        ev.contains("bad.llck") && ev.contains("not a Latent Lab checkpoint"),
        "{ev}"
    );
    // Training with nothing loaded is an error, not a panic.
    w.send(Command::Train).unwrap();
    match w.recv_timeout(Duration::from_secs(60)) {
        Some(Event::Error(e)) => assert!(e.contains("nothing to train"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Still alive afterwards.
    w.send(Command::Start(Box::new(request(kind("seed-gan")))))
        .unwrap();
    match w.recv_timeout(Duration::from_secs(120)) {
        Some(Event::Ready(info)) => assert_eq!(info.history.names[0], "d_loss"),
        other => panic!("{other:?}"),
    }
}

/// The model preset `name`.
fn kind(name: &str) -> ModelKind {
    ModelKind::parse(name).unwrap_or_else(|| panic!("no preset {name}"))
}

/// A freshly initialised MLP VAE as the decoder sees it, at training step `step`.
fn untrained_vae(step: u64) -> std::sync::Arc<Inference> {
    let spec = latent_lab::model::ModelSpec::new(
        ModelKind::parse("vae").unwrap(),
        latent_lab::model::ImageShape::new(1, 28, 28),
        &ModelOverrides::default(),
    )
    .unwrap();
    let device = Backend::cpu().device;
    let nets = spec.init(&device);
    std::sync::Arc::new(Inference::new(spec, nets.as_ref(), &device, step))
}

#[test]
fn the_decoder_serves_the_latest_request_of_a_slot() {
    use latent_lab::worker::decoder::{DecoderHandle, Job, Output, Slot};
    let inf = untrained_vae(7);
    let dec = DecoderHandle::spawn(None).unwrap();
    // Three slider positions for the explorer and one interpolation strip, asked before
    // the decoder has weights: only the newest explorer request is decoded.
    let z = |v: f32| vec![v; 20];
    for v in [0.1, 0.2, 0.3] {
        dec.request(Slot::Explorer, Job::Decode(z(v)));
    }
    dec.request(Slot::Interpolation, Job::Decode(z(-1.0)));
    dec.set_model(Some(inf.clone()));
    let mut got = Vec::new();
    while let Some(o) = dec.recv_timeout(Duration::from_secs(2)) {
        got.push(o);
    }
    assert_eq!(got.len(), 2, "one output per slot: {}", got.len());
    for o in got {
        let Output::Decoded {
            slot,
            images,
            model_step,
            ..
        } = o
        else {
            panic!("a decode");
        };
        assert_eq!(model_step, 7);
        let want = match slot {
            Slot::Explorer => inf.decode(&z(0.3)).unwrap(),
            Slot::Interpolation => inf.decode(&z(-1.0)).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(images.pixels, want.pixels, "{slot:?}");
    }
}

/// New directions do not wait behind a t-SNE: they have a thread of their own, and a
/// projection nobody wants any more can be cancelled.
#[test]
fn directions_do_not_wait_behind_a_projection() {
    use latent_lab::explore::Projection;
    use latent_lab::worker::decoder::{Analysed, AnalysisThreads, Job, Output, Progress, Slot};
    let inf = untrained_vae(3);
    let threads = AnalysisThreads::spawn(None).unwrap();
    threads.set_model(Some(inf));
    let points = latent_lab::infer::normal_latents(3000, 20, 1);
    let progress = std::sync::Arc::new(Progress::default());
    threads.request(
        Slot::Projection,
        Job::Project {
            points,
            dim: 20,
            method: Projection::Tsne,
            progress: progress.clone(),
        },
    );
    std::thread::sleep(Duration::from_millis(200));
    threads.request(
        Slot::PrincipalDirections,
        Job::Directions {
            means: latent_lab::infer::normal_latents(500, 20, 2),
            k: 4,
            samples: 500,
            seed: 0,
        },
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut outputs = Vec::new();
    let order = |o: &[Output]| -> Vec<Slot> { o.iter().map(Output::slot).collect() };
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            order(&outputs)
        );
        match threads.try_recv() {
            Some(o) => {
                let done = matches!(
                    o,
                    Output::Failed { .. }
                        | Output::Analysed {
                            result: Analysed::Projection(_),
                            ..
                        }
                );
                outputs.push(o);
                if done {
                    break;
                }
                // Directions are back: the t-SNE is still running; stop it.
                assert!(progress.fraction() < 1.0);
                progress.cancel();
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    assert!(
        matches!(&outputs[0], Output::Analysed { result: Analysed::Directions(d), .. } if d.vectors.len() == 4),
        "directions first: {:?}",
        order(&outputs)
    );
    assert!(
        matches!(&outputs[1], Output::Failed { slot: Slot::Projection, message } if message == "cancelled"),
        "{:?}",
        order(&outputs)
    );
}
