//! The glommio shell: one pinned executor per core around one sans-IO
//! [`Engine`] per core.
//!
//! Each core binds the public SIP port with SO_REUSEPORT (UDP and a TCP
//! listener; the kernel spreads peers over the cores), its private port
//! `private_base + core` (UDP and TCP), and owns the TCP connections it
//! accepted or opened. Messages the engine hands off (`Disposition::HandOff`)
//! and transmits on another core's connection travel over glommio's channel
//! mesh with pooled buffers; nothing on the packet path takes a lock.
//!
//! The event loop of a core (see `tasks`): wait on a socket with glommio (one
//! io_uring operation when the socket is empty), then read up to
//! `udp.recv_batch` datagrams with non-blocking syscalls into the socket's one
//! reused buffer, feed each to the engine with `now` from the monotonic clock,
//! drain `poll_transmit` into non-blocking sends from the core's one output
//! buffer, drain `poll_request` into off-path work (DNS on the blocking pool,
//! store operations awaited until the storage thread answers), and re-arm the one glommio timer at `poll_timeout`.
//!
//! Shutdown: [`ShellHandle::stop`] (wired to SIGINT/SIGTERM by `main`) makes
//! every core call `Engine::drain`, stop accepting TCP connections, keep
//! serving until `Engine::is_idle` and no TCP output is pending, or until
//! `shutdown.drain_timeout_ms`, then return.

mod core;
mod dns;
pub mod framing;
mod net;
mod nudge;
mod tasks;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::{Config, TransportName};
use crate::counters::CoreCounters;
use crate::engine::{CoreContext, CoreId, Engine};
use crate::time::Instant;

thread_local! {
    static IN_PACKET_PATH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside the shell's synchronous packet path (between
/// a socket read and the sends it causes). A counting allocator uses it to
/// show that the packet path allocates nothing.
pub fn in_packet_path() -> bool {
    IN_PACKET_PATH.with(|c| c.get())
}

fn set_packet_path(on: bool) {
    IN_PACKET_PATH.with(|c| c.set(on));
}

/// The monotonic clock every core reads, with one epoch for the process.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: std::time::Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Clock {
            epoch: std::time::Instant::now(),
        }
    }

    /// Now, as the engine's `Instant`.
    #[inline]
    pub fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// How long from now until `t` (zero if past).
    pub fn until(&self, t: Instant) -> Duration {
        t - self.now()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The shell's knobs, taken from [`Config`].
#[derive(Clone, Debug)]
pub struct ShellTuning {
    pub(crate) max_message_size: usize,
    pub(crate) recv_batch: usize,
    pub(crate) batch_interval: Duration,
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_pending_output: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) dns_ttl: Duration,
    pub(crate) dns_negative_ttl: Duration,
}

impl ShellTuning {
    fn from_config(c: &Config) -> Self {
        ShellTuning {
            max_message_size: c.udp.max_message_size,
            recv_batch: c.udp.recv_batch,
            batch_interval: Duration::from_micros(c.udp.batch_interval_us),
            max_connections: c.tcp.max_connections_per_core,
            idle_timeout: c.tcp_idle_timeout(),
            connect_timeout: Duration::from_millis(c.tcp.connect_timeout_ms),
            max_pending_output: c.tcp.max_pending_output,
            drain_timeout: Duration::from_millis(c.shutdown.drain_timeout_ms),
            dns_ttl: Duration::from_secs(c.dns.cache_ttl_secs),
            dns_negative_ttl: Duration::from_secs(c.dns.negative_ttl_secs),
        }
    }
}

/// The addresses one core serves.
#[derive(Clone, Debug)]
pub struct CoreAddrs {
    /// The core.
    pub core: CoreId,
    /// Public UDP (shared by every core).
    pub public_udp: Option<SocketAddr>,
    /// Public TCP (shared by every core).
    pub public_tcp: Option<SocketAddr>,
    /// This core's private UDP port.
    pub private_udp: Option<SocketAddr>,
    /// This core's private TCP port.
    pub private_tcp: Option<SocketAddr>,
}

/// A running shell.
#[derive(Debug)]
pub struct ShellHandle {
    addrs: Vec<CoreAddrs>,
    counters: Vec<Arc<CoreCounters>>,
    stop: Arc<AtomicBool>,
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
}

impl ShellHandle {
    /// Every core's addresses, by core.
    pub fn addrs(&self) -> &[CoreAddrs] {
        &self.addrs
    }

