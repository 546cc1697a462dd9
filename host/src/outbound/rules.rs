//! The allow list of a class's outbound requests: `outbound = ["api.example.com",
//! "*.example.org", "127.0.0.1:9000"]` in its manifest table.
//!
//! An entry is a host name, `*.` and a domain (any subdomain of it, not the domain itself), an
//! IP address (`[::1]` for IPv6 with a port), or `*` (any host name); each with an optional
//! `:port` (without one, any port). A name must match an entry, and so must every address it
//! resolves to: an address that is not public (loopback, private, link-local with the cloud
//! metadata address, shared, unspecified, multicast, or one of the host's own listeners) passes
//! only when an entry names that very address. So `localhost`, or a public name whose DNS
//! answer points inside the network (rebinding), is refused unless the address itself is listed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One entry of the allow list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    host: HostPattern,
    port: Option<u16>,
    /// The entry as written, for messages.
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Any host name (never an address that is not public, unless listed as an address).
    Any,
    Name(String),
    /// `*.domain`: any name ending in `.domain`.
    Subdomains(String),
    Address(IpAddr),
}

impl Rule {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<Rule, String> {
        let text = entry.trim();
        let bad = |why: &str| Err(format!("entry `{entry}`: {why}"));
        if text.is_empty() {
            return bad("empty (write a host name such as `api.example.com`)");
        }
        if text.contains("://") || text.contains('/') {
            return bad("write only the host (and maybe `:port`), without a scheme or a path");
        }
        let (host, port) = match split_port(text) {
            Ok(split) => split,
            Err(why) => return bad(&why),
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            HostPattern::Address(ip)
        } else if let Some(domain) = host.strip_prefix("*.") {
            if !is_host_name(domain) {
                return bad("after `*.` comes a domain name such as `example.org`");
            }
            HostPattern::Subdomains(domain.to_ascii_lowercase())
        } else if is_host_name(host) {
            HostPattern::Name(host.to_ascii_lowercase())
        } else {
            return bad("not a host name, `*.domain`, an IP address or `*`");
        };
        Ok(Rule { host, port, text: text.to_string() })
    }

    fn port_matches(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    /// Whether a request to the name `host` (lower-case; an IP address is a name too) on `port`
    /// may go ahead, before its addresses are known.
    fn allows_name(&self, host: &str, port: u16) -> bool {
        self.port_matches(port)
            && match &self.host {
                HostPattern::Any => true,
                HostPattern::Name(name) => name == host,
                HostPattern::Subdomains(domain) => {
                    host.len() > domain.len() + 1 && host.ends_with(domain.as_str()) && {
                        host.as_bytes()[host.len() - domain.len() - 1] == b'.'
                    }
                }
                HostPattern::Address(ip) => parse_ip(host) == Some(*ip),
            }
    }

    /// Whether this entry names `address` itself.
    fn names_address(&self, address: SocketAddr) -> bool {
        self.port_matches(address.port()) && self.host == HostPattern::Address(canonical(address.ip()))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A class's (or the worker's) whole allow list, with where it comes from for messages.
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    rules: Vec<Rule>,
    /// The manifest key to change: `[classes.NAME] outbound` or `[worker] outbound`.
    key: String,
}

impl Allowed {
    pub fn parse(entries: &[String], key: String) -> Result<Allowed, String> {
        let rules =
            entries.iter().map(|e| Rule::parse(e)).collect::<Result<_, _>>().map_err(|e| format!("{key}: {e}"))?;
        Ok(Allowed { rules, key })
    }

    /// Checks the name a request is addressed to.
    pub fn check_name(&self, host: &str, port: u16) -> Result<(), String> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if self.rules.iter().any(|r| r.allows_name(&host, port)) {
            return Ok(());
        }
        let shown = show(&host, port);
        Err(match self.rules.is_empty() {
            true => format!(
                "outbound request to {shown} refused: this code may not reach the network; \
                 list the host under {} in wdo.toml",
                self.key
            ),
            false => format!("outbound request to {shown} refused: it is not listed in {} in wdo.toml", self.key),
        })
    }

    /// Checks an address the name resolved to (the one the connection goes to); `own` are the
    /// host's own listeners.
    pub fn check_address(&self, host: &str, address: SocketAddr, own: &[SocketAddr]) -> Result<(), String> {
        if self.rules.iter().any(|r| r.names_address(address)) {
            return Ok(());
        }
        let why = if own.iter().any(|l| is_listener(*l, address)) {
            Some("one of this host's own listeners")
        } else {
            not_public(canonical(address.ip()))
        };
        match why {
            None => Ok(()),
            Some(why) => Err(format!(
                "outbound request to {} refused: it goes to {}, {why}; such an address is reached only \
                 when {} in wdo.toml lists the address itself (e.g. \"{}\")",
                show(host, address.port()),
                address.ip(),
                self.key,
                show(&address.ip().to_string(), address.port()),
            )),
        }
    }
}

