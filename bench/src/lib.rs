//! sipring-bench: criterion micro-benchmarks and the sipp load and latency
//! harness that runs sipring, Kamailio and a blind relay side by side.
