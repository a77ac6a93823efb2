//! Faults and bad input in the app and the engine: divergence, a panicking or failing
//! training thread, autosave and crash recovery, a missing GPU, messy image folders, and
//! a process killed while it saves checkpoints.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Proc, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use latent_lab::app::{AppOptions, Status};
use latent_lab::autosave::Autosave;
use latent_lab::backend::{Backend, BackendChoice};
use latent_lab::checkpoint::Checkpoint;
use latent_lab::data::folder::load_folder;
use latent_lab::train::{Session, TrainConfig};
use latent_lab::worker::{Command, Fault};

mod common;
use common::ui::{app, app_with, harness, has_marker, pump, run_for, training};

#[test]
fn divergence_pauses_and_lowering_the_learning_rate_continues() {
    let mut h = training(app(), 20);
    // A learning rate far too high: the next steps blow up.
    h.state_mut().shared.settings.learning_rate = 1e3;
    pump(&mut h, "divergence", |a| {
        matches!(a.shared.run.status, Status::Diverged { .. })
    });
    let Status::Diverged { step: bad } = h.state().shared.run.status else {
        unreachable!()
    };
    // In words in the window (the banner, the status line and the status bar).
    assert!(h
        .query_all_by_label_contains(&format!("diverged at step {bad}"))
        .next()
        .is_some());
    // Every logged point left on the plot is finite: the bad steps were rolled back.
    let pts = &h.state().shared.run.history.points;
    assert!(pts.iter().all(|p| p.values.iter().all(|v| v.is_finite())));
    // Lower the rate (×0.1 per click) until training runs on without diverging.
    let mut clicks = 0;
    loop {
        clicks += 1;
        assert!(clicks <= 8, "still diverging after {clicks} reductions");
        h.get_by_label_contains("Lower learning rate").click();
        h.step(); // the frame that handles the click
                  // The click cleared the message; a new one means it diverged again at once.
        pump(&mut h, "resumed", |a| {
            a.shared.run.status == Status::Running
                || matches!(a.shared.run.status, Status::Diverged { .. })
                    && !a.shared.run.errors.is_empty()
        });
        let from = h.state().shared.run.history.points.len();
        pump(&mut h, "progress or divergence", |a| {
            matches!(a.shared.run.status, Status::Diverged { .. })
                || a.shared.run.history.points.len() >= from + 5
        });
        if h.state().shared.run.status == Status::Running {
            break;
        }
    }
    let lr = h.state().shared.run.config.as_ref().unwrap().learning_rate;
    assert!(lr < 1e3 && lr > 1e-6, "{lr}");
    let last = h.state().shared.run.history.points.last().unwrap().clone();
    assert!(last.values.iter().all(|v| v.is_finite()));
    assert!(has_marker(h.state(), |t| t.contains("diverged")));
}

#[test]
fn a_panic_in_the_training_thread_is_shown_and_training_can_start_again() {
    let mut h = training(app(), 10);
    h.state_mut()
        .shared
        .send(Command::InjectFault(Fault::Panic));
    pump(&mut h, "crash reported", |a| {
        a.shared.run.status == Status::Crashed
    });
    h.get_by_label_contains("internal error in the training thread");
    // The app is alive and a new run starts without a restart.
    h.get_by_label("Train").click();
    pump(&mut h, "new run", |a| {
        a.shared.run.status == Status::Running
    });
    pump(&mut h, "steps of the new run", |a| {
        a.shared.run.history.points.len() >= 2
    });
}

#[test]
fn a_device_error_mid_training_stops_with_a_message_and_the_run_survives() {
    let mut h = training(app(), 10);
    h.state_mut()
        .shared
        .send(Command::InjectFault(Fault::DeviceLost));
    pump(&mut h, "stopped", |a| {
        a.shared.run.status == Status::Paused && !a.shared.run.errors.is_empty()
    });
    h.get_by_label_contains("device was lost");
    let step = h.state().shared.run.step;
    h.get_by_label("Resume").click();
    pump(&mut h, "running again", |a| a.shared.run.step > step + 5);
}