fn show(host: &str, port: u16) -> String {
    match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    }
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok().map(canonical)
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is not on the public internet, if it is not.
fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => not_public_v4(v4),
        IpAddr::V6(v6) => not_public_v6(v6),
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_private() {
        "a private address"
    } else if ip.is_link_local() {
        "a link-local address (the cloud metadata service lives there)"
    } else if a == 100 && (64..128).contains(&b) {
        "a shared (carrier-grade NAT) address"
    } else if ip.is_unspecified() || a == 0 {
        "an unspecified address"
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        "a multicast, broadcast or reserved address"
    } else {
        return None;
    })
}

fn not_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_unspecified() {
        "an unspecified address"
    } else if first & 0xfe00 == 0xfc00 {
        "a private (unique local) address"
    } else if first & 0xffc0 == 0xfe80 {
        "a link-local address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if let Some(v4) = ip.to_ipv4() {
        // IPv4-compatible and NAT64 forms lead to the IPv4 address.
        return not_public_v4(v4);
    } else {
        return None;
    })
}

/// Whether a connection to `address` reaches the listener `listener`.
fn is_listener(listener: SocketAddr, address: SocketAddr) -> bool {
    if listener.port() != address.port() {
        return false;
    }
    let ip = canonical(address.ip());
    if !listener.ip().is_unspecified() {
        return canonical(listener.ip()) == ip;
    }
    // Listening on every interface: any address of this machine reaches it. An address is this
    // machine's when a socket can be bound to it.
    ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, "")) => (ip, None),
            Some((ip, port)) => match port.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => return Err("after `]` comes `:port`".into()),
            },
            None => return Err("an IPv6 address opened with `[` must close with `]`".into()),
        }
    } else if text.matches(':').count() > 1 {
        // A bare IPv6 address has no port.
        (text, None)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => return Err(format!("`{port}` is not a port number (1-65535)")),
        },
    };
    Ok((host, port))
}

fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> Allowed {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        Allowed::parse(&entries, "[classes.poller] outbound".into()).unwrap()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn names_wildcards_and_ports_match_as_written() {
        let list = allowed(&["api.example.com", "*.example.org", "status.example.net:8443"]);
        assert!(list.check_name("API.example.com", 443).is_ok());
        assert!(list.check_name("a.b.example.org", 80).is_ok());
        assert!(list.check_name("example.org", 80).is_err(), "the wildcard is for subdomains");
        assert!(list.check_name("badexample.org", 80).is_err());
        assert!(list.check_name("status.example.net", 8443).is_ok());
        let refused = list.check_name("status.example.net", 443).unwrap_err();
        assert!(refused.contains("status.example.net:443") && refused.contains("[classes.poller] outbound"));
        let none = allowed(&[]).check_name("api.example.com", 443).unwrap_err();
        assert!(none.contains("may not reach the network"), "{none}");
    }

    #[test]
    fn addresses_that_are_not_public_need_an_entry_of_their_own() {
        let list = allowed(&["*", "127.0.0.1:9000", "[::1]"]);
        let own = [addr("0.0.0.0:8787")];
        for (ip, why) in [
            ("127.0.0.2:80", "loopback"),
            ("10.1.2.3:80", "private"),
            ("192.168.1.1:80", "private"),
            ("169.254.169.254:80", "link-local"),
            ("100.64.0.1:80", "shared"),
            ("0.0.0.0:80", "unspecified"),
            ("[fd00::1]:80", "private"),
            ("[fe80::1]:80", "link-local"),
            ("[::ffff:10.0.0.1]:80", "private"),
            ("127.0.0.1:8787", "own listeners"),
        ] {
            let refused = list.check_address("metadata.example", addr(ip), &own).unwrap_err();
            assert!(refused.contains(why) && refused.contains("lists the address itself"), "{ip}: {refused}");
        }
        assert!(list.check_address("x", addr("127.0.0.1:9000"), &own).is_ok());
        assert!(list.check_address("x", addr("[::ffff:127.0.0.1]:9000"), &own).is_ok());
        assert!(list.check_address("x", addr("127.0.0.1:9001"), &own).is_err(), "the entry names a port");
        assert!(list.check_address("x", addr("[::1]:5000"), &own).is_ok());
        assert!(list.check_address("x", addr("93.184.215.14:443"), &own).is_ok());
        assert!(list.check_address("x", addr("[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443"), &own).is_ok());
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let err = |e: &str| Rule::parse(e).unwrap_err();
        assert!(err("https://api.example.com").contains("without a scheme"));
        assert!(err("api.example.com:http").contains("not a port number"));
        assert!(err("*.").contains("domain name"));
        assert!(err("bad host!").contains("not a host name"));
        assert!(err("[::1").contains("must close"));
        assert!(err("").contains("empty"));
        assert_eq!(Rule::parse("[::1]:8080").unwrap().port, Some(8080));
        assert_eq!(Rule::parse("::1").unwrap().host, HostPattern::Address("::1".parse().unwrap()));
    }
}
