//! The ferry binary: parse the command line, run a command, and turn errors
//! into sentences and exit codes (0 done, 1 something failed, 2 bad config or usage).

use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{Cli, Command};
use ferry::config::Config;
use ferry::report::status;
use ferry::run::Runner;

fn main() -> ExitCode {
    let cli = Cli::parse();
    ferry::progress::init_logging(cli.log_format);
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Status => match status::read(&config.ledger) {
            Ok(rows) => {
                println!("{}", status::render(&rows));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Run { once } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("ferry-worker")
                .build()
                .expect("tokio runtime");
            runtime.block_on(run(config, once))
        }
    }
}

async fn run(config: Config, once: bool) -> ExitCode {
    let runner = match Runner::start(config).await {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    loop {
        let report = match runner.pass().await {
            Ok(r) => r,
            Err(e) => return fail(&e),
        };
        print!("{}", report.describe());
        if once {
            return if report.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        tokio::select! {
            _ = tokio::time::sleep(runner.interval()) => {}
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        }
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("ferry: {e}");
    ExitCode::from(1)
}
