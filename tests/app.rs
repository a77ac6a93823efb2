//! Panels through egui_kittest, driving the real worker and decoder on the CPU backend.

use std::time::Duration;

use egui_kittest::kittest::Queryable;
use latent_lab::app::{AppCommand, FileAction, Status};
use latent_lab::timeline::Measures;

mod common;
use common::ui::{app, explorer, harness, has_marker, pump, run_for};

#[test]
fn train_button_runs_the_worker_and_the_plot_grows() {
    let mut h = harness(app());
    h.step();
    h.get_by_label("Train").click();
    pump(&mut h, "training", |a| {
        a.shared.run.status == Status::Running
    });
    pump(&mut h, "three logged points", |a| {
        a.shared.run.history.points.len() >= 3
    });
    let n = h.state().shared.run.history.points.len();
    let step = h.state().shared.run.step;
    pump(&mut h, "more points", |a| {
        a.shared.run.history.points.len() > n + 2
    });
    assert!(h.state().shared.run.step > step);
    // Loss goes down in the first steps of a VAE on MNIST.
    let pts = &h.state().shared.run.history.points;
    assert!(pts.last().unwrap().values[0] < pts[0].values[0]);
    h.get_by_label("Pause").click();
    pump(&mut h, "paused", |a| a.shared.run.status == Status::Paused);
    let paused_at = h.state().shared.run.step;
    h.get_by_label("Step").click();
    pump(&mut h, "one step", |a| a.shared.run.step > paused_at);
    // Exactly one step, and it stays paused.
    run_for(&mut h, Duration::from_millis(500));
    assert_eq!(h.state().shared.run.step, paused_at + 1);
    assert_eq!(h.state().shared.run.status, Status::Paused);
}

#[test]
fn slider_changes_the_decoded_image_and_lr_changes_mid_run() {
    let mut h = harness(app());
    h.step();
    h.get_by_label("Train").click();
    pump(&mut h, "snapshot", |a| {
        a.shared.decoder.has_model() && a.shared.run.step >= 30
    });
    h.state_mut().shared.tab = "explorer";
    pump(&mut h, "first decode", |a| explorer(a).image().is_some());
    // While training runs, the same latent is decoded again with each newer snapshot of the
    // weights (nobody touches a slider).
    let mut steps = vec![explorer(h.state()).image_step()];
    let z = h.state().shared.latent.z.clone();
    while steps.len() < 3 {
        pump(&mut h, "a decode with newer weights", |a| {
            explorer(a).image_step() > *steps.last().unwrap()
        });
        steps.push(explorer(h.state()).image_step());
    }
    assert_eq!(h.state().shared.latent.z, z, "the latent stayed");
    assert!(steps[0] > 0, "decoded with trained weights: {steps:?}");
    // Pause so that only the slider changes the image.
    h.get_by_label("Pause").click();
    pump(&mut h, "paused", |a| a.shared.run.status == Status::Paused);
    pump(&mut h, "settled decode", |a| explorer(a).image().is_some());
    for _ in 0..20 {
        h.step();
    }
    let before = explorer(h.state()).image().unwrap().pixels.clone();
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "z0")
        .set_value_accesskit(2.5);
    pump(&mut h, "new image", |a| {
        explorer(a).image().is_some_and(|i| i.pixels != before)
    });
    assert!((h.state().shared.latent.z[0] - 2.5).abs() < 1e-3);
    assert!(h.state().shared.decode_ms.last().is_some());

    // Learning rate changed mid-run: sent to the worker, marked on the plot.
    h.state_mut().shared.settings.learning_rate = 3e-4;
    h.get_by_label("Resume").click();
    pump(&mut h, "lr applied", |a| {
        a.shared
            .run
            .config
            .as_ref()
            .is_some_and(|c| c.learning_rate == 3e-4)
    });
    assert!(has_marker(h.state(), |t| t.starts_with("lr =")));
}

#[test]
fn save_then_load_a_checkpoint_and_corrupt_ones_show_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ui.llck");
    let mut h = harness(app());
    h.step();
    h.get_by_label("Step").click(); // disabled without a run: nothing happens
    h.get_by_label("Train").click();
    pump(&mut h, "some steps", |a| a.shared.run.step >= 20);
    h.get_by_label("Pause").click();
    pump(&mut h, "paused", |a| a.shared.run.status == Status::Paused);
    let step = h.state().shared.run.step;
    let points = h.state().shared.run.history.points.len();

    // The path a save dialog returns.
    h.state_mut()
        .on_file_chosen(FileAction::SaveCheckpoint, path.clone());
    pump(&mut h, "saved", |a| {
        a.shared.run.notices.iter().any(|n| n.starts_with("saved"))
    });
    assert!(path.exists());

    h.get_by_label("Stop").click();
    pump(&mut h, "stopped", |a| a.shared.run.info.is_none());

    h.state_mut()
        .on_file_chosen(FileAction::OpenCheckpoint, path.clone());
    pump(&mut h, "loaded", |a| a.shared.run.status == Status::Ready);
    assert_eq!(h.state().shared.run.step, step);
    assert_eq!(h.state().shared.run.history.points.len(), points);
    assert_eq!(h.state().shared.settings.recent.first(), Some(&path));

    let bad = dir.path().join("bad.llck");
    std::fs::write(&bad, b"this is not a checkpoint").unwrap();
    h.state_mut()
        .on_file_chosen(FileAction::OpenCheckpoint, bad);
    pump(&mut h, "error", |a| !a.shared.run.errors.is_empty());
    // The message is in the window, in words.
    h.get_by_label_contains("not a Latent Lab checkpoint");
}

