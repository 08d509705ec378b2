//! The network: multicast sockets (the group address, the interface, socket options, with
//! socket2), batched UDP I/O (`datapath`) and the pacer (`pace`).

pub mod datapath;
pub mod pace;

use crate::error::Error;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::str::FromStr;

/// UDP port of a group given without one.
pub const DEFAULT_PORT: u16 = 5007;
/// Receive buffer asked for: room for a couple of blocks' worth of packets while a decode runs.
const RECV_BUFFER: usize = 32 << 20;

/// A multicast group and port, as in `239.1.1.1`, `239.1.1.1:5007`, `ff15::1` or
/// `[ff15::1]:5007`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group(pub SocketAddr);

impl FromStr for Group {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let addr = match s.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => SocketAddr::new(
                s.parse::<IpAddr>().map_err(|_| {
                    format!("'{s}' is not an IP address or ADDR:PORT ([ADDR]:PORT for IPv6)")
                })?,
                DEFAULT_PORT,
            ),
        };
        match addr.ip() {
            IpAddr::V4(ip) => check_v4(ip)?,
            IpAddr::V6(ip) => check_v6(ip)?,
        }
        if addr.port() == 0 {
            return Err("port 0 is not allowed".into());
        }
        Ok(Group(addr))
    }
}

fn check_v4(ip: Ipv4Addr) -> Result<(), String> {
    if !ip.is_multicast() {
        return Err(format!(
            "{ip} is not a multicast address: use one in 239.0.0.0/8, the LAN's own, e.g. 239.1.1.1"
        ));
    }
    // 224.0.0.0/24 is the local network control block (RFC 5771): IGMP, OSPF, mDNS and
    // the like. Switches flood it to every port whatever the snooping, and routers' control
    // planes read it.
    if ip.octets()[..3] == [224, 0, 0] {
        return Err(format!(
            "{ip} is in 224.0.0.0/24, reserved for routing and discovery protocols: use one in 239.0.0.0/8, e.g. 239.1.1.1"
        ));
    }
    Ok(())
}

/// The scope of an IPv6 multicast address (RFC 4291 section 2.7): 1 interface-local, 2
/// link-local, 5 site-local, 8 organization-local, 0xe global.
pub fn v6_scope(ip: Ipv6Addr) -> u8 {
    ip.octets()[1] & 0x0f
}

fn check_v6(ip: Ipv6Addr) -> Result<(), String> {
    if !ip.is_multicast() {
        return Err(format!(
            "{ip} is not a multicast address: use one in ff15::/16, the site's own, e.g. ff15::1"
        ));
    }
    // The T flag clear (ff0X::) marks a permanently assigned address (RFC 4291 section 2.7):
    // all-nodes ff02::1, routers, mDNS, solicited-node... the equivalent of 224.0.0.0/24.
    if ip.octets()[1] & 0x10 == 0 {
        return Err(format!(
            "{ip} is a permanently assigned address (ff0X::), reserved for routing and discovery protocols: use a transient one (ff1X::), e.g. ff15::1"
        ));
    }
    // Scopes 0 and 15 are reserved (RFC 4291 section 2.7).
    if matches!(v6_scope(ip), 0 | 0xf) {
        return Err(format!(
            "{ip} has a reserved scope: use a site-local one, e.g. ff15::1"
        ));
    }
    Ok(())
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Group {
    /// The same address on another port (the download manager's per-file groups).
    pub fn with_port(self, port: u16) -> Group {
        Group(SocketAddr::new(self.0.ip(), port))
    }

    /// The address `n` past this one, on `port` (video's per-channel groups). Only the last
    /// 32 bits move, so an IPv6 group keeps its flags and scope.
    pub fn offset(self, n: u32, port: u16) -> Group {
        let ip = match self.0.ip() {
            IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(u32::from(ip).wrapping_add(n))),
            IpAddr::V6(ip) => {
                let mut o = ip.octets();
                let low = u32::from_be_bytes([o[12], o[13], o[14], o[15]]).wrapping_add(n);
                o[12..].copy_from_slice(&low.to_be_bytes());
                IpAddr::V6(Ipv6Addr::from(o))
            }
        };
        Group(SocketAddr::new(ip, port))
    }
}

