//! The command-line face of the binary. Scripts depend on this contract; keep it stable.
//!
//! Exit codes: 0 success, 2 usage error, 1 any other failure (one line on stderr).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
mod explore;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backend::{Backend, BackendChoice};
use crate::checkpoint::Checkpoint;
use crate::data::DataSource;
use crate::eval::EvalReport;
use crate::images::{save_gif, save_png, ImageBatch};
use crate::infer::{class_rows, class_walk, lerp, normal_latents, slerp, Inference};
use crate::model::{ModelKind, ModelOverrides};
use crate::train::TrainConfig;
use crate::worker::{Command, Event, TrainRequest, WorkerHandle, WorkerOptions};

#[derive(Parser, Debug)]
#[command(
    name = "latent-lab",
    version,
    about = "Train VAEs and GANs on images and explore their latent spaces",
    after_help = "Run without a command to open the desktop app."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    #[command(flatten)]
    pub gui: GuiArgs,
}

/// Flags of the desktop app (no subcommand).
#[derive(Args, Debug, Default)]
pub struct GuiArgs {
    /// Start training the default (or last used) configuration at once
    #[arg(long)]
    pub train: bool,
    /// Open on this tab: training, explorer, interpolation, manifold, scatter, directions,
    /// traversal, health
    #[arg(long)]
    pub tab: Option<String>,
    /// Render this many frames, then exit (window smoke test)
    #[arg(long)]
    pub smoke_frames: Option<u64>,
    /// Save a PNG screenshot of the window before exiting (with --smoke-frames or --bench-ui)
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Train, drag a latent slider every frame for this many seconds, then print frame-time
    /// and decode-latency percentiles as JSON and exit
    #[arg(long)]
    pub bench_ui: Option<f64>,
    /// Write the --bench-ui JSON here instead of stdout
    #[arg(long)]
    pub bench_out: Option<PathBuf>,
    /// With --bench-ui: also keep the analyses busy (principal directions and a t-SNE of the
    /// encoded test set, recomputed from every snapshot) and report their times
    #[arg(long, requires = "bench_ui")]
    pub bench_analyses: bool,
    /// Ignore and do not overwrite saved settings
    #[arg(long)]
    pub fresh_settings: bool,
    /// With --smoke-frames or --bench-ui: use the saved settings (e.g. a screenshot of the
    /// scatter on the projection used last) instead of fresh ones
    #[arg(long, conflicts_with = "fresh_settings")]
    pub saved_settings: bool,
    /// Open this checkpoint at start (with --train: and continue training it)
    #[arg(long)]
    pub open: Option<PathBuf>,
    /// Open this checkpoint beside it as a reference run to compare with
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Put the Training view's step cursor on this step (screenshots of the history)
    #[arg(long)]
    pub cursor: Option<u64>,
    /// Autosave folder (default: `autosave` in the app's data folder)
    #[arg(long)]
    pub autosave_dir: Option<PathBuf>,
    /// Turn autosave (and the crash-restore offer) off for this session
    #[arg(long)]
    pub no_autosave: bool,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Train a model and save a checkpoint
    Train(TrainArgs),
    /// Evaluate a checkpoint on its test split
    Eval(EvalArgs),
    /// Decode random latents to a PNG grid or a folder of PNGs
    Sample(SampleArgs),
    /// Interpolate between two latents (PNG strip or animated GIF)
    Interpolate(InterpolateArgs),
    /// Judge a model's samples with a classifier of its own data: FID, confidence, classes
    Score(ScoreArgs),
    /// Describe a checkpoint
    Info(InfoArgs),
    /// Export a checkpoint's weights
    Export(ExportArgs),
    /// Build a checkpoint from a safetensors file (trained in PyTorch: docs/safetensors.md)
    Import(ImportArgs),
    /// Measure training throughput, decode latency and memory (see docs/performance.md)
    Bench(BenchArgs),
    /// A traversal grid: one row per latent dimension (or principal direction)
    Traverse(explore::TraverseArgs),
    /// Principal directions (VAE: PCA of encoder means; GAN: GANSpace)
    Directions(explore::DirectionsArgs),
    /// Project the encoded test set to 2-D (PCA, t-SNE or two raw dimensions)
    Project(explore::ProjectArgs),
    /// The run's sample history as an animated GIF or a PNG contact sheet
    Timelapse(explore::TimelapseArgs),
}

/// `--model`: the presets of the family registry ([`ModelKind::all`]), listed in `--help`.
#[derive(Clone, Copy, Debug)]
pub struct ModelParser;

impl clap::builder::TypedValueParser for ModelParser {
    type Value = ModelKind;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<ModelKind, clap::Error> {
        let names: Vec<&'static str> = ModelKind::all().iter().map(|k| k.name()).collect();
        let name = clap::builder::PossibleValuesParser::new(names).parse_ref(cmd, arg, value)?;
        ModelKind::parse(&name)
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd))
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(ModelKind::all().into_iter().map(|k| {
            clap::builder::PossibleValue::new(k.name()).help(k.about())
        })))
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum BackendArg {
    Auto,
    Wgpu,
    Cpu,
}

