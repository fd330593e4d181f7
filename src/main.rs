use std::process::ExitCode;
use std::time::Duration;

use accounts::config::{Cli, Subcommands};
use accounts::engine::{Clock, SystemClock};

fn main() -> ExitCode {
    let cli = Cli::parse_with_legacy_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Subcommands::Probe { url, timeout_ms }) => runtime.block_on(accounts::probe::probe(
            &url,
            Duration::from_millis(timeout_ms),
        )),
        Some(Subcommands::Feed { after, token, url }) => {
            // Reconnections are logged to stderr; stdout carries only events.
            accounts::app::init_logging(cli.serve.log_format);
            runtime
                .block_on(accounts::follow::follow(
                    &url,
                    after,
                    token.as_deref(),
                    &mut std::io::stdout(),
                ))
                .map_err(|error| error.to_string())
        }
        Some(Subcommands::Token(token)) => token
            .mint(SystemClock.now())
            .map(|token| println!("{token}"))
            .map_err(|error| error.to_string()),
        None => {
            accounts::app::init_logging(cli.serve.log_format);
            runtime.block_on(accounts::app::run(cli.serve))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
