//! Batched UDP I/O (quinn-udp): the sender hands the kernel many equal-sized datagrams in one
//! `sendmsg` with UDP GSO, the receiver takes many in one `recvmmsg` (and GRO where the kernel
//! coalesces). Per-packet system calls are what limit a UDP sender, not the FEC.

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams one GSO send carries (the kernel's limit is 64).
pub const MAX_SEGMENTS: usize = 32;

/// Longest wait for the socket to take a batch.
const SEND_STALL: std::time::Duration = std::time::Duration::from_millis(250);

/// Outgoing datagrams gathered for one GSO send: same destination, same size.
pub struct SendBatch {
    state: UdpSocketState,
    buf: Vec<u8>,
    segment: usize,
    dest: Option<SocketAddr>,
    max: usize,
}

impl SendBatch {
    pub fn new(socket: &UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new(UdpSockRef::from(socket))?;
        let max = state.max_gso_segments().clamp(1, MAX_SEGMENTS);
        Ok(SendBatch {
            state,
            buf: Vec::with_capacity(max * 1500),
            segment: 0,
            dest: None,
            max,
        })
    }

    /// Adds a datagram; if it cannot join the batch (other size or destination), the batch is
    /// sent first. A full batch is sent at once. An error names the destination that failed.
    pub async fn push(
        &mut self,
        socket: &UdpSocket,
        dest: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), (SocketAddr, io::Error)> {
        if self.dest.is_some_and(|d| d != dest)
            || (self.segment != datagram.len() && self.segment != 0)
        {
            self.flush(socket).await?;
        }
        self.dest = Some(dest);
        self.segment = datagram.len();
        self.buf.extend_from_slice(datagram);
        if self.buf.len() >= self.segment * self.max {
            self.flush(socket).await?;
        }
        Ok(())
    }

    /// Sends what is gathered.
    pub async fn flush(&mut self, socket: &UdpSocket) -> Result<(), (SocketAddr, io::Error)> {
        let Some(dest) = self.dest else {
            return Ok(());
        };
        let transmit = Transmit {
            destination: dest,
            ecn: None,
            contents: &self.buf,
            segment_size: (self.buf.len() > self.segment).then_some(self.segment),
            src_ip: None,
        };
        let state = &self.state;
        let send = socket.async_io(Interest::WRITABLE, || {
            state.try_send(UdpSockRef::from(socket), &transmit)
        });
        // A socket that stays unwritable must not stall the session (its announces included):
        // past the bound the batch is dropped, like a lossy link would, and repair brings it back.
        let result = match tokio::time::timeout(SEND_STALL, send).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    "{dest}: the socket stayed unwritable for {SEND_STALL:?}; batch dropped"
                );
                Ok(())
            }
        };
        self.buf.clear();
        self.segment = 0;
        self.dest = None;
        result.map_err(|e| (dest, e))
    }
}

/// Incoming datagrams, many per system call.
pub struct RecvBatch {
    state: UdpSocketState,
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
}

impl RecvBatch {
    pub fn new(socket: &UdpSocket, slots: usize) -> io::Result<Self> {
        let state = UdpSocketState::new(UdpSockRef::from(socket))?;
        // A GRO read may coalesce up to 64 datagrams into one buffer.
        let size = 1500 * state.gro_segments().max(1);
        Ok(RecvBatch {
            state,
            bufs: vec![vec![0; size]; slots],
            meta: vec![RecvMeta::default(); slots],
        })
    }

    /// Reads one batch if any datagram is waiting (`WouldBlock` if none), calling `each` for every
    /// datagram. GRO may have coalesced several into one buffer: `stride` splits them again.
    pub fn try_recv(
        &mut self,
        socket: &UdpSocket,
        mut each: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let mut slices: Vec<IoSliceMut<'_>> =
            self.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let (state, meta) = (&self.state, &mut self.meta);
        let n = socket.try_io(Interest::READABLE, || {
            state.recv(UdpSockRef::from(socket), &mut slices, meta)
        })?;
        let mut count = 0;
        for (m, buf) in self.meta.iter().zip(&self.bufs).take(n) {
            let stride = m.stride.max(1);
            for datagram in buf[..m.len].chunks(stride) {
                each(m.addr, datagram);
                count += 1;
            }
        }
        Ok(count)
    }
}