impl From<BackendArg> for BackendChoice {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Wgpu => BackendChoice::Wgpu,
            BackendArg::Cpu => BackendChoice::Cpu,
        }
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum InterpMode {
    Lerp,
    Slerp,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long, default_value = "vae", value_parser = ModelParser)]
    pub model: ModelKind,
    /// `mnist` (built-in), `shapes`, an IDX file or an image folder
    #[arg(long, default_value = "mnist")]
    pub data: String,
    /// Train until this many epochs are complete, in total [default: 10, or the
    /// checkpoint's own target with --resume]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Checkpoint to write (after every epoch and at the end)
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub latent_dim: Option<usize>,
    /// Hidden widths, comma-separated (MLP models) or base channels (conv models)
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// KL weight (β-VAE)
    #[arg(long)]
    pub beta: Option<f64>,
    /// KL warm-up: β rises from 0 to its value over this many steps (from the start, or
    /// from where a resumed run is); a remedy for posterior collapse
    #[arg(long)]
    pub kl_warmup: Option<u64>,
    #[arg(long)]
    pub adam_beta1: Option<f64>,
    #[arg(long)]
    pub adam_beta2: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image side for image folders and shapes [default: shapes 28; a folder its images'
    /// typical side, at most 64]
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Load an image folder as RGB [default: RGB when its images have colour]
    #[arg(long, conflicts_with = "gray")]
    pub rgb: bool,
    /// Load an image folder as grayscale, even when its images have colour
    #[arg(long)]
    pub gray: bool,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Continue the run saved in this checkpoint
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop after this many optimiser steps (for quick checks)
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Record a sample grid in the run's history every this many steps [default: 200]
    #[arg(long)]
    pub sample_every: Option<u64>,
    /// Log the losses every this many steps [default: 10]
    #[arg(long)]
    pub log_every: Option<u64>,
    /// List every file an image folder skipped (default: the first few)
    #[arg(long)]
    pub show_skipped: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Evaluate on other data (default: the checkpoint's own test split)
    #[arg(long)]
    pub data: Option<String>,
    /// Importance samples for the IWAE bound (VAE)
    #[arg(long, default_value_t = 50)]
    pub iw_samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendArg,
    #[arg(long)]
    pub json: bool,
    /// List every file an image folder skipped (default: the first few)
    #[arg(long)]
    pub show_skipped: bool,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// A .png file (grid) or a directory (one PNG per sample)
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Nearest-neighbour upscaling factor
    #[arg(long, default_value_t = 2)]
    pub scale: usize,
    /// Class to draw (conditional models): a number or one of the dataset's class names.
    /// Without it a conditional model's grid has one row per class.
    #[arg(long)]
    pub class: Option<String>,
}

#[derive(Args, Debug)]
pub struct InterpolateArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    #[arg(long, value_enum, default_value = "slerp")]
    pub mode: InterpMode,
    /// Test-split image to start from (VAE)
    #[arg(long)]
    pub from_index: Option<usize>,
    /// Test-split image to end at (VAE)
    #[arg(long)]
    pub to_index: Option<usize>,
    /// A .png (strip) or .gif (animation)
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 2)]
    pub scale: usize,
    /// Conditional models: the class held fixed along the walk (number or class name)
    #[arg(long, conflicts_with_all = ["from_class", "to_class"])]
    pub class: Option<String>,
    /// Conditional models: keep one latent and walk the class from this one…
    #[arg(long, requires = "to_class")]
    pub from_class: Option<String>,
    /// …to this one ("same style, another class")
    #[arg(long, requires = "from_class")]
    pub to_class: Option<String>,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// The model whose samples are scored (against its own dataset)
    #[arg(long, required_unless_present = "images", conflicts_with = "images")]
    pub checkpoint: Option<PathBuf>,
    /// Score these images instead (an IDX images file, e.g. samples another program wrote)
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// The labelled dataset the classifier learns for --images (its split's test images are
    /// the reference)
    #[arg(long, default_value = "mnist", requires = "images")]
    pub data: String,
    /// Samples to draw
    #[arg(long, default_value_t = 5000)]
    pub n: usize,
    /// Seed of the samples' latents (the classifier's seed is fixed, so runs compare)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Models to train (comma-separated); default: the first preset of every family
    #[arg(long, value_delimiter = ',', value_parser = ModelParser)]
    pub model: Vec<ModelKind>,
    /// Backends (comma-separated); `auto`: the CPU, plus wgpu when a hardware GPU exists
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    pub backend: Vec<BackendArg>,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Untimed steps before measuring (kernel compilation, autotune, caches)
    #[arg(long, default_value_t = 20)]
    pub warmup_steps: usize,
    /// Read the losses back every this many steps (each read is a device sync)
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Timed training per model and backend, in seconds
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// CPU threads for the CPU backend (default: all cores)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Skip the decode-latency and manifold measurements
    #[arg(long)]
    pub no_decode: bool,
    /// Decodes for the latency percentiles
    #[arg(long, default_value_t = 2000)]
    pub decodes: usize,
    /// Also train the VAE this long while sampling memory (RSS) over time
    #[arg(long, default_value_t = 0.0)]
    pub soak_seconds: f64,
    /// Print one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    /// Measure training on this data instead of the built-in MNIST (e.g. a 64 px RGB folder)
    #[arg(long)]
    pub data: Option<String>,
    /// Image side for --data (a folder's default follows its images)
    #[arg(long, requires = "data")]
    pub image_size: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Write the weights as safetensors (Linear weights transposed to PyTorch's [out, in])
    #[arg(long)]
    pub safetensors: PathBuf,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The weights (names and layouts of docs/safetensors.md; F32, F16, BF16 or F64)
    #[arg(long)]
    pub safetensors: PathBuf,
    /// Checkpoint to write [default: the input with the .llck extension]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The model, where the file's metadata does not say (latent_lab.model)
    #[arg(long, value_parser = ModelParser)]
    pub model: Option<ModelKind>,
    #[arg(long)]
    pub latent_dim: Option<usize>,
    /// Hidden widths, comma-separated (MLP models) or base channels (conv models)
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Image side (square images)
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Colour images (3 channels)
    #[arg(long, conflicts_with = "gray")]
    pub rgb: bool,
    /// Grayscale images (1 channel)
    #[arg(long)]
    pub gray: bool,
    /// Class count of a conditional model
    #[arg(long)]
    pub classes: Option<usize>,
    /// The dataset it belongs to (`mnist`, `shapes`, an IDX file or an image folder)
    /// [default: the file's latent_lab.data, or MNIST for 28×28 grayscale models]
    #[arg(long)]
    pub data: Option<String>,
}

