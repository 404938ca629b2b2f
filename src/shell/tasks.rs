//! The glommio tasks of one core: they wait for I/O, timers and hand-offs,
//! then call the synchronous `Core` methods.

use std::cell::RefCell;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crossbeam::queue::ArrayQueue;
use futures_lite::AsyncReadExt;
use futures_lite::future;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::net::{TcpListener, TcpStream, UdpSocket};
use glommio::timer::Timer;
use glommio::{executor, spawn_local};

use super::core::{Core, MeshMsg, Spawn, UdpSock};
use super::nudge::Nudge;
use super::{Clock, ShellTuning, dns, net, set_packet_path};
use crate::engine::{CoreContext, CoreId, Engine, Listener};

/// Everything a core needs to start, moved to its thread.
#[derive(Debug)]
pub(crate) struct CoreSetup {
    pub(crate) ctx: CoreContext,
    pub(crate) public_udp: Option<socket2::Socket>,
    pub(crate) private_udp: Option<socket2::Socket>,
    pub(crate) tuning: ShellTuning,
    pub(crate) clock: Clock,
    pub(crate) stop: Arc<AtomicBool>,
    /// Per core: drained and idle. Cores exit together once all are, so
    /// that in-flight work can still be handed between them.
    pub(crate) idle: Arc<Vec<AtomicBool>>,
    pub(crate) mesh: Option<MeshBuilder<MeshMsg, Full>>,
    pub(crate) returns: Vec<Arc<ArrayQueue<Vec<u8>>>>,
    pub(crate) ready: mpsc::Sender<io::Result<CoreId>>,
    pub(crate) store: Option<Arc<dyn crate::store::Store>>,
}

type Shared<E> = Rc<RefCell<Core<E>>>;

/// The main future of one core's executor: returns when the core is done.
pub(crate) async fn run_core<E, F>(s: CoreSetup, factory: F)
where
    E: Engine + 'static,
    F: FnOnce(CoreContext) -> E,
{
    let id = s.ctx.core;
    // Join the mesh first: every core reaches this point, so no core waits
    // forever on one that failed to bind.
    let (senders, receivers) = match s.mesh {
        Some(m) => match m.join().await {
            Ok((tx, rx)) if tx.peer_id() == usize::from(id) => (Some(tx), Some(rx)),
            Ok(_) => {
                let _ = s.ready.send(Err(io::Error::other(
                    "mesh peer order differs from core order",
                )));
                return;
            }
            Err(e) => {
                let _ = s
                    .ready
                    .send(Err(io::Error::other(format!("joining the mesh: {e}"))));
                return;
            }
        },
        None => (None, None),
    };
    let bind = |a: Option<SocketAddr>| -> io::Result<Option<TcpListener>> {
        a.map(|a| {
            TcpListener::bind(a)
                .map_err(|e| io::Error::other(format!("core {id}: listen TCP {a}: {e}")))
        })
        .transpose()
    };
    let listeners = bind(s.ctx.public_tcp).and_then(|p| Ok((p, bind(s.ctx.private_tcp)?)));
    let (public_tcp, private_tcp) = match listeners {
        Ok(l) => l,
        Err(e) => {
            let _ = s.ready.send(Err(e));
            return;
        }
    };
    let public_udp = s.public_udp.map(UdpSocket::from);
    let private_udp = s.private_udp.map(UdpSocket::from);
    let sock = |u: &Option<UdpSocket>, a: Option<SocketAddr>| {
        u.as_ref().zip(a).map(|(u, local)| UdpSock {
            fd: u.as_raw_fd(),
            local,
        })
    };
    let udp_public = sock(&public_udp, s.ctx.public_udp);
    let udp_private = sock(&private_udp, s.ctx.private_udp);
    let counters = s.ctx.counters.clone();
    let engine = factory(s.ctx);
    let mut core = Core::new(
        id,
        engine,
        s.clock,
        s.tuning.clone(),
        counters,
        udp_public,
        udp_private,
        senders,
        s.returns,
    );
    core.store = s.store;
    let core = Rc::new(RefCell::new(core));

    if let Some(mut rx) = receivers {
        for (_, stream) in rx.streams() {
            let core = core.clone();
            spawn_local(async move {
                while let Some(msg) = stream.recv().await {
                    {
                        let mut c = core.borrow_mut();
                        set_packet_path(true);
                        c.begin_batch(std::time::Instant::now());
                        c.on_mesh(msg);
                        c.flush();
                        set_packet_path(false);
                    }
                    run_spawns(&core);
                }
            })
            .detach();
        }
    }
    for (u, which) in [
        (public_udp, Listener::Public),
        (private_udp, Listener::Private),
    ] {
        if let Some(u) = u {
            spawn_local(udp_loop(core.clone(), which, u)).detach();
        }
    }
    let mut accept_stops = Vec::new();
    for (l, which) in [
        (public_tcp, Listener::Public),
        (private_tcp, Listener::Private),
    ] {
        if let Some(l) = l {
            let stop = Nudge::default();
            accept_stops.push(stop.clone());
            spawn_local(accept_loop(core.clone(), l, which, stop)).detach();
        }
    }
    spawn_local(timer_task(core.clone())).detach();
    let done = Nudge::default();
    spawn_local(housekeeping(
        core.clone(),
        s.stop,
        s.idle,
        done.clone(),
        accept_stops,
    ))
    .detach();
    let _ = s.ready.send(Ok(id));
    tracing::debug!(core = id, "core running");
    done.wait().await;
    tracing::debug!(core = id, "core stopped");
}