#[test]
fn every_tab_draws_with_a_trained_model() {
    let mut h = harness(app());
    h.step();
    h.get_by_label("Train").click();
    pump(&mut h, "an epoch", |a| {
        !a.shared.run.history.test.is_empty()
    });
    h.get_by_label("Pause").click();
    let tabs: Vec<(&str, &str)> = h.state().tabs.iter().map(|p| (p.id(), p.title())).collect();
    // These ids are what `--tab` takes; every other tab is drawn too.
    for id in [
        "training",
        "explorer",
        "interpolation",
        "manifold",
        "scatter",
    ] {
        assert!(tabs.iter().any(|t| t.0 == id), "no tab {id}");
    }
    for (id, title) in tabs {
        h.get_by_label(title).click();
        for _ in 0..3 {
            h.step();
        }
        assert_eq!(h.state().shared.tab, id);
    }
    // KL bars beside the sliders once an epoch finished.
    h.get_by_label("Latent explorer").click();
    h.step();
    h.get_by_label("order by KL");
    // Scatter: encodes the test set.
    h.get_by_label("Scatter").click();
    pump(&mut h, "scatter ready", |a| {
        a.shared.run.status == Status::Paused && a.shared.decoder.has_model()
    });
    for _ in 0..30 {
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        h.state().shared.run.errors.is_empty(),
        "{:?}",
        h.state().shared.run.errors
    );
}

#[test]
fn a_loaded_checkpoint_keeps_its_hyperparameters_even_outside_the_usual_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.llck");
    let mut s = common::session(common::kind("vae"), |c| {
        c.learning_rate = 1000.0;
        c.batch_size = 5000;
        c.beta = 250.0;
    });
    s.checkpoint().unwrap().save(&path).unwrap();
    drop(s);
    let mut h = harness(app());
    h.step();
    h.state_mut()
        .on_file_chosen(FileAction::OpenCheckpoint, path);
    pump(&mut h, "loaded", |a| a.shared.run.status == Status::Ready);
    for _ in 0..10 {
        h.step();
    }
    let a = h.state();
    let cfg = a.shared.run.config.as_ref().unwrap();
    assert_eq!(
        (cfg.learning_rate, cfg.batch_size, cfg.beta),
        (1000.0, 5000, 250.0)
    );
    assert_eq!(a.shared.settings.learning_rate, 1000.0);
    // Nothing was "changed" by the controls displaying the values.
    assert!(!has_marker(a, |t| t.starts_with("lr =")));
}

#[test]
fn what_panels_ask_for_runs_after_the_frame_is_drawn_in_order() {
    let mut h = harness(app());
    h.step();
    assert_eq!(h.state().shared.tab, "training");
    h.state_mut().shared.push(AppCommand::ShowTab("manifold"));
    h.state_mut()
        .shared
        .push(AppCommand::ShowTab("interpolation"));
    // Queued, not done: nothing happens until a frame has drawn.
    assert_eq!(h.state().shared.tab, "training");
    h.step();
    assert_eq!(h.state().shared.tab, "interpolation");
    h.step();
    h.get_by_label("Train or load a model to interpolate in its latent space.");
}

#[test]
fn the_progress_numbers_sit_beside_the_bar_not_on_it() {
    let mut h = common::ui::training(app(), 5);
    h.get_by_label("Pause").click();
    pump(&mut h, "paused", |a| a.shared.run.status == Status::Paused);
    let bar = h
        .get_by_role(egui::accesskit::Role::ProgressIndicator)
        .rect();
    let numbers = h.get_by_label_contains("elapsed").rect();
    assert!(
        !bar.intersects(numbers),
        "the progress numbers {numbers:?} overlap the bar {bar:?}"
    );
}

#[test]
fn an_opened_checkpoint_shows_its_own_model_and_data_in_the_controls() {
    // An old conv-VAE checkpoint trained on 8-pixel shapes with latent 4 and width 2.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0.1/conv-vae.llck");
    let mut h = harness(app());
    h.step();
    assert_eq!(
        h.state().shared.settings.data,
        latent_lab::data::DataSource::Mnist
    );
    h.state_mut()
        .on_file_chosen(FileAction::OpenCheckpoint, path);
    pump(&mut h, "loaded", |a| a.shared.run.status == Status::Ready);
    let s = &h.state().shared.settings;
    assert_eq!(s.model.name(), "conv-vae");
    assert_eq!(s.latent_dim, Some(4));
    assert_eq!(s.hidden, "2");
    assert!(
        matches!(s.data, latent_lab::data::DataSource::Shapes { size: 8, .. }),
        "{:?}",
        s.data
    );
    h.get_by_label_contains("shapes, 8×8 px");

    // A dataset that cannot be reached any more says so in words.
    let gone = std::path::PathBuf::from("/nonexistent/moved-folder");
    h.state_mut().shared.settings.data = latent_lab::data::DataSource::Folder {
        path: gone,
        size: 28,
        channels: 1,
    };
    h.step();
    h.get_by_label_contains("cannot be reached any more");
}