    /// Every core's counters, by core (for the metrics endpoint).
    pub fn counters(&self) -> &[Arc<CoreCounters>] {
        &self.counters
    }

    /// The flag that starts a graceful shutdown when set (for signal handlers).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Start a graceful shutdown.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Wait until every core has finished.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            if let Err(e) = t.join() {
                result = Err(io::Error::other(format!("core failed: {e}")));
            }
        }
        result
    }
}

/// Sockets bound on the starting thread and moved to their core.
#[derive(Debug)]
struct CoreSockets {
    addrs: CoreAddrs,
    public_udp: Option<Socket>,
    private_udp: Option<Socket>,
}

fn bind_udp(addr: SocketAddr, reuse_port: bool, c: &Config) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(false).ok();
    }
    if c.udp.recv_buffer > 0 {
        s.set_recv_buffer_size(c.udp.recv_buffer).ok();
    }
    if c.udp.send_buffer > 0 {
        s.set_send_buffer_size(c.udp.send_buffer).ok();
    }
    s.bind(&SockAddr::from(addr))?;
    Ok(s)
}

/// A bound (not listening) SO_REUSEPORT TCP socket that holds a port until
/// the cores have bound their listeners to it.
fn reserve_tcp(addr: SocketAddr) -> io::Result<(Socket, SocketAddr)> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_port(true)?;
    s.bind(&SockAddr::from(addr))?;
    let local = s
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an inet socket"))?;
    Ok((s, local))
}

fn local_of(s: &Socket) -> io::Result<SocketAddr> {
    s.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an inet socket"))
}

/// Bind every core's sockets. With port 0 the kernel picks the public port
/// (UDP and TCP get the same number) and every private port.
fn bind_all(c: &Config, cores: CoreId) -> io::Result<(Vec<CoreSockets>, Vec<Socket>)> {
    let udp = c.serves(TransportName::Udp);
    let tcp = c.serves(TransportName::Tcp);
    let listen = c.server.listen;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match try_bind_all(c, cores, listen, udp, tcp) {
            Ok(r) => return Ok(r),
            // An ephemeral UDP port may be taken for TCP: try another.
            Err(e) if listen.port() == 0 && attempts < 20 => {
                tracing::debug!("binding with an ephemeral port: {e}; retrying");
            }
            Err(e) => return Err(e),
        }
    }
}

fn try_bind_all(
    c: &Config,
    cores: CoreId,
    listen: SocketAddr,
    udp: bool,
    tcp: bool,
) -> io::Result<(Vec<CoreSockets>, Vec<Socket>)> {
    let mut reservations = Vec::new();
    let mut public_addr = listen;
    let mut first_udp = None;
    if udp {
        let s = bind_udp(listen, true, c)
            .map_err(|e| io::Error::new(e.kind(), format!("bind UDP {listen}: {e}")))?;
        public_addr = local_of(&s)?;
        first_udp = Some(s);
    }
    if tcp {
        let (r, a) = reserve_tcp(public_addr)
            .map_err(|e| io::Error::new(e.kind(), format!("bind TCP {public_addr}: {e}")))?;
        public_addr = a;
        reservations.push(r);
    }
    let base = c.effective_private_base();
    let mut out = Vec::with_capacity(usize::from(cores));
    for core in 0..cores {
        let public_udp = match (core, udp) {
            (_, false) => None,
            (0, true) => first_udp.take(),
            (_, true) => Some(bind_udp(public_addr, true, c)?),
        };
        let port = if base == 0 {
            0
        } else {
            base.checked_add(core)
                .ok_or_else(|| io::Error::other("private port out of range"))?
        };
        let mut private_addr = SocketAddr::new(listen.ip(), port);
        let mut private_udp = None;
        if udp {
            let s = bind_udp(private_addr, false, c).map_err(|e| {
                io::Error::new(e.kind(), format!("bind private UDP {private_addr}: {e}"))
            })?;
            private_addr = local_of(&s)?;
            private_udp = Some(s);
        }
        let mut private_tcp = None;
        if tcp {
            let (r, a) = reserve_tcp(private_addr).map_err(|e| {
                io::Error::new(e.kind(), format!("bind private TCP {private_addr}: {e}"))
            })?;
            private_tcp = Some(a);
            reservations.push(r);
        }
        out.push(CoreSockets {
            addrs: CoreAddrs {
                core,
                public_udp: udp.then_some(public_addr),
                public_tcp: tcp.then_some(public_addr),
                private_udp: private_udp.as_ref().map(local_of).transpose()?,
                private_tcp,
            },
            public_udp,
            private_udp,
        });
    }
    Ok((out, reservations))
}

