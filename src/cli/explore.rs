//! The latent-exploration commands, the CLI twins of the app's views: `traverse` (the
//! traversal grid), `directions` (principal directions / GANSpace) and `project` (PCA or
//! t-SNE scatter of the encoded test set).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{load_checkpoint, report_dataset, Classes};
use crate::backend::Backend;
use crate::checkpoint::Checkpoint;
use crate::explore::{self, Directions, Encoded, Projection};
use crate::images::{save_png, scatter_image};
use crate::infer::{normal_latents, Inference};

#[derive(Args, Debug)]
pub struct TraverseArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The PNG to write: one row per latent dimension (or direction), `--steps` columns
    #[arg(long)]
    pub out: PathBuf,
    /// Values per row, from −range to +range around the base latent
    #[arg(long, default_value_t = 9)]
    pub steps: usize,
    /// Half-width of each row (latent units; for --directions, in standard deviations
    /// of the data along the direction)
    #[arg(long, default_value_t = 3.0)]
    pub range: f32,
    /// Dimensions to draw, e.g. `0,3,5` (default: a VAE's by decreasing KL, a GAN's in order,
    /// at most --rows)
    #[arg(long, value_delimiter = ',', conflicts_with = "directions")]
    pub dims: Option<Vec<usize>>,
    /// Rows along the principal directions instead of single dimensions
    #[arg(long)]
    pub directions: bool,
    /// Rows when --dims is not given
    #[arg(long, default_value_t = 10)]
    pub rows: usize,
    /// VAE: the test-split image whose encoding is the base latent (default 0)
    #[arg(long)]
    pub from_index: Option<usize>,
    /// GAN: the seed of the base latent
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Conditional models: the class of every image (number or class name; default 0)
    #[arg(long)]
    pub class: Option<String>,
    #[arg(long, default_value_t = 2)]
    pub scale: usize,
}

#[derive(Args, Debug)]
pub struct DirectionsArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// How many directions
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Print one JSON object (explained variance, vectors, pixel change per unit step)
    #[arg(long)]
    pub json: bool,
    /// Also write a PNG: one strip per direction (−range…+range standard deviations)
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 9)]
    pub steps: usize,
    #[arg(long, default_value_t = 2.0)]
    pub range: f32,
    /// VAE: test images to encode; GAN: latents to sample
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 2)]
    pub scale: usize,
}

#[derive(Args, Debug)]
pub struct ProjectArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// `pca`, `tsne`, or `raw` (two latent dimensions: --dims, else the pair that keeps
    /// classes apart best, else the two of highest KL)
    #[arg(long, default_value = "tsne")]
    pub method: String,
    /// Write the scatter (coloured by label) as a PNG
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object: `points` ([x, y] per test image), `labels` (null where the
    /// dataset has none), `knn5_accuracy`, `seconds`
    #[arg(long)]
    pub json: bool,
    /// Test images to encode (the first of the test split, as the app's scatter)
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// `raw`: the two dimensions, e.g. `3,7`
    #[arg(long, value_delimiter = ',')]
    pub dims: Option<Vec<usize>>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the encoded means as CSV (one row per test image: label, then the latent),
    /// for other tools (`bench/tsne_reference.py` runs scikit-learn on it)
    #[arg(long)]
    pub latents_out: Option<PathBuf>,
}

/// The first `n` test images of a checkpoint's data (pixels, labels), as the app shows them.
fn test_images(ckpt: &Checkpoint, n: usize) -> Result<(Vec<f32>, Vec<u32>)> {
    let data = ckpt
        .header
        .data
        .load()
        .with_context(|| "cannot load the checkpoint's dataset")?;
    report_dataset(&data, false);
    let shape = crate::model::ImageShape::new(data.channels, data.height, data.width);
    if shape != ckpt.header.model.shape {
        bail!(
            "the dataset has {shape} images but the model expects {}",
            ckpt.header.model.shape
        );
    }
    let split = data.split(ckpt.header.train.seed)?;
    let idx: Vec<usize> = split.test.iter().take(n).copied().collect();
    let mut px = Vec::new();
    data.gather_f32(&idx, &mut px);
    let labels = match &data.labels {
        Some(l) => idx.iter().map(|&i| l[i]).collect(),
        None => Vec::new(),
    };
    Ok((px, labels))
}

fn open(path: &std::path::Path) -> Result<(Checkpoint, Inference)> {
    let ckpt = load_checkpoint(path)?;
    let inf = Inference::from_checkpoint(&ckpt, &Backend::cpu().device)?;
    Ok((ckpt, inf))
}