#[test]
fn settings_saved_by_the_previous_version_still_load() {
    // 50d17fd persisted `model` as a unit variant of an enum: a bare (raw) identifier in RON,
    // which eframe's persistence uses.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "kebab-case")]
    enum OldKind {
        Vae,
        ConvVae,
        SeedGan,
    }
    #[derive(serde::Serialize)]
    struct Old {
        model: OldKind,
        epochs: usize,
    }
    for (old, name) in [
        (OldKind::Vae, "vae"),
        (OldKind::ConvVae, "conv-vae"),
        (OldKind::SeedGan, "seed-gan"),
    ] {
        let text = ron::to_string(&Old {
            model: old,
            epochs: 7,
        })
        .unwrap();
        let s: latent_lab::app::Settings =
            ron::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!((s.model.name(), s.epochs), (name, 7), "{text}");
        // Today's settings are written the same way and read back.
        let again = ron::to_string(&s).unwrap();
        let model_field = text.trim_start_matches('(').split(',').next().unwrap();
        assert!(again.contains(model_field), "{model_field} not in {again}");
        let back: latent_lab::app::Settings = ron::from_str(&again).unwrap();
        assert_eq!(back.model, s.model);
    }
    // Checkpoints (JSON) keep the plain string.
    let kind = latent_lab::model::ModelKind::parse("seed-vae").unwrap();
    assert_eq!(serde_json::to_string(&kind).unwrap(), "\"seed-vae\"");
}

#[test]
fn a_conditional_model_shows_the_explorers_latent_in_every_class() {
    let app = common::ui::app_with(Default::default(), |s| s.model = common::kind("cvae"));
    let mut h = common::ui::training(app, 40);
    h.get_by_label("Latent explorer").click();
    pump(&mut h, "the class strip", |a| {
        explorer(a).class_strip().is_some_and(|s| s.count() == 10)
    });
    // The same latent in ten classes: ten different images.
    let strip = explorer(h.state()).class_strip().unwrap().clone();
    let n = strip.shape.numel();
    let img = |c: usize| &strip.pixels[c * n..(c + 1) * n];
    for c in 1..10 {
        let diff: f32 = img(0).iter().zip(img(c)).map(|(a, b)| (a - b).abs()).sum();
        assert!(diff / n as f32 > 1e-3, "classes 0 and {c} decode alike");
    }
    // The strip says what it is; a new latent asks for a new strip.
    h.get_by_label_contains("Same style, every class");
    let before = strip.pixels.clone();
    h.state_mut().shared.latent.set(vec![1.5; 20]);
    pump(&mut h, "a new strip", |a| {
        explorer(a)
            .class_strip()
            .is_some_and(|s| s.pixels != before)
    });
}

/// A file dropped onto the window, as the windowing integration hands it to egui.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn a_dropped_safetensors_file_opens_as_an_imported_model() {
    // Weights a PyTorch script wrote (bench/torch_train.py), dropped onto the window.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch-vae.safetensors");
    let mut h = harness(app());
    h.step();
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(path)));
    h.step();
    pump(&mut h, "loaded", |a| {
        a.shared.run.status == Status::Ready
            && a.shared
                .run
                .info
                .as_ref()
                .is_some_and(|i| i.spec.latent_dim() == 4)
    });
    let s = &h.state().shared.settings;
    assert_eq!(s.model.name(), "vae");
    assert_eq!(s.hidden, "16");
    assert!(has_marker(h.state(), |m| m.starts_with("imported from torch-vae")));
    assert!(
        h.state().shared.run.errors.is_empty(),
        "{:?}",
        h.state().shared.run.errors
    );
    h.get_by_label_contains("fresh optimiser state");
}

