use std::process::ExitCode;

fn main() -> ExitCode {
    // burn materialises loaded optimiser state on `Device::default()`, which with the wgpu
    // feature is the lazy GPU device: it panics on a machine without a GPU and spins up a
    // software GPU where only lavapipe exists. The state moves to the training device at the
    // first step anyway, so load it on the CPU. Set before any thread exists.
    if std::env::var_os("BURN_DEVICE").is_none() {
        std::env::set_var("BURN_DEVICE", "flex");
    }
    latent_lab::util::keep_large_blocks_out_of_the_heap();
    // A panic is a bug; tell the user in one line instead of a trace.
    // Worker threads catch their own panics and report them as events.
    std::panic::set_hook(Box::new(|info| {
        // Panics that the library catches and reports as errors (malformed third-party
        // records) are not news.
        if latent_lab::checkpoint::panic_is_contained() {
            return;
        }
        if std::thread::current().name() == Some("main") {
            // One line, whatever the panic says (burn's tensor errors span many lines).
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let line = msg
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with("==="))
                .unwrap_or("unknown");
            eprintln!("error: internal error: {line}");
        }
    }));
    match std::panic::catch_unwind(|| latent_lab::cli::main_with_args(std::env::args_os())) {
        Ok(code) => code,
        Err(_) => ExitCode::from(1),
    }
}
