//! Choosing the compute device: wgpu (Vulkan / Metal / DX12) or burn's `flex` CPU backend.
//!
//! The wgpu runtime is initialised at most once per process through the fallible
//! initialiser (the lazy `Device::wgpu` panics when no adapter exists) and the
//! result, success or failure, is cached.

use std::sync::OnceLock;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// What the user asked for (`--backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// wgpu when an adapter exists, else the CPU.
    #[default]
    Auto,
    Wgpu,
    Cpu,
}

impl BackendChoice {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "wgpu" => Some(Self::Wgpu),
            "cpu" => Some(Self::Cpu),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("no usable GPU adapter for wgpu: {0}")]
    NoAdapter(String),
}

/// The adapter wgpu picked, in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterDesc {
    pub name: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` (software, e.g. lavapipe) or `Other`.
    pub device_type: String,
    /// `Vulkan`, `Metal`, `Dx12`, `Gl`, …
    pub api: String,
}

/// A ready device plus what to tell the user about it.
#[derive(Clone, Debug)]
pub struct Backend {
    pub device: Device,
    pub adapter: Option<AdapterDesc>,
    /// Set when `auto` fell back to the CPU, saying why.
    pub notice: Option<String>,
}

impl Backend {
    pub fn cpu() -> Self {
        Self {
            device: Device::flex(),
            adapter: None,
            notice: None,
        }
    }

    pub fn is_gpu(&self) -> bool {
        self.adapter.is_some()
    }

    /// E.g. `wgpu · Vulkan · NVIDIA GeForce RTX 4090 (DiscreteGpu)` or `CPU (flex)`.
    pub fn describe(&self) -> String {
        match &self.adapter {
            Some(a) => format!("wgpu · {} · {} ({})", a.api, a.name, a.device_type),
            None => "CPU (flex)".to_string(),
        }
    }

    /// Pick a device according to `choice`.
    pub fn select(choice: BackendChoice) -> Result<Self, BackendError> {
        match choice {
            BackendChoice::Cpu => Ok(Self::cpu()),
            BackendChoice::Wgpu => {
                let (device, adapter) = wgpu_device().map_err(BackendError::NoAdapter)?;
                Ok(Self {
                    device,
                    adapter: Some(adapter),
                    notice: None,
                })
            }
            BackendChoice::Auto => match wgpu_device() {
                // A software rasteriser (lavapipe, WARP, SwiftShader) is slower than burn's
                // own CPU backend; `auto` means "a real GPU if there is one".
                Ok((_, adapter)) if adapter.device_type == "Cpu" => Ok(Self {
                    notice: Some(format!(
                        "only a software GPU adapter ({}) is available; training on the CPU backend, which is faster",
                        adapter.name
                    )),
                    ..Self::cpu()
                }),
                Ok((device, adapter)) => Ok(Self {
                    device,
                    adapter: Some(adapter),
                    notice: None,
                }),
                Err(e) => Ok(Self {
                    notice: Some(format!("no GPU adapter ({e}); training on the CPU")),
                    ..Self::cpu()
                }),
            },
        }
    }
}

static WGPU: OnceLock<Result<(Device, AdapterDesc), String>> = OnceLock::new();

fn wgpu_device() -> Result<(Device, AdapterDesc), String> {
    WGPU.get_or_init(|| {
        // Adapter probing may panic inside third-party code on broken drivers; a missing
        // GPU must never take the app down, so treat a panic as "no adapter".
        let res = std::panic::catch_unwind(|| Device::wgpu_options().init_with_setup());
        match res {
            Ok(Ok((device, setup))) => {
                let info = setup.adapter.get_info();
                let adapter = AdapterDesc {
                    name: info.name.clone(),
                    device_type: format!("{:?}", info.device_type),
                    api: format!("{:?}", info.backend),
                };
                Ok((device, adapter))
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the wgpu runtime panicked while probing adapters".to_string()),
        }
    })
    .clone()
}

/// Nice value of the training threads: the UI, the decoder and the rest of the desktop win
/// the CPU whenever they want it; with nothing else to do, training still gets all of it.
pub const TRAINING_NICE: i32 = 10;

/// Lower the calling thread's CPU priority to [`TRAINING_NICE`] (Linux, where priorities are
/// per thread; elsewhere a no-op). Lowering needs no privilege.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with `who = 0` only changes the calling thread's nice value.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, TRAINING_NICE);
    }
}

/// Build rayon's global pool, on which burn's CPU backend runs its kernels: `threads`
/// (default: one per core), at training priority when `low_priority` (the app; the bench,
/// which measures the app's decode latency). Call once, before any tensor exists; a pool
/// that already exists is kept (the error says so).
pub fn init_cpu_pool(threads: Option<usize>, low_priority: bool) -> Result<(), String> {
    cpu_pool(threads, low_priority)
        .build_global()
        .map_err(|e| e.to_string())
}

fn cpu_pool(threads: Option<usize>, low_priority: bool) -> rayon::ThreadPoolBuilder {
    let mut b = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("latent-lab-cpu-{i}"));
    if low_priority {
        b = b.start_handler(|_| lower_thread_priority());
    }
    if let Some(n) = threads {
        b = b.num_threads(n);
    }
    b
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice() -> i32 {
        // SAFETY: getpriority with `who = 0` reads the calling thread's nice value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn only_the_apps_pool_trains_at_low_priority() {
        let here = nice();
        let on = |low: bool| {
            let pool = cpu_pool(Some(1), low).build().unwrap();
            pool.install(nice)
        };
        assert_eq!(
            on(false),
            here,
            "a command-line run keeps the priority it was given"
        );
        if here <= TRAINING_NICE {
            assert_eq!(on(true), TRAINING_NICE);
        }
    }
}
