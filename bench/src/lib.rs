//! sipring-bench: criterion micro-benchmarks and the sipp load and latency
//! harness that runs sipring, Kamailio and a blind relay side by side.
//!
//! The harness (binary `sipring-bench`, see `bench/results/README.md`) starts
//! a target (Kamailio, the blind relay on std or glommio, or sipring), puts
//! real sipp load through it on loopback, and measures what the target costs:
//! calls completed and failed, retransmissions, CPU per call from /proc, peak
//! RSS, and latency percentiles from sipp's `-trace_rtt`. Targets run in turn,
//! repeatedly, so that the noise of a shared machine cancels out in the
//! ratios; the report is JSON, Markdown and SVG plots.

pub mod install;
pub mod plot;
pub mod process;
pub mod procfs;
pub mod relay;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sipp;
pub mod stats;
pub mod target;
pub mod users;
