//! Benchmark peer: a naive blind UDP relay on glommio, one executor: one
//! `recv_from().await` and one `send_to().await` per datagram. Same rule as
//! `relay_std`. `relay_glommio LISTEN NEXT_HOP`.

use std::net::SocketAddr;

use glommio::net::UdpSocket;
use glommio::{LocalExecutorBuilder, Placement};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = args[1].parse().expect("LISTEN");
    let hop: SocketAddr = args[2].parse().expect("NEXT_HOP");
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let sock = UdpSocket::bind(listen).unwrap();
            let mut client = None;
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let to = if from == hop {
                    match client {
                        Some(c) => c,
                        None => continue,
                    }
                } else {
                    client = Some(from);
                    hop
                };
                let _ = sock.send_to(&buf[..n], to).await;
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
