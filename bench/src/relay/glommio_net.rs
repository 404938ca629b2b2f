//! The blind relay on glommio: one executor pinned to a core, `glommio::net`
//! sockets. Each socket has `recv_depth` tasks receiving at once, so that many
//! receives are outstanding when packets arrive.
//!
//! glommio's UDP socket first tries a non-blocking system call after a
//! successful operation ("yolo"), and falls back to an io_uring operation when
//! it would block; at a few thousand packets per second most receives find the
//! socket empty and take both paths, which is why this relay costs more CPU per
//! packet than the blocking one at low rates and less as the rate grows.

use std::net::SocketAddr;
use std::rc::Rc;

use anyhow::{Result, anyhow};
use glommio::net::{TcpListener, TcpStream, UdpSocket};
use glommio::{LocalExecutorBuilder, Placement};

use super::{MAX_DATAGRAM, RelayConfig};
use crate::scenario::Transport;

/// Consecutive socket errors after which a receive task gives up.
const MAX_CONSECUTIVE_ERRORS: u32 = 1000;

/// Runs the relay until its lifetime ends.
pub fn run(cfg: &RelayConfig) -> Result<()> {
    let placement = match cfg.core {
        Some(c) => Placement::Fixed(c),
        None => Placement::Unbound,
    };
    let mut builder = LocalExecutorBuilder::new(placement).name("relay-glommio");
    if let Some(spin) = cfg.spin_before_park {
        builder = builder.spin_before_park(spin);
    }
    let cfg = cfg.clone();
    let handle = builder
        .spawn(move || async move {
            match cfg.transport {
                Transport::Udp => relay_udp(&cfg).await,
                Transport::Tcp => relay_tcp(&cfg).await,
            }
        })
        .map_err(|e| anyhow!("cannot start the glommio executor: {e}"))?;
    handle
        .join()
        .map_err(|e| anyhow!("glommio executor failed: {e}"))?
}

async fn relay_udp(cfg: &RelayConfig) -> Result<()> {
    let client = cfg
        .client
        .ok_or_else(|| anyhow!("a UDP relay needs the caller's address (--client)"))?;
    let caller_side = Rc::new(UdpSocket::from(
        super::udp_socket(cfg.listen).map_err(|e| anyhow!("bind {}: {e}", cfg.listen))?,
    ));
    let callee_side = Rc::new(UdpSocket::from(
        super::udp_socket(cfg.upstream_bind)
            .map_err(|e| anyhow!("bind {}: {e}", cfg.upstream_bind))?,
    ));
    for _ in 0..cfg.recv_depth.max(1) {
        glommio::spawn_local(pump(
            Rc::clone(&caller_side),
            Rc::clone(&callee_side),
            cfg.forward_to,
            cfg.recv_buffer,
        ))
        .detach();
        glommio::spawn_local(pump(
            Rc::clone(&callee_side),
            Rc::clone(&caller_side),
            client,
            cfg.recv_buffer,
        ))
        .detach();
    }
    // The receive tasks are dropped with the executor when this returns.
    glommio::timer::sleep(cfg.lifetime).await;
    Ok(())
}

/// Moves datagrams arriving on `from` to `dest` through `to`.
async fn pump(from: Rc<UdpSocket>, to: Rc<UdpSocket>, dest: SocketAddr, size: usize) {
    let mut buf = vec![0u8; size.clamp(512, MAX_DATAGRAM)];
    let mut errors = 0u32;
    loop {
        match from.recv_from(&mut buf).await {
            Ok((n, _)) => {
                errors = 0;
                // A failed send is a lost datagram, as on the wire.
                let _ = to.send_to(&buf[..n], dest).await;
            }
            Err(e) => {
                errors += 1;
                if errors >= MAX_CONSECUTIVE_ERRORS {
                    eprintln!("relay-glommio: giving up on a socket: {e}");
                    return;
                }
            }
        }
    }
}

async fn relay_tcp(cfg: &RelayConfig) -> Result<()> {
    let listener =
        TcpListener::bind(cfg.listen).map_err(|e| anyhow!("bind {}: {e}", cfg.listen))?;
    let forward_to = cfg.forward_to;
    glommio::spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok(down) => {
                    glommio::spawn_local(async move {
                        if let Err(e) = splice(down, forward_to).await {
                            eprintln!("relay-glommio: connection: {e}");
                        }
                    })
                    .detach();
                }
                Err(e) => {
                    eprintln!("relay-glommio: accept: {e}");
                    return;
                }
            }
        }
    })
    .detach();
    glommio::timer::sleep(cfg.lifetime).await;
    Ok(())
}

/// Copies bytes both ways until either side closes.
async fn splice(down: TcpStream, forward_to: SocketAddr) -> std::io::Result<()> {
    let up = TcpStream::connect(forward_to).await?;
    down.set_nodelay(true)?;
    up.set_nodelay(true)?;
    let (down_r, mut down_w) = futures_lite::io::split(down);
    let (up_r, mut up_w) = futures_lite::io::split(up);
    let there = futures_lite::io::copy(down_r, &mut up_w);
    let back = futures_lite::io::copy(up_r, &mut down_w);
    futures_lite::future::or(there, back).await.map(|_| ())
}
