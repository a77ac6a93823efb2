//! The module graph stays a graph without cycles, and the engine never depends on the app.
//!
//! Reads `src/` the way a reviewer would: every `crate::<module>` path outside comments and
//! test modules is an edge from the file's top-level module to `<module>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules allowed to use the GUI toolkits and the app.
const EDGE: [&str; 4] = ["app", "cli", "fuzzing", "main"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of `text` without comments and without its `#[cfg(test)]` modules.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            // `#[cfg(test)] mod tests { … }` runs to the end of the file in this crate; an
            // out-of-line `mod x;` is its own file (skipped by name below).
            if lines
                .peek()
                .is_some_and(|l| l.contains("mod ") && l.contains('{'))
            {
                break;
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// Top-level module → the top-level modules it uses.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = first.trim_end_matches(".rs").to_string();
        let name = f.file_stem().unwrap().to_string_lossy();
        if top == "lib" || name.ends_with("tests") {
            continue;
        }
        let text = code(&std::fs::read_to_string(&f).unwrap());
        let deps = graph.entry(top.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let module: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !module.is_empty() && module != top {
                deps.insert(module);
            }
        }
        for gui in ["egui", "eframe", "egui_plot", "rfd"] {
            if !EDGE.contains(&top.as_str()) && text.contains(&format!("{gui}::")) {
                deps.insert(format!("<{gui}>"));
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|n| n == node) {
        let mut c = path[i..].to_vec();
        c.push(node.to_string());
        return Some(c);
    }
    path.push(node.to_string());
    for d in graph.get(node).into_iter().flatten() {
        if let Some(c) = cycle_from(graph, d, path) {
            return Some(c);
        }
    }
    path.pop();
    None
}

#[test]
fn the_module_graph_has_no_cycles() {
    let graph = module_graph();
    assert!(graph.len() >= 15, "modules found: {:?}", graph.keys());
    for node in graph.keys() {
        if let Some(c) = cycle_from(&graph, node, &mut Vec::new()) {
            panic!("module cycle: {}\ngraph: {graph:#?}", c.join(" → "));
        }
    }
}

#[test]
fn the_engine_never_depends_on_the_app() {
    for (module, deps) in module_graph() {
        if EDGE.contains(&module.as_str()) {
            continue;
        }
        for d in deps {
            assert!(
                d != "app" && d != "cli" && !d.starts_with('<'),
                "engine module {module} depends on {d}"
            );
        }
    }
}

#[test]
fn a_family_is_one_file_and_one_registry_line() {
    // Nothing outside `model/` names a family's types — not even the fast CPU path's layer
    // library: the rest of the crate goes through the `Family` / `Nets` / `Trainer` traits and
    // the registry.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let family_types = [
        "MlpVae",
        "ConvVae",
        "MlpGan",
        "MlpGenerator",
        "DcGenerator",
        "DcDiscriminator",
        "DcganConfig",
        "FusedDcgan",
        "FusedGan",
        "FusedMlpVae",
        "FusedConvVae",
    ];
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().to_string();
        if rel.starts_with("model") {
            continue;
        }
        let text = code(&std::fs::read_to_string(&f).unwrap());
        for t in family_types {
            assert!(
                !text.contains(t),
                "{rel} names the family type {t}: go through the family traits"
            );
        }
    }
}
