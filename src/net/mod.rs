//! The network: multicast sockets (the group address, the interface, socket options, with
//! socket2), batched UDP I/O (`datapath`) and the pacer (`pace`).

pub mod datapath;
pub mod pace;

use crate::error::Error;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;

/// UDP port of a group given without one.
pub const DEFAULT_PORT: u16 = 5007;
/// Receive buffer asked for: room for a couple of blocks' worth of packets while a decode runs.
const RECV_BUFFER: usize = 32 << 20;

/// A multicast group and port, as in `239.1.1.1` or `239.1.1.1:5007`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group(pub SocketAddrV4);

impl FromStr for Group {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let addr = match s.parse::<SocketAddrV4>() {
            Ok(a) => a,
            Err(_) => SocketAddrV4::new(
                s.parse::<Ipv4Addr>()
                    .map_err(|_| format!("'{s}' is not an IPv4 address or ADDR:PORT"))?,
                DEFAULT_PORT,
            ),
        };
        if !addr.ip().is_multicast() {
            return Err(format!(
                "{} is not a multicast address: use one in 239.0.0.0/8, the LAN's own, e.g. 239.1.1.1",
                addr.ip()
            ));
        }
        // 224.0.0.0/24 is the local network control block (RFC 5771): IGMP, OSPF, mDNS and
        // the like. Switches flood it to every port whatever the snooping, and routers' control
        // planes read it.
        if addr.ip().octets()[..3] == [224, 0, 0] {
            return Err(format!(
                "{} is in 224.0.0.0/24, reserved for routing and discovery protocols: use one in 239.0.0.0/8, e.g. 239.1.1.1",
                addr.ip()
            ));
        }
        if addr.port() == 0 {
            return Err("port 0 is not allowed".into());
        }
        Ok(Group(addr))
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The IPv4 address of `--iface`, given as an interface name or one of its addresses.
pub fn interface_addr(iface: Option<&str>) -> Result<Ipv4Addr, Error> {
    let Some(iface) = iface else {
        return Ok(Ipv4Addr::UNSPECIFIED);
    };
    let no_such = |why: &str| Error::Interface {
        iface: iface.to_owned(),
        why: why.to_owned(),
    };
    let all = if_addrs::get_if_addrs().map_err(|e| no_such(&e.to_string()))?;
    let v4 = |i: &if_addrs::Interface| match &i.addr {
        if_addrs::IfAddr::V4(a) => Some(a.ip),
        if_addrs::IfAddr::V6(_) => None,
    };
    if let Ok(ip) = iface.parse::<Ipv4Addr>() {
        return all
            .iter()
            .filter_map(v4)
            .find(|a| *a == ip)
            .ok_or_else(|| no_such("no interface has this address"));
    }
    if !all.iter().any(|i| i.name == iface) {
        return Err(no_such("no such interface"));
    }
    all.iter()
        .filter(|i| i.name == iface)
        .find_map(v4)
        .ok_or_else(|| no_such("it has no IPv4 address"))
}

fn udp_socket() -> std::io::Result<Socket> {
    Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
}

/// Asks for a large receive buffer; as root, past `net.core.rmem_max` (which a namespace cannot
/// raise). What the kernel grants is logged, not fatal.
fn grow_recv_buffer(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let size = RECV_BUFFER as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the stated length.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    }
    tracing::debug!(
        granted = socket.recv_buffer_size().unwrap_or(0),
        "receive buffer"
    );
}

/// The sender's one socket: sends to the group from `iface`, and receives feedback on its port
/// (`port`, or any free one if 0).
pub fn sender_socket(
    group: Group,
    iface: Ipv4Addr,
    ttl: u32,
    port: u16,
) -> Result<std::net::UdpSocket, Error> {
    let fail = |e: std::io::Error| Error::Socket {
        what: format!("cannot send to {group} from {iface}"),
        source: e,
    };
    let socket = udp_socket().map_err(fail)?;
    socket
        .bind(&SocketAddr::from((iface, port)).into())
        .map_err(fail)?;
    if !iface.is_unspecified() {
        socket.set_multicast_if_v4(&iface).map_err(fail)?;
    }
    socket.set_multicast_ttl_v4(ttl).map_err(fail)?;
    socket.set_multicast_loop_v4(true).map_err(fail)?;
    grow_recv_buffer(&socket);
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}

/// A socket handed to tokio (inside a runtime).
pub fn register(socket: std::net::UdpSocket) -> Result<tokio::net::UdpSocket, Error> {
    tokio::net::UdpSocket::from_std(socket).map_err(|e| Error::Socket {
        what: "cannot register a socket".into(),
        source: e,
    })
}

/// The port a socket was bound to (the sender's feedback port).
pub fn local_port(socket: &std::net::UdpSocket) -> Result<u16, Error> {
    socket
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Socket {
            what: "cannot read the socket's port".into(),
            source: e,
        })
}

