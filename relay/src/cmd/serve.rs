//! `cloud3-relay serve`: bind, print the address, serve until SIGINT/SIGTERM (and exit within a
//! few seconds whatever clients do); SIGHUP reloads the TLS certificate and the
//! scan's deny list.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::Settings;
use crate::server::{self, Relay};
use crate::store::Store;
use crate::tls::{self, ReloadingCert};

/// How long the runtime waits for blocking work (a store write in flight) when it stops.
/// Acknowledged work is durable already; the rest is retried by the devices.
const RUNTIME_STOP: Duration = Duration::from_secs(1);

/// Runs the server in the foreground.
pub(crate) fn run(settings: &Settings) -> anyhow::Result<()> {
    let (listen, data) = (settings.listen, settings.data.as_path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let result = runtime.block_on(async {
        let store = Arc::new(
            Store::open_with_clock(data, settings.clock.clone())
                .with_context(|| format!("open {}", data.display()))?,
        );
        let tls = match &settings.tls {
            Some((cert, key)) => {
                let certs = Arc::new(ReloadingCert::load(cert, key)?);
                tokio::spawn(reload_on_hangup(certs.clone()));
                Some(tokio_rustls::TlsAcceptor::from(tls::server_config(certs)?))
            }
            None => None,
        };
        let relay = Relay::new(
            store,
            settings.limits.clone(),
            settings.gc.clone(),
            settings.scan.clone(),
        )?;
        relay.scan.start(relay.clone());
        tokio::spawn(reload_deny_list_on_hangup(relay.clone()));
        let collector = settings
            .gc_interval
            .map(|every| tokio::spawn(collect_every(relay.clone(), every)));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("bind {listen}"))?;
        let admin_socket = crate::admin::bind(data)
            .with_context(|| format!("bind {}", crate::admin::socket_path(data).display()))?;
        let admin = tokio::spawn(crate::admin::serve(relay.clone(), admin_socket));
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        println!("listening on {}", listener.local_addr()?);
        tracing::info!(data = %data.display(), url = %format!("{scheme}://{}", listener.local_addr()?), "relay started");
        if !settings.viewer.join("pkg/cloud3_wasm_bg.wasm").exists() {
            tracing::warn!(
                viewer = %settings.viewer.display(),
                "the browser viewer is not built: run scripts/build-viewer"
            );
        }
        server::run(listener, relay, &settings.viewer, tls, shutdown_signal()).await?;
        admin.abort();
        if let Some(collector) = collector {
            collector.abort();
        }
        let _ = std::fs::remove_file(crate::admin::socket_path(data));
        tracing::info!("relay stopped");
        anyhow::Ok(())
    });
    runtime.shutdown_timeout(RUNTIME_STOP);
    result
}

/// The background collector: one collection every `every`, the first one `every` after start.
async fn collect_every(relay: Arc<Relay>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (store, gc) = (relay.store.clone(), relay.gc.clone());
        match tokio::task::spawn_blocking(move || store.collect(&gc)).await {
            Ok(Ok(report)) => {
                for line in report.lines() {
                    tracing::info!("{line}");
                }
            }
            Ok(Err(error)) => tracing::error!(%error, "garbage collection failed"),
            Err(error) => tracing::error!(%error, "garbage collection task failed"),
        }
    }
}

/// Reloads the certificate on every SIGHUP; a bad new pair is logged and the old one stays.
async fn reload_on_hangup(certs: Arc<ReloadingCert>) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP: the certificate will not be reloaded");
        return;
    };
    while hangup.recv().await.is_some() {
        match certs.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(error) => {
                tracing::error!(%error, "TLS certificate not reloaded; keeping the old one")
            }
        }
    }
}

/// Reloads the scan's deny list on every SIGHUP; a file that does not read is logged and the
/// old list stays.
async fn reload_deny_list_on_hangup(relay: Arc<Relay>) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP: the deny list will not be reloaded");
        return;
    };
    while hangup.recv().await.is_some() {
        let scan = relay.scan.clone();
        match tokio::task::spawn_blocking(move || scan.reload_deny_list()).await {
            Ok(Ok(entries)) => tracing::info!(entries, "deny list reloaded"),
            Ok(Err(error)) => {
                tracing::error!(%error, "deny list not reloaded; keeping the old one")
            }
            Err(error) => tracing::error!(%error, "deny list reload failed"),
        }
    }
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