/// Parse `args` and run; returns the process exit code.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    // clap's message spans lines (reason, details, usage); keep the reason and
                    // details on one line.
                    let text = e.render().to_string();
                    let line: Vec<&str> = text
                        .lines()
                        .map(str::trim)
                        .take_while(|l| !l.starts_with("Usage:"))
                        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                        .collect();
                    eprintln!("{} (see `latent-lab --help`)", line.join(" "));
                    ExitCode::from(2)
                }
            };
        }
    };
    // Training kernels at low priority in the app only, so that the window stays smooth; a
    // command-line run the user asked for gets the CPU like any other program (the bench
    // sizes the pool itself).
    if !matches!(cli.command, Some(Cmd::Bench(_))) {
        let _ = crate::backend::init_cpu_pool(None, cli.command.is_none());
    }
    let Some(cmd) = cli.command else {
        return match gui(cli.gui) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    };
    let result = match cmd {
        Cmd::Train(a) => train(a),
        Cmd::Eval(a) => eval(a),
        Cmd::Sample(a) => sample(a),
        Cmd::Score(a) => score(a),
        Cmd::Interpolate(a) => interpolate(a),
        Cmd::Traverse(a) => explore::traverse(a),
        Cmd::Directions(a) => explore::directions(a),
        Cmd::Project(a) => explore::project(a),
        Cmd::Timelapse(a) => explore::timelapse(a),
        Cmd::Info(a) => info(a),
        Cmd::Export(a) => crate::export::export_safetensors(&a.checkpoint, &a.safetensors),
        Cmd::Import(a) => import(a),
        Cmd::Bench(a) => bench(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes joined, each said once (an error that
            // already ends with its cause's text, "path: cause", is not followed by it).
            let mut msg = String::new();
            for cause in e.chain().map(|c| c.to_string()) {
                if msg.ends_with(&cause) {
                    continue;
                }
                if !msg.is_empty() {
                    msg.push_str(": ");
                }
                msg.push_str(&cause);
            }
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn gui(a: GuiArgs) -> Result<()> {
    let tab = match &a.tab {
        Some(t) => Some(crate::app::tab_id(t).ok_or_else(|| {
            anyhow::anyhow!("unknown tab '{t}' ({})", crate::app::tab_ids().join(", "))
        })?),
        None => None,
    };
    crate::app::run(crate::app::AppOptions {
        smoke_frames: a.smoke_frames,
        screenshot: a.screenshot,
        autostart: a.train,
        open: a.open,
        reference: a.reference,
        cursor: a.cursor,
        tab,
        bench_secs: a.bench_ui,
        bench_out: a.bench_out,
        bench_analyses: a.bench_analyses,
        fresh_settings: a.fresh_settings
            || ((a.smoke_frames.is_some() || a.bench_ui.is_some()) && !a.saved_settings),
        autosave_dir: if a.no_autosave {
            None
        } else {
            a.autosave_dir.or_else(crate::app::default_autosave_dir)
        },
    })
}

fn data_source(
    arg: &str,
    size: Option<usize>,
    channels_wanted: Option<usize>,
) -> Result<DataSource> {
    let mut src = DataSource::parse(arg)?;
    // Checkpoints store the source; absolute paths keep `--resume` working from any directory.
    match &mut src {
        DataSource::Idx { images, labels } => {
            *images = std::fs::canonicalize(&*images).unwrap_or(images.clone());
            if let Some(l) = labels {
                *l = std::fs::canonicalize(&*l).unwrap_or(l.clone());
            }
        }
        DataSource::Folder { path, .. } => {
            *path = std::fs::canonicalize(&*path).unwrap_or(path.clone());
        }
        _ => {}
    }
    match &mut src {
        DataSource::Folder {
            size: s, channels, ..
        } => {
            if let Some(z) = size {
                *s = z;
            }
            if let Some(c) = channels_wanted {
                *channels = c;
            }
        }
        DataSource::Shapes { size: s, .. } => {
            if let Some(z) = size {
                *s = z;
            }
        }
        _ => {}
    }
    Ok(src)
}

/// The channels `--rgb` / `--gray` ask for (neither: what the data suggests).
fn channels_flag(rgb: bool, gray: bool) -> Option<usize> {
    match (rgb, gray) {
        (true, _) => Some(3),
        (_, true) => Some(1),
        _ => None,
    }
}

fn train(a: TrainArgs) -> Result<()> {
    let worker = WorkerHandle::spawn(WorkerOptions {
        snapshot_every: None,
        samples: false,
        waker: None,
        // A headless run the user asked for is not a background job.
        low_priority: false,
    })
    .context("cannot start the training thread")?;
    check_writable(&a.out)?;
    let backend: BackendChoice = a.backend.into();
    if let Some(resume) = &a.resume {
        worker.send(Command::Load {
            path: resume.clone(),
            backend,
        })?;
    } else {
        let kind = a.model;
        let mut config = TrainConfig::for_kind(kind);
        config.seed = a.seed;
        config.epochs = a.epochs.unwrap_or(10);
        if let Some(b) = a.batch_size {
            config.batch_size = b;
        }
        if let Some(lr) = a.lr {
            config.learning_rate = lr;
        }
        if let Some(b) = a.beta {
            config.beta = b;
        }
        if let Some(n) = a.kl_warmup {
            config.kl_warmup_steps = n;
        }
        if let Some(n) = a.sample_every {
            config.sample_every = n;
        }
        if let Some(n) = a.log_every {
            config.log_every = n;
        }
        if let Some(b) = a.adam_beta1 {
            config.adam_beta1 = b;
        }
        if let Some(b) = a.adam_beta2 {
            config.adam_beta2 = b;
        }
        config.validate()?;
        let req = TrainRequest {
            kind,
            overrides: ModelOverrides {
                latent_dim: a.latent_dim,
                hidden: a.hidden.clone(),
                ..Default::default()
            },
            data: data_source(&a.data, a.image_size, channels_flag(a.rgb, a.gray))?,
            config,
            backend,
        };
        worker.send(Command::Start(Box::new(req)))?;
    }

    let info = loop {
        match worker.recv_timeout(Duration::from_secs(3600)) {
            Some(Event::Ready(info)) => break info,
            Some(Event::Error(e) | Event::Crashed(e)) => bail!("{e}"),
            Some(_) => {}
            None => bail!("the training thread stopped unexpectedly"),
        }
    };
    let epochs = match (a.resume.is_some(), a.epochs) {
        (true, Some(e)) => {
            worker.send(Command::SetEpochs(e))?;
            e
        }
        _ => info.config.epochs,
    };
    if a.resume.is_some() {
        // The checkpoint's hyperparameters continue unless overridden (marked in the history).
        if let Some(lr) = a.lr {
            worker.send(Command::SetLearningRate(lr))?;
        }
        if let Some(beta) = a.beta {
            worker.send(Command::SetBeta(beta))?;
        }
        if let Some(n) = a.kl_warmup {
            worker.send(Command::SetKlWarmup(n))?;
        }
    }
    if let Some(n) = &info.backend_notice {
        eprintln!("note: {n}");
    }
    report_skipped(
        &info.data_source.describe(),
        &info.data_skipped,
        a.show_skipped,
    );
    if info.train_images < TOO_FEW_TO_LEARN {
        eprintln!(
            "warning: only {} training image(s): too few to learn from ({TOO_FEW_TO_LEARN} or more recommended)",
            info.train_images
        );
    }
    let total_steps = (epochs as u64) * info.batches_per_epoch as u64;
    eprintln!(
        "training {} on {} ({} train / {} test images) with {}; {} steps per epoch",
        info.spec.describe(),
        info.data,
        info.train_images,
        info.test_images,
        info.backend,
        info.batches_per_epoch
    );
    match a.max_steps.map(|m| m.saturating_sub(info.step)) {
        Some(0) => {
            let step = save_and_wait(&worker, &a.out, &mut 0, None)?;
            eprintln!(
                "already at step {step} (--max-steps); saved {}",
                a.out.display()
            );
            return Ok(());
        }
        Some(n) => worker.send(Command::Step(n))?,
        None => worker.send(Command::Train)?,
    }

    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let pb = indicatif::ProgressBar::new(total_steps.max(1));
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  epoch {prefix}  {msg}  [{elapsed_precise} < {eta_precise}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_position(info.step);
        Some(pb)
    } else {
        None
    };
    let history = info.history.clone();
    let mut last_line = Instant::now() - Duration::from_secs(60);
    // Per-epoch saves sent and not answered yet: the final save waits for its own answer,
    // not theirs (the process must not end while a save is being written).
    let mut pending_saves = 0usize;
    loop {
        let Some(ev) = worker.recv_timeout(Duration::from_secs(3600)) else {
            bail!("the training thread stopped unexpectedly");
        };
        match ev {
            Event::Metrics(p) => {
                let msg = format!(
                    "{}  {:.0} img/s",
                    history.format_terms(&p.values, 4),
                    p.images_per_sec
                );
                if let Some(pb) = &bar {
                    pb.set_position(p.step);
                    pb.set_prefix(format!("{:.2}", p.epoch));
                    pb.set_message(msg);
                } else if last_line.elapsed() > Duration::from_secs(5) {
                    eprintln!("step {} epoch {:.2}  {msg}", p.step, p.epoch);
                    last_line = Instant::now();
                }
            }
            Event::TestMetrics(t) => {
                let line = match &t.report {
                    EvalReport::Vae(r) => format!(
                        "epoch {} (step {}): test −ELBO {:.2} nats (recon {:.2}, KL {:.2}), {} active units",
                        t.epoch, t.step, r.neg_elbo, r.recon, r.kl, r.active_units
                    ),
                    EvalReport::Gan(r) => format!(
                        "epoch {} (step {}): test D loss {:.4}, G loss {:.4}, D(x) {:.3}, D(G(z)) {:.3}{}",
                        t.epoch, t.step, r.d_loss, r.g_loss, r.d_real, r.d_fake,
                        r.critic_gap.map(|g| format!(", critic gap {g:.3}")).unwrap_or_default()
                    ),
                };
                match &bar {
                    Some(pb) => pb.println(line),
                    None => eprintln!("{line}"),
                }
                worker.send(Command::Save(a.out.clone()))?;
                pending_saves += 1;
            }
            Event::Saved { .. } => pending_saves = pending_saves.saturating_sub(1),
            // The disk filled up or the folder went away: the last good checkpoint is on
            // disk as it was, training goes on and the next epoch tries again.
            Event::SaveFailed { message, .. } => {
                pending_saves = pending_saves.saturating_sub(1);
                let line =
                    format!("warning: {message}; training goes on, the next epoch tries again");
                match &bar {
                    Some(pb) => pb.println(line),
                    None => eprintln!("{line}"),
                }
            }
            Event::Diverged {
                step,
                restored_step,
                term,
            } => {
                save_and_wait(&worker, &a.out, &mut pending_saves, None)?;
                if let Some(pb) = &bar {
                    pb.abandon();
                }
                bail!(
                    "training diverged at step {step} ({term} is not finite); saved the last good weights (step {restored_step}) to {}; try a lower --lr",
                    a.out.display()
                );
            }
            Event::Paused { step } | Event::Finished { step, .. } => {
                let step = save_and_wait(&worker, &a.out, &mut pending_saves, Some(step))?;
                if let Some(pb) = &bar {
                    pb.finish_and_clear();
                }
                eprintln!("saved {} (step {step})", a.out.display());
                return Ok(());
            }
            Event::Error(e) | Event::Crashed(e) => bail!("{e}"),
            _ => {}
        }
    }
}

/// Ask the worker to save to `path` and wait for the result, after the answers to `pending`
/// earlier saves to `path` (the process must not end while one is being written). When the
/// last of those already saved step `current`, that is the result. When saving fails (a full
/// disk, a vanished folder), the run is not lost: it is saved to a rescue file in the
/// temporary folder, and the error says where.
fn save_and_wait(
    worker: &WorkerHandle,
    path: &Path,
    pending: &mut usize,
    current: Option<u64>,
) -> Result<u64> {
    let mut last = None;
    while *pending > 0 {
        *pending -= 1;
        let answer = save_answer(worker, path)?;
        if let Err(message) = &answer {
            eprintln!("warning: {message}");
        }
        last = Some(answer);
    }
    if let (Some(Ok(saved)), Some(c)) = (&last, current) {
        if *saved == c {
            return Ok(c);
        }
    }
    worker.send(Command::Save(path.to_path_buf()))?;
    let message = match save_answer(worker, path)? {
        Ok(step) => return Ok(step),
        Err(message) => message,
    };
    let rescue = std::env::temp_dir().join(format!(
        "latent-lab-rescue-{}.{}",
        std::process::id(),
        crate::checkpoint::EXTENSION
    ));
    worker.send(Command::Save(rescue.clone()))?;
    match save_answer(worker, &rescue)? {
        Ok(step) => bail!(
            "{message}; the run (step {step}) was saved to {} instead",
            rescue.display()
        ),
        Err(again) => bail!("{message}; saving a rescue copy failed too: {again}"),
    }
}

/// The worker's next answer to a save to `path`: the step saved, or the failure in words.
fn save_answer(worker: &WorkerHandle, path: &Path) -> Result<std::result::Result<u64, String>> {
    loop {
        match worker.recv_timeout(Duration::from_secs(600)) {
            Some(Event::Saved { path: p, step }) if p == path => return Ok(Ok(step)),
            Some(Event::SaveFailed { path: p, message }) if p == path => return Ok(Err(message)),
            Some(Event::Error(e) | Event::Crashed(e)) => bail!("{e}"),
            Some(_) => {}
            None => bail!("the training thread stopped before saving"),
        }
    }
}

/// Refuse an output path that cannot be written before any training time is spent on it:
/// its folder must exist, be a folder, and take a file.
fn check_writable(out: &Path) -> Result<()> {
    let dir = crate::util::folder_of(out);
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        bail!("cannot write {}: {} {what}", out.display(), dir.display());
    }
    let probe = dir.join(format!(".latent-lab-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| {
        format!(
            "cannot write {}: {} is not writable",
            out.display(),
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Skipped files listed by default; `--show-skipped` lists them all.
const SKIPPED_SHOWN: usize = 5;
/// Fewer training images than this get a warning.
const TOO_FEW_TO_LEARN: usize = 64;

/// On stderr: how many files the dataset skipped and why (the first few, or all).
fn report_skipped(description: &str, lines: &[String], show_all: bool) {
    let total = lines.len();
    if total == 0 {
        return;
    }
    eprintln!("warning: {description}: {total} file(s) could not be read and were skipped:");
    let shown = if show_all {
        total
    } else {
        SKIPPED_SHOWN.min(total)
    };
    for l in &lines[..shown] {
        eprintln!("  {l}");
    }
    if total > shown {
        eprintln!(
            "  … and {} more (--show-skipped lists them all)",
            total - shown
        );
    }
}

/// [`report_skipped`] for a loaded dataset.
fn report_dataset(data: &crate::data::Dataset, show_all: bool) {
    report_skipped(&data.source.describe(), &data.skipped_report(), show_all);
}

/// A checkpoint, or a safetensors file imported as one (its metadata saying the model).
fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    Ok(crate::import::open(path)?)
}

fn eval(a: EvalArgs) -> Result<()> {
    let ckpt = load_checkpoint(&a.checkpoint)?;
    let backend = Backend::select(a.backend.into())?;
    backend.device.seed(a.seed);
    let inf = Inference::from_checkpoint(&ckpt, &backend.device)?;
    let source = match &a.data {
        Some(d) => data_source(
            d,
            Some(ckpt.header.model.shape.height),
            Some(ckpt.header.model.shape.channels),
        )?,
        None => ckpt.header.data.clone(),
    };
    let data = source.load()?;
    report_dataset(&data, a.show_skipped);
    let shape = crate::model::ImageShape::new(data.channels, data.height, data.width);
    if shape != ckpt.header.model.shape {
        bail!(
            "{} has {shape} images but the model in {} expects {}",
            source.describe(),
            a.checkpoint.display(),
            ckpt.header.model.shape
        );
    }
    let split = data.split(ckpt.header.train.seed)?;
    let report = crate::train::evaluate(&inf, &data, &split.test, a.iw_samples)?;
    if a.json {
        let mut obj = match serde_json::to_value(&report)? {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        obj.remove("kind");
        obj.insert("step".into(), ckpt.header.step.into());
        obj.insert("epoch".into(), ckpt.header.epoch.into());
        obj.insert("model".into(), ckpt.header.model.kind.name().into());
        obj.insert("dataset".into(), source.describe().into());
        println!("{}", serde_json::Value::Object(obj));
    } else {
        println!(
            "{} at step {} (epoch {}), {}",
            ckpt.header.model.describe(),
            ckpt.header.step,
            ckpt.header.epoch,
            source.describe()
        );
        match report {
            EvalReport::Vae(r) => {
                println!(
                    "negative ELBO  {:.3} nats  (recon {:.3} + KL {:.3})",
                    r.neg_elbo, r.recon, r.kl
                );
                if let Some(nll) = r.iwae_nll {
                    println!("IWAE NLL       {nll:.3} nats  (K = {})", r.iw_samples);
                }
                println!("active units   {} / {}", r.active_units, r.kl_per_dim.len());
                let kl: Vec<String> = r.kl_per_dim.iter().map(|k| format!("{k:.2}")).collect();
                println!("KL per dim     {}", kl.join(" "));
                println!("test images    {}", r.images);
            }
            EvalReport::Gan(r) => {
                println!(
                    "D loss {:.4}  G loss {:.4}  D(x) {:.4}  D(G(z)) {:.4}{}  ({} test images)",
                    r.d_loss,
                    r.g_loss,
                    r.d_real,
                    r.d_fake,
                    r.critic_gap
                        .map(|g| format!("  critic gap {g:.4}"))
                        .unwrap_or_default(),
                    r.images
                );
            }
        }
    }
    Ok(())
}

fn is_dir_target(p: &Path) -> bool {
    p.is_dir() || p.extension().is_none()
}

fn sample(a: SampleArgs) -> Result<()> {
    if a.n == 0 || a.n > 10_000 {
        bail!("--n must be between 1 and 10000");
    }
    let scale = a.scale.clamp(1, 32);
    let ckpt = load_checkpoint(&a.checkpoint)?;
    let cpu = Backend::cpu();
    let inf = Inference::from_checkpoint(&ckpt, &cpu.device)?;
    let classes = Classes::of(&ckpt, &inf, a.class.is_some())?;
    let d = inf.latent_dim();
    let (cols, images) = match (&classes, &a.class) {
        (Some(c), Some(name)) => {
            let k = c.parse(name)?;
            let z = normal_latents(a.n, d, a.seed);
            (grid_cols(a.n), inf.decode_labelled(&z, &vec![k; a.n])?)
        }
        // One row per class, the same latents in every row.
        (Some(c), None) => {
            let cols = a.n.div_ceil(c.count);
            eprintln!("one row per class ({} classes, {cols} each)", c.count);
            let (z, labels) = class_rows(&normal_latents(cols, d, a.seed), cols, c.count);
            (cols, inf.decode_labelled(&z, &labels)?)
        }
        (None, _) => (grid_cols(a.n), inf.decode(&normal_latents(a.n, d, a.seed))?),
    };
    if is_dir_target(&a.out) {
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("cannot create {}", a.out.display()))?;
        for i in 0..images.count() {
            save_png(
                &images.single(i, scale),
                &a.out.join(format!("sample-{i:04}.png")),
            )?;
        }
        eprintln!("wrote {} PNGs to {}", images.count(), a.out.display());
    } else {
        save_png(&images.grid(cols, 2, scale), &a.out)?;
        eprintln!("wrote {}", a.out.display());
    }
    Ok(())
}

fn score(a: ScoreArgs) -> Result<()> {
    if a.n < 100 || a.n > 100_000 {
        bail!("--n must be between 100 and 100000");
    }
    let cpu = Backend::cpu();
    // What is scored: a model's samples (and the classes they were asked for), or a file.
    let (data, split_seed, pixels, labels, what) = match (&a.checkpoint, &a.images) {
        (Some(path), _) => {
            let ckpt = load_checkpoint(path)?;
            let inf = Inference::from_checkpoint(&ckpt, &cpu.device)?;
            let data = ckpt.header.data.load()?;
            let (pixels, labels) = model_samples(&inf, a.n, a.seed, data.image_len())?;
            let what = ScoredThing::Model {
                describe: ckpt.header.model.describe(),
                name: ckpt.header.model.kind.name(),
                step: ckpt.header.step,
            };
            (data, ckpt.header.train.seed, pixels, labels, what)
        }
        (None, Some(path)) => {
            let data = data_source(&a.data, None, None)?.load()?;
            let file = crate::data::idx::read_images_file(path)?;
            let len = file.rows * file.cols * file.channels;
            if len != data.image_len() {
                bail!(
                    "{}: images of {}×{}×{} do not match {} ({} values per image)",
                    path.display(),
                    file.channels,
                    file.rows,
                    file.cols,
                    data.source.describe(),
                    data.image_len()
                );
            }
            let pixels: Vec<f32> = file.pixels.iter().map(|&p| p as f32 / 255.0).collect();
            let what = ScoredThing::File(path.display().to_string());
            (data, 0, pixels, None, what)
        }
        (None, None) => bail!("give --checkpoint or --images"),
    };
    report_dataset(&data, false);
    let split = data.split(split_seed)?;
    let scorer = crate::score::Scorer::train(&data, &split.train, &split.test, 0, &cpu.device)?;
    let mut real = Vec::new();
    let m = split.test.len().min(split.train.len());
    data.gather_f32(&split.train[..m], &mut real);
    let r = scorer.score(&pixels, labels.as_deref(), &real)?;
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        if let Some(o) = v.as_object_mut() {
            match &what {
                ScoredThing::Model { name, step, .. } => {
                    o.insert("model".into(), (*name).into());
                    o.insert("step".into(), (*step).into());
                }
                ScoredThing::File(f) => {
                    o.insert("images".into(), f.as_str().into());
                }
            }
            o.insert("test_images".into(), scorer.test_count().into());
        }
        println!("{v}");
    } else {
        let what = match &what {
            ScoredThing::Model { describe, step, .. } => format!("{describe} at step {step}"),
            ScoredThing::File(f) => f.clone(),
        };
        println!(
            "{what}: {} samples against {} test images",
            r.samples,
            scorer.test_count()
        );
        println!(
            "FID {:.2} (real training images: {:.2})  confidence {:.3}  classes covered {} / {}",
            r.fid, r.real_fid, r.confidence, r.coverage, r.classes
        );
        println!("class histogram {:?}", r.histogram);
        if let Some(acc) = r.class_accuracy {
            println!(
                "samples classified as the class asked for: {:.1} %",
                acc * 100.0
            );
        }
        println!(
            "(classifier: MLP {}-256-{} features, {:.1} % test accuracy)",
            data.image_len(),
            crate::score::FEATURES,
            r.classifier_accuracy * 100.0
        );
    }
    Ok(())
}

/// What `score` scored.
enum ScoredThing {
    Model {
        describe: String,
        name: &'static str,
        step: u64,
    },
    File(String),
}

/// `n` samples of a model from seeded latents, in [0, 1], and for a conditional model the
/// classes asked for (cycling through them).
fn model_samples(
    inf: &Inference,
    n: usize,
    seed: u64,
    image_len: usize,
) -> Result<(Vec<f32>, Option<Vec<u32>>)> {
    let z = normal_latents(n, inf.latent_dim(), seed);
    let labels: Option<Vec<u32>> = inf
        .classes()
        .map(|k| (0..n).map(|i| (i % k.max(1)) as u32).collect());
    let mut pixels = Vec::with_capacity(n * image_len);
    const CHUNK: usize = 500;
    for (i, chunk) in z.chunks(CHUNK * inf.latent_dim()).enumerate() {
        let batch = match &labels {
            Some(l) => inf.decode_labelled(chunk, &l[i * CHUNK..(i * CHUNK + CHUNK).min(n)])?,
            None => inf.decode(chunk)?,
        };
        pixels.extend(batch.pixels);
    }
    Ok((pixels, labels))
}

/// Columns of a square-ish grid of `n` images.
fn grid_cols(n: usize) -> usize {
    (n as f64).sqrt().ceil() as usize
}

/// A conditional model's classes: how many, and their names (from the checkpoint, or from
/// its dataset for files written before the names were stored).
struct Classes {
    count: usize,
    names: Vec<String>,
}

impl Classes {
    /// `None` for an unconditional model; an error if `asked` (a class option was given) of
    /// one.
    fn of(ckpt: &Checkpoint, inf: &Inference, asked: bool) -> Result<Option<Self>> {
        let Some(count) = inf.classes() else {
            if asked {
                bail!(
                    "{} is not a class-conditional model, so it takes no class (conditional: {})",
                    ckpt.header.model.kind,
                    conditional_presets()
                );
            }
            return Ok(None);
        };
        let mut names = ckpt.header.label_names.clone();
        if names.is_empty() && asked {
            names = ckpt
                .header
                .data
                .load()
                .map(|d| d.label_names)
                .unwrap_or_default();
        }
        Ok(Some(Self { count, names }))
    }

    /// The class `arg` names: one of the dataset's class names, or a number below the count.
    fn parse(&self, arg: &str) -> Result<u32> {
        if let Some(i) = self.names.iter().position(|n| n == arg.trim()) {
            if i < self.count {
                return Ok(i as u32);
            }
        }
        match arg.trim().parse::<usize>() {
            Ok(k) if k < self.count => Ok(k as u32),
            _ => {
                let names = if self.names.is_empty() {
                    String::new()
                } else {
                    format!(" or a name ({})", self.names.join(", "))
                };
                bail!(
                    "unknown class '{arg}': give a number from 0 to {}{names}",
                    self.count - 1
                )
            }
        }
    }
}

/// The presets of conditional families (for messages).
fn conditional_presets() -> String {
    let mut names = Vec::new();
    for k in ModelKind::all() {
        let shape = crate::model::ImageShape::new(1, 28, 28);
        let o = ModelOverrides {
            classes: Some(2),
            ..Default::default()
        };
        let conditional =
            crate::model::ModelSpec::new(k, shape, &o).is_ok_and(|s| s.classes().is_some());
        if conditional {
            names.push(k.name());
        }
    }
    names.join(", ")
}

fn interpolate(a: InterpolateArgs) -> Result<()> {
    if a.steps < 2 || a.steps > 1000 {
        bail!("--steps must be between 2 and 1000");
    }
    let ext = a
        .out
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if ext != "png" && ext != "gif" {
        bail!("--out must end in .png or .gif: {}", a.out.display());
    }
    let scale = a.scale.clamp(1, 32);
    let ckpt = load_checkpoint(&a.checkpoint)?;
    let cpu = Backend::cpu();
    let inf = Inference::from_checkpoint(&ckpt, &cpu.device)?;
    let d = inf.latent_dim();
    let classes = Classes::of(&ckpt, &inf, a.class.is_some() || a.from_class.is_some())?;
    // (fixed class, class walk) of a conditional model.
    let (fixed, walk) = match &classes {
        Some(c) => match (&a.class, &a.from_class, &a.to_class) {
            (Some(k), _, _) => (Some(c.parse(k)?), None),
            (None, Some(x), Some(y)) => (None, Some((c.parse(x)?, c.parse(y)?))),
            _ => bail!(
                "{} is class-conditional: give --class K (the class held fixed) or \
                 --from-class A --to-class B (one latent, the class walking from A to B)",
                ckpt.header.model.kind
            ),
        },
        None => (None, None),
    };
    let (za, zb) = if ckpt.header.model.has_encoder() {
        let data = ckpt.header.data.load()?;
        report_dataset(&data, false);
        let split = data.split(ckpt.header.train.seed)?;
        let (i, j) = (a.from_index.unwrap_or(0), a.to_index.unwrap_or(1));
        let n = split.test.len();
        if i >= n || j >= n {
            bail!("--from-index/--to-index must be below {n} (the test split size)");
        }
        let idx = [split.test[i], split.test[j]];
        let mut px = Vec::new();
        data.gather_f32(&idx, &mut px);
        let (mu, _) = match (&classes, &data.labels) {
            // A conditional VAE encodes each image with its own class: the latent keeps
            // the style.
            (Some(_), Some(l)) => {
                let own: Vec<u32> = idx.iter().map(|&i| l[i]).collect();
                inf.encode_labelled(&px, &own)?
            }
            (Some(_), None) => bail!("the run's dataset has no labels to encode its images with"),
            (None, _) => inf.encode(&px)?,
        };
        (mu[..d].to_vec(), mu[d..].to_vec())
    } else {
        if a.from_index.is_some() || a.to_index.is_some() {
            bail!("--from-index/--to-index need a VAE (a GAN cannot encode images); GANs interpolate between random latents from --seed");
        }
        let z = normal_latents(2, d, a.seed);
        (z[..d].to_vec(), z[d..].to_vec())
    };
    let mut latents = Vec::with_capacity(a.steps * d);
    for s in 0..a.steps {
        let t = s as f32 / (a.steps - 1) as f32;
        latents.extend(match (walk, a.mode) {
            // Walking the class: the same latent all along.
            (Some(_), _) => za.clone(),
            (None, InterpMode::Lerp) => lerp(&za, &zb, t),
            (None, InterpMode::Slerp) => slerp(&za, &zb, t),
        });
    }
    let images: ImageBatch = match (fixed, walk, &classes) {
        (Some(k), _, _) => inf.decode_labelled(&latents, &vec![k; a.steps])?,
        (None, Some((x, y)), Some(c)) => {
            inf.decode_conditioned(&latents, &class_walk(x, y, a.steps, c.count))?
        }
        _ => inf.decode(&latents)?,
    };
    if ext == "gif" {
        let mut frames: Vec<_> = (0..images.count())
            .map(|i| images.single(i, scale.max(4)))
            .collect();
        // Play forwards then backwards so the loop is seamless.
        let back: Vec<_> = frames
            .iter()
            .rev()
            .skip(1)
            .take(frames.len().saturating_sub(2))
            .cloned()
            .collect();
        frames.extend(back);
        save_gif(&frames, 80, &a.out)?;
    } else {
        save_png(&images.grid(a.steps, 2, scale), &a.out)?;
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

fn import(a: ImportArgs) -> Result<()> {
    let channels = channels_flag(a.rgb, a.gray);
    let opts = crate::import::ImportOptions {
        model: a.model,
        latent_dim: a.latent_dim,
        hidden: a.hidden,
        image_size: a.image_size,
        channels,
        classes: a.classes,
        data: a
            .data
            .as_deref()
            .map(|d| data_source(d, a.image_size, channels))
            .transpose()?,
    };
    let ckpt = crate::import::import(&a.safetensors, &opts)?;
    let out = a
        .out
        .unwrap_or_else(|| crate::import::default_out(&a.safetensors));
    ckpt.save(&out)?;
    let h = &ckpt.header;
    eprintln!(
        "imported {} ({} images, dataset {}) to {}",
        h.model.describe(),
        h.model.shape,
        h.data_description,
        out.display()
    );
    Ok(())
}

fn info(a: InfoArgs) -> Result<()> {
    let ckpt = load_checkpoint(&a.checkpoint)?;
    let h = &ckpt.header;
    if a.json {
        let v = serde_json::json!({
            "model": h.model.kind.name(),
            "architecture": h.model,
            "dataset": h.data_description,
            "data_source": h.data,
            "train": h.train,
            "step": h.step,
            "epoch": h.epoch,
            "batch_in_epoch": h.batch_in_epoch,
            "metric_points": h.history.points.len(),
            "sample_history": ckpt.timeline().map(|t| t.len()).unwrap_or(0),
            "test": h.history.test.last(),
            "app_version": h.app_version,
        });
        println!("{v}");
        return Ok(());
    }
    let size = std::fs::metadata(&a.checkpoint)
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "checkpoint   {} ({:.1} MB, written by latent-lab {})",
        a.checkpoint.display(),
        size as f64 / 1e6,
        h.app_version
    );
    println!("model        {}", h.model.describe());
    println!("images       {}", h.model.shape);
    println!("dataset      {}", h.data_description);
    println!(
        "position     step {}, epoch {} of {} (+{} batches)",
        h.step, h.epoch, h.train.epochs, h.batch_in_epoch
    );
    println!(
        "optimiser    Adam lr {:.2e}, betas ({}, {}), batch {}, β {}, seed {}",
        h.train.learning_rate,
        h.train.adam_beta1,
        h.train.adam_beta2,
        h.train.batch_size,
        h.train.beta,
        h.train.seed
    );
    if let Some(p) = h.history.points.last() {
        println!("last train   {}", h.history.format_terms(&p.values, 4));
    }
    if let Some(t) = h.history.test.last() {
        println!("last test    {:.4} at epoch {}", t.value, t.epoch);
    }
    println!(
        "history      {} points, {} test evaluations, {} markers",
        h.history.points.len(),
        h.history.test.len(),
        h.history.markers.len()
    );
    let tl = ckpt.timeline()?;
    if let (Some(a), Some(b)) = (tl.frames().first(), tl.frames().last()) {
        let div: Vec<f32> = tl.frames().iter().map(|f| f.diversity).collect();
        let peak = div.iter().copied().fold(0.0f32, f32::max);
        println!(
            "samples      {} grids, steps {}–{} (1 in {} kept, {:.1} MB); diversity {:.3} now, peak {peak:.3}",
            tl.len(),
            a.step,
            b.step,
            tl.stride(),
            tl.bytes() as f64 / 1e6,
            b.diversity,
        );
        let cov: Vec<f32> = tl.frames().iter().filter_map(|f| f.coverage).collect();
        if let Some(now) = cov.last() {
            let peak = cov.iter().copied().fold(0.0f32, f32::max);
            println!("             label coverage {now:.3} now, peak {peak:.3}");
        }
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    use crate::bench::{BenchOptions, BenchReport};
    if let Some(n) = a.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        // burn's CPU backend runs on rayon's global pool; size it before any tensor exists.
        crate::backend::init_cpu_pool(Some(n), true)
            .map_err(|e| anyhow::anyhow!("cannot size the CPU thread pool: {e}"))?;
    }
    if a.seconds.is_nan() || a.seconds <= 0.0 || a.batch_size == 0 || a.log_every == 0 {
        bail!("--seconds, --batch-size and --log-every must be positive");
    }
    let models: Vec<ModelKind> = if a.model.is_empty() {
        // The first preset of every family.
        let mut seen = Vec::new();
        ModelKind::all()
            .into_iter()
            .filter(|k| {
                let new = !seen.contains(&k.family().id());
                seen.push(k.family().id());
                new
            })
            .collect()
    } else {
        a.model.clone()
    };
    let mut backends = Vec::new();
    for b in &a.backend {
        match b {
            BackendArg::Cpu => backends.push(BackendChoice::Cpu),
            BackendArg::Wgpu => backends.push(BackendChoice::Wgpu),
            BackendArg::Auto => {
                backends.push(BackendChoice::Cpu);
                // `auto` only picks wgpu for a hardware adapter.
                if Backend::select(BackendChoice::Auto).is_ok_and(|b| b.is_gpu()) {
                    backends.push(BackendChoice::Wgpu);
                }
            }
        }
    }
    backends.dedup();
    let opts = BenchOptions {
        models,
        backends,
        batch_size: a.batch_size,
        log_every: a.log_every,
        warmup_steps: a.warmup_steps,
        seconds: a.seconds,
        decode: !a.no_decode,
        decodes: a.decodes.max(1),
        soak_seconds: a.soak_seconds.max(0.0),
        data: match &a.data {
            Some(d) => Some(data_source(d, a.image_size, None)?),
            None => None,
        },
    };
    let report: BenchReport = crate::bench::run(&opts, |line| eprintln!("{line}"))?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "Latent Lab {} · {} · {} CPU threads",
            report.version, report.cpu, report.threads
        );
        println!(
            "{:<10} {:<32} {:>12} {:>14}",
            "model", "backend", "images/s", "first step ms"
        );
        for r in &report.train {
            println!(
                "{:<10} {:<32} {:>12.0} {:>14.0}",
                r.model, r.backend, r.images_per_s, r.first_step_ms
            );
        }
        if let Some(d) = &report.decode {
            println!(
                "decode one 28x28 image while training: p50 {:.3} ms, p99 {:.3} ms; 16x16 grid {:.2} ms",
                d.p50_ms, d.p99_ms, d.grid16_ms
            );
        }
        if let Some(m) = report.peak_rss_mb {
            println!("peak RSS {m:.0} MB");
        }
    }
    Ok(())
}