/// Start the async work the synchronous path queued.
fn run_spawns<E: Engine + 'static>(core: &Shared<E>) {
    let jobs = {
        let mut c = core.borrow_mut();
        if c.spawns.is_empty() {
            return;
        }
        mem::take(&mut c.spawns)
    };
    for job in jobs {
        match job {
            Spawn::Resolve { token, host } => {
                spawn_local(resolve_task(core.clone(), token, host)).detach();
            }
            Spawn::Store { token, fut } => {
                spawn_local(store_task(core.clone(), token, fut)).detach();
            }
            Spawn::Connect { id, addr } => {
                spawn_local(connect_task(core.clone(), id, addr)).detach();
            }
            Spawn::Flush { id } => {
                spawn_local(flusher(core.clone(), id)).detach();
            }
        }
    }
}

/// Receive loop of one UDP socket: wait with glommio for a datagram; if it
/// was already queued, take up to `recv_batch - 1` more without waiting;
/// then flush once.
async fn udp_loop<E: Engine + 'static>(core: Shared<E>, which: Listener, sock: UdpSocket) {
    let fd = sock.as_raw_fd();
    let (batch, interval, max) = {
        let c = core.borrow();
        (
            c.tuning.recv_batch,
            c.tuning.batch_interval,
            c.tuning.max_message_size,
        )
    };
    // One receive buffer per socket, one byte larger than the largest
    // message so that oversize datagrams are seen (and counted) as such.
    let mut buf = vec![0u8; max + 1];
    loop {
        // Poll once by hand: a datagram that was already queued (glommio's
        // non-blocking first try succeeded) means load, so more are likely
        // queued too and worth a drain; one that needed an io_uring wait
        // means the socket is now empty, and a drain would only cost an
        // EAGAIN syscall.
        let (first, queued) = {
            let mut fut = pin!(sock.recv_from(&mut buf));
            match future::poll_once(fut.as_mut()).await {
                Some(r) => (r, true),
                None => (fut.await, false),
            }
        };
        let t0 = std::time::Instant::now();
        {
            let mut c = core.borrow_mut();
            set_packet_path(true);
            c.begin_batch(t0);
            match first {
                Ok((n, from)) => c.on_datagram(which, &buf[..n], from),
                Err(e) => tracing::debug!(core = c.id, "udp receive: {e}"),
            }
            for _ in 1..if queued { batch } else { 1 } {
                match net::udp_recv(fd, &mut buf) {
                    Ok(Some((n, from))) => c.on_datagram(which, &buf[..n], from),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(core = c.id, "udp receive: {e}");
                        break;
                    }
                }
            }
            c.flush();
            set_packet_path(false);
        }
        run_spawns(&core);
        if !interval.is_zero() {
            Timer::new(interval).await;
        }
    }
}

async fn accept_loop<E: Engine + 'static>(
    core: Shared<E>,
    listener: TcpListener,
    which: Listener,
    stop: Nudge,
) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::warn!("accept: {e}");
                Timer::new(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = core
            .borrow_mut()
            .accept_conn(stream.as_raw_fd(), peer, local, which);
        match id {
            Some(id) => {
                spawn_local(conn_reader(core.clone(), id, stream)).detach();
            }
            None => {
                tracing::debug!(%peer, "TCP connection over the per-core limit: closed");
                drop(stream);
            }
        }
    }
}

/// Read loop of one TCP connection, with its own reused receive buffer.
async fn conn_reader<E: Engine + 'static>(core: Shared<E>, id: u32, mut stream: TcpStream) {
    let mut buf = vec![0u8; 4096];
    let mut filled = 0usize;
    loop {
        let n = match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        filled += n;
        let keep = {
            let mut c = core.borrow_mut();
            set_packet_path(true);
            c.begin_batch(std::time::Instant::now());
            let keep = c.on_tcp_read(id, &mut buf, &mut filled);
            c.flush();
            set_packet_path(false);
            keep
        };
        run_spawns(&core);
        if !keep {
            break;
        }
    }
    {
        let mut c = core.borrow_mut();
        c.close_conn(id);
        c.flush();
    }
    run_spawns(&core);
}

