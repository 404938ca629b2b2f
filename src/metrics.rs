//! The Prometheus endpoint (`--metrics IP:PORT`, `GET /metrics`).
//!
//! It runs on its own thread (tiny_http) and reads every core's
//! [`CoreCounters`] at scrape time through a prometheus-client `Collector`;
//! the cores never wait for it. Exported families (all labelled by `core`):
//!
//! - `sipring_messages_received_total`, `sipring_messages_sent_total`
//!   (`kind` = `request` with `method`, or `response` with `class` = 1xx..6xx)
//! - `sipring_transactions_active`, `sipring_tcp_connections` (gauges)
//! - `sipring_handoffs_sent_total`, `sipring_handoffs_received_total`
//! - `sipring_drops_total` (`reason`)
//! - `sipring_receive_to_send_seconds` (gauge per `quantile`: 0.5, 0.9, 0.99,
//!   0.999, 1 = max; from each core's hdrhistogram, cumulative since start,
//!   refreshed about once a second), with `sipring_receive_to_send_samples_total`
//!   and `sipring_receive_to_send_seconds_sum`.
//!
//! Other parts add their own families with [`serve_with`] (for example the
//! Cassandra store's, `crate::store::cassandra::StoreStats`).

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::counters::{CoreCounters, DropReason, MSG_KINDS, MsgKind};

/// Reads every core's counters at scrape time.
#[derive(Debug)]
struct CoresCollector {
    cores: Vec<Arc<CoreCounters>>,
}

const CLASSES: [&str; 7] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

fn kind_labels(kind: MsgKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        MsgKind::Request(m) => ("request", m.as_str(), ""),
        MsgKind::Response(c) => ("response", "", CLASSES[usize::from(c.min(6))]),
    }
}

