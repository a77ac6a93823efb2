//! The exploration views' CLI twins (`traverse`, `directions`, `project`) through the real
//! binary, and the engine underneath them: GANSpace directions against random ones, named
//! directions saved in a checkpoint.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use latent_lab::backend::Backend;
use latent_lab::checkpoint::Checkpoint;
use latent_lab::explore;
use latent_lab::run::NamedDirection;
use latent_lab::train::StepOutcome;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latent-lab"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).expect("one JSON object on stdout")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn train(model: &str, data: &str, steps: &str, out: &Path) {
    ok(&[
        "train",
        "--model",
        model,
        "--data",
        data,
        "--epochs",
        "1",
        "--max-steps",
        steps,
        "--seed",
        "1",
        "--backend",
        "cpu",
        "--out",
        p(out),
    ]);
}

/// The width and height of the PNG at `path`, decoded.
fn png_size(path: &Path) -> (u32, u32) {
    image::open(path).expect("a PNG").to_rgba8().dimensions()
}

/// A grid of `rows × cols` 28 px images at `scale` with 2 px padding (`ImageBatch::grid`).
fn grid_size(rows: u32, cols: u32, scale: u32) -> (u32, u32) {
    (
        cols * 28 * scale + (cols + 1) * 2,
        rows * 28 * scale + (rows + 1) * 2,
    )
}