/// The principal directions of a training VAE: computed off the UI thread from each new
/// snapshot, a slider moves the explorer's latent along its direction, and a saved direction
/// goes into the checkpoint and comes back with it.
#[test]
fn direction_sliders_follow_training_and_named_directions_are_saved() {
    use egui_kittest::kittest::{by, NodeT};
    use latent_lab::app::DirectionsView;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dirs.llck");
    let mut h = common::ui::training(app(), 30);
    h.state_mut().shared.tab = "directions";
    pump(&mut h, "directions", |a| {
        a.shared.analysis.directions().is_some()
    });
    let first = h.state().shared.analysis.directions().unwrap().step;
    // Recomputed with newer weights while training goes on.
    pump(&mut h, "directions of a newer snapshot", |a| {
        a.shared
            .analysis
            .directions()
            .is_some_and(|d| d.step > first)
    });
    h.get_by_label("Pause").click();
    pump(&mut h, "paused", |a| a.shared.run.status == Status::Paused);
    run_for(&mut h, Duration::from_millis(300));
    let dirs = h
        .state()
        .shared
        .analysis
        .directions()
        .unwrap()
        .value
        .clone();
    assert_eq!(dirs.vectors.len(), 8);
    // Sorted by explained variance, after matching to the previous snapshot's order at most
    // swaps neighbours of nearly equal variance.
    assert!(dirs.explained.iter().all(|e| (0.0..=1.0).contains(e)));
    assert!(
        dirs.explained[0] >= dirs.explained[7],
        "{:?}",
        dirs.explained
    );
    let before = h.state().shared.latent.z.clone();
    let slider = h.get(
        by().role(egui::accesskit::Role::Slider)
            .label_contains("direction 1 ("),
    );
    assert!(slider.accesskit_node().label().is_some());
    slider.set_value_accesskit(1.5);
    h.step();
    h.step();
    let after = h.state().shared.latent.z.clone();
    // The latent moved along direction 1 only: its coordinate is 1.5, the rest kept.
    let v = &dirs.vectors[0];
    let delta: Vec<f32> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let along: f32 = delta.iter().zip(v).map(|(d, v)| d * v).sum();
    let off: f32 = delta
        .iter()
        .zip(v)
        .map(|(d, v)| (d - along * v).abs())
        .sum();
    assert!(along.abs() > 0.1 && off < 1e-3, "along {along}, off {off}");
    let coord: f32 = after.iter().zip(v).map(|(z, v)| z * v).sum();
    assert!((coord - 1.5).abs() < 1e-3, "{coord}");

    // Save direction 1 under a name, then the checkpoint.
    h.get_all_by_label("save").next().unwrap().click();
    pump(&mut h, "named", |a| {
        a.panel::<DirectionsView>()
            .is_some_and(|p| p.named.len() == 1)
    });
    h.state_mut()
        .on_file_chosen(FileAction::SaveCheckpoint, path.clone());
    pump(&mut h, "saved", |a| {
        a.shared.run.notices.iter().any(|n| n.starts_with("saved"))
    });
    let ckpt = latent_lab::checkpoint::Checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.header.directions.len(), 1);
    assert_eq!(ckpt.header.directions[0].vector.len(), 20);
    h.get_by_label("Stop").click();
    pump(&mut h, "stopped", |a| a.shared.run.info.is_none());
    h.state_mut()
        .on_file_chosen(FileAction::OpenCheckpoint, path.clone());
    pump(&mut h, "loaded", |a| a.shared.run.status == Status::Ready);
    let named = &h.state().panel::<DirectionsView>().unwrap().named;
    assert_eq!(named, &ckpt.header.directions);
}

/// The traversal grid: rows × steps images around the explorer's latent, redrawn when the
/// latent moves, exported as a PNG of that grid.
#[test]
fn traversal_grid_has_a_row_per_dimension_and_exports() {
    use latent_lab::app::Traversal;
    let dir = tempfile::tempdir().unwrap();
    let mut h = common::ui::paused_on(30, "traversal");
    let count = |a: &latent_lab::app::LatentLabApp| {
        a.panel::<Traversal>()
            .and_then(|t| t.grid.as_ref().map(|g| g.count()))
            .unwrap_or(0)
    };
    pump(&mut h, "grid", |a| count(a) == 10 * 9);
    let grid = h
        .state()
        .panel::<Traversal>()
        .unwrap()
        .grid
        .clone()
        .unwrap();
    // Each row walks one dimension: its images differ from end to end.
    let px = grid.shape.numel();
    let img = |i: usize| &grid.pixels[i * px..(i + 1) * px];
    for r in 0..10 {
        assert!(
            common::max_diff(img(r * 9), img(r * 9 + 8)) > 0.05,
            "row {r}"
        );
    }
    h.state_mut().shared.latent.z[0] += 2.0;
    pump(&mut h, "redrawn", |a| {
        a.panel::<Traversal>()
            .and_then(|t| t.grid.as_ref())
            .is_some_and(|g| g.pixels != grid.pixels)
    });
    let out = dir.path().join("traversal.png");
    let images = h
        .state()
        .panel::<Traversal>()
        .unwrap()
        .grid
        .clone()
        .unwrap();
    h.state_mut().on_file_chosen(
        FileAction::ExportGrid {
            images: images.clone(),
            cols: 9,
            name: "traversal.png",
        },
        out.clone(),
    );
    pump(&mut h, "exported", |a| {
        a.shared
            .run
            .notices
            .iter()
            .any(|n| n.starts_with("exported"))
    });
    let png = image::open(&out).unwrap();
    let want = images.grid(9, 2, 2);
    assert_eq!((png.width(), png.height()), want.dimensions());
}

/// t-SNE of the encoded test set runs on the analysis thread while the UI keeps drawing,
/// then the scatter shows it; a second method is cached beside it.
#[test]
fn scatter_projects_with_tsne_and_pca_off_the_ui_thread() {
    use latent_lab::explore::Projection;
    let mut h = common::ui::paused_on(30, "scatter");
    h.step();
    h.get_by_label("t-SNE").click();
    // Frames keep coming while it computes, each showing its progress.
    let frames_while_computing = std::cell::Cell::new(0);
    pump(&mut h, "t-SNE", |a| {
        if a.shared.analysis.projecting(Projection::Tsne).is_some() {
            frames_while_computing.set(frames_while_computing.get() + 1);
        }
        a.shared.analysis.projection(Projection::Tsne).is_some()
    });
    assert!(
        frames_while_computing.get() >= 3,
        "{} frames drawn while t-SNE ran",
        frames_while_computing.get()
    );
    let t = h
        .state()
        .shared
        .analysis
        .projection(Projection::Tsne)
        .unwrap();
    assert_eq!(t.value.len(), 1000);
    assert!(t.value.iter().all(|p| p[0].is_finite() && p[1].is_finite()));
    let spread = t
        .value
        .iter()
        .map(|p| p[0].abs() + p[1].abs())
        .fold(0.0f32, f32::max);
    assert!(spread > 1.0, "{spread}");
    h.get_by_label("PCA").click();
    pump(&mut h, "PCA", |a| {
        a.shared.analysis.projection(Projection::Pca).is_some()
    });
    // The t-SNE result is kept (cached for this snapshot).
    assert!(h
        .state()
        .shared
        .analysis
        .projection(Projection::Tsne)
        .is_some());
    assert!(
        h.state().shared.run.errors.is_empty(),
        "{:?}",
        h.state().shared.run.errors
    );
}