/// The interface `--iface` names, in the group's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iface {
    /// Its address: sockets bind to it and IPv4 joins name it. Unspecified without `--iface`
    /// (the route to the group decides).
    pub ip: IpAddr,
    /// Its index, which IPv6 joins and `IPV6_MULTICAST_IF` take; 0 without `--iface`.
    pub index: u32,
}

impl Iface {
    /// No `--iface`: the kernel picks by route.
    pub fn any(group: Group) -> Iface {
        let ip = match group.0 {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Iface { ip, index: 0 }
    }

    /// No `--iface` was given.
    pub fn is_unspecified(&self) -> bool {
        self.ip.is_unspecified()
    }

    /// The socket address to bind to on `port`; a link-local IPv6 address needs its interface.
    pub fn bind_addr(&self, port: u16) -> SocketAddr {
        match self.ip {
            IpAddr::V6(ip) => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, self.index)),
            IpAddr::V4(_) => SocketAddr::new(self.ip, port),
        }
    }
}

impl std::fmt::Display for Iface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.ip)
    }
}

/// The interface of `--iface`, given as an interface name or one of its addresses, in the
/// family of `group`: an IPv6 group takes the interface's IPv6 address (a non-link-local one
/// if it has one) and its index.
pub fn interface_addr(iface: Option<&str>, group: Group) -> Result<Iface, Error> {
    let Some(name) = iface else {
        return check_scope(Iface::any(group), group, None);
    };
    let no_such = |why: &str| Error::Interface {
        iface: name.to_owned(),
        why: why.to_owned(),
    };
    let all = if_addrs::get_if_addrs().map_err(|e| no_such(&e.to_string()))?;
    let v6 = group.0.is_ipv6();
    let family = |i: &&if_addrs::Interface| i.addr.ip().is_ipv6() == v6;
    let found = if let Ok(ip) = name.parse::<IpAddr>() {
        all.iter()
            .find(|i| i.addr.ip() == ip)
            .ok_or_else(|| no_such("no interface has this address"))?
    } else {
        if !all.iter().any(|i| i.name == name) {
            return Err(no_such("no such interface"));
        }
        let mut mine = all.iter().filter(|i| i.name == name).filter(family);
        let first = mine.clone().next();
        mine.find(|i| !i.is_link_local()).or(first).ok_or_else(|| {
            no_such(if v6 {
                "it has no IPv6 address"
            } else {
                "it has no IPv4 address"
            })
        })?
    };
    if !family(&found) {
        return Err(no_such(&format!(
            "this address is not of the family of the group {group}"
        )));
    }
    let found_iface = Iface {
        ip: found.addr.ip(),
        index: found.index.unwrap_or(0),
    };
    check_scope(found_iface, group, Some(found.is_loopback()))
}

/// An interface-local IPv6 group (ff11::/16) never leaves the host: only for `--iface lo`. A
/// link-local one (ff12::/16) exists once per link: the kernel cannot pick the link by route.
fn check_scope(iface: Iface, group: Group, loopback: Option<bool>) -> Result<Iface, Error> {
    match group.0.ip() {
        IpAddr::V6(ip) if v6_scope(ip) == 2 && loopback.is_none() => Err(Error::Usage(format!(
            "{ip} is link-local (ff12::/16): say on which link with --iface eth0"
        ))),
        IpAddr::V6(ip) if v6_scope(ip) == 1 && loopback != Some(true) => {
            Err(Error::Usage(format!(
                "{ip} is interface-local (ff11::/16): it never leaves this host; use a site-local group, e.g. ff15::1 (or --iface lo)"
            )))
        }
        _ => Ok(iface),
    }
}