/// Start the shell: bind, start one executor per core, build each core's
/// engine with `factory` on its thread, and serve until stopped.
pub fn start<F, E>(config: &Config, factory: F) -> io::Result<ShellHandle>
where
    F: Fn(CoreContext) -> E + Send + Sync + 'static,
    E: Engine + 'static,
{
    start_with_store(config, None, factory)
}

/// [`start`], with the store that runs the engines' `Request::Store`.
pub fn start_with_store<F, E>(
    config: &Config,
    store: Option<Arc<dyn crate::store::Store>>,
    factory: F,
) -> io::Result<ShellHandle>
where
    F: Fn(CoreContext) -> E + Send + Sync + 'static,
    E: Engine + 'static,
{
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let cores = config.effective_cores();
    let (sockets, reservations) = bind_all(config, cores)?;
    let tuning = ShellTuning::from_config(config);
    let clock = Clock::new();
    let stop = Arc::new(AtomicBool::new(false));
    let idle: Arc<Vec<AtomicBool>> = Arc::new((0..cores).map(|_| AtomicBool::new(false)).collect());
    let factory = Arc::new(factory);
    let advertised = config.advertised_host();
    let counters: Vec<Arc<CoreCounters>> =
        (0..cores).map(|c| Arc::new(CoreCounters::new(c))).collect();
    let returns: Vec<Arc<crossbeam::queue::ArrayQueue<Vec<u8>>>> = (0..cores)
        .map(|_| Arc::new(crossbeam::queue::ArrayQueue::new(4096)))
        .collect();
    let mesh = (cores > 1)
        .then(|| glommio::channels::channel_mesh::MeshBuilder::full(usize::from(cores), 4096));
    let cpus = available_cpus();
    let (ready_tx, ready_rx) = mpsc::channel::<io::Result<CoreId>>();
    let mut threads = Vec::with_capacity(usize::from(cores));
    let mut addrs = Vec::with_capacity(usize::from(cores));
    for sock in sockets {
        let core = sock.addrs.core;
        addrs.push(sock.addrs.clone());
        let placement = if config.server.pin && !cpus.is_empty() {
            glommio::Placement::Fixed(cpus[usize::from(core) % cpus.len()])
        } else {
            glommio::Placement::Unbound
        };
        let ctx = CoreContext {
            core,
            cores,
            public_udp: sock.addrs.public_udp,
            public_tcp: sock.addrs.public_tcp,
            private_udp: sock.addrs.private_udp,
            private_tcp: sock.addrs.private_tcp,
            advertised_host: advertised.clone(),
            counters: counters[usize::from(core)].clone(),
        };
        let setup = tasks::CoreSetup {
            ctx,
            public_udp: sock.public_udp,
            private_udp: sock.private_udp,
            tuning: tuning.clone(),
            clock,
            stop: stop.clone(),
            idle: idle.clone(),
            mesh: mesh.clone(),
            returns: returns.clone(),
            ready: ready_tx.clone(),
            store: store.clone(),
        };
        let factory = factory.clone();
        let mut builder =
            glommio::LocalExecutorBuilder::new(placement).name(&format!("sipring-core-{core}"));
        // Some(0) is not None to glommio: set it only when asked for.
        if config.udp.spin_before_park_us > 0 {
            builder =
                builder.spin_before_park(Duration::from_micros(config.udp.spin_before_park_us));
        }
        let handle = builder
            .spawn(move || async move { tasks::run_core(setup, move |ctx| factory(ctx)).await })
            .map_err(|e| io::Error::other(format!("starting core {core}: {e}")))?;
        threads.push(handle);
    }
    drop(ready_tx);
    let mut first_err = None;
    for _ in 0..cores {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(io::Error::other("a core exited during start-up"));
                break;
            }
        }
    }
    drop(reservations);
    let handle = ShellHandle {
        addrs,
        counters,
        stop,
        threads,
    };
    if let Some(e) = first_err {
        handle.stop();
        let _ = handle.join();
        return Err(e);
    }
    Ok(handle)
}

/// CPUs this process may run on.
fn available_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}