#[test]
fn auto_backend_says_when_it_falls_back_to_the_cpu() {
    let mut h = harness(app_with(AppOptions::default(), |s| {
        s.backend = BackendChoice::Auto;
    }));
    h.step();
    h.get_by_label("Train").click();
    pump(&mut h, "ready", |a| a.shared.run.info.is_some());
    let info = h.state().shared.run.info.clone().unwrap();
    match &info.backend_notice {
        // No GPU here (or only a software one): the window says so.
        Some(n) => {
            assert!(info.backend.starts_with("CPU (flex)"), "{}", info.backend);
            assert!(n.contains("CPU"), "{n}");
            h.step();
            h.get_by_label(n);
        }
        // A real GPU: no notice, and the adapter is named.
        None => assert!(info.backend.starts_with("wgpu"), "{}", info.backend),
    }
}

#[test]
fn autosave_rotates_and_a_crash_offers_the_newest_one() {
    let dir = tempfile::tempdir().unwrap();
    let auto = dir.path().join("autosave");
    let opts = AppOptions {
        autosave_dir: Some(auto.clone()),
        ..AppOptions::default()
    };
    let mut h = harness(app_with(opts.clone(), |s| {
        s.autosave_minutes = 0.002; // every ~0.1 s for the test
        s.autosave_keep = 2;
    }));
    h.step();
    h.get_by_label("Train").click();
    pump(&mut h, "several autosaves", |a| {
        a.recovery.last_written.is_some_and(|(s, _)| s >= 60)
    });
    // Pause and let the last autosave (of the paused step) land and be pruned.
    h.get_by_label("Pause").click();
    pump(&mut h, "paused", |a| a.shared.run.status == Status::Paused);
    pump(&mut h, "the paused step autosaved", |a| {
        a.recovery.last_written.map(|(s, _)| s) == Some(a.shared.run.step)
    });
    // Nothing more to save: the list below is final.
    run_for(&mut h, Duration::from_millis(300));
    let store = Autosave::new(&auto);
    let list = store.list();
    assert!(!list.is_empty() && list.len() <= 2, "{list:?}");
    for e in &list {
        Checkpoint::load(&e.path).unwrap();
    }
    let newest = list[0].clone();
    // The app "crashes": it is dropped without a clean exit, so its marker stays behind.
    drop(h);
    // Make the marker look like a process that is gone (this test process is still alive).
    std::fs::write(auto.join("session.lock"), "4000000000").unwrap();

    let mut h = harness(app_with(opts, |_| {}));
    h.step();
    h.get_by_label_contains("did not close cleanly");
    h.get_by_label("Restore autosave").click();
    pump(&mut h, "restored", |a| a.shared.run.status == Status::Ready);
    let step = h.state().shared.run.step;
    assert_eq!(step, newest.step);
    // And training continues from there.
    h.get_by_label("Train").click();
    pump(&mut h, "continues", |a| a.shared.run.step > step);
    // A clean exit removes the marker: no offer next time.
    h.state().recovery.close();
    assert!(!auto.join("session.lock").exists());
}

// ---------------------------------------------------------------------------------------
// Messy folders.