/// The address datagrams to `group` go out from: `iface`'s, or, with no `--iface`, the one the
/// route to the group picks (the kernel's choice for a connected socket; nothing is sent). A
/// signed ANNOUNCE or SERVER names it, so that a replay of it from another host is refused.
pub fn source_addr(group: Group, iface: Ipv4Addr) -> Result<Ipv4Addr, Error> {
    if !iface.is_unspecified() {
        return Ok(iface);
    }
    let fail = |e: std::io::Error| Error::Socket {
        what: format!("cannot find the address that sends to {group}"),
        source: e,
    };
    let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(fail)?;
    probe.connect(group.0).map_err(fail)?;
    match probe.local_addr().map_err(fail)?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Ok(ip),
        _ => Err(fail(std::io::Error::other("no IPv4 route to the group"))),
    }
}

/// The interface a socket joined to `group` listens on, as an operator reads it: `eth0,
/// 10.0.0.5`. Without `--iface`, the kernel joins on the interface of the route to the group.
pub fn describe_iface(group: Group, iface: Ipv4Addr) -> String {
    let Ok(addr) = source_addr(group, iface) else {
        return "the route's interface".into();
    };
    if_addrs::get_if_addrs()
        .ok()
        .and_then(|all| {
            all.into_iter()
                .find(|i| matches!(i.addr, if_addrs::IfAddr::V4(ref a) if a.ip == addr))
        })
        .map_or(addr.to_string(), |i| format!("{}, {addr}", i.name))
}

/// The link speed the OS reports for the interface that sends to `group` from `iface`
/// (`/sys/class/net/IF/speed`, Mbit/s), if it reports one: `send`'s default ceiling.
pub fn link_speed(group: Group, iface: Ipv4Addr) -> Option<pace::Rate> {
    let addr = source_addr(group, iface).ok()?;
    let name = if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .find(|i| matches!(i.addr, if_addrs::IfAddr::V4(ref a) if a.ip == addr))?
        .name;
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/speed")).ok()?;
    // Unknown speeds read as -1 (or fail to read at all: loopback, a tunnel).
    let mbit: i64 = text.trim().parse().ok()?;
    (mbit > 0).then_some(pace::Rate(mbit as f64 * 1e6))
}

/// A receiver's group socket: joined on `iface`, bound to the group so other groups on the port
/// stay out. Several receivers on one host may share the port.
pub fn group_socket(group: Group, iface: Ipv4Addr) -> Result<std::net::UdpSocket, Error> {
    let fail = |e: std::io::Error| Error::Socket {
        what: if iface.is_unspecified() {
            format!("cannot join {}", group.0.ip())
        } else {
            format!("cannot join {} on {iface}", group.0.ip())
        },
        source: e,
    };
    let socket = udp_socket().map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.bind(&SocketAddr::V4(group.0).into()).map_err(fail)?;
    socket
        .join_multicast_v4(group.0.ip(), &iface)
        .map_err(fail)?;
    grow_recv_buffer(&socket);
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}

/// A receiver's unicast socket for STATUS/NEED out and ACK in.
pub fn feedback_socket(iface: Ipv4Addr) -> Result<std::net::UdpSocket, Error> {
    let fail = |e: std::io::Error| Error::Socket {
        what: format!("cannot open a feedback socket on {iface}"),
        source: e,
    };
    let socket = udp_socket().map_err(fail)?;
    socket
        .bind(&SocketAddr::from((iface, 0)).into())
        .map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_parse_with_and_without_port() {
        assert_eq!(
            "239.1.1.1".parse::<Group>().unwrap().0,
            "239.1.1.1:5007".parse().unwrap()
        );
        assert_eq!("239.1.1.1:6000".parse::<Group>().unwrap().0.port(), 6000);
        assert!(
            "10.0.0.1"
                .parse::<Group>()
                .unwrap_err()
                .contains("not a multicast")
        );
        assert!("pi".parse::<Group>().is_err());
        for control in ["224.0.0.1", "224.0.0.251:5353", "224.0.0.255"] {
            assert!(
                control
                    .parse::<Group>()
                    .unwrap_err()
                    .contains("224.0.0.0/24, reserved"),
                "{control}"
            );
        }
        assert!("224.0.1.1".parse::<Group>().is_ok());
        assert!("239.1.1.1:0".parse::<Group>().is_err());
    }

    #[test]
    fn unknown_interfaces_are_named_in_the_error() {
        let e = interface_addr(Some("eth-nope")).unwrap_err().to_string();
        assert!(
            e.contains("eth-nope") && e.contains("no such interface"),
            "{e}"
        );
        assert_eq!(interface_addr(Some("lo")).unwrap(), Ipv4Addr::LOCALHOST);
        assert_eq!(
            interface_addr(Some("127.0.0.1")).unwrap(),
            Ipv4Addr::LOCALHOST
        );
    }
}