/// Click at `pos` with the primary button.
fn click_at(
    h: &mut egui_kittest::Harness<'static, latent_lab::app::LatentLabApp>,
    pos: egui::Pos2,
) {
    h.hover_at(pos);
    h.step();
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: Default::default(),
        });
        h.step();
    }
    h.step();
}

/// The latent the explorer shows equals `want` (an encode of one image alone may differ
/// from the same image's row of a batch in the last float bits).
fn latent_is(a: &latent_lab::app::LatentLabApp, want: &[f32]) -> bool {
    let z = &a.shared.latent.z;
    z.len() == want.len() && z.iter().zip(want).all(|(x, y)| (x - y).abs() < 1e-4)
}

/// The scatter encodes the run's own test images with the current weights and draws every
/// one; a click on a point, a click on a thumbnail and a dropped image file each put that
/// image's latent in the explorer.
#[test]
fn scatter_points_thumbnails_and_dropped_images_set_the_explorers_latent() {
    use latent_lab::app::{LatentLabApp, Scatter};
    let dir = tempfile::tempdir().unwrap();
    let mut h = common::ui::paused_on(30, "scatter");
    let drawn = |a: &LatentLabApp| a.panel::<Scatter>().unwrap().points_drawn;
    // Paused: the views get the weights training stopped with.
    pump(
        &mut h,
        "the test set encoded with the paused weights",
        |a| {
            a.shared
                .analysis
                .encoded()
                .is_some_and(|e| e.step == a.shared.run.step)
                && drawn(a) > 0
        },
    );
    let enc = h.state().shared.analysis.encoded().unwrap().value.clone();
    let preview = h
        .state()
        .shared
        .run
        .info
        .as_ref()
        .unwrap()
        .test_preview
        .clone();
    assert_eq!(enc.n, preview.count());
    assert_eq!(
        drawn(h.state()),
        enc.n,
        "every encoded test image is a point"
    );

    // The same weights, saved and encoded by the library: the scatter's means are those.
    let ckpt = dir.path().join("paused.llck");
    h.state_mut()
        .on_file_chosen(FileAction::SaveCheckpoint, ckpt.clone());
    pump(&mut h, "saved", |a| {
        a.shared.run.notices.iter().any(|n| n.starts_with("saved"))
    });
    let c = latent_lab::checkpoint::Checkpoint::load(&ckpt).unwrap();
    let inf = latent_lab::infer::Inference::from_checkpoint_on_cpu(&c).unwrap();
    let (mu, _) = inf.encode(&preview.pixels).unwrap();
    assert_eq!(mu.len(), enc.mu.len());
    let worst = common::max_diff(&mu, &enc.mu);
    assert!(
        worst < 1e-4,
        "scatter means differ from the model's by {worst}"
    );

    // A click on a point: the nearest point's latent, and the explorer opens.
    let d = enc.d;
    let t = h
        .state()
        .panel::<Scatter>()
        .unwrap()
        .plot_transform
        .unwrap();
    let (dx, dy) = {
        let s = h.state().panel::<Scatter>().unwrap();
        (s.dim_x, s.dim_y)
    };
    let screen = |i: usize| {
        t.position_from_point(&egui_plot::PlotPoint::new(
            enc.mu[i * d + dx] as f64,
            enc.mu[i * d + dy] as f64,
        ))
    };
    assert!(
        (0..enc.n).all(|i| t.frame().contains(screen(i))),
        "every point lies inside the plot"
    );
    let target = 7;
    let at = screen(target);
    click_at(&mut h, at);
    let source = h.state().shared.latent.source.clone().unwrap_or_default();
    let j: usize = source
        .strip_prefix("test image ")
        .and_then(|r| r.strip_suffix(" (scatter)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the click picked a test image: {source:?}"));
    assert!(
        screen(j).distance(at) <= screen(target).distance(at) + 0.5,
        "picked image {j}, not the nearest to the click"
    );
    assert!(
        latent_is(h.state(), enc.row(j)),
        "the explorer has test image {j}'s latent"
    );
    assert_eq!(h.state().shared.tab, "explorer");

    // A click on the first thumbnail: test image 0 is encoded and becomes the latent.
    h.state_mut().shared.latent.set(vec![0.0; d]);
    let picked = |a: &latent_lab::app::LatentLabApp| {
        a.shared
            .latent
            .source
            .as_deref()
            .is_some_and(|s| s.starts_with("test image 0"))
            && a.shared.latent.z.iter().any(|&v| v != 0.0)
    };
    // The thumbnails are found from their caption in the frame of the click (the image
    // above them can change size between frames, e.g. when a notice closes); a click that
    // landed while the layout moved is tried again, at most twice.
    for _ in 0..3 {
        h.step();
        let caption = h.get_by_label_contains("Click a test image").rect();
        click_at(&mut h, caption.left_bottom() + egui::vec2(4.0, 8.0));
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !picked(h.state()) && std::time::Instant::now() < until {
            h.step();
        }
        if picked(h.state()) {
            break;
        }
    }
    pump(&mut h, "thumbnail encoded", picked);
    assert!(
        latent_is(h.state(), enc.row(0)),
        "the explorer has test image 0's latent"
    );

    // A dropped PNG of test image 3: decoded, encoded, the latent.
    let png = dir.path().join("three.png");
    let px: Vec<u8> = preview.pixels[3 * 784..4 * 784]
        .iter()
        .map(|&v| (v * 255.0).round() as u8)
        .collect();
    image::GrayImage::from_raw(28, 28, px)
        .unwrap()
        .save(&png)
        .unwrap();
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(png.clone())));
    h.step();
    pump(&mut h, "dropped image encoded", |a| {
        a.shared.latent.source.as_deref() == Some(png.to_str().unwrap()) && latent_is(a, enc.row(3))
    });
}

