use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic is a bug; tell the user in one line instead of a trace.
    // Worker threads catch their own panics and report them as events.
    std::panic::set_hook(Box::new(|info| {
        if std::thread::current().name() == Some("main") {
            eprintln!("error: internal error: {info}");
        }
    }));
    match std::panic::catch_unwind(|| latent_lab::cli::main_with_args(std::env::args_os())) {
        Ok(code) => code,
        Err(_) => ExitCode::from(1),
    }
}
