//! Old checkpoints keep loading: one `.llck` per family written by an earlier version
//! (`tests/fixtures/v0.1`, made by `tests/fixtures/make-compat.sh` at 50d17fd), evaluated
//! and trained on by today's binary, must give the numbers that version gave.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const FAMILIES: [&str; 4] = ["vae", "conv-vae", "gan", "dcgan"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0.1")
}

fn run(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_latent-lab"))
        .args(args)
        .output()
        .expect("binary runs");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn eval_json(ckpt: &Path) -> Value {
    let o = run(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--json",
        "--iw-samples",
        "5",
        "--backend",
        "cpu",
    ]);
    serde_json::from_slice(&o.stdout).expect("eval --json prints JSON")
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// Every number of `want` is in `got` within `rel` (relative) or 1e-6 (absolute).
fn assert_close(what: &str, got: &Value, want: &Value, rel: f64) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                let gv = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{what}: '{k}' missing in {got}"));
                assert_close(&format!("{what}.{k}"), gv, wv, rel);
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{what}: length");
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                assert_close(&format!("{what}[{i}]"), gv, wv, rel);
            }
        }
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-6 + rel * w.abs(),
                "{what}: {g} != {w} (old version)"
            );
        }
        _ => assert_eq!(got, want, "{what}"),
    }
}

#[test]
fn old_checkpoints_evaluate_to_the_same_numbers() {
    for family in FAMILIES {
        let ckpt = fixtures().join(format!("{family}.llck"));
        let got = eval_json(&ckpt);
        let want = expected(&format!("{family}.eval.json"));
        // The same weights, data split and seeded noise: only summation order may differ.
        assert_close(family, &got, &want, 1e-4);
    }
}

/// Train `family`'s fixture on to step 30 (`burn`: through burn's autodiff instead of the fast
/// CPU path) and compare with what the old version gave.
fn train_on(family: &str, burn: bool, dir: &Path) {
    let ckpt = fixtures().join(format!("{family}.llck"));
    let out = dir.join(format!("{family}-{burn}.llck"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latent-lab"));
    if burn {
        cmd.env("LATENT_LAB_CPU_TRAINING", "burn");
    } else {
        cmd.env_remove("LATENT_LAB_CPU_TRAINING");
    }
    let o = cmd
        .args([
            "train",
            "--resume",
            ckpt.to_str().unwrap(),
            "--max-steps",
            "30",
        ])
        .args(["--backend", "cpu", "--out", out.to_str().unwrap()])
        .output()
        .expect("binary runs");
    assert!(
        o.status.success(),
        "{family} burn={burn}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = eval_json(&out);
    assert_eq!(got["step"], 30, "{family}: trained on to step 30");
    let name = if burn { "resumed-burn" } else { "resumed" };
    let want = expected(&format!("{family}.{name}.eval.json"));
    // Ten more steps of Adam from the saved optimiser state: parallel sums may round
    // differently, so allow a little more than for the frozen weights.
    assert_close(&format!("{family} {name}"), &got, &want, 2e-3);
}

#[test]
fn old_checkpoints_train_on_to_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        train_on(family, false, dir.path());
    }
}

#[test]
fn old_checkpoints_train_on_through_burn_to_the_same_numbers() {
    // burn's path (a GPU, or LATENT_LAB_CPU_TRAINING=burn) draws its noise from the device's
    // RNG: rollback snapshots must not draw from it, or the run would change.
    let dir = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        train_on(family, true, dir.path());
    }
}

#[test]
fn old_checkpoints_sample_and_describe() {
    let dir = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        let ckpt = fixtures().join(format!("{family}.llck"));
        let png = dir.path().join(format!("{family}.png"));
        run(&[
            "sample",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
        ]);
        let img = image::open(&png).expect("sample grid is a PNG");
        assert!(img.width() >= 28 && img.height() >= 28);
        let o = run(&["info", ckpt.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains(family), "{family}: info says {text}");
        // Older files have no named directions: an empty list, and the views still work.
        let o = run(&[
            "directions",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--k",
            "2",
            "--samples",
            "50",
            "--json",
        ]);
        let v: Value = serde_json::from_slice(&o.stdout).expect("directions --json");
        assert_eq!(v["named"], serde_json::json!([]), "{family}");
        assert_eq!(
            v["directions"].as_array().map(Vec::len),
            Some(2),
            "{family}"
        );
    }
}
