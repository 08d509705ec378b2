//! Which addresses the server may download from. By default none of the LAN's own (private,
//! loopback, link-local, multicast ..., and the networks the server's own interfaces are on, even
//! public ones, IPv6 included): a student must not be able to make the lab server reach inside the
//! school's network. `--allow NET` makes exceptions, `--deny NET` adds ranges; an allowed range
//! wins over a denied one, so `--deny 0.0.0.0/0 --allow 203.0.113.0/24` is an allow-list. Every
//! address a name resolves to is checked, on every connection (redirects too), and so is the host
//! name against `--allow-domain` and `--deny-domain`.

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
    /// The network `addr` is on, with `prefix` bits.
    fn covering(addr: IpAddr, prefix: u8) -> Net {
        let addr = match addr {
            IpAddr::V4(v) => {
                let mask = u32::MAX
                    .checked_shl(32 - prefix.min(32) as u32)
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v) & mask).into())
            }
            IpAddr::V6(v) => {
                let mask = u128::MAX
                    .checked_shl(128 - prefix.min(128) as u32)
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v) & mask).into())
            }
        };
        Net { addr, prefix }
    }

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

/// The networks this host's interfaces are on now.
pub fn interface_networks() -> std::io::Result<Vec<Net>> {
    let all = if_addrs::get_if_addrs()?;
    Ok(own_networks(all.iter().map(|i| match &i.addr {
        if_addrs::IfAddr::V4(a) => (IpAddr::V4(a.ip), a.prefixlen),
        if_addrs::IfAddr::V6(a) => (IpAddr::V6(a.ip), a.prefixlen),
    })))
}

/// The networks of these addresses (an address and its prefix length each). A prefix
/// shorter than /8 (IPv4) or /32 (IPv6) is left out: that is a tunnel's catch-all route, not a
/// network of the school's, and would refuse most of the Internet.
pub fn own_networks(addrs: impl IntoIterator<Item = (IpAddr, u8)>) -> Vec<Net> {
    let mut nets: Vec<Net> = addrs
        .into_iter()
        .filter(|(ip, prefix)| *prefix >= if ip.is_ipv4() { 8 } else { 32 })
        .map(|(ip, prefix)| Net::covering(ip.to_canonical(), prefix))
        .collect();
    nets.sort_by_key(|n| (n.addr, n.prefix));
    nets.dedup();
    nets
}

/// A host name pattern: `example.org` (that host) or `*.example.org` (any host under it, not
/// example.org itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    name: String,
    subdomains: bool,
}

impl FromStr for Domain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (name, subdomains) = match t.strip_prefix("*.") {
            Some(rest) => (rest.to_owned(), true),
            None => (t, false),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !name.split('.').all(label_ok) {
            return Err(format!(
                "{s:?} is not a host name or *.domain (like mirror.example.org or *.example.org)"
            ));
        }
        Ok(Domain { name, subdomains })
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.subdomains {
            write!(f, "*.")?;
        }
        write!(f, "{}", self.name)
    }
}

