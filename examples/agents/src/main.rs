//! `attach-agent`: the planner or the coder, chosen by `AGENT_ROLE`; the
//! settings are described in [`attach_example_agents::config`].
//!
//! Prints `attach-agent: <role> listening on http://HOST:PORT` on stdout
//! once it accepts connections (a launcher waits for that line to learn a
//! free port), and stops on SIGTERM or SIGINT. A setting it cannot use ends
//! it with exit code 2 and one line naming the variable.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use attach_example_agents::{Agent, Settings, router};
use tokio::signal::unix::{SignalKind, signal};

/// How long requests still in flight may run after a stop signal: a
/// blocking hand-off can take minutes, and a stop should not.
const STOP_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let settings = match Settings::from_env(|var| {
        std::env::var_os(var).map(|v| v.to_string_lossy().into_owned())
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("attach-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("attach-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("attach-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind((settings.host, settings.port))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {}:{} (AGENT_HOST, AGENT_PORT): {e}",
                settings.host, settings.port
            )
        })?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let url = format!("http://{address}");
    let agent = Arc::new(Agent::new(&settings, url.clone())?);
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "attach-agent: {} listening on {url}",
            settings.role.name()
        )
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    }
    let (stopping, stop_seen) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router(agent)).with_graceful_shutdown(async move {
        stopped().await;
        let _ = stopping.send(());
    });
    tokio::select! {
        served = server => served.map_err(|e| format!("server failed: {e}")),
        () = async {
            if stop_seen.await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(STOP_GRACE).await;
        } => Ok(()),
    }
}

async fn stopped() {
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("attach-agent: no signal handler ({e}); stop it with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
