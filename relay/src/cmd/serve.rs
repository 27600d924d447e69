//! `cloud3-relay serve`: bind, print the address, serve until SIGINT/SIGTERM.

use std::sync::Arc;

use anyhow::Context;

use crate::cli::Cli;
use crate::limits::Limits;
use crate::server::{self, Relay};
use crate::store::Store;

/// Runs the server in the foreground.
pub(crate) fn run(cli: &Cli) -> anyhow::Result<()> {
    let (listen, data) = (cli.listen, cli.data.as_path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let store =
            Arc::new(Store::open(data).with_context(|| format!("open {}", data.display()))?);
        let limits = Limits {
            quota_bytes: cli.quota_gib.saturating_mul(1 << 30),
            max_connections_per_account: cli.max_connections_per_account,
            ..Limits::default()
        };
        let relay = Relay::new(store, limits)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("bind {listen}"))?;
        let admin_socket = crate::admin::bind(data)
            .with_context(|| format!("bind {}", crate::admin::socket_path(data).display()))?;
        let admin = tokio::spawn(crate::admin::serve(relay.clone(), admin_socket));
        println!("listening on {}", listener.local_addr()?);
        tracing::info!(data = %data.display(), "relay started");
        if !cli.viewer.join("pkg/cloud3_wasm_bg.wasm").exists() {
            tracing::warn!(
                viewer = %cli.viewer.display(),
                "the browser viewer is not built: run scripts/build-viewer"
            );
        }
        server::run(listener, relay, &cli.viewer, shutdown_signal()).await?;
        admin.abort();
        let _ = std::fs::remove_file(crate::admin::socket_path(data));
        tracing::info!("relay stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