impl Collector for CoresCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let names: Vec<String> = self.cores.iter().map(|c| c.core().to_string()).collect();
        type Get = fn(&CoreCounters, MsgKind) -> u64;
        let msgs: [(&str, &str, Get); 2] = [
            (
                "sipring_messages_received",
                "SIP messages received, by request method or response class.",
                CoreCounters::msgs_in,
            ),
            (
                "sipring_messages_sent",
                "SIP messages sent, by request method or response class.",
                CoreCounters::msgs_out,
            ),
        ];
        for (name, help, get) in msgs {
            let proto = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(name, help, None, proto.metric_type())?;
            for (c, core) in self.cores.iter().zip(&names) {
                for i in 0..MSG_KINDS {
                    let kind = MsgKind::from_index(i);
                    let v = get(c, kind);
                    if v == 0 {
                        continue;
                    }
                    let (k, method, class) = kind_labels(kind);
                    let labels = [
                        ("core", core.as_str()),
                        ("kind", k),
                        ("method", method),
                        ("class", class),
                    ];
                    ConstCounter::new(v).encode(fam.encode_family(&labels)?)?;
                }
            }
        }
        type One = fn(&CoreCounters) -> u64;
        let counters: [(&str, &str, One); 2] = [
            (
                "sipring_handoffs_sent",
                "Messages and transmits carried to another core.",
                CoreCounters::handoffs_out,
            ),
            (
                "sipring_handoffs_received",
                "Messages and transmits received from another core.",
                CoreCounters::handoffs_in,
            ),
        ];
        for (name, help, get) in counters {
            let proto = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(name, help, None, proto.metric_type())?;
            for (c, core) in self.cores.iter().zip(&names) {
                ConstCounter::new(get(c)).encode(fam.encode_family(&[("core", core.as_str())])?)?;
            }
        }
        let gauges: [(&str, &str, One); 2] = [
            (
                "sipring_transactions_active",
                "Live SIP transactions.",
                CoreCounters::transactions_active,
            ),
            (
                "sipring_tcp_connections",
                "Open TCP connections.",
                CoreCounters::tcp_connections,
            ),
        ];
        for (name, help, get) in gauges {
            let proto = ConstGauge::new(0i64);
            let mut fam = encoder.encode_descriptor(name, help, None, proto.metric_type())?;
            for (c, core) in self.cores.iter().zip(&names) {
                let v = i64::try_from(get(c)).unwrap_or(i64::MAX);
                ConstGauge::new(v).encode(fam.encode_family(&[("core", core.as_str())])?)?;
            }
        }
        {
            let proto = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                "sipring_drops",
                "Messages dropped, by reason.",
                None,
                proto.metric_type(),
            )?;
            for (c, core) in self.cores.iter().zip(&names) {
                for r in DropReason::ALL {
                    let labels = [("core", core.as_str()), ("reason", r.as_str())];
                    ConstCounter::new(c.drops(r)).encode(fam.encode_family(&labels)?)?;
                }
            }
        }
        {
            let proto = ConstGauge::new(0f64);
            let mut fam = encoder.encode_descriptor(
                "sipring_receive_to_send_seconds",
                "Time from reading a message to sending what it caused, quantiles since start.",
                None,
                proto.metric_type(),
            )?;
            for (c, core) in self.cores.iter().zip(&names) {
                let l = &c.latency;
                for (q, v) in [
                    ("0.5", &l.p50),
                    ("0.9", &l.p90),
                    ("0.99", &l.p99),
                    ("0.999", &l.p999),
                    ("1", &l.max),
                ] {
                    let secs = v.load(Relaxed) as f64 / 1e9;
                    let labels = [("core", core.as_str()), ("quantile", q)];
                    ConstGauge::new(secs).encode(fam.encode_family(&labels)?)?;
                }
            }
            let proto = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                "sipring_receive_to_send_samples",
                "Number of receive-to-send latency samples.",
                None,
                proto.metric_type(),
            )?;
            for (c, core) in self.cores.iter().zip(&names) {
                ConstCounter::new(c.latency.count.load(Relaxed))
                    .encode(fam.encode_family(&[("core", core.as_str())])?)?;
            }
            let proto = ConstGauge::new(0f64);
            let mut fam = encoder.encode_descriptor(
                "sipring_receive_to_send_seconds_sum",
                "Sum of receive-to-send latency samples.",
                None,
                proto.metric_type(),
            )?;
            for (c, core) in self.cores.iter().zip(&names) {
                let secs = c.latency.sum.load(Relaxed) as f64 / 1e9;
                ConstGauge::new(secs).encode(fam.encode_family(&[("core", core.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// Render the exposition text for these cores.
pub fn render(cores: &[Arc<CoreCounters>]) -> String {
    render_with(cores, &[])
}

/// A collector shared with its owner (a `Box` of an `Arc`).
#[derive(Debug)]
struct SharedCollector(Arc<dyn Collector>);

impl Collector for SharedCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

/// Render the exposition text for these cores and the extra collectors.
pub fn render_with(cores: &[Arc<CoreCounters>], extra: &[Arc<dyn Collector>]) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(CoresCollector {
        cores: cores.to_vec(),
    }));
    for c in extra {
        registry.register_collector(Box::new(SharedCollector(c.clone())));
    }
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
        let _ = writeln!(out, "# encoding failed");
    }
    out
}

/// A running metrics endpoint.
pub struct MetricsServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serve `GET /metrics` on `addr` from its own thread until dropped.
pub fn serve(addr: SocketAddr, cores: Vec<Arc<CoreCounters>>) -> io::Result<MetricsServer> {
    serve_with(addr, cores, Vec::new())
}

/// [`serve`], with extra collectors read at each scrape.
pub fn serve_with(
    addr: SocketAddr,
    cores: Vec<Arc<CoreCounters>>,
    extra: Vec<Arc<dyn Collector>>,
) -> io::Result<MetricsServer> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| io::Error::other(format!("metrics endpoint {addr}: {e}")))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| io::Error::other("metrics endpoint is not on IP"))?;
    let server = Arc::new(server);
    let srv = server.clone();
    let thread = thread::Builder::new()
        .name("sipring-metrics".into())
        .spawn(move || {
            for req in srv.incoming_requests() {
                let resp = if req.url() == "/metrics" || req.url().starts_with("/metrics?") {
                    let header = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"text/plain; version=0.0.4; charset=utf-8"[..],
                    )
                    .expect("static header");
                    tiny_http::Response::from_string(render_with(&cores, &extra))
                        .with_header(header)
                } else {
                    tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                };
                let _ = req.respond(resp);
            }
        })?;
    Ok(MetricsServer {
        addr,
        server,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Method;

    #[test]
    fn render_exports_every_family() {
        let c = Arc::new(CoreCounters::new(0));
        c.count_in(MsgKind::Request(Method::Invite));
        c.count_out(MsgKind::Response(2));
        c.drop_msg(DropReason::Malformed);
        c.handoff_out();
        c.latency.p99.store(250_000, Relaxed);
        let text = render(&[c]);
        for want in [
            r#"sipring_messages_received_total{core="0",kind="request",method="INVITE",class=""} 1"#,
            r#"sipring_messages_sent_total{core="0",kind="response",method="",class="2xx"} 1"#,
            r#"sipring_drops_total{core="0",reason="malformed"} 1"#,
            r#"sipring_handoffs_sent_total{core="0"} 1"#,
            r#"sipring_transactions_active{core="0"} 0"#,
            r#"sipring_receive_to_send_seconds{core="0",quantile="0.99"} 0.00025"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