/// Latent arithmetic: "mean of class 0 − mean of class 1" from the encoded test set becomes a
/// named direction, and "+1" adds exactly that vector to the explorer's latent.
#[test]
fn attribute_vectors_from_classes_move_the_latent() {
    use latent_lab::app::DirectionsView;
    let mut h = common::ui::paused_on(30, "directions");
    pump(&mut h, "encoded", |a| a.shared.analysis.encoded().is_some());
    h.step();
    h.get_by_label("make vector").click();
    pump(&mut h, "made", |a| {
        a.panel::<DirectionsView>()
            .is_some_and(|p| p.named.len() == 1)
    });
    let enc = h.state().shared.analysis.encoded().unwrap().value.clone();
    let labels = h
        .state()
        .shared
        .run
        .info
        .as_ref()
        .unwrap()
        .test_preview_labels
        .clone();
    let group = |c: u32| -> Vec<usize> { (0..enc.n).filter(|&i| labels[i] == c).collect() };
    let want = latent_lab::explore::attribute_vector(&enc.mu, enc.d, &group(0), &group(1)).unwrap();
    let named = h.state().panel::<DirectionsView>().unwrap().named[0].clone();
    assert_eq!(named.name, "mean 0 − mean 1");
    assert!(common::max_diff(&named.vector, &want) < 1e-6);
    // It is a real difference of classes, not a zero vector.
    assert!(want.iter().map(|v| v * v).sum::<f32>() > 0.5, "{want:?}");
    h.step();
    let before = h.state().shared.latent.z.clone();
    h.get_by_label("+1").click();
    h.step();
    let after = h.state().shared.latent.z.clone();
    let moved: Vec<f32> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(common::max_diff(&moved, &want) < 1e-5, "{moved:?}");
}

/// Latent health: quiet on a healthy run; when test evaluations show units dying, it warns
/// and its button lowers β on the running session.
#[test]
fn latent_health_warns_of_posterior_collapse_and_lowers_beta() {
    use egui_kittest::kittest::by;
    use latent_lab::app::Health;
    use latent_lab::run::{EvalReport, TestPoint, VaeReport};
    let mut h = common::ui::paused_on(30, "health");
    h.step();
    h.step();
    let health =
        |a: &latent_lab::app::LatentLabApp| a.panel::<Health>().and_then(|p| p.health().cloned());
    let quiet = health(h.state()).expect("the training KL of the run so far");
    assert!(!quiet.train_kl.is_empty());
    assert_eq!(quiet.warning, None, "{:?}", quiet.warning);
    // Test evaluations in which 14 of 20 dimensions die.
    let point = |step: u64, active: usize| {
        let kl_per_dim: Vec<f64> = (0..20)
            .map(|i| if i < active { 1.5 } else { 0.0 })
            .collect();
        let kl = kl_per_dim.iter().sum();
        TestPoint {
            step,
            epoch: 1,
            value: 100.0,
            report: EvalReport::Vae(VaeReport {
                neg_elbo: 100.0,
                recon: 100.0 - kl,
                kl,
                kl_per_dim,
                active_units: active,
                iwae_nll: None,
                iw_samples: 0,
                images: 1000,
            }),
        }
    };
    let test = &mut h.state_mut().shared.run.history.test;
    test.extend([point(10, 20), point(20, 12), point(30, 6)]);
    h.step();
    h.step();
    let w = health(h.state()).unwrap().warning.expect("a warning");
    assert!(w.contains("active units fell from 20 to 6"), "{w}");
    assert_eq!(health(h.state()).unwrap().kl_per_dim.len(), 3);
    let beta = h.state().shared.run.config.as_ref().unwrap().beta;
    h.get(by().label_contains("Lower β to")).click();
    pump(&mut h, "β lowered on the session", |a| {
        a.shared
            .run
            .config
            .as_ref()
            .is_some_and(|c| (c.beta - beta / 2.0).abs() < 1e-9)
    });
    // The other remedy: a KL warm-up on the session from this step, marked on the plot.
    let step = h.state().shared.run.step;
    h.get(by().label_contains("Warm the KL up again")).click();
    pump(&mut h, "KL warm-up on the session", |a| {
        a.shared
            .run
            .config
            .as_ref()
            .is_some_and(|c| c.kl_warmup_steps >= 100 && c.kl_warmup_start == step)
    });
    assert!(has_marker(h.state(), |t| t.starts_with("KL warm-up over")));
    assert!(h.query_by_label_contains("KL warm-up: β at").is_some());
}