#[test]
fn vae_twins_write_the_grid_strips_and_projections() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("vae.llck");
    train("vae", "mnist", "150", &ckpt);

    // traverse: one row per asked dimension, --steps columns; by KL when not asked.
    let png = dir.path().join("t.png");
    let o = ok(&[
        "traverse",
        "--checkpoint",
        p(&ckpt),
        "--out",
        p(&png),
        "--steps",
        "7",
        "--dims",
        "0,3,5",
        "--scale",
        "1",
    ]);
    assert_eq!(png_size(&png), grid_size(3, 7, 1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("row 2: z3"), "{err}");
    let o = ok(&[
        "traverse",
        "--checkpoint",
        p(&ckpt),
        "--out",
        p(&png),
        "--rows",
        "4",
        "--scale",
        "2",
    ]);
    assert_eq!(png_size(&png), grid_size(4, 9, 2));
    // The rows are ordered by decreasing KL.
    let err = String::from_utf8_lossy(&o.stderr);
    let kls: Vec<f64> = err
        .lines()
        .filter_map(|l| l.split("(KL ").nth(1))
        .map(|s| s.trim_end_matches(')').parse().unwrap())
        .collect();
    assert_eq!(kls.len(), 4, "{err}");
    assert!(kls.windows(2).all(|w| w[0] >= w[1]), "{kls:?}");

    // The middle column is the base latent itself: every row's middle image is the same.
    let img = image::open(&png).unwrap().to_rgba8();
    let cell = |r: u32, c: u32| {
        let (x0, y0) = (2 + c * 58, 2 + r * 58);
        (0..56 * 56)
            .map(|k| img.get_pixel(x0 + k % 56, y0 + k / 56)[0])
            .collect::<Vec<u8>>()
    };
    assert_eq!(cell(0, 4), cell(3, 4));
    assert_ne!(
        cell(0, 0),
        cell(0, 8),
        "a row must change along its dimension"
    );

    // directions: JSON fields, explained variance in order, a strip per direction.
    let strips = dir.path().join("d.png");
    let o = ok(&[
        "directions",
        "--checkpoint",
        p(&ckpt),
        "--k",
        "5",
        "--json",
        "--out",
        p(&strips),
        "--steps",
        "6",
        "--scale",
        "1",
        "--samples",
        "500",
    ]);
    let v = json(&o);
    let list = v["directions"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    assert_eq!(v["samples"], 500);
    assert_eq!(v["model"], "vae");
    let explained: Vec<f64> = list
        .iter()
        .map(|d| d["explained_variance"].as_f64().unwrap())
        .collect();
    assert!(explained.windows(2).all(|w| w[0] >= w[1]), "{explained:?}");
    assert!(explained.iter().sum::<f64>() <= 1.0 + 1e-9 && explained[0] > 0.0);
    for d in list {
        let vec: Vec<f64> = d["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(vec.len(), 20);
        assert!((vec.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-4);
        assert!(d["pixel_change_per_unit"].as_f64().unwrap() > 0.0);
    }
    assert!(v["named"].as_array().unwrap().is_empty());
    assert_eq!(png_size(&strips), grid_size(5, 6, 1));

    // project: points and labels of the same length, labels of MNIST, an accuracy.
    for method in ["pca", "tsne", "raw"] {
        let scatter = dir.path().join(format!("{method}.png"));
        let o = ok(&[
            "project",
            "--checkpoint",
            p(&ckpt),
            "--method",
            method,
            "--json",
            "--n",
            "300",
            "--out",
            p(&scatter),
        ]);
        let v = json(&o);
        assert_eq!(v["method"], method);
        let points = v["points"].as_array().unwrap();
        let labels = v["labels"].as_array().unwrap();
        assert_eq!(points.len(), 300);
        assert_eq!(labels.len(), 300);
        assert!(points
            .iter()
            .all(|q| q.as_array().unwrap().len() == 2 && q[0].as_f64().unwrap().is_finite()));
        assert!(labels.iter().all(|l| l.as_u64().is_some_and(|l| l < 10)));
        let acc = v["knn5_accuracy"].as_f64().unwrap();
        assert!(acc > 0.15, "{method}: {acc} (chance is 0.1)");
        assert_eq!(png_size(&scatter), (800, 800));
        if method == "raw" {
            assert_eq!(v["dims"].as_array().unwrap().len(), 2);
        } else {
            assert!(v["dims"].is_null());
        }
    }
}

/// An IDX3 images file (no labels) of `n` 28×28 images.
fn write_idx(path: &Path, n: usize, px: impl Fn(usize, usize) -> u8) {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, 28, 28] {
        b.extend_from_slice(&(d as u32).to_be_bytes());
    }
    for i in 0..n {
        b.extend((0..784).map(|j| px(i, j)));
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn unlabelled_data_projects_with_null_labels_and_gans_cannot_be_projected() {
    let dir = tempfile::tempdir().unwrap();
    let data = latent_lab::data::DataSource::Mnist.load().unwrap();
    let idx = dir.path().join("images.idx");
    write_idx(&idx, 400, |i, j| data.image_u8(i)[j]);
    let ckpt = dir.path().join("vae.llck");
    train("vae", p(&idx), "20", &ckpt);
    let v = json(&ok(&[
        "project",
        "--checkpoint",
        p(&ckpt),
        "--method",
        "pca",
        "--json",
        "--n",
        "50",
    ]));
    let labels = v["labels"].as_array().unwrap();
    assert!(!labels.is_empty());
    assert_eq!(labels.len(), v["points"].as_array().unwrap().len());
    assert!(labels.iter().all(|l| l.is_null()), "{labels:?}");
    assert!(v["knn5_accuracy"].is_null());

    let gan = dir.path().join("gan.llck");
    train("gan", "mnist", "5", &gan);
    let o = run(&["project", "--checkpoint", p(&gan), "--method", "tsne"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("has no encoder"), "{err}");
    // A GAN's traversal and directions need no data.
    let png = dir.path().join("g.png");
    ok(&[
        "traverse",
        "--checkpoint",
        p(&gan),
        "--out",
        p(&png),
        "--rows",
        "3",
        "--steps",
        "4",
        "--scale",
        "1",
    ]);
    assert_eq!(png_size(&png), grid_size(3, 4, 1));
    let v = json(&ok(&[
        "directions",
        "--checkpoint",
        p(&gan),
        "--k",
        "3",
        "--json",
        "--samples",
        "200",
    ]));
    assert!(v["method"].as_str().unwrap().contains("GANSpace"), "{v}");
    assert_eq!(v["directions"].as_array().unwrap().len(), 3);
    // A folder that is not there: said once, in one line.
    let missing = dir.path().join("no-such-folder").join("s.png");
    let o = run(&[
        "project",
        "--checkpoint",
        p(&ckpt),
        "--method",
        "pca",
        "--out",
        p(&missing),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Bad options are refused in words.
    let o = run(&["project", "--checkpoint", p(&ckpt), "--method", "umap"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--method must be pca, tsne or raw"));
}

/// GANSpace on a GAN trained briefly: the top direction moves the samples more per unit step
/// than a random unit direction does.
#[test]
fn the_top_gan_direction_changes_samples_more_than_a_random_one() {
    let mut s = common::session(common::kind("gan"), |c| c.epochs = 1);
    for _ in 0..300 {
        assert!(matches!(s.step().unwrap(), StepOutcome::Ran { .. }));
    }
    let inf = s.inference(&Backend::cpu().device);
    let dirs = explore::principal_directions(&inf, &[], &[], 4, 1000, 3).unwrap();
    assert_eq!(dirs.vectors.len(), 4);
    let d = inf.latent_dim();
    let bases = latent_lab::infer::normal_latents(64, d, 9);
    let top = explore::pixel_change(&inf, &bases, &dirs.vectors[0], 1.0).unwrap();
    let mut random = Vec::new();
    for seed in 0..5 {
        let mut r = latent_lab::infer::normal_latents(1, d, 100 + seed);
        let norm = explore::dot(&r, &r).sqrt();
        r.iter_mut().for_each(|x| *x /= norm);
        random.push(explore::pixel_change(&inf, &bases, &r, 1.0).unwrap());
    }
    let mean_random = random.iter().sum::<f64>() / random.len() as f64;
    assert!(top > 1.5 * mean_random, "top {top} vs random {random:?}");
}

#[test]
fn named_directions_are_saved_in_the_checkpoint_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = common::session(common::kind("vae"), |c| c.epochs = 1);
    s.step().unwrap();
    let d = 20;
    let mut v = vec![0.0f32; d];
    v[3] = 1.0;
    let named = vec![NamedDirection {
        name: "thickness".into(),
        vector: v.clone(),
        note: "principal direction 1".into(),
    }];
    // The wrong length and non-finite values are refused.
    assert!(s
        .set_directions(vec![NamedDirection {
            vector: vec![1.0; 3],
            ..named[0].clone()
        }])
        .is_err());
    assert!(s
        .set_directions(vec![NamedDirection {
            vector: vec![f32::NAN; d],
            ..named[0].clone()
        }])
        .is_err());
    s.set_directions(named.clone()).unwrap();
    let path = dir.path().join("n.llck");
    s.checkpoint().unwrap().save(&path).unwrap();
    let back = Checkpoint::load(&path).unwrap();
    assert_eq!(back.header.directions.len(), 1);
    assert_eq!(back.header.directions[0].name, "thickness");
    assert_eq!(back.header.directions[0].vector, v);
    // And through the CLI.
    let o = ok(&[
        "directions",
        "--checkpoint",
        p(&path),
        "--k",
        "2",
        "--json",
        "--samples",
        "50",
    ]);
    let j = json(&o);
    assert_eq!(j["named"][0]["name"], "thickness");
    // A resumed session keeps them, and saves them again.
    let data = common::mnist();
    let s2 = latent_lab::train::Session::from_checkpoint(&back, data, Backend::cpu()).unwrap();
    assert_eq!(s2.directions().len(), 1);
}