/// Decode `latents` with `class` for every image of a conditional model.
fn decode(
    inf: &Inference,
    latents: &[f32],
    class: Option<u32>,
) -> Result<crate::images::ImageBatch> {
    Ok(match class {
        Some(k) => {
            let n = latents.len() / inf.latent_dim().max(1);
            inf.decode_labelled(latents, &vec![k; n])?
        }
        None => inf.decode(latents)?,
    })
}

pub fn traverse(a: TraverseArgs) -> Result<()> {
    if a.steps < 2 || a.steps > 64 {
        bail!("--steps must be between 2 and 64");
    }
    if !(a.range.is_finite() && a.range > 0.0) {
        bail!("--range must be a positive number");
    }
    let (ckpt, inf) = open(&a.checkpoint)?;
    let d = inf.latent_dim();
    let class = match Classes::of(&ckpt, &inf, a.class.is_some())? {
        Some(c) => Some(a.class.as_deref().map_or(Ok(0), |k| c.parse(k))?),
        None => None,
    };
    let encoder = ckpt.header.model.has_encoder();
    let needs_data = encoder && (a.from_index.is_some() || a.dims.is_none() || a.directions);
    let (px, labels) = if needs_data {
        test_images(&ckpt, 1000)?
    } else {
        (Vec::new(), Vec::new())
    };
    let enc = if encoder && !px.is_empty() {
        Some(explore::encode_set(&inf, &px, &labels)?)
    } else {
        None
    };
    let base = match &enc {
        Some(e) => {
            let i = a.from_index.unwrap_or(0);
            if i >= e.n {
                bail!(
                    "--from-index must be below {} (the test images encoded)",
                    e.n
                );
            }
            e.row(i).to_vec()
        }
        None => normal_latents(1, d, a.seed),
    };
    let (axes, names): (Vec<Vec<f32>>, Vec<String>) = if a.directions {
        let dirs = explore::principal_directions(&inf, &px, &labels, a.rows, 1000, a.seed)?;
        eprintln!("{}", dirs.method.describe());
        dirs.vectors
            .iter()
            .zip(&dirs.spread)
            .zip(&dirs.explained)
            .enumerate()
            .map(|(i, ((v, s), e))| {
                let scaled = v.iter().map(|x| x * s).collect();
                (
                    scaled,
                    format!("direction {} ({:.1} % of variance)", i + 1, e * 100.0),
                )
            })
            .unzip()
    } else {
        let dims = match (&a.dims, &enc) {
            (Some(dims), _) => {
                if let Some(bad) = dims.iter().find(|&&i| i >= d) {
                    bail!("--dims: {bad} is not below the latent size {d}");
                }
                dims.clone()
            }
            (None, Some(e)) => {
                let kl = e.kl_per_dim();
                let order = explore::dims_by_kl(&kl);
                order.into_iter().take(a.rows.max(1)).collect()
            }
            (None, None) => (0..d.min(a.rows.max(1))).collect(),
        };
        let kl = enc.as_ref().map(Encoded::kl_per_dim);
        dims.iter()
            .map(|&i| {
                let name = match &kl {
                    Some(kl) => format!("z{i} (KL {:.2})", kl[i]),
                    None => format!("z{i}"),
                };
                (explore::axis(d, i), name)
            })
            .unzip()
    };
    if axes.is_empty() {
        bail!("nothing to draw: no rows");
    }
    let z = explore::traversal(&base, &axes, a.steps, a.range);
    let images = decode(&inf, &z, class)?;
    save_png(&images.grid(a.steps, 2, a.scale.clamp(1, 32)), &a.out)?;
    for (r, n) in names.iter().enumerate() {
        eprintln!("row {}: {n}", r + 1);
    }
    eprintln!(
        "wrote {} ({} rows × {} steps in [−{}, {}])",
        a.out.display(),
        axes.len(),
        a.steps,
        a.range,
        a.range
    );
    Ok(())
}

