//! The Cassandra store's Prometheus families, read from [`StoreStats`] at
//! scrape time (`crate::metrics::serve_with`):
//!
//! - `sipring_store_degraded` (gauge, 1 while Cassandra fails writes)
//! - `sipring_store_dialog_mutations_persisted_total`,
//!   `..._dropped_total` (queue full: never persisted), `..._failed_total`
//!   (refused for good), `..._coalesced_total`, `..._queued_total`
//! - `sipring_store_dialog_requests_total` (Cassandra requests; persisted /
//!   requests is the batching factor), `sipring_store_dialog_flushes_total`,
//!   `sipring_store_dialog_write_retries_total`
//! - `sipring_store_request_errors_total` (user, binding, proxy requests)

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::StoreStats;

impl Collector for StoreStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.snapshot();
        let gauge = encoder.encode_descriptor(
            "sipring_store_degraded",
            "1 while the Cassandra store fails writes (retrying), else 0.",
            None,
            ConstGauge::new(i64::from(s.degraded)).metric_type(),
        )?;
        ConstGauge::new(i64::from(s.degraded)).encode(gauge)?;
        let counters: [(&str, &str, u64); 9] = [
            (
                "sipring_store_dialog_mutations_persisted",
                "Dialog mutations written to Cassandra.",
                s.persisted,
            ),
            (
                "sipring_store_dialog_mutations_dropped",
                "Dialog mutations dropped because a core's queue was full: never persisted.",
                s.dropped,
            ),
            (
                "sipring_store_dialog_mutations_failed",
                "Dialog mutations Cassandra refused for good (not retried).",
                s.failed,
            ),
            (
                "sipring_store_dialog_mutations_coalesced",
                "Dialog mutations superseded by a later one of the same dialog before being sent.",
                s.coalesced,
            ),
            (
                "sipring_store_dialog_mutations_queued",
                "Dialog mutations the cores handed to the storage thread.",
                s.queued,
            ),
            (
                "sipring_store_dialog_requests",
                "Cassandra requests made for dialog mutations (batches or statements).",
                s.requests,
            ),
            (
                "sipring_store_dialog_flushes",
                "Flushes of dialog mutations received from the cores.",
                s.flushes,
            ),
            (
                "sipring_store_dialog_write_retries",
                "Failed dialog write attempts that were retried.",
                s.retries,
            ),
            (
                "sipring_store_request_errors",
                "User, binding and proxy requests that failed.",
                s.job_errors,
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn exports_the_degraded_gauge_and_the_counters() {
        let stats = Arc::new(StoreStats::default());
        stats
            .dialog_mutations_persisted
            .fetch_add(640, Ordering::Relaxed);
        stats.dialog_requests.fetch_add(10, Ordering::Relaxed);
        stats.set_degraded(true);
        let extra: Vec<Arc<dyn Collector>> = vec![stats];
        let text = crate::metrics::render_with(&[], &extra);
        assert!(text.contains("sipring_store_degraded 1"), "{text}");
        assert!(
            text.contains("sipring_store_dialog_mutations_persisted_total 640"),
            "{text}"
        );
        assert!(
            text.contains("sipring_store_dialog_requests_total 10"),
            "{text}"
        );
        assert!(
            text.contains("sipring_store_dialog_mutations_dropped_total 0"),
            "{text}"
        );
    }
}