fn udp_socket(family: SocketAddr) -> std::io::Result<Socket> {
    Socket::new(
        Domain::for_address(family),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
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
/// (`port`, or any free one if 0). `ttl` is the IPv6 hop limit for an IPv6 group.
pub fn sender_socket(
    group: Group,
    iface: Iface,
    ttl: u32,
    port: u16,
) -> Result<std::net::UdpSocket, Error> {
    let fail = |e: std::io::Error| Error::Socket {
        what: format!("cannot send to {group} from {iface}"),
        source: e,
    };
    let socket = udp_socket(group.0).map_err(fail)?;
    socket.bind(&iface.bind_addr(port).into()).map_err(fail)?;
    match iface.ip {
        IpAddr::V4(ip) => {
            if !ip.is_unspecified() {
                socket.set_multicast_if_v4(&ip).map_err(fail)?;
            }
            socket.set_multicast_ttl_v4(ttl).map_err(fail)?;
            socket.set_multicast_loop_v4(true).map_err(fail)?;
        }
        IpAddr::V6(_) => {
            if iface.index != 0 {
                socket.set_multicast_if_v6(iface.index).map_err(fail)?;
            }
            socket.set_multicast_hops_v6(ttl).map_err(fail)?;
            socket.set_multicast_loop_v6(true).map_err(fail)?;
        }
    }
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
pub fn source_addr(group: Group, iface: Iface) -> Result<IpAddr, Error> {
    if !iface.is_unspecified() {
        return Ok(iface.ip);
    }
    let fail = |e: std::io::Error| Error::Socket {
        what: format!("cannot find the address that sends to {group}"),
        source: e,
    };
    let probe = std::net::UdpSocket::bind(iface.bind_addr(0)).map_err(fail)?;
    probe.connect(group.0).map_err(fail)?;
    match probe.local_addr().map_err(fail)?.ip() {
        ip if !ip.is_unspecified() => Ok(ip),
        _ => Err(fail(std::io::Error::other("no route to the group"))),
    }
}

/// The interface a socket joined to `group` listens on, as an operator reads it: `eth0,
/// 10.0.0.5`. Without `--iface`, the kernel joins on the interface of the route to the group.
pub fn describe_iface(group: Group, iface: Iface) -> String {
    let Ok(addr) = source_addr(group, iface) else {
        return "the route's interface".into();
    };
    if_addrs::get_if_addrs()
        .ok()
        .and_then(|all| all.into_iter().find(|i| i.addr.ip() == addr))
        .map_or(addr.to_string(), |i| format!("{}, {addr}", i.name))
}

/// The link speed the OS reports for the interface that sends to `group` from `iface`
/// (`/sys/class/net/IF/speed`, Mbit/s), if it reports one: `send`'s default ceiling.
pub fn link_speed(group: Group, iface: Iface) -> Option<pace::Rate> {
    let addr = source_addr(group, iface).ok()?;
    let name = if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .find(|i| i.addr.ip() == addr)?
        .name;
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/speed")).ok()?;
    // Unknown speeds read as -1 (or fail to read at all: loopback, a tunnel).
    let mbit: i64 = text.trim().parse().ok()?;
    (mbit > 0).then_some(pace::Rate(mbit as f64 * 1e6))
}

/// A receiver's group socket: joined on `iface` (MLD for IPv6), bound to the group so other
/// groups on the port stay out. Several receivers on one host may share the port.
pub fn group_socket(group: Group, iface: Iface) -> Result<std::net::UdpSocket, Error> {
    let fail = |e: std::io::Error| Error::Socket {
        what: if iface.is_unspecified() {
            format!("cannot join {}", group.0.ip())
        } else {
            format!("cannot join {} on {iface}", group.0.ip())
        },
        source: e,
    };
    let socket = udp_socket(group.0).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    match (group.0.ip(), iface.ip) {
        (IpAddr::V4(g), IpAddr::V4(ip)) => {
            socket.bind(&group.0.into()).map_err(fail)?;
            socket.join_multicast_v4(&g, &ip).map_err(fail)?;
        }
        (IpAddr::V6(g), _) => {
            socket.set_only_v6(true).map_err(fail)?;
            // Bound to the group with the interface as scope: a link-scoped group needs it.
            let at = SocketAddrV6::new(g, group.0.port(), 0, iface.index);
            socket.bind(&SocketAddr::V6(at).into()).map_err(fail)?;
            socket.join_multicast_v6(&g, iface.index).map_err(fail)?;
        }
        _ => {
            return Err(fail(std::io::Error::other(
                "the interface's address is not of the group's family",
            )));
        }
    }
    grow_recv_buffer(&socket);
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}

/// A receiver's unicast socket for STATUS/NEED out and ACK in.
pub fn feedback_socket(iface: Iface) -> Result<std::net::UdpSocket, Error> {
    let fail = |e: std::io::Error| Error::Socket {
        what: format!("cannot open a feedback socket on {iface}"),
        source: e,
    };
    let socket = udp_socket(iface.bind_addr(0)).map_err(fail)?;
    socket.bind(&iface.bind_addr(0).into()).map_err(fail)?;
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
    fn ipv6_groups_parse_and_well_known_or_unicast_ones_are_refused() {
        assert_eq!(
            "ff15::1".parse::<Group>().unwrap().0,
            "[ff15::1]:5007".parse().unwrap()
        );
        assert_eq!("[ff15::77]:6000".parse::<Group>().unwrap().0.port(), 6000);
        assert!(
            "fd77::1"
                .parse::<Group>()
                .unwrap_err()
                .contains("not a multicast address: use one in ff15::/16")
        );
        for known in ["ff02::1", "ff02::fb", "ff05::1:3", "ff0e::101"] {
            assert!(
                known
                    .parse::<Group>()
                    .unwrap_err()
                    .contains("permanently assigned"),
                "{known}"
            );
        }
        for reserved in ["ff10::1", "ff1f::1"] {
            assert!(
                reserved
                    .parse::<Group>()
                    .unwrap_err()
                    .contains("reserved scope"),
                "{reserved}"
            );
        }
        assert!("ff12::1".parse::<Group>().is_ok());
        assert!("ff3e:30:2001:db8::1".parse::<Group>().is_ok());
        assert!("[ff15::1]:0".parse::<Group>().is_err());
    }

    #[test]
    fn groups_offset_keeps_ipv6_flags_and_scope() {
        let g: Group = "[ff15::ffff:ffff]:9".parse().unwrap();
        assert_eq!(g.offset(2, 10).0, "[ff15::1]:10".parse().unwrap());
        let g: Group = "239.1.1.1".parse().unwrap();
        assert_eq!(g.offset(1, 5004).0, "239.1.1.2:5004".parse().unwrap());
    }

    #[test]
    fn unknown_interfaces_are_named_in_the_error() {
        let v4: Group = "239.1.1.1".parse().unwrap();
        let e = interface_addr(Some("eth-nope"), v4)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("eth-nope") && e.contains("no such interface"),
            "{e}"
        );
        assert_eq!(
            interface_addr(Some("lo"), v4).unwrap().ip,
            Ipv4Addr::LOCALHOST
        );
        assert_eq!(
            interface_addr(Some("127.0.0.1"), v4).unwrap().ip,
            Ipv4Addr::LOCALHOST
        );
    }

    #[test]
    fn an_interface_local_ipv6_group_needs_loopback() {
        let local: Group = "ff11::1".parse().unwrap();
        let e = interface_addr(None, local).unwrap_err().to_string();
        assert!(e.contains("interface-local (ff11::/16)"), "{e}");
        let link: Group = "ff12::1".parse().unwrap();
        let e = interface_addr(None, link).unwrap_err().to_string();
        assert!(e.contains("say on which link with --iface"), "{e}");
        let site: Group = "ff15::1".parse().unwrap();
        assert_eq!(interface_addr(None, site).unwrap(), Iface::any(site));
        let e = interface_addr(Some("127.0.0.1"), site)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not of the family of the group"), "{e}");
    }
}
