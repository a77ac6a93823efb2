//! The families added on the plug-in design: `cvae`, `cdcgan` (class-conditional) and
//! `sngan` (hinge loss, spectrally normalised critic). Each trains through the same session
//! as the others, on the built-in MNIST.

use latent_lab::model::{ImageShape, ModelOverrides, ModelSpec};
use latent_lab::run::EvalReport;
use latent_lab::train::SAMPLE_COLS;

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
