//! Which addresses the server may download from. By default none of the LAN's own (private,
//! loopback, link-local, multicast ...): a student must not be able to make the lab server reach
//! inside the school's network. `--allow NET` makes exceptions, `--deny NET` adds ranges; an
//! allowed range wins over a denied one, so `--deny 0.0.0.0/0 --allow 203.0.113.0/24` is an
//! allow-list. Every address a name resolves to is checked, on every connection (redirects too).

use std::net::IpAddr;
use std::str::FromStr;

/// Ranges refused unless allowed (RFC 6890 special-purpose, plus multicast and reserved).
const LOCAL: [&str; 14] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/127",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
    "64:ff9b::/96",
];

/// An address range, `ADDR/PREFIX` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address range (like 10.0.0.0/8 or 192.0.2.7)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Net { addr, prefix })
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        // IPv4 in the top 32 bits, so one mask from the top serves both families.
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v) => (u32::from(v) as u128) << 96,
            IpAddr::V6(v) => u128::from(v),
        };
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - self.prefix as u32)
        };
        bits(self.addr) & mask == bits(ip) & mask
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    allow: Vec<Net>,
    deny: Vec<Net>,
}

impl Policy {
    pub fn new(allow: Vec<Net>, deny: Vec<Net>) -> Self {
        let mut all: Vec<Net> = LOCAL
            .iter()
            .map(|n| n.parse().expect("valid range"))
            .collect();
        all.extend(deny);
        Policy { allow, deny: all }
    }

    /// Everything allowed: the operator's own `send URL`.
    pub fn allow_all() -> Self {
        Policy {
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }

    /// Whether the server may connect to `ip`; if not, a reason a person can act on.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        // An IPv4 address written as IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address.
        let ip = ip.to_canonical();
        if self.allow.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        match self.deny.iter().find(|n| n.contains(ip)) {
            Some(n) => Err(format!(
                "{ip} is in {n}, which this server may not fetch from (allow it with --allow {n})"
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_lan_is_refused_by_default_and_allow_wins() {
        let p = Policy::new(vec![], vec![]);
        for a in [
            "10.1.2.3",
            "127.0.0.1",
            "192.168.1.1",
            "172.20.0.1",
            "169.254.169.254",
            "::1",
        ] {
            assert!(p.check(ip(a)).is_err(), "{a}");
        }
        assert!(p.check(ip("::ffff:10.0.0.1")).is_err());
        assert!(p.check(ip("203.0.113.9")).is_ok());
        assert!(p.check(ip("2001:db8::1")).is_ok());
        let e = p.check(ip("10.77.0.2")).unwrap_err();
        assert!(e.contains("--allow 10.0.0.0/8"), "{e}");

        let p = Policy::new(vec!["10.77.0.0/24".parse().unwrap()], vec![]);
        assert!(p.check(ip("10.77.0.2")).is_ok());
        assert!(p.check(ip("10.78.0.2")).is_err());

        let only = Policy::new(
            vec!["203.0.113.0/24".parse().unwrap()],
            vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
        );
        assert!(only.check(ip("203.0.113.200")).is_ok());
        assert!(only.check(ip("198.51.100.1")).is_err());
        assert!("10.0.0.0/33".parse::<Net>().is_err());
        assert!("host".parse::<Net>().is_err());
    }
}
