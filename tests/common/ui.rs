//! The desktop app under egui_kittest, with the real worker and decoder on the CPU backend.

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use latent_lab::app::{AppOptions, Explorer, LatentLabApp, Settings};
use latent_lab::backend::BackendChoice;

pub fn app_with(opts: AppOptions, configure: impl FnOnce(&mut Settings)) -> LatentLabApp {
    super::cpu_default_device();
    let mut settings = Settings {
        backend: BackendChoice::Cpu,
        epochs: 50,
        ..Settings::default()
    };
    configure(&mut settings);
    LatentLabApp::new(&egui::Context::default(), settings, opts).unwrap()
}

pub fn app() -> LatentLabApp {
    app_with(AppOptions::default(), |_| {})
}

pub fn harness(app: LatentLabApp) -> Harness<'static, LatentLabApp> {
    Harness::builder()
        .with_size(egui::vec2(1280.0, 840.0))
        .build_ui_state(|ui, app: &mut LatentLabApp| app.draw(ui, None), app)
}

/// Step frames (real time passes) until `done` holds.
pub fn pump(
    h: &mut Harness<'static, LatentLabApp>,
    what: &str,
    done: impl Fn(&LatentLabApp) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(h.state()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; errors: {:?}",
            h.state().shared.run.errors
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

/// Step frames for `d` of real time (events the worker and decoder send meanwhile land).
pub fn run_for(h: &mut Harness<'static, LatentLabApp>, d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A harness whose app has been training (the default VAE on the CPU) for `min_step` steps.
pub fn training(app: LatentLabApp, min_step: u64) -> Harness<'static, LatentLabApp> {
    use egui_kittest::kittest::Queryable;
    let mut h = harness(app);
    h.step();
    h.get_by_label("Train").click();
    pump(&mut h, "training steps", |a| a.shared.run.step >= min_step);
    h
}

/// A VAE trained for `min_step` steps, paused, showing the tab `tab`.
pub fn paused_on(min_step: u64, tab: &'static str) -> Harness<'static, LatentLabApp> {
    use egui_kittest::kittest::Queryable;
    let mut h = training(app(), min_step);
    h.get_by_label("Pause").click();
    pump(&mut h, "paused", |a| {
        a.shared.run.status == latent_lab::app::Status::Paused
    });
    h.state_mut().shared.tab = tab;
    h
}

/// Whether the loss plot carries a marker whose text satisfies `f`.
pub fn has_marker(app: &LatentLabApp, f: impl Fn(&str) -> bool) -> bool {
    app.shared.run.history.markers.iter().any(|m| f(&m.text))
}

/// The explorer tab of `app`.
pub fn explorer(app: &LatentLabApp) -> &Explorer {
    app.panel::<Explorer>().expect("the explorer is a tab")
}
