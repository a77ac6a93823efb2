//! The CLI end to end through the real binary: success paths and failure exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_latent-lab"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn assert_fails(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic trace: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn train_eval_sample_interpolate_info_export() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("vae.llck");
    let o = run(&[
        "train",
        "--model",
        "vae",
        "--data",
        "mnist",
        "--epochs",
        "1",
        "--out",
        p(&ckpt),
        "--seed",
        "1",
        "--backend",
        "cpu",
        "--max-steps",
        "60",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(ckpt.exists());

    let o = run(&[
        "eval",
        "--checkpoint",
        p(&ckpt),
        "--json",
        "--iw-samples",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "neg_elbo",
        "recon",
        "kl",
        "kl_per_dim",
        "active_units",
        "iwae_nll",
        "step",
        "epoch",
        "model",
        "dataset",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["step"], 60);
    assert_eq!(v["model"], "vae");
    assert_eq!(v["kl_per_dim"].as_array().unwrap().len(), 20);
    let nelbo = v["neg_elbo"].as_f64().unwrap();
    assert!(nelbo > 60.0 && nelbo < 250.0, "{nelbo}");

    // Resume to a later step: step and history continue.
    let o = run(&[
        "train",
        "--resume",
        p(&ckpt),
        "--epochs",
        "1",
        "--out",
        p(&ckpt),
        "--backend",
        "cpu",
        "--max-steps",
        "70",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["info", p(&ckpt), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["step"], 70);
    assert_eq!(v["epoch"], 1);
    assert!(v["metric_points"].as_u64().unwrap() >= 7);

    let grid = dir.path().join("grid.png");
    let o = run(&[
        "sample",
        "--checkpoint",
        p(&ckpt),
        "--n",
        "16",
        "--out",
        p(&grid),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&grid).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (4 * 56 + 5 * 2, 4 * 56 + 5 * 2)
    );

    let many = dir.path().join("samples");
    let o = run(&[
        "sample",
        "--checkpoint",
        p(&ckpt),
        "--n",
        "3",
        "--out",
        p(&many),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&many).unwrap().count(), 3);

    for (mode, out) in [
        ("lerp", "strip.png"),
        ("slerp", "strip-slerp.png"),
        ("slerp", "walk.gif"),
    ] {
        let out = dir.path().join(out);
        let o = run(&[
            "interpolate",
            "--checkpoint",
            p(&ckpt),
            "--steps",
            "6",
            "--mode",
            mode,
            "--from-index",
            "0",
            "--to-index",
            "5",
            "--out",
            p(&out),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(std::fs::metadata(&out).unwrap().len() > 100);
    }
    // The same endpoints, two different paths: the strips agree at the ends and differ
    // in between.
    let lerp = image::open(dir.path().join("strip.png"))
        .unwrap()
        .to_luma8();
    let slerp = image::open(dir.path().join("strip-slerp.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(lerp.dimensions(), slerp.dimensions());
    let (w, h) = lerp.dimensions();
    let column = |img: &image::GrayImage, x0: u32, x1: u32| -> Vec<u8> {
        (0..h)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .map(|(x, y)| img.get_pixel(x, y)[0])
            .collect()
    };
    let cell = w / 6;
    assert_eq!(
        column(&lerp, 0, cell / 2),
        column(&slerp, 0, cell / 2),
        "first frame"
    );
    assert_eq!(
        column(&lerp, w - cell / 2, w),
        column(&slerp, w - cell / 2, w),
        "last frame"
    );
    assert_ne!(
        column(&lerp, 2 * cell, 4 * cell),
        column(&slerp, 2 * cell, 4 * cell)
    );

    // The endpoints are the decodes of test images 0 and 5, encoded: the strip's first and
    // last cells (PNG), the GIF's first frame and its turning point (frame 6 of 6 forwards
    // + 4 back) up to the GIF palette.
    let (a, b) = endpoint_decodes(&ckpt, 0, 5);
    // Equal up to `tol` levels (a batch of 6 decodes in other float order than 1 alone).
    let close = |f: &[u8], e: &[u8], tol: u8, what: &str| {
        assert_eq!(f.len(), e.len(), "{what}");
        let d = f.iter().zip(e).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        assert!(d <= tol, "{what}: differs by up to {d} levels");
    };
    let cell = |img: &image::RgbaImage, i: u32| -> Vec<u8> {
        // grid(6 columns, pad 2, scale 2): 56 px cells.
        let (x0, y0) = (2 + i * 58, 2);
        image::imageops::crop_imm(img, x0, y0, 56, 56)
            .to_image()
            .into_raw()
    };
    let strip = image::open(dir.path().join("strip-slerp.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(strip.dimensions(), (6 * 56 + 7 * 2, 56 + 4));
    close(
        &cell(&strip, 0),
        a.single(0, 2).as_raw(),
        1,
        "the strip starts at image 0",
    );
    close(
        &cell(&strip, 5),
        b.single(0, 2).as_raw(),
        1,
        "the strip ends at image 5",
    );
    let frames = gif_all_frames(&dir.path().join("walk.gif"));
    assert_eq!(frames.len(), 10, "6 steps forwards and 4 back");
    assert!(
        frames.iter().all(|f| f.dimensions() == (112, 112)),
        "28 px at scale 4"
    );
    close(&frames[0], &a.single(0, 4), 8, "GIF frame 1 is image 0");
    close(&frames[5], &b.single(0, 4), 8, "GIF frame 6 is image 5");
    assert_ne!(frames[0].as_raw(), frames[5].as_raw());

    let o = run(&["info", p(&ckpt)]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("784-400-20"));

    let st = dir.path().join("w.safetensors");
    let o = run(&["export", "--checkpoint", p(&ckpt), "--safetensors", p(&st)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&st).unwrap();
    let t = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // PyTorch layout: nn.Linear(784, 400).weight is [400, 784].
    assert_eq!(t.tensor("enc.0.weight").unwrap().shape(), &[400, 784]);
    assert_eq!(t.tensor("out.weight").unwrap().shape(), &[784, 400]);
    assert_eq!(t.tensor("mu.bias").unwrap().shape(), &[20]);
}

#[test]
fn gan_cli_samples_and_refuses_encoder_options() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("gan.llck");
    let o = run(&[
        "train",
        "--model",
        "gan",
        "--epochs",
        "1",
        "--out",
        p(&ckpt),
        "--backend",
        "cpu",
        "--max-steps",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["eval", "--checkpoint", p(&ckpt), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["d_loss", "g_loss", "d_real", "d_fake", "step", "model"] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    let out = dir.path().join("g.png");
    let o = run(&[
        "interpolate",
        "--checkpoint",
        p(&ckpt),
        "--steps",
        "4",
        "--mode",
        "slerp",
        "--out",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "interpolate",
        "--checkpoint",
        p(&ckpt),
        "--steps",
        "4",
        "--from-index",
        "1",
        "--out",
        p(&out),
    ]);
    assert_fails(&o, 1, "GAN cannot encode");
}

#[test]
fn conditional_models_take_classes_by_number_and_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("cvae.llck");
    let train = |model: &str, data: &str, out: &Path| {
        let o = run(&[
            "train",
            "--model",
            model,
            "--data",
            data,
            "--epochs",
            "1",
            "--out",
            p(out),
            "--backend",
            "cpu",
            "--max-steps",
            "5",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    train("cvae", "shapes", &ckpt);
    // Scoring samples with a classifier of the data: a conditional model's class accuracy.
    let o = run(&["score", "--checkpoint", p(&ckpt), "--n", "300", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "fid",
        "real_fid",
        "confidence",
        "coverage",
        "histogram",
        "class_accuracy",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert!(v["fid"].as_f64().unwrap() > v["real_fid"].as_f64().unwrap());
    assert_eq!(v["classes"], 3);
    let png = dir.path().join("s.png");
    for class in ["2", "heart"] {
        let o = run(&[
            "sample",
            "--checkpoint",
            p(&ckpt),
            "--class",
            class,
            "--n",
            "4",
            "--out",
            p(&png),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run(&[
        "sample",
        "--checkpoint",
        p(&ckpt),
        "--class",
        "circle",
        "--out",
        p(&png),
    ]);
    assert_fails(&o, 1, "unknown class 'circle'");
    let o = run(&[
        "sample",
        "--checkpoint",
        p(&ckpt),
        "--class",
        "3",
        "--out",
        p(&png),
    ]);
    assert_fails(&o, 1, "from 0 to 2 or a name (square, ellipse, heart)");
    let o = run(&[
        "interpolate",
        "--checkpoint",
        p(&ckpt),
        "--from-class",
        "square",
        "--to-class",
        "heart",
        "--from-index",
        "0",
        "--steps",
        "4",
        "--out",
        p(&png),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["interpolate", "--checkpoint", p(&ckpt), "--out", p(&png)]);
    assert_fails(&o, 1, "give --class K");
    let o = run(&[
        "interpolate",
        "--checkpoint",
        p(&ckpt),
        "--class",
        "0",
        "--steps",
        "3",
        "--out",
        p(&png),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // An unconditional model takes no class; unlabelled data trains no conditional model.
    let vae = dir.path().join("vae.llck");
    train("vae", "mnist", &vae);
    let o = run(&[
        "sample",
        "--checkpoint",
        p(&vae),
        "--class",
        "1",
        "--out",
        p(&png),
    ]);
    assert_fails(&o, 1, "not a class-conditional model");
    let flat = dir.path().join("flat");
    std::fs::create_dir(&flat).unwrap();
    let o = run(&[
        "sample",
        "--checkpoint",
        p(&vae),
        "--n",
        "64",
        "--out",
        p(&flat),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "train",
        "--model",
        "cdcgan",
        "--data",
        p(&flat),
        "--image-size",
        "28",
        "--out",
        p(&dir.path().join("c.llck")),
        "--backend",
        "cpu",
        "--max-steps",
        "1",
    ]);
    assert_fails(&o, 1, "class-conditional");
}

#[test]
fn failures_exit_with_one_readable_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);

    // Usage errors: exit 2.
    assert_fails(&run(&["train"]), 2, "--out");
    assert_fails(&run(&["train", "--model", "nope", "--out", "x"]), 2, "nope");
    assert_fails(&run(&["frobnicate"]), 2, "frobnicate");

    // Bad checkpoints: exit 1, naming the file.
    std::fs::write(d("junk.llck"), b"not a checkpoint at all").unwrap();
    assert_fails(
        &run(&["info", p(&d("junk.llck"))]),
        1,
        "junk.llck: not a Latent Lab checkpoint",
    );
    assert_fails(
        &run(&["eval", "--checkpoint", p(&d("missing.llck"))]),
        1,
        "missing.llck",
    );
    assert_fails(
        &run(&[
            "sample",
            "--checkpoint",
            p(&d("junk.llck")),
            "--out",
            p(&d("o.png")),
        ]),
        1,
        "junk.llck",
    );

    // Bad datasets: exit 1, naming the file and the problem.
    let out = d("o.llck");
    let train = |data: &Path| {
        run(&[
            "train",
            "--data",
            p(data),
            "--epochs",
            "1",
            "--out",
            p(&out),
            "--backend",
            "cpu",
        ])
    };
    std::fs::write(d("magic.idx"), [0u8, 0, 8, 1, 0, 0, 0, 1, 7]).unwrap();
    assert_fails(&train(&d("magic.idx")), 1, "magic.idx: bad magic");
    let mut huge = vec![0u8, 0, 8, 3];
    huge.extend(4_000_000_000u32.to_be_bytes());
    huge.extend(28u32.to_be_bytes());
    huge.extend(28u32.to_be_bytes());
    huge.extend([0u8; 64]);
    std::fs::write(d("huge.idx"), &huge).unwrap();
    assert_fails(&train(&d("huge.idx")), 1, "huge.idx");
    let mut short = vec![0u8, 0, 8, 3];
    short.extend(10u32.to_be_bytes());
    short.extend(28u32.to_be_bytes());
    short.extend(28u32.to_be_bytes());
    short.extend([0u8; 784 * 3]);
    std::fs::write(d("short.idx"), &short).unwrap();
    assert_fails(&train(&d("short.idx")), 1, "truncated");
    std::fs::create_dir(d("empty")).unwrap();
    assert_fails(&train(&d("empty")), 1, "empty");
    assert_fails(&train(&d("does-not-exist")), 1, "does-not-exist");
    std::fs::create_dir(d("corrupt")).unwrap();
    std::fs::write(d("corrupt/a.png"), b"\x89PNG garbage").unwrap();
    assert_fails(&train(&d("corrupt")), 1, "corrupt");

    // Bad numbers: exit 1 (valid syntax, invalid value).
    assert_fails(
        &run(&["train", "--lr=-1", "--out", p(&out), "--backend", "cpu"]),
        1,
        "learning rate",
    );
    assert_fails(
        &run(&[
            "train",
            "--model",
            "dcgan",
            "--data",
            "shapes",
            "--image-size",
            "30",
            "--out",
            p(&out),
            "--backend",
            "cpu",
        ]),
        1,
        "divisible by 4",
    );
}

#[test]
fn same_seed_same_run_on_cpu() {
    // Separate processes: the device RNG is per process, so this is what a user reproduces.
    let dir = tempfile::tempdir().unwrap();
    let history = |name: &str, seed: &str| {
        let ckpt = dir.path().join(name);
        let o = run(&[
            "train",
            "--model",
            "seed-vae",
            "--epochs",
            "1",
            "--out",
            p(&ckpt),
            "--seed",
            seed,
            "--backend",
            "cpu",
            "--max-steps",
            "30",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        latent_lab::checkpoint::Checkpoint::load(&ckpt)
            .unwrap()
            .header
            .history
            .points
    };
    let a = history("a.llck", "5");
    let b = history("b.llck", "5");
    let c = history("c.llck", "6");
    let values = |h: &[latent_lab::train::metrics::MetricPoint]| {
        h.iter().map(|p| p.values.clone()).collect::<Vec<_>>()
    };
    assert_eq!(values(&a), values(&b));
    assert_ne!(values(&a), values(&c));
}

#[test]
fn help_lists_the_commands() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for c in [
        "train",
        "eval",
        "sample",
        "interpolate",
        "info",
        "export",
        "traverse",
        "directions",
        "project",
        "--smoke-frames",
    ] {
        assert!(out.contains(c), "{c} missing from help");
    }
}

#[test]
fn the_app_without_a_display_fails_in_words() {
    let o = bin()
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .arg("--smoke-frames")
        .arg("1")
        .output()
        .unwrap();
    assert_fails(&o, 1, "cannot open the window");
}

#[test]
fn bench_reports_throughput_decode_latency_and_memory() {
    let o = run(&[
        "bench",
        "--model",
        "vae,gan",
        "--backend",
        "cpu",
        "--threads",
        "2",
        "--seconds",
        "0.3",
        "--warmup-steps",
        "2",
        "--decodes",
        "20",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
    assert_eq!(v["impl"], "latent-lab");
    assert_eq!(v["threads"], 2);
    let train = v["train"].as_array().unwrap();
    assert_eq!(train.len(), 2);
    for (t, model) in train.iter().zip(["vae", "gan"]) {
        assert_eq!(t["model"], model);
        assert!(t["images_per_s"].as_f64().unwrap() > 0.0);
        assert!(t["steps"].as_u64().unwrap() >= 1);
    }
    let d = &v["decode"];
    assert_eq!(d["n"], 20);
    // Real measurements (the percentiles themselves: `bench::tests`).
    let (p50, max) = (d["p50_ms"].as_f64().unwrap(), d["max_ms"].as_f64().unwrap());
    assert!(p50 > 0.0 && max.is_finite(), "{d}");
    assert!(d["grid16_ms"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_mb"].as_f64().unwrap() > 10.0);
    // Bad arguments are refused in words.
    assert_fails(&run(&["bench", "--threads", "0"]), 1, "--threads");
    assert_fails(&run(&["bench", "--model", "nope"]), 2, "nope");
}

#[test]
fn skipped_files_are_reported_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pics");
    std::fs::create_dir(&data).unwrap();
    for (i, v) in [30u8, 220].into_iter().enumerate() {
        image::GrayImage::from_pixel(8, 8, image::Luma([v]))
            .save(data.join(format!("good{i}.png")))
            .unwrap();
    }
    std::fs::write(data.join("broken.png"), b"hello").unwrap();
    std::fs::write(data.join("notes.txt"), b"not an image").unwrap();
    let ckpt = dir.path().join("y.llck");
    let o = run(&[
        "train",
        "--model",
        "vae",
        "--data",
        p(&data),
        "--image-size",
        "8",
        "--epochs",
        "1",
        "--max-steps",
        "1",
        "--backend",
        "cpu",
        "--out",
        p(&ckpt),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("2 file(s) could not be read"), "{err}");
    assert!(
        err.contains("broken.png") && err.contains("notes.txt"),
        "{err}"
    );
    assert!(err.contains("too few to learn from"), "{err}");

    // The checkpoint's dataset description keeps the count.
    let o = run(&["info", p(&ckpt)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("2 unreadable files skipped"), "{out}");

    // Any command that loads the folder says so too.
    let o = run(&[
        "eval",
        "--checkpoint",
        p(&ckpt),
        "--data",
        p(&data),
        "--iw-samples",
        "0",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("2 file(s) could not be read"), "{err}");

    // The folder moved: resuming says so, in one line.
    std::fs::rename(&data, dir.path().join("moved")).unwrap();
    let o = run(&[
        "train",
        "--resume",
        p(&ckpt),
        "--max-steps",
        "2",
        "--backend",
        "cpu",
        "--out",
        p(&dir.path().join("z.llck")),
    ]);
    assert_fails(
        &o,
        1,
        "the run's dataset cannot be loaded (moved or deleted?)",
    );
}

/// An IDX3 u8 images file of `n` `side`×`side` images with pixel `px(i, j)`.
fn write_idx(path: &Path, n: usize, side: usize, px: impl Fn(usize, usize) -> u8) {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, side, side] {
        b.extend_from_slice(&(d as u32).to_be_bytes());
    }
    for i in 0..n {
        b.extend((0..side * side).map(|j| px(i, j)));
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn score_judges_an_image_file_another_program_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let score = |file: &Path| -> serde_json::Value {
        let o = run(&["score", "--images", p(file), "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // Real digits (the built-in training images) score near the real-vs-real floor and
    // cover every class; blank images are one class and far away.
    let data = latent_lab::data::DataSource::Mnist.load().unwrap();
    let real = dir.path().join("real.idx");
    write_idx(&real, 1000, 28, |i, j| data.image_u8(i)[j]);
    let blank = dir.path().join("blank.idx");
    write_idx(&blank, 300, 28, |_, _| 0);
    let (r, b) = (score(&real), score(&blank));
    let fid = |v: &serde_json::Value| v["fid"].as_f64().unwrap();
    assert!(fid(&r) < 3.0 * r["real_fid"].as_f64().unwrap() + 1.0, "{r}");
    assert!(fid(&b) > 10.0 * fid(&r), "{b} vs {r}");
    assert_eq!(r["coverage"], 10);
    assert_eq!(b["coverage"], 1);
    assert_eq!(r["samples"], 1000);
    assert!(r["images"].as_str().unwrap().ends_with("real.idx"));
    // Images of another size are refused in words.
    let wrong = dir.path().join("wrong.idx");
    write_idx(&wrong, 200, 32, |_, _| 0);
    let o = run(&["score", "--images", p(&wrong)]);
    assert_fails(&o, 1, "do not match");
    let o = run(&["score"]);
    assert!(!o.status.success());
}

/// Test images `i` and `j` of the run in `ckpt` (its own split), encoded (means) and decoded.
fn endpoint_decodes(
    ckpt: &Path,
    i: usize,
    j: usize,
) -> (
    latent_lab::images::ImageBatch,
    latent_lab::images::ImageBatch,
) {
    let c = latent_lab::checkpoint::Checkpoint::load(ckpt).unwrap();
    let inf = latent_lab::infer::Inference::from_checkpoint_on_cpu(&c).unwrap();
    let data = c.header.data.load().unwrap();
    let split = data.split(c.header.train.seed).unwrap();
    let one = |k: usize| {
        let mut px = Vec::new();
        data.gather_f32(&[split.test[k]], &mut px);
        let (mu, _) = inf.encode(&px).unwrap();
        inf.decode(&mu).unwrap()
    };
    (one(i), one(j))
}

/// Every frame of a GIF, decoded.
fn gif_all_frames(path: &Path) -> Vec<image::RgbaImage> {
    use image::AnimationDecoder;
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    image::codecs::gif::GifDecoder::new(f)
        .unwrap()
        .into_frames()
        .collect_frames()
        .unwrap()
        .into_iter()
        .map(|f| f.into_buffer())
        .collect()
}

/// GIF frames decoded: (count, width, height, first frame's RGBA, last frame's RGBA).
fn gif_frames(path: &Path) -> (usize, u32, u32, Vec<u8>, Vec<u8>) {
    use image::AnimationDecoder;
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let frames = image::codecs::gif::GifDecoder::new(f)
        .unwrap()
        .into_frames()
        .collect_frames()
        .unwrap();
    let (w, h) = frames[0].buffer().dimensions();
    let first = frames[0].buffer().as_raw().clone();
    let last = frames.last().unwrap().buffer().as_raw().clone();
    (frames.len(), w, h, first, last)
}

#[test]
fn timelapse_writes_the_sample_history_as_gif_and_contact_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("vae.llck");
    let train = |steps: &str, resume: bool| {
        let mut args = vec![
            "train",
            "--epochs",
            "1",
            "--out",
            p(&ckpt),
            "--backend",
            "cpu",
        ];
        if resume {
            args.extend(["--resume", p(&ckpt)]);
        } else {
            args.extend(["--model", "vae", "--data", "mnist", "--seed", "1"]);
        }
        args.extend(["--max-steps", steps]);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    // Grids at the start and at each save: steps 0, 30, then 45 after a resume.
    train("30", false);
    train("45", true);
    let o = run(&["info", p(&ckpt), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sample_history"], 3, "{v}");

    let gif = dir.path().join("run.gif");
    let o = run(&[
        "timelapse",
        "--checkpoint",
        p(&ckpt),
        "--out",
        p(&gif),
        "--scale",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("3 of 3 recorded grids, steps 0–45"), "{out}");
    let (n, w, h, first, last) = gif_frames(&gif);
    // 8 × 8 grid of 28 px with 2 px pads, and the 4 px progress bar.
    assert_eq!((n, w, h), (3, 8 * 28 + 9 * 2, 8 * 28 + 9 * 2 + 4));
    assert_ne!(first, last, "the untrained and the trained samples differ");
    // --every 2 keeps frames 0 and 2 (the last is always in).
    let o = run(&[
        "timelapse",
        "--checkpoint",
        p(&ckpt),
        "--out",
        p(&gif),
        "--every",
        "2",
        "--scale",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (n, w, _, _, _) = gif_frames(&gif);
    assert_eq!((n, w), (2, 8 * 56 + 9 * 2));

    let sheet = dir.path().join("sheet.png");
    let o = run(&[
        "timelapse",
        "--checkpoint",
        p(&ckpt),
        "--out",
        p(&sheet),
        "--scale",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&sheet).unwrap();
    // 3 tiles in one row, 6 px apart and around.
    assert_eq!(
        (img.width(), img.height()),
        (3 * (242 + 6) + 6, (246 + 6) + 6)
    );

    assert_fails(
        &run(&["timelapse", "--checkpoint", p(&ckpt), "--out", "x.jpg"]),
        1,
        "--out must end in .gif",
    );
}
