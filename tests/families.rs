//! The families added on the plug-in design: `cvae`, `cdcgan` (class-conditional) and
//! `sngan` (hinge loss, spectrally normalised critic). Each trains through the same session
//! as the others, on the built-in MNIST. The conv families at 64 px RGB (a stage per doubling
//! of the side).

use std::sync::Arc;

use latent_lab::backend::Backend;
use latent_lab::data::DataSource;
use latent_lab::model::{ImageShape, ModelOverrides, ModelSpec};
use latent_lab::run::EvalReport;
use latent_lab::train::{Session, TrainConfig, SAMPLE_COLS};

mod common;
use common::{kind, run_steps, session};

#[test]
fn sngan_trains_on_the_hinge_loss_and_logs_the_critic_gap() {
    let mut s = session(kind("sngan"), |c| c.log_every = 10);
    let names = s.history().names.clone();
    assert_eq!(
        names,
        ["d_loss", "g_loss", "d_real", "d_fake", "critic_gap"].map(String::from)
    );
    let points = run_steps(&mut s, 80);
    assert_eq!(points.len(), 8);
    for p in &points {
        assert!(p.iter().all(|v| v.is_finite()), "{p:?}");
        // The gap is the critic's mean score on real minus fake images.
        assert!((p[4] - (p[2] - p[3])).abs() < 1e-4, "{p:?}");
    }
    // The critic learns to tell real from fake: the hinge loss leaves 2 (chance) and the
    // gap opens.
    let last = &points[points.len() - 1];
    assert!(last[0] < 1.9 && last[4] > 0.1, "{last:?}");
    let t = s.evaluate().unwrap();
    let EvalReport::Gan(r) = &t.report else {
        panic!("a GAN report")
    };
    let gap = r.critic_gap.expect("a hinge GAN reports its critic gap");
    assert!((gap - (r.d_real - r.d_fake)).abs() < 1e-4);
    assert_eq!(t.report.headline(), gap);
}

#[test]
fn conditional_families_need_labels_and_draw_one_row_per_class() {
    for name in ["cvae", "cdcgan"] {
        let shape = ImageShape::new(1, 28, 28);
        let e = ModelSpec::new(kind(name), shape, &ModelOverrides::default()).unwrap_err();
        assert!(e.to_string().contains("class-conditional"), "{e}");

        let mut s = session(kind(name), |c| c.log_every = 5);
        let points = run_steps(&mut s, 20);
        assert!(points.iter().flatten().all(|v| v.is_finite()));
        // The live grid: one row per class, the same latents in every row, so rows differ
        // only by the condition.
        let grid = s.samples().unwrap();
        assert_eq!(grid.count(), 10 * SAMPLE_COLS);
        let row = |r: usize| {
            let n = shape.numel() * SAMPLE_COLS;
            grid.pixels[r * n..(r + 1) * n].to_vec()
        };
        for r in 1..10 {
            let diff: f32 = row(0)
                .iter()
                .zip(row(r))
                .map(|(a, b)| (a - b).abs())
                .sum::<f32>()
                / (shape.numel() * SAMPLE_COLS) as f32;
            assert!(diff > 1e-3, "{name}: rows 0 and {r} do not differ ({diff})");
        }
        assert!(s.evaluate().unwrap().report.is_finite());
    }
}

/// A folder of 64 px colour images in two classes (a bright disc on a dark gradient), as a
/// user's sprites or photos would be.
fn colour_folder(dir: &std::path::Path, side: u32) {
    for (class, rgb) in [("red", [230u8, 40, 30]), ("blue", [40, 80, 240])] {
        let sub = dir.join(class);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..8u32 {
            let (cx, cy) = (20.0 + 3.0 * i as f32, 30.0 + (i % 3) as f32 * 4.0);
            let img = image::RgbImage::from_fn(side, side, |x, y| {
                let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
                if d < side as f32 / 5.0 {
                    image::Rgb(rgb)
                } else {
                    image::Rgb([(x / 4) as u8, 20, (y / 3) as u8 + 10])
                }
            });
            img.save(sub.join(format!("{i}.png"))).unwrap();
        }
    }
}

#[test]
fn conv_families_add_a_stage_per_doubling_and_train_on_a_64px_colour_folder() {
    common::cpu_default_device();
    let dir = tempfile::tempdir().unwrap();
    colour_folder(dir.path(), 64);
    // The folder's own size and colour, without asking.
    let src = DataSource::parse(dir.path().to_str().unwrap()).unwrap();
    let DataSource::Folder { size, channels, .. } = &src else {
        panic!("a folder: {src:?}")
    };
    assert_eq!((*size, *channels), (64, 3));
    let data = Arc::new(src.load().unwrap());
    let shape = ImageShape::new(3, 64, 64);
    for name in ["conv-vae", "dcgan", "cdcgan", "sngan"] {
        let o = ModelOverrides {
            classes: data.classes(),
            ..Default::default()
        };
        let spec = ModelSpec::new(kind(name), shape, &o).unwrap();
        assert!(
            spec.describe().contains("3 stages"),
            "{name}: {}",
            spec.describe()
        );
        // Three stride-2 stages: the innermost map is 4w = 128 channels at 8×8, which one
        // dense layer reads or writes (two stages would leave 64 × 16 × 16 = 16,384).
        let nets = spec.init(&Backend::cpu().device);
        let dense: Vec<Vec<usize>> = nets
            .named_tensors()
            .unwrap()
            .into_iter()
            .filter(|t| t.shape.len() == 2)
            .map(|t| t.shape)
            .collect();
        assert!(
            dense.iter().any(|s| s.contains(&(128 * 8 * 8))),
            "{name}: {dense:?}"
        );
        assert!(!dense.iter().any(|s| s.contains(&(64 * 16 * 16))), "{name}");

        let mut config = TrainConfig::for_kind(kind(name));
        config.seed = 1;
        config.batch_size = 8;
        config.log_every = 1;
        let mut s = Session::new(spec, config, data.clone(), Backend::cpu()).unwrap();
        let points = run_steps(&mut s, 2);
        assert!(points.iter().flatten().all(|v| v.is_finite()), "{name}");
        let grid = s.samples().unwrap();
        assert_eq!(grid.shape, shape, "{name}");
    }
}
