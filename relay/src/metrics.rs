//! The relay's metrics, exported at `/metrics` in the Prometheus text format (prometheus-client):
//! counters, gauges and latency histograms (handshake, change fan-out, chunk put and get).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The relay's metrics (clones share their values with the registry).
#[derive(Debug)]
pub struct Metrics {
    /// Open WebSocket connections (authenticated or not).
    pub connections: Gauge,
    /// Authenticated devices connected now.
    pub devices_online: Gauge,
    /// Messages received.
    pub messages_in: Counter,
    /// Messages sent.
    pub messages_out: Counter,
    /// Bytes received.
    pub bytes_in: Counter,
    /// Bytes sent.
    pub bytes_out: Counter,
    /// Blobs stored.
    pub chunks_stored: Counter,
    /// Failed handshakes.
    pub auth_failures: Counter,
    /// Connections dropped for breaking limits or the protocol.
    pub dropped: Counter,
    /// Sockets closed at accept for being over the caps on unauthenticated connections.
    pub refused: Counter,
    /// Seconds from the WebSocket upgrade to the device's welcome.
    pub handshake_seconds: Histogram,
    /// Seconds to apply a device's document changes and queue them to the user's other
    /// connections.
    pub fanout_seconds: Histogram,
    /// Seconds to store a batch of uploaded blobs durably.
    pub chunk_put_seconds: Histogram,
    /// Seconds to read a run of requested blobs (about 4 MiB at most).
    pub chunk_get_seconds: Histogram,
    /// File versions the malware scan finished (any verdict).
    pub scanned: Counter,
    /// File versions the scan flagged.
    pub flagged: Counter,
    /// File versions the scan could not scan for good (too large).
    pub unscanned: Counter,
    /// Scan attempts that failed (scanner down or slow) and will be retried.
    pub scan_retries: Counter,
    /// Seconds to scan one file version.
    pub scan_seconds: Histogram,
    /// 1 while the data directory is down to its free-space reserve (blobs are refused).
    pub storage_full: Gauge,
    /// Uploads refused because the free-space reserve was reached.
    pub storage_full_refusals: Counter,
    /// Free bytes of the data directory's file system, as last looked at.
    pub disk_free_bytes: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Metrics {
        // 100 us to about 26 s.
        let latency = || Histogram::new(exponential_buckets(0.0001, 4.0, 10));
        let mut metrics = Metrics {
            connections: Gauge::default(),
            devices_online: Gauge::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            chunks_stored: Counter::default(),
            auth_failures: Counter::default(),
            dropped: Counter::default(),
            refused: Counter::default(),
            handshake_seconds: latency(),
            fanout_seconds: latency(),
            chunk_put_seconds: latency(),
            chunk_get_seconds: latency(),
            scanned: Counter::default(),
            flagged: Counter::default(),
            unscanned: Counter::default(),
            scan_retries: Counter::default(),
            scan_seconds: latency(),
            storage_full: Gauge::default(),
            storage_full_refusals: Counter::default(),
            disk_free_bytes: Gauge::default(),
            registry: Registry::with_prefix("cloud3"),
        };
        let r = &mut metrics.registry;
        r.register(
            "connections",
            "open websocket connections",
            metrics.connections.clone(),
        );
        r.register(
            "devices_online",
            "authenticated devices connected",
            metrics.devices_online.clone(),
        );
        r.register(
            "messages_in",
            "messages received",
            metrics.messages_in.clone(),
        );
        r.register(
            "messages_out",
            "messages sent",
            metrics.messages_out.clone(),
        );
        r.register("bytes_in", "bytes received", metrics.bytes_in.clone());
        r.register("bytes_out", "bytes sent", metrics.bytes_out.clone());
        r.register(
            "chunks_stored",
            "blobs stored",
            metrics.chunks_stored.clone(),
        );
        r.register(
            "auth_failures",
            "failed handshakes",
            metrics.auth_failures.clone(),
        );
        r.register(
            "dropped",
            "connections dropped for limits or protocol errors",
            metrics.dropped.clone(),
        );
        r.register(
            "refused",
            "sockets closed at accept over the caps on unauthenticated connections",
            metrics.refused.clone(),
        );
        r.register(
            "handshake_seconds",
            "seconds from websocket upgrade to welcome",
            metrics.handshake_seconds.clone(),
        );
        r.register(
            "fanout_seconds",
            "seconds to apply document changes and queue them to the other devices",
            metrics.fanout_seconds.clone(),
        );
        r.register(
            "chunk_put_seconds",
            "seconds to store a batch of uploaded blobs durably",
            metrics.chunk_put_seconds.clone(),
        );
        r.register(
            "chunk_get_seconds",
            "seconds to read a run of requested blobs",
            metrics.chunk_get_seconds.clone(),
        );
        r.register(
            "scanned",
            "file versions the malware scan finished",
            metrics.scanned.clone(),
        );
        r.register(
            "flagged",
            "file versions the malware scan flagged",
            metrics.flagged.clone(),
        );
        r.register(
            "unscanned",
            "file versions too large to scan",
            metrics.unscanned.clone(),
        );
        r.register(
            "scan_retries",
            "scan attempts that failed and are retried",
            metrics.scan_retries.clone(),
        );
        r.register(
            "scan_seconds",
            "seconds to scan one file version",
            metrics.scan_seconds.clone(),
        );
        r.register(
            "storage_full",
            "1 while the free-space reserve is reached and new blobs are refused",
            metrics.storage_full.clone(),
        );
        r.register(
            "storage_full_refusals",
            "uploads refused because the free-space reserve was reached",
            metrics.storage_full_refusals.clone(),
        );
        r.register(
            "disk_free_bytes",
            "free bytes of the data directory's file system when last looked at",
            metrics.disk_free_bytes.clone(),
        );
        metrics
    }
}

impl Metrics {
    /// The Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let metrics = Metrics::default();
        metrics.messages_in.inc_by(3);
        metrics.devices_online.inc();
        metrics.chunk_get_seconds.observe(0.002);
        let text = metrics.render();
        assert!(text.contains("cloud3_messages_in_total 3"), "{text}");
        assert!(text.contains("cloud3_devices_online 1"), "{text}");
        assert!(text.contains("cloud3_chunk_get_seconds_count 1"), "{text}");
        assert!(text.contains("# EOF"), "{text}");
    }
}
