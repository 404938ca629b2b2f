//! Benchmark peer: a blind UDP relay on a blocking std socket, one thread.
//! `relay_std LISTEN NEXT_HOP`: datagrams from NEXT_HOP go to the last
//! client, all others to NEXT_HOP (the same rule as `sipring serve --relay`).
//! The bench harness (bench/) has the canonical relay targets; this copy lets
//! scripts/bench-shell.sh compare the shell with its floor in one run.

use std::net::{SocketAddr, UdpSocket};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = args[1].parse().expect("LISTEN");
    let hop: SocketAddr = args[2].parse().expect("NEXT_HOP");
    let sock = UdpSocket::bind(listen)?;
    let mut client = None;
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        let to = if from == hop {
            match client {
                Some(c) => c,
                None => continue,
            }
        } else {
            client = Some(from);
            hop
        };
        let _ = sock.send_to(&buf[..n], to);
    }
}
