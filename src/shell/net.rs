//! Non-blocking socket calls on the shell's file descriptors.
//!
//! glommio's sockets are used to *wait* (one io_uring operation when a socket
//! is empty); once awake, the shell reads and writes with plain non-blocking
//! syscalls (`MSG_DONTWAIT`) into its own reused buffers, so the packet path
//! allocates nothing. The descriptors stay in blocking mode because io_uring
//! operations on them must wait rather than fail with EAGAIN.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, SockaddrLike, SockaddrStorage};

fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// Read one datagram into `buf` without waiting; `Ok(None)` when none is queued.
pub(crate) fn udp_recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
    let mut iov = [io::IoSliceMut::new(buf)];
    match socket::recvmsg::<SockaddrStorage>(fd, &mut iov, None, MsgFlags::MSG_DONTWAIT) {
        Ok(msg) => {
            let from = msg.address.as_ref().and_then(to_std);
            match from {
                Some(from) => Ok(Some((msg.bytes, from))),
                None => Err(io::Error::other("datagram without a source address")),
            }
        }
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Send one datagram without waiting (a full socket buffer is an error: SIP
/// over UDP recovers by retransmission).
pub(crate) fn udp_send(fd: RawFd, buf: &[u8], to: SocketAddr) -> io::Result<()> {
    let addr = SockaddrStorage::from(to);
    debug_assert!(addr.family().is_some());
    socket::sendto(fd, buf, &addr, MsgFlags::MSG_DONTWAIT)
        .map(|_| ())
        .map_err(Into::into)
}

/// Write as much of `buf` to a stream as fits without waiting.
pub(crate) fn tcp_send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    match socket::send(fd, buf, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
        Ok(n) => Ok(n),
        Err(Errno::EAGAIN) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Shut a stream down both ways, so that its reader task wakes with EOF.
pub(crate) fn tcp_shutdown(fd: RawFd) {
    let _ = socket::shutdown(fd, socket::Shutdown::Both);
}