pub fn directions(a: DirectionsArgs) -> Result<()> {
    if a.k == 0 || a.k > 256 {
        bail!("--k must be between 1 and 256");
    }
    if a.samples < 10 || a.samples > 100_000 {
        bail!("--samples must be between 10 and 100000");
    }
    let (ckpt, inf) = open(&a.checkpoint)?;
    let d = inf.latent_dim();
    let (px, labels) = if ckpt.header.model.has_encoder() {
        test_images(&ckpt, a.samples)?
    } else {
        (Vec::new(), Vec::new())
    };
    let t = Instant::now();
    let dirs: Directions =
        explore::principal_directions(&inf, &px, &labels, a.k, a.samples, a.seed)?;
    let seconds = t.elapsed().as_secs_f64();
    // Where the strips and the pixel-change check start: encoded test images, or samples.
    let bases = if px.is_empty() {
        normal_latents(64, d, a.seed.wrapping_add(1))
    } else {
        let p = ckpt.header.model.shape.numel();
        let take = 64.min(px.len() / p);
        explore::encode_set(&inf, &px[..take * p], labels.get(..take).unwrap_or(&[]))?.mu
    };
    let changes = dirs
        .vectors
        .iter()
        .map(|v| explore::pixel_change(&inf, &bases, v, 1.0))
        .collect::<Result<Vec<_>, _>>()?;
    let mut random = normal_latents(1, d, a.seed.wrapping_add(0x7a11));
    let norm = explore::dot(&random, &random).sqrt().max(1e-12);
    random.iter_mut().for_each(|x| *x /= norm);
    let random_change = explore::pixel_change(&inf, &bases, &random, 1.0)?;
    if let Some(out) = &a.out {
        let mut centre = vec![0.0f32; d];
        for z in bases.chunks_exact(d) {
            centre
                .iter_mut()
                .zip(z)
                .for_each(|(c, z)| *c += z / (bases.len() / d) as f32);
        }
        if px.is_empty() {
            centre = vec![0.0; d]; // a GAN's prior mean
        }
        let axes: Vec<Vec<f32>> = dirs
            .vectors
            .iter()
            .zip(&dirs.spread)
            .map(|(v, s)| v.iter().map(|x| x * s).collect())
            .collect();
        let z = explore::traversal(&centre, &axes, a.steps.clamp(2, 64), a.range);
        let class = inf.classes().map(|_| 0);
        let images = decode(&inf, &z, class)?;
        save_png(
            &images.grid(a.steps.clamp(2, 64), 2, a.scale.clamp(1, 32)),
            out,
        )?;
        eprintln!("wrote {}", out.display());
    }
    if a.json {
        let list: Vec<serde_json::Value> = dirs
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::json!({
                    "index": i,
                    "explained_variance": dirs.explained[i],
                    "spread": dirs.spread[i],
                    "pixel_change_per_unit": changes[i],
                    "vector": v,
                })
            })
            .collect();
        let obj = serde_json::json!({
            "model": ckpt.header.model.kind.name(),
            "step": ckpt.header.step,
            "method": dirs.method.describe(),
            "samples": dirs.samples,
            "seconds": seconds,
            "directions": list,
            "random_direction_pixel_change": random_change,
            "named": ckpt.header.directions,
        });
        println!("{obj}");
    } else {
        println!(
            "{} at step {}: {} ({} samples, {seconds:.2} s)",
            ckpt.header.model.describe(),
            ckpt.header.step,
            dirs.method.describe(),
            dirs.samples
        );
        for (i, e) in dirs.explained.iter().enumerate() {
            println!(
                "direction {:>2}: {:>5.1} % of variance, spread {:.3}, mean pixel change {:.4} per unit",
                i + 1,
                e * 100.0,
                dirs.spread[i],
                changes[i]
            );
        }
        println!("a random unit direction: mean pixel change {random_change:.4} per unit");
        for n in &ckpt.header.directions {
            println!("named: {} ({})", n.name, n.note);
        }
    }
    Ok(())
}

