//! Shared helpers of the tests that drive sipring with real sipp: finding
//! sipp (skipping, or failing under `SIPRING_REQUIRE_SIPP=1`), free loopback
//! ports and the scenario files in tests/sipp/.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

/// The sipp binary on `PATH`, or `None` (the test skips, saying so).
pub fn sipp() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("sipp"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("SIPRING_REQUIRE_SIPP").as_deref() != Ok("1"),
            "sipp is required (SIPRING_REQUIRE_SIPP=1) but not installed"
        );
        eprintln!("SKIPPED: sipp is not installed (scripts/install-deps.sh installs it)");
    }
    found
}

/// `n` consecutive ports free for UDP and TCP on 127.0.0.1.
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if base > 65_000 {
            continue;
        }
        let ok = (0..n).all(|i| {
            let a = SocketAddr::from(([127, 0, 0, 1], base + i));
            UdpSocket::bind(a).is_ok() && TcpListener::bind(a).is_ok()
        });
        if ok {
            return base;
        }
    }
    panic!("no free ports");
}

/// The path of tests/sipp/`name`.
pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
        .display()
        .to_string()
}