#[test]
fn a_messy_folder_loads_the_good_images_and_lists_the_bad_ones() {
    use image::{DynamicImage, ImageFormat};
    let dir = tempfile::tempdir().unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let classes = ["alpha", "beta", "gamma"];
    let (mut good, mut bad) = (0usize, Vec::new());
    for i in 0..2400 {
        let class = classes[i % 3];
        let sub = dir.path().join(class);
        std::fs::create_dir_all(&sub).unwrap();
        let (w, h) = (4 + (next() % 120) as u32, 4 + (next() % 120) as u32);
        let img = match next() % 6 {
            0 => DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, h, |x, _| {
                image::Luma([(x * 7) as u8])
            })),
            1 => DynamicImage::ImageLumaA8(image::ImageBuffer::from_fn(w, h, |x, y| {
                image::LumaA([(x * 3) as u8, (y * 5) as u8])
            })),
            2 => DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 2) as u8, (y * 2) as u8, 128])
            })),
            3 => DynamicImage::ImageRgba8(image::RgbaImage::from_fn(w, h, |x, y| {
                image::Rgba([200, (x * 2) as u8, (y * 2) as u8, 180])
            })),
            4 => DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(w, h, |x, _| {
                image::Luma([(x * 500) as u16])
            })),
            _ => DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(w, h, |_, y| {
                image::Rgb([1000, (y * 400) as u16, 30000])
            })),
        };
        let (ext, fmt, img) = match next() % 4 {
            0 => ("png", ImageFormat::Png, img),
            1 => (
                "jpg",
                ImageFormat::Jpeg,
                DynamicImage::ImageRgb8(img.to_rgb8()),
            ),
            2 => (
                "bmp",
                ImageFormat::Bmp,
                DynamicImage::ImageRgba8(img.to_rgba8()),
            ),
            _ => (
                "gif",
                ImageFormat::Gif,
                DynamicImage::ImageRgba8(img.to_rgba8()),
            ),
        };
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, fmt).unwrap();
        let mut bytes = bytes.into_inner();
        let name = sub.join(format!("img{i:05}.{ext}"));
        match i % 50 {
            // Truncated files.
            7 | 31 => {
                bytes.truncate(bytes.len() / 3);
                bad.push(name.clone());
            }
            // Not images at all, but named like one.
            13 => {
                bytes = (0..300).map(|_| next() as u8).collect();
                bad.push(name.clone());
            }
            // Empty.
            29 => {
                bytes.clear();
                bad.push(name.clone());
            }
            _ => good += 1,
        }
        std::fs::write(&name, bytes).unwrap();
    }
    // Files that are no images at all, inside the class folders.
    for (i, class) in classes.iter().enumerate() {
        let p = dir.path().join(class).join(format!("notes{i}.txt"));
        std::fs::write(&p, "a note").unwrap();
        bad.push(p);
    }
    let t = Instant::now();
    let ds = load_folder(dir.path(), 28, 1).unwrap();
    eprintln!(
        "messy folder: {} good, {} skipped in {:.2} s",
        ds.len(),
        ds.skipped.len(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(ds.len(), good);
    assert_eq!(ds.label_names, classes);
    let mut listed: Vec<_> = ds.skipped.iter().map(|s| s.path.clone()).collect();
    listed.sort();
    bad.sort();
    assert_eq!(listed, bad);
    assert!(ds.skipped.iter().all(|s| !s.reason.is_empty()));
}

// ---------------------------------------------------------------------------------------
// SIGKILL while saving.

const SAVE_LOOP_ENV: &str = "LATENT_LAB_TEST_SAVE_LOOP_DIR";
const KILL_TEST: &str = "killing_the_process_while_it_saves_never_leaves_a_broken_checkpoint";

/// The child side: save checkpoints in a loop, as fast as possible, announcing each one.
fn save_loop(dir: &Path) -> ! {
    let data = Arc::new(latent_lab::data::builtin_mnist().unwrap());
    let spec = common::mnist_spec(common::kind("vae"));
    let mut config = TrainConfig::for_kind(common::kind("vae"));
    config.log_every = 1;
    let mut s = Session::new(spec, config, data, Backend::cpu()).unwrap();
    let store = Autosave::new(dir);
    for i in 0u64.. {
        s.step().unwrap();
        let ckpt = s.checkpoint().unwrap();
        // One fixed name (overwritten each time) and rotating autosave names.
        ckpt.save(&dir.join("run.llck")).unwrap();
        ckpt.save(&store.path_for(s.step_count())).unwrap();
        if i % 3 == 0 {
            store.prune(2);
        }
        println!("saved {}", s.step_count());
    }
    unreachable!()
}

#[test]
fn killing_the_process_while_it_saves_never_leaves_a_broken_checkpoint() {
    if let Some(dir) = std::env::var_os(SAVE_LOOP_ENV) {
        save_loop(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x2545_F491u64;
    let mut kills = 0;
    for round in 0..12 {
        let mut child = Proc::new(&exe)
            .args([KILL_TEST, "--exact", "--nocapture", "--test-threads", "1"])
            .env(SAVE_LOOP_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait for the first save of this round, then kill at a random moment.
        let mut last_saved = None;
        for line in lines.by_ref() {
            if let Some(s) = line.unwrap().strip_prefix("saved ") {
                last_saved = Some(s.trim().parse::<u64>().unwrap());
                break;
            }
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 400_000));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        kills += 1;
        for line in lines.map_while(Result::ok) {
            if let Some(s) = line.strip_prefix("saved ") {
                last_saved = s.trim().parse().ok().or(last_saved);
            }
        }
        let last_saved = last_saved.expect("the child saved at least once");
        // The fixed name always holds a complete checkpoint, at least as new as the last
        // save the child finished.
        let ckpt = Checkpoint::load(&dir.path().join("run.llck"))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(ckpt.header.step >= last_saved, "round {round}");
        latent_lab::infer::Inference::from_checkpoint(&ckpt, &Backend::cpu().device).unwrap();
        // Every autosave the app would offer loads; half-written files are never listed.
        let store = Autosave::new(dir.path());
        assert!(!store.list().is_empty());
        for e in store.list() {
            Checkpoint::load(&e.path).unwrap_or_else(|err| panic!("round {round}: {err}"));
        }
        // Whatever else is there is a temporary file, which does not pass for a checkpoint.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name != "run.llck" && !store.owns(&p) {
                assert!(name.starts_with('.') && name.contains(".tmp-"), "{name}");
            }
        }
    }
    assert_eq!(kills, 12);
    // The next start cleans up after killed saves: opening the autosave folder removes its
    // temporary files, and the next save to a name removes that name's. (Two planted ones,
    // of a process id that cannot be running, stand for kills that hit a write.)
    let planted = [
        ".run.llck.tmp-4000000000",
        ".autosave-1-step1.llck.tmp-4000000000",
    ];
    for p in planted {
        std::fs::write(dir.path().join(p), b"half a checkpoint").unwrap();
    }
    let store = Autosave::new(dir.path());
    store.open().unwrap();
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
    // Outside an autosave folder, the next save to the same name does it.
    std::fs::write(dir.path().join(planted[0]), b"half a checkpoint").unwrap();
    let run = dir.path().join("run.llck");
    Checkpoint::load(&run).unwrap().save(&run).unwrap();
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
    store.close();
}

// ---------------------------------------------------------------------------------------
// Saves that cannot lose data.

/// The names in `dir` that are temporary files of a save.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

#[test]
fn a_full_disk_while_saving_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.llck");
    let mut h = training(app(), 5);
    h.get_by_label("Pause").click();
    pump(&mut h, "paused", |a| a.shared.run.status == Status::Paused);
    let good_step = h.state().shared.run.step;
    h.state_mut()
        .on_file_chosen(latent_lab::app::FileAction::SaveCheckpoint, path.clone());
    pump(&mut h, "saved", |_| path.exists());
    // The disk fills up: the next save fails half-way through its file.
    latent_lab::util::inject_full_disk(dir.path(), Some(4096));
    h.get_by_label("Resume").click();
    pump(&mut h, "more steps", |a| a.shared.run.step > good_step + 5);
    h.state_mut()
        .on_file_chosen(latent_lab::app::FileAction::SaveCheckpoint, path.clone());
    pump(&mut h, "the error", |a| !a.shared.run.errors.is_empty());
    latent_lab::util::inject_full_disk(dir.path(), None);
    let err = h.state().shared.run.errors.join(" ");
    assert!(
        err.contains("No space left")
            && err.contains("run.llck")
            && err.contains("nothing was written"),
        "{err}"
    );
    // The window says so, training goes on, the previous checkpoint is whole and no
    // temporary file is left behind.
    h.get_by_label_contains("No space left");
    let step = h.state().shared.run.step;
    pump(&mut h, "training goes on", |a| a.shared.run.step > step);
    assert_eq!(Checkpoint::load(&path).unwrap().header.step, good_step);
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
}

