use std::process::ExitCode;

use clap::Parser;
use tlschat::report::Report;
use tracing_subscriber::EnvFilter;

/// Each argon2 check allocates ~19 MiB. glibc raises its mmap threshold after the first such
/// block is freed and from then on keeps the memory in a per-thread arena: one idle server
/// would hold 19 MiB per hashing thread forever. A fixed threshold (which also turns off the
/// dynamic adjustment) makes such blocks mmap'd and returned to the OS when freed; fewer
/// arenas keep small per-connection allocations packed.
fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other thread
    // exists, with valid parameter names and values.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Whether JSON output was asked for, read from the raw arguments and environment: usage
/// errors happen before clap has parsed the option.
fn json_requested() -> bool {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--log-format=json"
            || (arg == "--log-format" && args.next().as_deref() == Some("json"))
        {
            return true;
        }
    }
    std::env::var("TLSCHAT_LOG_FORMAT").as_deref() == Ok("json")
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = match tlschat::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let asked = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            if json_requested() && !asked {
                let text = e.render().to_string();
                let message = text
                    .lines()
                    .next()
                    .unwrap_or("usage error")
                    .trim_start_matches("error: ");
                Report::new(true).error(message);
                return ExitCode::from(2);
            }
            e.exit();
        }
    };
    let report = Report::new(cli.log_format() == tlschat::cli::LogFormat::Json);
    if report.is_json() {
        // A panic message is one more line on stderr: keep it JSON as well.
        std::panic::set_hook(Box::new(|info| {
            eprintln!(
                "{}",
                tlschat::report::event("ERROR", &format!("panic: {info}"), &[])
            );
        }));
    }
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("tlschat=info"));
    // Text output escapes control characters in logged values (tracing-subscriber >= 0.3.20),
    // JSON escapes them by construction; user-supplied names are logged with `?` as well.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format() {
        tlschat::cli::LogFormat::Text => logs.init(),
        tlschat::cli::LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            report.error(&format!("starting the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(tlschat::cli::run(cli));
    // Do not wait on a password check still running for a client that is already gone.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report.error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