pub fn project(a: ProjectArgs) -> Result<()> {
    let raw = a.method.trim().eq_ignore_ascii_case("raw");
    let method = match Projection::parse(&a.method) {
        Some(m) => Some(m),
        None if raw => None,
        None => bail!("--method must be pca, tsne or raw, not {}", a.method),
    };
    if a.n < 2 || a.n > 20_000 {
        bail!("--n must be between 2 and 20000");
    }
    let (ckpt, inf) = open(&a.checkpoint)?;
    if !ckpt.header.model.has_encoder() {
        bail!(
            "{} has no encoder: projections show encoded test images, so they need a VAE",
            ckpt.header.model.kind
        );
    }
    let (px, labels) = test_images(&ckpt, a.n)?;
    let enc = explore::encode_set(&inf, &px, &labels)?;
    if let Some(path) = &a.latents_out {
        let mut csv = String::new();
        for i in 0..enc.n {
            match labels.get(i) {
                Some(l) => csv.push_str(&l.to_string()),
                None => csv.push_str("-1"),
            }
            for v in enc.row(i) {
                csv.push(',');
                csv.push_str(&v.to_string());
            }
            csv.push('\n');
        }
        crate::util::write_atomic(path, csv.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "wrote {} ({} rows of {} latents)",
            path.display(),
            enc.n,
            enc.d
        );
    }
    let t = Instant::now();
    let mut dims = None;
    let points: Vec<[f32; 2]> = match method {
        Some(m) => {
            let mut last = -1.0f32;
            let quiet = a.json;
            let mut progress = |f: f32| {
                if !quiet && f - last >= 0.1 {
                    eprint!("\r{} {:>3.0} %", m.name(), f * 100.0);
                    last = f;
                }
                true
            };
            let p = explore::project(&enc.mu, enc.n, enc.d, m, a.seed, &mut progress)
                .context("the projection was cancelled")?;
            if !quiet {
                eprintln!();
            }
            p
        }
        None => {
            let (x, y) = match &a.dims {
                Some(v) if v.len() == 2 && v.iter().all(|&i| i < enc.d) => (v[0], v[1]),
                Some(_) => bail!("--dims takes two dimensions below {}, e.g. 0,1", enc.d),
                None if !labels.is_empty() => explore::best_raw_pair(&enc, &labels)
                    .map(|(p, _)| p)
                    .unwrap_or((0, 1.min(enc.d - 1))),
                None => {
                    let order = explore::dims_by_kl(&enc.kl_per_dim());
                    (order[0], *order.get(1).unwrap_or(&order[0]))
                }
            };
            dims = Some([x, y]);
            (0..enc.n).map(|i| [enc.row(i)[x], enc.row(i)[y]]).collect()
        }
    };
    let seconds = t.elapsed().as_secs_f64();
    let flat: Vec<f32> = points.iter().flatten().copied().collect();
    let accuracy = (!labels.is_empty()).then(|| explore::knn_accuracy(&flat, 2, &labels, 5, 5));
    if let Some(out) = &a.out {
        save_png(&scatter_image(&points, &labels, 800), out)?;
        eprintln!("wrote {}", out.display());
    }
    let name = method.map_or("raw", Projection::name);
    if a.json {
        let labels_json: Vec<serde_json::Value> = (0..points.len())
            .map(|i| labels.get(i).map_or(serde_json::Value::Null, |&l| l.into()))
            .collect();
        let obj = serde_json::json!({
            "method": name,
            "model": ckpt.header.model.kind.name(),
            "step": ckpt.header.step,
            "dims": dims,
            "points": points,
            "labels": labels_json,
            "knn5_accuracy": accuracy,
            "seconds": seconds,
        });
        println!("{obj}");
    } else {
        let dims = dims.map_or(String::new(), |[x, y]| format!(" of z{x}, z{y}"));
        let acc = accuracy.map_or("no labels".into(), |a| {
            format!("5-NN label accuracy {a:.3} (5-fold)")
        });
        println!(
            "{name}{dims}: {} points in {seconds:.2} s; {acc}",
            points.len()
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct TimelapseArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// An animated GIF (`.gif`), or a PNG contact sheet (`.png`), of the run's sample history
    #[arg(long)]
    pub out: PathBuf,
    /// Every Nth recorded sample grid (the last is always in); default: about 200 frames
    /// for a GIF, 40 tiles for a sheet
    #[arg(long)]
    pub every: Option<usize>,
    /// Pixels per image pixel
    #[arg(long, default_value_t = 2)]
    pub scale: usize,
}

/// The twin of the Training view's timelapse export: the sample grids the run recorded.
pub fn timelapse(a: TimelapseArgs) -> Result<()> {
    let sheet = match a.out.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("gif") => false,
        Some(e) if e.eq_ignore_ascii_case("png") => true,
        _ => bail!("--out must end in .gif (an animation) or .png (a contact sheet)"),
    };
    if !(1..=16).contains(&a.scale) || a.every == Some(0) {
        bail!("--scale must be 1 to 16 and --every at least 1");
    }
    let ckpt = load_checkpoint(&a.checkpoint)?;
    let tl = ckpt.timeline()?;
    let (Some(first), Some(last)) = (tl.frames().first(), tl.frames().last()) else {
        bail!(
            "{} has no sample history (written before runs recorded one, or an imported model)",
            a.checkpoint.display()
        );
    };
    let t = Instant::now();
    let n = crate::timeline::write_timelapse(&tl, &a.out, sheet, a.every, a.scale)?;
    println!(
        "wrote {} ({n} of {} recorded grids, steps {}–{}, {:.1} s)",
        a.out.display(),
        tl.len(),
        first.step,
        last.step,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
