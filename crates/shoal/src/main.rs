//! `shoal`: one binary for every role (controller, agent, data node) and every operator tool.

mod allocator;
mod cli;
mod cmd;
mod output;
mod target;

use clap::Parser;

/// This binary's version (see build.rs).
pub const VERSION: &str = env!("SHOAL_VERSION");
/// `YYYY.MM.DD`.
pub const BUILD_DATE: &str = env!("SHOAL_BUILD_DATE");
/// `"<version> <build date>"`, the seed's `version()` format.
pub const VERSION_LINE: &str = concat!(env!("SHOAL_VERSION"), " ", env!("SHOAL_BUILD_DATE"));

fn main() -> std::process::ExitCode {
    shoal_common::version::set(VERSION, BUILD_DATE);
    let cli = cli::Cli::parse();
    init_tracing(cli.command.is_role());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            let text = shoal_common::error_text::with_sources(e.to_string(), e.source());
            eprintln!("error: {text}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Roles log at info to their log file; tools stay quiet unless `RUST_LOG` says otherwise.
fn init_tracing(is_role: bool) {
    let default = if is_role { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
