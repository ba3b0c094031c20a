//! The `sluice` binary: start-up and shutdown only.

#![forbid(unsafe_code)]

use sluice::rules::Rules;
use sluice::server::Server;
use sluice::settings::{self, Invocation, Settings};
use std::process::ExitCode;

/// Exit status for a bad flag or setting (EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// How long the runtime waits for blocking-pool tasks once serving has stopped.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    let env = std::env::vars().collect();
    let settings = match settings::parse(std::env::args_os(), &env) {
        Ok(Invocation::Serve(s)) => s,
        Ok(Invocation::CheckConfig(dir)) => return check_config(&dir),
        Ok(Invocation::HashKey(key)) => return hash_key(key),
        Ok(Invocation::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match runtime.block_on(async { sluice::telemetry::init(&settings) }) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sluice: cannot set up logging: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(*settings));
    drop(telemetry);
    // A blocking-pool task (a configuration read stuck on a dead NFS mount, say) must not keep
    // the process alive: dropping the runtime would wait for it forever.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), sluice::server::ServeError> {
    // Install the handlers before anything is announced, so an early SIGTERM is never fatal.
    use futures_util::FutureExt;
    let shutdown = shutdown_signal().shared();
    // Binding may wait for the first xDS config (without force start): a SIGTERM meanwhile ends
    // the process instead of waiting for a control plane that may never answer.
    let server = tokio::select! {
        bound = Server::bind(settings) => bound?,
        () = shutdown.clone() => {
            tracing::info!("stopped before serving");
            return Ok(());
        }
    };
    server.run(shutdown).await
}

/// Completes on SIGTERM or Ctrl-C; the handlers are registered when this is called.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            // Without signal handlers the process can only be killed; serve until then.
            _ => std::future::pending::<()>().await,
        }
    }
}

/// Prints the SHA-256 of a key given as argument or as the first line of stdin.
fn hash_key(key: Option<String>) -> ExitCode {
    let key = match key {
        Some(k) => k,
        None => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                eprintln!("sluice: cannot read the key from stdin: {e}");
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if key.is_empty() {
        eprintln!("sluice: the key is empty");
        return ExitCode::from(EXIT_USAGE);
    }
    println!("{}", sluice::authz::keys::hash_hex(&key));
    ExitCode::SUCCESS
}

fn check_config(dir: &std::path::Path) -> ExitCode {
    match Rules::load_dir(dir) {
        Ok(rules) => {
            for (file, domain) in rules.files() {
                println!("ok {file}: domain '{domain}'");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
