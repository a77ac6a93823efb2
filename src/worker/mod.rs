//! The training worker: a thread that owns the device, the model and the optimisers.
//!
//! Commands go in and events come out over bounded channels, as plain data (the one
//! exception is [`Event::Snapshot`], an opaque frozen CPU copy of the model for a
//! decoder thread). The UI and the CLI drive training only through this API.

pub mod decoder;
mod messages;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use burn::tensor::Device;

pub use messages::{Command, Event, Fault, RunInfo, TrainRequest, PREVIEW_IMAGES};

use crate::backend::Backend;
use crate::model::ModelSpec;
use crate::train::{Session, StepOutcome, TrainError};

/// Called after events are sent (e.g. `egui::Context::request_repaint`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Worker behaviour that is not part of a run.
#[derive(Clone)]
pub struct WorkerOptions {
    /// Send [`Event::Snapshot`] (a CPU copy for live decoding) every this many steps.
    pub snapshot_every: Option<u64>,
    /// Send sample grids and reconstructions (`TrainConfig::sample_every`).
    pub samples: bool,
    pub waker: Option<Waker>,
    /// Train at [`crate::backend::TRAINING_NICE`] so that the UI and the decoder win the CPU
    /// (the app); a headless `train` the user asked for runs at normal priority.
    pub low_priority: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            snapshot_every: Some(25),
            samples: true,
            waker: None,
            low_priority: true,
        }
    }
}

/// Handle to a running worker. Dropping it shuts the worker down.
pub struct WorkerHandle {
    /// `None` only while dropping.
    commands: Option<SyncSender<Command>>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

const COMMAND_CAPACITY: usize = 64;
const EVENT_CAPACITY: usize = 1024;

impl WorkerHandle {
    pub fn spawn(options: WorkerOptions) -> std::io::Result<Self> {
        let (cmd_tx, cmd_rx) = mpsc::sync_channel(COMMAND_CAPACITY);
        let (ev_tx, ev_rx) = mpsc::sync_channel(EVENT_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("latent-lab-trainer".into())
            .spawn(move || {
                if options.low_priority {
                    crate::backend::lower_thread_priority();
                }
                Worker {
                    commands: cmd_rx,
                    events: ev_tx,
                    options,
                    session: None,
                    running: false,
                    steps_left: None,
                    snapshot_step: None,
                    fault: None,
                }
                .run()
            })?;
        Ok(Self {
            commands: Some(cmd_tx),
            events: ev_rx,
            thread: Some(thread),
        })
    }

    /// Send a command; fails only if the worker has exited.
    pub fn send(&self, cmd: Command) -> Result<(), TrainError> {
        self.commands
            .as_ref()
            .ok_or_else(|| TrainError::Invalid("the training worker has stopped".into()))?
            .send(cmd)
            .map_err(|_| TrainError::Invalid("the training worker has stopped".into()))
    }

    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Wait up to `timeout` for an event; `None` on timeout or when the worker is gone.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        match self.events.recv_timeout(timeout) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// True once the worker thread has exited.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        // Disconnecting the command channel stops the worker after its current step,
        // even when the queue is full.
        if let Some(c) = self.commands.take() {
            let _ = c.try_send(Command::Shutdown);
        }
        if let Some(t) = self.thread.take() {
            // Keep draining so a worker blocked on a full event queue can finish.
            while !t.is_finished() {
                while self.events.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = t.join();
        }
    }
}

struct Worker {
    commands: Receiver<Command>,
    events: SyncSender<Event>,
    options: WorkerOptions,
    session: Option<Session>,
    running: bool,
    /// Steps still to run for `Command::Step`.
    steps_left: Option<u64>,
    /// The step of the weights last sent as [`Event::Snapshot`].
    snapshot_step: Option<u64>,
    /// A failure staged by `Command::InjectFault` for the next step.
    fault: Option<Fault>,
}

/// What the loop should do after handling a command.
enum Flow {
    Continue,
    Exit,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let full = if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    };
    // burn's tensor errors span many lines; the first non-decorative one says what failed.
    full.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("==="))
        .unwrap_or("unknown panic")
        .to_string()
}