/// Mode collapse from the run's own sample grids: varied samples are quiet, samples that
/// become alike warn.
#[test]
fn sample_diversity_is_tracked_and_alike_samples_warn_of_mode_collapse() {
    use latent_lab::worker::Event;
    let mut h = common::ui::paused_on(30, "health");
    // The real test images as "samples": as diverse as the data.
    let real = h
        .state()
        .shared
        .run
        .info
        .as_ref()
        .unwrap()
        .test_preview
        .clone();
    // A grid's worth, as the run's sample grids are.
    let real = latent_lab::images::ImageBatch {
        shape: real.shape,
        pixels: real.pixels[..64 * real.shape.numel()].to_vec(),
    };
    let one = |i: usize| {
        let p = real.shape.numel();
        latent_lab::images::ImageBatch {
            shape: real.shape,
            pixels: real.pixels[i * p..(i + 1) * p].repeat(64),
        }
    };
    // The run's own sample grids are measured as they arrive (label coverage by the
    // worker, against labelled test images).
    let c = &h.state().shared.run.sample_coverage;
    assert!(
        !c.is_empty() && c.iter().all(|p| (0.0..=1.0).contains(&p[1])),
        "{c:?}"
    );
    let n0 = h.state().shared.run.sample_diversity.len();
    assert!(n0 >= 1, "the live run's first sample grid");
    assert!(h
        .state()
        .shared
        .run
        .sample_diversity
        .iter()
        .all(|p| p[1] > 0.0));
    let recon = h.state().shared.run.recon.clone();
    h.state_mut().shared.run.apply(Event::Samples {
        step: 1000,
        images: real.clone(),
        recon: recon.clone(),
        measures: Measures::of(&real, None),
    });
    h.step();
    let d = h.state().shared.run.sample_diversity.clone();
    assert_eq!(d.len(), n0 + 1);
    assert!((d[n0][1] - 1.0).abs() < 1e-6, "{d:?}");
    assert!(h.query_by_label_contains("mode collapse").is_none());
    // Then 64 copies of one digit: diversity 0 and a warning.
    h.state_mut().shared.run.apply(Event::Samples {
        step: 1200,
        images: one(3),
        recon,
        measures: Measures::of(&one(3), None),
    });
    h.step();
    h.step();
    assert_eq!(h.state().shared.run.sample_diversity[n0 + 1][1], 0.0);
    assert!(h
        .query_by_label_contains("mode collapse: the samples are alike")
        .is_some());
}

/// The Training view's step cursor: keys, a click on a loss plot and the slider move the
/// sample grid through the run's recorded history; End (or "live") follows the newest.
#[test]
fn the_step_cursor_moves_the_grid_through_the_sample_history() {
    use latent_lab::app::TrainingView;
    use latent_lab::images::ImageBatch;
    use latent_lab::worker::Event;
    let mut h = common::ui::paused_on(30, "training");
    h.step();
    let now = h.state().shared.run.step;
    let shape = h.state().shared.run.info.as_ref().unwrap().spec.shape;
    let flat = |v: f32| ImageBatch {
        shape,
        pixels: vec![v; 64 * shape.numel()],
    };
    // The run recorded step 0; three more grids, each one grey level (with the run's
    // reconstructions, as the worker sends them).
    let recon = h.state().shared.run.recon.clone();
    assert!(recon.is_some());
    for (step, v) in [(10, 0.2), (20, 0.5), (now, 0.9)] {
        h.state_mut().shared.run.apply(Event::Samples {
            step,
            images: flat(v),
            recon: recon.clone(),
            measures: Measures::default(),
        });
    }
    h.step();
    let cursor = |h: &egui_kittest::Harness<'_, latent_lab::app::LatentLabApp>| {
        h.state().panel::<TrainingView>().unwrap().cursor
    };
    let tl = &h.state().shared.run.timeline;
    assert_eq!(
        tl.frames().iter().map(|f| f.step).collect::<Vec<_>>(),
        [0, 10, 20, now]
    );
    assert_eq!(cursor(&h), None);
    assert!(h.query_by_label(&format!("step {now} (live)")).is_some());

    h.key_press(egui::Key::ArrowLeft);
    h.step();
    h.step();
    assert_eq!(cursor(&h), Some(20));
    assert!(h.query_by_label("step 20").is_some());
    h.key_press(egui::Key::Home);
    h.step();
    h.step();
    assert_eq!(cursor(&h), Some(0));
    assert!(h.query_by_label("step 0").is_some());
    h.key_press(egui::Key::ArrowRight);
    h.step();
    h.step();
    assert!(h.query_by_label("step 10").is_some());

    // A click on the loss plot at step 15 shows the grid of step 10 (the last at or before).
    let t = h.state().panel::<TrainingView>().unwrap().plot_transforms[0];
    let pos = egui::pos2(t.position_from_point_x(15.0), t.frame().center().y);
    h.hover_at(pos);
    h.step();
    h.event(egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: Default::default(),
    });
    h.step();
    h.event(egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: Default::default(),
    });
    h.step();
    h.step();
    let c = cursor(&h).expect("the click set the cursor");
    assert!((14..=16).contains(&c), "{c}");
    assert!(h.query_by_label("step 10").is_some());

    // Hovering previews: away from the plot, the pinned cursor shows again.
    h.hover_at(egui::pos2(
        t.position_from_point_x(25.0),
        t.frame().center().y,
    ));
    h.step();
    h.step();
    assert!(
        h.query_by_label("step 20").is_some(),
        "hover shows step 25's grid"
    );
    h.hover_at(egui::pos2(5.0, 5.0));
    h.step();
    h.step();
    assert!(h.query_by_label("step 10").is_some());
    h.key_press(egui::Key::End);
    h.step();
    h.step();
    assert_eq!(cursor(&h), None);
    assert!(h.query_by_label(&format!("step {now} (live)")).is_some());
    // "play" walks the history from its first grid, one by one, and ends live.
    h.get_by_label("play").click();
    h.step();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cursor(&h).is_some() || seen.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "still playing: {seen:?}"
        );
        seen.push(cursor(&h));
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    seen.dedup();
    assert_eq!(seen, [Some(0), Some(10), Some(20)]);
    assert!(h.query_by_label("play").is_some(), "stopped at the end");
    assert!(h.query_by_label(&format!("step {now} (live)")).is_some());
    // The export the GIF… button asks a path for: every recorded grid, in order.
    let dir = tempfile::tempdir().unwrap();
    let gif = dir.path().join("history.gif");
    let timeline = Box::new(h.state().shared.run.timeline.clone());
    h.state_mut().on_file_chosen(
        FileAction::ExportTimelapse {
            timeline,
            sheet: false,
        },
        gif.clone(),
    );
    pump(&mut h, "the GIF", |a| {
        a.shared
            .run
            .notices
            .iter()
            .any(|n| n.starts_with("exported"))
    });
    use image::AnimationDecoder;
    let f = std::io::BufReader::new(std::fs::File::open(&gif).unwrap());
    let frames = image::codecs::gif::GifDecoder::new(f)
        .unwrap()
        .into_frames()
        .collect_frames()
        .unwrap();
    assert_eq!(frames.len(), 4);
    // The last frame is the flat 0.9 grid: its first image's corner pixel (after the 4 px
    // pad at scale 2) is 0.9 grey.
    let px = frames[3].buffer().get_pixel(5, 5).0;
    assert!((px[0] as i32 - 230).abs() <= 2, "{px:?}");
}