impl Domain {
    /// `host` is lowercase, without a trailing dot.
    fn matches(&self, host: &str) -> bool {
        if self.subdomains {
            host.strip_suffix(&self.name)
                .is_some_and(|head| head.ends_with('.'))
        } else {
            host == self.name
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    allow: Vec<Net>,
    deny: Vec<Net>,
    allow_domains: Vec<Domain>,
    deny_domains: Vec<Domain>,
}

impl Policy {
    pub fn new(allow: Vec<Net>, deny: Vec<Net>) -> Self {
        let mut all: Vec<Net> = LOCAL
            .iter()
            .map(|n| n.parse().expect("valid range"))
            .collect();
        all.extend(deny);
        Policy {
            allow,
            deny: all,
            allow_domains: Vec::new(),
            deny_domains: Vec::new(),
        }
    }

    /// Refuses `nets` too, unless allowed: the server's own networks (`own_networks`).
    pub fn deny_networks(mut self, nets: impl IntoIterator<Item = Net>) -> Self {
        self.deny.extend(nets);
        self
    }

    /// Only hosts matching `allow` (if any is given), and none matching `deny`.
    pub fn domains(mut self, allow: Vec<Domain>, deny: Vec<Domain>) -> Self {
        self.allow_domains = allow;
        self.deny_domains = deny;
        self
    }

    /// Everything allowed: the operator's own `send URL`.
    pub fn allow_all() -> Self {
        Policy {
            allow: Vec::new(),
            deny: Vec::new(),
            allow_domains: Vec::new(),
            deny_domains: Vec::new(),
        }
    }

    /// Whether the server may fetch from the host named `host` (as in a URL: a name or an address
    /// literal, IPv6 in brackets); if not, a reason a person can act on. A denied domain wins over
    /// an allowed one, so `--allow-domain *.example.org --deny-domain upload.example.org` works.
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Some(d) = self.deny_domains.iter().find(|d| d.matches(&host)) {
            return Err(format!(
                "{host} is refused by this server (--deny-domain {d})"
            ));
        }
        if !self.allow_domains.is_empty() && !self.allow_domains.iter().any(|d| d.matches(&host)) {
            return Err(format!(
                "{host} is not in this server's --allow-domain list (add it with --allow-domain {host})"
            ));
        }
        Ok(())
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

    #[test]
    fn the_servers_own_networks_are_refused_even_when_public() {
        // A lab whose server has a public IPv4 /24 and a global IPv6 /64 (plus the usual).
        let own = own_networks([
            (ip("198.51.100.7"), 24),
            (ip("2001:db8:5:6::7"), 64),
            (ip("127.0.0.1"), 8),
            (ip("fe80::1"), 64),
            (ip("192.0.2.1"), 0),
        ]);
        assert_eq!(
            own.iter().map(Net::to_string).collect::<Vec<_>>(),
            [
                "127.0.0.0/8",
                "198.51.100.0/24",
                "2001:db8:5:6::/64",
                "fe80::/64"
            ],
            "a /0 is a catch-all, not the server's network"
        );
        let p = Policy::new(vec![], vec![]).deny_networks(own.clone());
        for a in ["198.51.100.9", "2001:db8:5:6::99", "::ffff:198.51.100.1"] {
            let e = p.check(ip(a)).unwrap_err();
            assert!(e.contains("--allow"), "{a}: {e}");
        }
        // Next door is the Internet.
        for a in ["198.51.101.1", "2001:db8:5:7::1", "192.0.2.9"] {
            assert!(p.check(ip(a)).is_ok(), "{a}");
        }
        // The operator may still open a mirror on the server's own network.
        let p = Policy::new(vec!["2001:db8:5:6::80".parse().unwrap()], vec![]).deny_networks(own);
        assert!(p.check(ip("2001:db8:5:6::80")).is_ok());
        assert!(p.check(ip("2001:db8:5:6::81")).is_err());
    }

    #[test]
    fn domain_lists_match_exact_hosts_and_subdomains() {
        let d = |s: &str| s.parse::<Domain>().unwrap();
        let open = Policy::new(vec![], vec![]);
        assert!(open.check_host("anything.example").is_ok());

        let p = Policy::new(vec![], vec![]).domains(
            vec![d("*.example.org"), d("Mirror.Example.NET.")],
            vec![d("upload.example.org")],
        );
        for ok in [
            "a.example.org",
            "x.y.example.org",
            "mirror.example.net",
            "MIRROR.example.net.",
        ] {
            assert!(p.check_host(ok).is_ok(), "{ok}");
        }
        // The wildcard is for hosts under the domain, not the domain itself or a look-alike.
        for no in [
            "example.org",
            "badexample.org",
            "example.org.evil.test",
            "www.example.net",
        ] {
            let e = p.check_host(no).unwrap_err();
            assert!(e.contains("--allow-domain"), "{no}: {e}");
        }
        // A denied host wins over an allowed domain; address literals are hosts like any other.
        let e = p.check_host("upload.example.org").unwrap_err();
        assert!(e.contains("--deny-domain upload.example.org"), "{e}");
        assert!(p.check_host("[2001:db8::1]").is_err());
        assert!(p.check_host("203.0.113.5").is_err());

        let deny = Policy::new(vec![], vec![]).domains(vec![], vec![d("*.evil.test")]);
        assert!(deny.check_host("cdn.evil.test").is_err());
        assert!(deny.check_host("evil.test").is_ok());
        assert!(deny.check_host("203.0.113.5").is_ok());
        for bad in ["", "*", "a..b", "*.*.org", "http://x", "x/y", "a b"] {
            assert!(bad.parse::<Domain>().is_err(), "{bad:?}");
        }
    }
}
