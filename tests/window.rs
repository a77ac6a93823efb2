//! The real binary opens a real window under Xvfb and draws frames.
//!
//! Needs `xvfb-run` (Debian: xvfb) and a Vulkan driver (mesa-vulkan-drivers); CI installs
//! both. Set `LATENT_LAB_SKIP_XVFB=1` to skip on a machine that has neither.

use std::process::Command;

#[test]
fn window_opens_and_renders_frames_under_xvfb() {
    if std::env::var_os("LATENT_LAB_SKIP_XVFB").is_some() {
        eprintln!("skipping: LATENT_LAB_SKIP_XVFB is set");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let out = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x900x24"])
        .arg(env!("CARGO_BIN_EXE_latent-lab"))
        .args(["--smoke-frames", "20", "--screenshot"])
        .arg(&shot)
        .env("HOME", dir.path()) // keep settings out of the real home
        .output()
        .expect("xvfb-run is installed (apt-get install xvfb)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    let img = image::open(&shot).expect("a screenshot was written");
    assert!(
        img.width() >= 800 && img.height() >= 560,
        "{}x{}",
        img.width(),
        img.height()
    );
    // Not a blank frame: the UI drew text and widgets.
    let rgb = img.to_rgb8();
    let distinct: std::collections::HashSet<_> = rgb.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 20, "only {} colours", distinct.len());
}