#[test]
fn the_command_line_says_when_it_cannot_save_and_keeps_the_last_checkpoint() {
    common::cpu_default_device();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.llck");
    let o = out.to_string_lossy().into_owned();
    let train = |extra: &[&str]| {
        let mut args = vec![
            "latent-lab",
            "train",
            "--model",
            "vae",
            "--hidden",
            "8",
            "--latent-dim",
            "2",
            "--backend",
            "cpu",
            "--out",
            &o,
        ];
        args.extend(extra);
        latent_lab::cli::main_with_args(args)
    };
    assert_eq!(train(&["--epochs", "1"]), std::process::ExitCode::SUCCESS);
    let before = std::fs::read(&out).unwrap();
    latent_lab::util::inject_full_disk(dir.path(), Some(1000));
    let code = train(&["--epochs", "2", "--resume", &o]);
    latent_lab::util::inject_full_disk(dir.path(), None);
    assert_eq!(code, std::process::ExitCode::from(1));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the last good checkpoint is untouched"
    );
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
    // The run it could not save is not lost: a rescue copy in the temporary folder.
    let rescue =
        std::env::temp_dir().join(format!("latent-lab-rescue-{}.llck", std::process::id()));
    let saved = Checkpoint::load(&rescue).unwrap();
    assert_eq!((saved.header.epoch, saved.header.step), (2, 140));
    std::fs::remove_file(&rescue).unwrap();

    // A folder that is not there (moved, unmounted) or is a file: an error before training.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    for (bad, why) in [
        (dir.path().join("gone/run.llck"), "does not exist"),
        (file.join("run.llck"), "is not a folder"),
    ] {
        let o = Proc::new(env!("CARGO_BIN_EXE_latent-lab"))
            .args(["train", "--epochs", "1", "--backend", "cpu", "--out"])
            .arg(&bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(why) && err.contains("run.llck"), "{err}");
        assert!(!err.contains("epoch 1"), "refused before training: {err}");
    }
}