impl Worker {
    fn run(mut self) {
        loop {
            let active = self.running || self.steps_left.is_some();
            let cmd = if active {
                match self.commands.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return,
                }
            } else {
                match self.commands.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return,
                }
            };
            if let Some(cmd) = cmd {
                match self.guarded(|w| w.handle(cmd)) {
                    Some(Flow::Exit) => return,
                    Some(Flow::Continue) | None => continue,
                }
            }
            if self.guarded(|w| w.train_one()).is_none() {
                continue;
            }
        }
    }

    /// Run `f`, turning a panic (a bug, or a backend failure burn reports by panicking)
    /// into an error event. The session may be inconsistent after a panic, so it is dropped.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(v) => Some(v),
            Err(p) => {
                self.session = None;
                self.running = false;
                self.steps_left = None;
                self.emit(Event::Crashed(format!(
                    "training stopped: internal error in the training thread ({}); load a checkpoint or start again",
                    panic_message(p.as_ref())
                )));
                None
            }
        }
    }

    /// Send an event, blocking when the queue is full (back-pressure).
    fn emit(&self, ev: Event) {
        let _ = self.events.send(ev);
        if let Some(w) = &self.options.waker {
            w();
        }
    }

    /// Send an event that may be dropped when the consumer is behind (images, snapshots).
    fn offer(&self, ev: Event) {
        match self.events.try_send(ev) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
        if let Some(w) = &self.options.waker {
            w();
        }
    }

    fn fail(&mut self, e: TrainError) {
        self.running = false;
        self.steps_left = None;
        let msg = match e {
            TrainError::Device(_) => format!(
                "training stopped: {e}. Try saving the run; if that fails too, load the last checkpoint or autosave (on the CPU backend if the GPU keeps failing)"
            ),
            e => e.to_string(),
        };
        self.emit(Event::Error(msg));
    }

    fn handle(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Start(req) => match self.start(*req) {
                Ok(()) => {}
                Err(e) => self.fail(e),
            },
            Command::Load { path, backend } => match self.load(path, backend) {
                Ok(()) => {}
                Err(e) => self.fail(e),
            },
            Command::Train => {
                if let Some(s) = &self.session {
                    if s.is_done() {
                        self.emit(Event::Finished {
                            step: s.step_count(),
                            epoch: s.epoch(),
                        });
                    } else {
                        self.running = true;
                        self.emit(Event::Running {
                            step: s.step_count(),
                        });
                    }
                } else {
                    self.fail(TrainError::Invalid(
                        "nothing to train: start or load a run first".into(),
                    ));
                }
            }
            Command::Pause => {
                self.running = false;
                self.steps_left = None;
                self.flush_pending();
                self.refresh_snapshot();
                if let Some(s) = &self.session {
                    self.emit(Event::Paused {
                        step: s.step_count(),
                    });
                }
            }
            Command::Step(n) => {
                if self.session.is_some() {
                    self.running = false;
                    self.steps_left = Some(n.max(1));
                }
            }
            Command::Stop => {
                self.running = false;
                self.steps_left = None;
                if let Some(s) = self.session.take() {
                    self.emit(Event::Stopped {
                        step: s.step_count(),
                    });
                }
            }
            Command::SetLearningRate(lr) => {
                self.change_config(|s| s.set_learning_rate(lr));
            }
            Command::SetBeta(beta) => {
                self.change_config(|s| s.set_beta(beta));
            }
            Command::SetKlWarmup(steps) => {
                self.change_config(|s| s.set_kl_warmup(steps));
            }
            Command::SetDirections(v) => {
                if let Err(e) = self.with_session(|s| s.set_directions(v)) {
                    self.emit(Event::Error(e.to_string()));
                }
            }
            Command::SetEpochs(n) => {
                self.change_config(|s| {
                    s.set_epochs(n);
                    Ok(())
                });
            }
            Command::Save(path) => {
                self.flush_pending();
                // The saved sample history ends at the saved step (a no-op at a recorded
                // step; a failed decode is reported and costs only that frame).
                self.send_images();
                let r = self.with_session(|s| {
                    let ckpt = s.checkpoint()?;
                    ckpt.save(&path)?;
                    Ok(s.step_count())
                });
                match r {
                    Ok(step) => self.emit(Event::Saved { path, step }),
                    Err(e) => self.emit(Event::SaveFailed {
                        path,
                        message: format!("saving failed, nothing was written: {e}"),
                    }),
                }
            }
            Command::Evaluate => match self.with_session(|s| s.evaluate()) {
                Ok(p) => self.emit(Event::TestMetrics(p)),
                Err(e) => self.emit(Event::Error(e.to_string())),
            },
            Command::InjectFault(f) => self.fault = Some(f),
            Command::Shutdown => return Flow::Exit,
        }
        Flow::Continue
    }

    /// Check the losses of steps not logged yet; report a divergence found there.
    fn flush_pending(&mut self) {
        match self.with_session(|s| s.flush()) {
            Ok(Some(StepOutcome::Ran { point: Some(p), .. })) => self.emit(Event::Metrics(p)),
            Ok(Some(StepOutcome::Diverged {
                step,
                restored_step,
                term,
            })) => {
                self.running = false;
                self.steps_left = None;
                self.emit(Event::Diverged {
                    step,
                    restored_step,
                    term,
                });
            }
            Ok(_) => {}
            Err(e) => self.emit(Event::Error(e.to_string())),
        }
    }

    /// Apply a hyperparameter change and report the new configuration.
    fn change_config(&mut self, f: impl FnOnce(&mut Session) -> Result<(), TrainError>) {
        match self.with_session(|s| f(s).map(|()| s.config().clone())) {
            Ok(c) => self.emit(Event::ConfigChanged(c)),
            Err(e) => self.emit(Event::Error(e.to_string())),
        }
    }

    fn with_session<T>(
        &mut self,
        f: impl FnOnce(&mut Session) -> Result<T, TrainError>,
    ) -> Result<T, TrainError> {
        match &mut self.session {
            Some(s) => f(s),
            None => Err(TrainError::Invalid("no model loaded".into())),
        }
    }

    fn start(&mut self, req: TrainRequest) -> Result<(), TrainError> {
        self.running = false;
        self.steps_left = None;
        let backend =
            Backend::select(req.backend).map_err(|e| TrainError::Device(e.to_string()))?;
        let data = Arc::new(req.data.load()?);
        let shape = crate::model::ImageShape::new(data.channels, data.height, data.width);
        let overrides = crate::model::ModelOverrides {
            classes: data.classes(),
            ..req.overrides.clone()
        };
        let spec = ModelSpec::new(req.kind, shape, &overrides)?;
        let session = Session::new(spec, req.config, data, backend)?;
        self.ready(session);
        Ok(())
    }

    fn load(
        &mut self,
        path: PathBuf,
        backend: crate::backend::BackendChoice,
    ) -> Result<(), TrainError> {
        let ckpt = crate::import::open(&path)?;
        let backend = Backend::select(backend).map_err(|e| TrainError::Device(e.to_string()))?;
        let data = ckpt.header.data.load().map_err(|e| match &e {
            crate::data::DataError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                TrainError::Invalid(format!(
                    "{}: the run's dataset cannot be loaded (moved or deleted?): {e}",
                    path.display()
                ))
            }
            _ => TrainError::Data(e),
        })?;
        let session = Session::from_checkpoint(&ckpt, Arc::new(data), backend)?;
        self.running = false;
        self.steps_left = None;
        self.ready(session);
        Ok(())
    }

    fn ready(&mut self, session: Session) {
        let data = session.data();
        let (test_preview, labels) = session.first_test_images(PREVIEW_IMAGES);
        let info = RunInfo {
            spec: session.spec().clone(),
            config: session.config().clone(),
            data: data.describe(),
            data_source: data.source.clone(),
            data_skipped: data.skipped_report(),
            label_names: data.label_names.clone(),
            backend: session.describe_backend(),
            backend_notice: session.backend().notice.clone(),
            train_images: session.split().train.len(),
            test_images: session.split().test.len(),
            batches_per_epoch: session.batches_per_epoch(),
            step: session.step_count(),
            epoch: session.epoch(),
            history: session.history().clone(),
            test_preview,
            test_preview_labels: labels.unwrap_or_default(),
            directions: session.directions().to_vec(),
            timeline: session.timeline().clone(),
        };
        self.session = Some(session);
        self.emit(Event::Ready(Box::new(info)));
        self.send_images();
        self.send_snapshot();
    }

    /// Record the sample grid (and reconstructions) in the run's timeline — also on the
    /// command line, so that a headless run has its history too — and send it to the UI.
    fn send_images(&mut self) {
        let Some(s) = &mut self.session else { return };
        let step = s.step_count();
        match s.record_images() {
            Ok((images, recon, measures)) if self.options.samples => self.offer(Event::Samples {
                step,
                images,
                recon,
                measures,
            }),
            Ok(_) => {}
            Err(e) => self.emit(Event::Error(e.to_string())),
        }
    }

    fn send_snapshot(&mut self) {
        if self.options.snapshot_every.is_none() {
            return;
        }
        if let Some(s) = &self.session {
            let snap = s.inference(&Device::flex()).with_fast_decode();
            self.snapshot_step = Some(s.step_count());
            self.offer(Event::Snapshot(Arc::new(snap)));
        }
    }

    /// Where training stops (pause, a finished `Step(n)`, the end of the run), the views get
    /// the weights it stopped with, not those of the last periodic snapshot.
    fn refresh_snapshot(&mut self) {
        let step = self.session.as_ref().map(Session::step_count);
        if step.is_some() && step != self.snapshot_step {
            self.send_snapshot();
        }
    }

    fn train_one(&mut self) {
        let Some(session) = &mut self.session else {
            self.running = false;
            self.steps_left = None;
            return;
        };
        if session.is_done() {
            self.running = false;
            self.steps_left = None;
            let (step, epoch) = (session.step_count(), session.epoch());
            // The last weights belong in the sample history (a no-op at a recorded step).
            self.send_images();
            self.refresh_snapshot();
            self.emit(Event::Finished { step, epoch });
            return;
        }
        let outcome = match self.fault.take() {
            None => session.step(),
            Some(Fault::Panic) => panic!("injected fault: panic inside a training step"),
            Some(Fault::DeviceLost) => Err(TrainError::Device(
                "the GPU device was lost (injected fault)".into(),
            )),
        };
        let step = session.step_count();
        let sample_every = session.config().sample_every;
        match outcome {
            Err(e) => {
                self.fail(e);
                return;
            }
            Ok(StepOutcome::Diverged {
                step: bad,
                restored_step,
                term,
            }) => {
                self.running = false;
                self.steps_left = None;
                self.emit(Event::Diverged {
                    step: bad,
                    restored_step,
                    term,
                });
                self.send_images();
                self.send_snapshot();
                return;
            }
            Ok(StepOutcome::Ran { point, epoch_done }) => {
                if let Some(p) = point {
                    self.emit(Event::Metrics(p));
                }
                if epoch_done {
                    let session = self.session.as_mut().expect("session present");
                    match session.evaluate() {
                        Ok(p) => self.emit(Event::TestMetrics(p)),
                        Err(e) => self.emit(Event::Error(e.to_string())),
                    }
                }
            }
        }
        if step % sample_every == 0 {
            self.send_images();
        }
        if let Some(n) = self.options.snapshot_every {
            if step % n == 0 {
                self.send_snapshot();
            }
        }
        if let Some(left) = self.steps_left {
            if left <= 1 {
                self.steps_left = None;
                self.flush_pending();
                self.refresh_snapshot();
                let step = self.session.as_ref().map_or(step, |s| s.step_count());
                self.emit(Event::Paused { step });
            } else {
                self.steps_left = Some(left - 1);
            }
        }
    }
}