async fn connect_task<E: Engine + 'static>(core: Shared<E>, id: u32, addr: SocketAddr) {
    let timeout = core.borrow().tuning.connect_timeout;
    match TcpStream::connect_timeout(addr, timeout).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            let local = stream
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let alive = core
                .borrow_mut()
                .on_connected(id, stream.as_raw_fd(), local);
            run_spawns(&core);
            if alive {
                conn_reader(core, id, stream).await;
            }
        }
        Err(e) => {
            tracing::debug!(%addr, "TCP connect: {e}");
            core.borrow_mut().on_connect_failed(id);
            run_spawns(&core);
        }
    }
}

/// Writes a connection's pending output once its socket buffer drains (rare:
/// only after a send could not take everything).
async fn flusher<E: Engine + 'static>(core: Shared<E>, id: u32) {
    loop {
        Timer::new(Duration::from_millis(1)).await;
        if !core.borrow_mut().flush_pending(id) {
            break;
        }
    }
    run_spawns(&core);
}

async fn resolve_task<E: Engine + 'static>(core: Shared<E>, token: u64, host: String) {
    let name = host.clone();
    let addrs = executor()
        .spawn_blocking(move || dns::resolve_blocking(&name))
        .await;
    core.borrow_mut().on_resolved(token, host, addrs);
    run_spawns(&core);
}

/// Awaits a store operation (woken from the storage thread) and hands the
/// answer to the engine.
async fn store_task<E: Engine + 'static>(core: Shared<E>, token: u64, fut: crate::store::OpFuture) {
    let answer = fut.await;
    core.borrow_mut().on_store(token, answer);
    run_spawns(&core);
}

/// The core's one timer: sleeps until the engine's `poll_timeout`, or until
/// the synchronous path nudges it because the deadline moved earlier.
async fn timer_task<E: Engine + 'static>(core: Shared<E>) {
    loop {
        let (deadline, nudge, clock) = {
            let mut c = core.borrow_mut();
            let d = c.engine.poll_timeout();
            c.armed = d;
            (d, c.timer_nudge.clone(), c.clock)
        };
        match deadline {
            Some(d) => {
                let wait = clock.until(d);
                if wait.is_zero() {
                    future::yield_now().await;
                } else {
                    future::or(
                        async {
                            Timer::new(wait).await;
                        },
                        nudge.wait(),
                    )
                    .await;
                }
            }
            None => nudge.wait().await,
        }
        core.borrow_mut().on_timer();
        run_spawns(&core);
    }
}

/// Every 100 ms: shutdown, idle connections, latency snapshot, DNS expiry.
async fn housekeeping<E: Engine + 'static>(
    core: Shared<E>,
    stop: Arc<AtomicBool>,
    all_idle: Arc<Vec<AtomicBool>>,
    done: Nudge,
    accept_stops: Vec<Nudge>,
) {
    const TICK: Duration = Duration::from_millis(100);
    let (idle, drain_timeout) = {
        let c = core.borrow();
        (c.tuning.idle_timeout, c.tuning.drain_timeout)
    };
    let sweep_every = (idle.as_millis() / 4 / TICK.as_millis()).max(1);
    let mut tick: u128 = 0;
    let mut drain_deadline = None;
    loop {
        Timer::new(TICK).await;
        tick += 1;
        let mut c = core.borrow_mut();
        if tick % 10 == 0 {
            c.publish_latency();
            c.dns.expire(std::time::Instant::now());
        }
        if tick % sweep_every == 0 && c.conn_count() > 0 {
            c.sweep_idle(idle);
        }
        if drain_deadline.is_none() && stop.load(Ordering::Relaxed) {
            tracing::info!(core = c.id, "draining");
            let now = c.clock.now();
            c.engine.drain(now);
            c.flush();
            drain_deadline = Some(std::time::Instant::now() + drain_timeout);
            for s in &accept_stops {
                s.notify();
            }
        }
        if let Some(deadline) = drain_deadline {
            let me = c.engine.is_idle() && !c.has_pending_output();
            all_idle[usize::from(c.id)].store(me, Ordering::SeqCst);
            let idle_now = all_idle.iter().all(|i| i.load(Ordering::SeqCst));
            if idle_now || std::time::Instant::now() >= deadline {
                if !idle_now {
                    tracing::warn!(core = c.id, "drain timeout: exiting with work in flight");
                }
                c.publish_latency();
                done.notify();
                return;
            }
        }
        drop(c);
        run_spawns(&core);
    }
}