#[test]
fn an_unwritable_autosave_folder_is_said_and_training_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // A folder that cannot be created (a file is in the way).
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let opts = AppOptions {
        autosave_dir: Some(file.join("autosave")),
        ..AppOptions::default()
    };
    let mut h = training(app_with(opts, |_| {}), 3);
    h.get_by_label_contains("autosave is off: cannot use");
    let step = h.state().shared.run.step;
    pump(&mut h, "training goes on", |a| a.shared.run.step > step + 3);

    // A folder that fills up during the session: each failed autosave names where.
    let auto = dir.path().join("autosave");
    let opts = AppOptions {
        autosave_dir: Some(auto.clone()),
        ..AppOptions::default()
    };
    latent_lab::util::inject_full_disk(&auto, Some(100));
    let mut h = training(app_with(opts, |s| s.autosave_minutes = 0.002), 3);
    pump(&mut h, "an autosave error", |a| {
        !a.shared.run.errors.is_empty()
    });
    latent_lab::util::inject_full_disk(&auto, None);
    let err = h.state().shared.run.errors.join(" ");
    assert!(
        err.contains(&auto.to_string_lossy().into_owned()) && err.contains("No space"),
        "{err}"
    );
    let step = h.state().shared.run.step;
    pump(&mut h, "training goes on", |a| a.shared.run.step > step + 3);
    // No failed save left a temporary file (once the saves still queued have landed).
    h.state_mut().shared.settings.autosave = false;
    h.get_by_label("Pause").click();
    pump(&mut h, "paused", |a| a.shared.run.status == Status::Paused);
    run_for(&mut h, Duration::from_millis(500));
    assert!(temporaries(&auto).is_empty(), "{:?}", temporaries(&auto));
}