/// A second checkpoint opened as the reference run: its curves join the plots under its
/// name, its samples sit beside the live grid, and the explorer decodes the same latent
/// through its model (not the live one).
#[test]
fn a_reference_run_overlays_curves_and_samples_and_decodes_the_same_latent() {
    use egui_kittest::kittest::by;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("before.llck");
    let mut h = common::ui::paused_on(30, "training");
    h.state_mut()
        .on_file_chosen(FileAction::SaveCheckpoint, path.clone());
    pump(&mut h, "saved", |_| path.exists());
    let at_save = h.state().shared.run.step;
    // Dropped on the window with a run open: the app asks what it is for.
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(path.clone())));
    h.step();
    h.step();
    h.get_by_label("Compare with this run").click();
    pump(&mut h, "the reference run", |a| {
        a.shared.reference.is_some()
    });
    assert_eq!(
        h.state().shared.run.step,
        at_save,
        "the run itself stayed open"
    );
    h.step();
    assert!(h.query_by_label("Reference: before.llck").is_some());
    assert!(
        h.query(by().label_contains("loss · before.llck")).is_some(),
        "the legend names the reference run's curve"
    );
    // Latent health overlays its active units, KL and sample measures too.
    h.state_mut().shared.tab = "health";
    h.step();
    h.step();
    // (No test evaluation yet at step 30: no active-units points to draw.)
    for what in ["training KL", "diversity", "coverage"] {
        assert!(
            h.query(by().label_contains(&format!("{what} · before.llck")))
                .is_some(),
            "{what} of the reference run in Latent health"
        );
    }
    h.state_mut().shared.tab = "training";
    let saved = latent_lab::checkpoint::Checkpoint::load(&path).unwrap();
    let model = latent_lab::infer::Inference::from_checkpoint_on_cpu(&saved).unwrap();

    // The live run trains on: its weights move away from the reference's.
    h.get_by_label("Resume").click();
    let at = h.state().shared.run.step;
    pump(&mut h, "more training", |a| a.shared.run.step >= at + 60);
    h.get_by_label("Pause").click();
    pump(&mut h, "paused", |a| a.shared.run.status == Status::Paused);
    h.state_mut().shared.tab = "explorer";
    h.state_mut().shared.latent.set(vec![0.7; 20]);
    pump(&mut h, "both decodes of the latent", |a| {
        let e = explorer(a);
        e.reference_image().is_some() && e.image().is_some() && !a.shared.run.new_weights
    });
    run_for(&mut h, Duration::from_millis(300));
    let want = model.decode(&[0.7; 20]).unwrap();
    let e = explorer(h.state());
    assert!(common::max_diff(&e.reference_image().unwrap().pixels, &want.pixels) < 1e-5);
    assert!(
        common::max_diff(&e.image().unwrap().pixels, &want.pixels) > 1e-3,
        "the live image is the live model's"
    );
    assert!(h
        .query_by_label_contains("Reference: before.llck")
        .is_some());
}
