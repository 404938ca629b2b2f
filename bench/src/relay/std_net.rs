//! The blind relay on blocking std sockets: one thread per direction, one
//! `recv_from` and one `send_to` system call per datagram.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::{MAX_DATAGRAM, RelayConfig};
use crate::scenario::Transport;

/// How often an idle relay looks at its deadline.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// Runs the relay until its lifetime ends.
pub fn run(cfg: &RelayConfig) -> Result<()> {
    match cfg.transport {
        Transport::Udp => run_udp(cfg),
        Transport::Tcp => run_tcp(cfg),
    }
}

fn run_udp(cfg: &RelayConfig) -> Result<()> {
    let client = cfg
        .client
        .ok_or_else(|| anyhow!("a UDP relay needs the caller's address (--client)"))?;
    let caller_side = UdpSocket::from(
        super::udp_socket(cfg.listen).with_context(|| format!("bind {}", cfg.listen))?,
    );
    let callee_side = UdpSocket::from(
        super::udp_socket(cfg.upstream_bind)
            .with_context(|| format!("bind {}", cfg.upstream_bind))?,
    );
    for s in [&caller_side, &callee_side] {
        s.set_read_timeout(Some(IDLE_CHECK))?;
    }
    let deadline = Instant::now() + cfg.lifetime;
    let (back_from, back_to) = (callee_side.try_clone()?, caller_side.try_clone()?);
    let back = thread::Builder::new()
        .name("relay-back".into())
        .spawn(move || pump(&back_from, &back_to, client, deadline))?;
    let forward = pump(&caller_side, &callee_side, cfg.forward_to, deadline);
    let back = back.join().map_err(|_| anyhow!("relay thread panicked"))?;
    forward.and(back).context("relay socket error")
}

/// Moves datagrams from `from` to `dest` through `to` until `deadline`.
fn pump(from: &UdpSocket, to: &UdpSocket, dest: SocketAddr, deadline: Instant) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut since_check = 0u32;
    loop {
        match from.recv_from(&mut buf) {
            Ok((n, _)) => {
                // A failed send is a lost datagram, as on the wire; SIP retransmits.
                let _ = to.send_to(&buf[..n], dest);
                since_check += 1;
                if since_check >= 4096 {
                    since_check = 0;
                    if Instant::now() >= deadline {
                        return Ok(());
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if Instant::now() >= deadline {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
    }
}

fn run_tcp(cfg: &RelayConfig) -> Result<()> {
    let listener = TcpListener::bind(cfg.listen).with_context(|| format!("bind {}", cfg.listen))?;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + cfg.lifetime;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((down, _)) => {
                let fwd = cfg.forward_to;
                thread::Builder::new()
                    .name("relay-conn".into())
                    .spawn(move || {
                        if let Err(e) = splice(down, fwd) {
                            eprintln!("relay-std: connection: {e}");
                        }
                    })?;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e).context("accept"),
        }
    }
    Ok(())
}

/// Copies bytes both ways between the caller's connection and a new one to
/// the callee, until either side closes.
fn splice(down: TcpStream, forward_to: SocketAddr) -> io::Result<()> {
    down.set_nonblocking(false)?;
    down.set_nodelay(true)?;
    let up = TcpStream::connect(forward_to)?;
    up.set_nodelay(true)?;
    let (mut down_r, mut up_w) = (down.try_clone()?, up.try_clone()?);
    let (mut up_r, mut down_w) = (up, down);
    let t = thread::spawn(move || {
        let r = io::copy(&mut down_r, &mut up_w);
        let _ = up_w.shutdown(Shutdown::Both);
        let _ = down_r.shutdown(Shutdown::Both);
        r
    });
    let r = io::copy(&mut up_r, &mut down_w);
    let _ = down_w.shutdown(Shutdown::Both);
    let _ = up_r.shutdown(Shutdown::Both);
    let _ = t.join();
    r.map(|_| ())
}
