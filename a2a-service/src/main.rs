//! `attach-a2a`: wiring only.

use std::process::ExitCode;
use std::time::Duration;

use attach_a2a_service::config::{Config, MemoryBackend};
use attach_a2a_service::push::PushSettings;
use attach_a2a_service::store::Store;
use attach_a2a_service::{AppState, router, tasks, usage};
use axum::serve::ListenerExt;

const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("attach-a2a: {e}");
            return ExitCode::from(2);
        }
    };
    let push = match PushSettings::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("attach-a2a: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match Store::open(&config.database).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("attach-a2a: {e}");
            return ExitCode::from(1);
        }
    };
    let listen = config.listen;
    let state = match AppState::with_push(config, store, push) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("attach-a2a: {e}");
            return ExitCode::from(1);
        }
    };

    tasks::housekeeping(&state).await;
    usage::housekeeping(&state).await;
    let sweeper = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(HOUSEKEEPING_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                tasks::housekeeping(&state).await;
                usage::housekeeping(&state).await;
            }
        })
    };
    let exporter = match usage::export::spawn(&state) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("attach-a2a: {e}");
            return ExitCode::from(1);
        }
    };

    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("attach-a2a: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    let shown = listener.local_addr().map_or(listen, |a| a);
    let memory = match &state.config.memory_backend {
        MemoryBackend::Weaviate(w) => format!(", memory also read from Weaviate at {}", w.url),
        MemoryBackend::Service | MemoryBackend::None => String::new(),
    };
    eprintln!(
        "attach-a2a: listening on {shown} ({} agent(s), {:?} store{memory})",
        state.config.agents.len(),
        state.store.backend()
    );
    // Stream events are small writes: Nagle's algorithm would hold each one
    // back until the proxy's delayed acknowledgement (some 40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("attach-a2a: TCP_NODELAY: {e}");
        }
    });
    let served = axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    sweeper.abort();
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    tasks::drain(&state, SHUTDOWN_GRACE).await;
    state.store.close().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("attach-a2a: server error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
