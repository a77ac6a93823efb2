use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic is a bug; tell the user in one line instead of a trace.
    // Worker threads catch their own panics and report them as events.
    std::panic::set_hook(Box::new(|info| {
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
