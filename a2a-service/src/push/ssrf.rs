//! The guard on webhook URLs. A push config's URL comes from the caller,
//! and the service then POSTs to it from inside the deployment: unchecked,
//! that lets any caller reach what only the service can (loopback admin
//! ports, the private network, a cloud metadata endpoint). A2A 1.0 section
//! 13.2 asks agents to refuse such targets; this module decides, without
//! I/O, whether a URL and the addresses its host resolves to may be used.
//! It is applied when a config is created and again when a delivery
//! connects (through the resolver in `resolve.rs`), so a name that changes
//! its answer in between is still caught.
//!
//! The operator's allow-list names targets the guard lets through anyway:
//! a host name matches the URL's host as written (its addresses are then
//! not checked), an address or CIDR matches an address written in the URL.
//! A name that merely resolves to an allowed address is not allowed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

/// Why an address may not be a webhook target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    Loopback,
    Private,
    LinkLocal,
    Unspecified,
    Multicast,
    Broadcast,
    SharedAddressSpace,
    Reserved,
}

impl Blocked {
    fn describe(self) -> &'static str {
        match self {
            Blocked::Loopback => "a loopback address",
            Blocked::Private => "a private address",
            Blocked::LinkLocal => "a link-local address",
            Blocked::Unspecified => "an unspecified address",
            Blocked::Multicast => "a multicast address",
            Blocked::Broadcast => "a broadcast address",
            Blocked::SharedAddressSpace => "a carrier-grade NAT address",
            Blocked::Reserved => "a reserved address",
        }
    }
}

/// Why a webhook URL is refused; the text is meant for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Scheme,
    Userinfo,
    NoHost,
    Address(Blocked),
    ResolvesTo(Blocked),
    Unresolved,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed => write!(f, "the webhook URL is not a valid URL"),
            Refusal::Scheme => write!(f, "the webhook URL must be http or https"),
            Refusal::Userinfo => write!(
                f,
                "the webhook URL may not carry a user name or password; use authentication"
            ),
            Refusal::NoHost => write!(f, "the webhook URL has no host"),
            Refusal::Address(b) => write!(f, "the webhook URL's host is {}", b.describe()),
            Refusal::ResolvesTo(b) => {
                write!(f, "the webhook URL's host resolves to {}", b.describe())
            }
            Refusal::Unresolved => write!(f, "the webhook URL's host does not resolve"),
        }
    }
}

/// One allow-list entry's address part: an address with a prefix length.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Targets the operator lets through the guard (`A2A_PUSH_ALLOW`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    hosts: Vec<String>,
    nets: Vec<Net>,
}

impl AllowList {
    /// Comma-separated host names, addresses and CIDRs (`10.1.0.0/16`,
    /// `fd00::/8`); the error names the entry that is none of these.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut list = AllowList::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Some((addr, prefix)) = entry.split_once('/') {
                let addr: IpAddr = addr
                    .parse()
                    .map_err(|_| format!("{entry:?} is not a CIDR"))?;
                let addr = canonical(addr);
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let prefix = prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("{entry:?} has no valid prefix length"))?;
                list.nets.push(Net { addr, prefix });
            } else if let Ok(addr) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                let addr = canonical(addr);
                let prefix = if addr.is_ipv4() { 32 } else { 128 };
                list.nets.push(Net { addr, prefix });
            } else if entry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                list.hosts.push(host_key(entry));
            } else {
                return Err(format!(
                    "{entry:?} is not a host name, an address or a CIDR"
                ));
            }
        }
        Ok(list)
    }

    fn allows_name(&self, name: &str) -> bool {
        let name = host_key(name);
        self.hosts.contains(&name)
    }

    fn allows_addr(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }
}

/// A host name as compared: lower case, no trailing dot.
fn host_key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// What is left to check once a URL's own form passed.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// An address in the URL, or a name on the allow-list: nothing to resolve.
    Checked,
    /// A name whose addresses must each pass [`check_resolved`].
    Name(String),
}

/// Checks a webhook URL as written: scheme, userinfo, and its host when the
/// host is an address.
pub fn check_url(url: &str, allow: &AllowList) -> Result<Target, Refusal> {
    let url = Url::parse(url).map_err(|_| Refusal::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refusal::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Userinfo);
    }
    // The parser writes an address host in its one canonical form (dotted
    // IPv4 whatever the input spelling, bracketed IPv6), so reading it back
    // as an address catches every spelling.
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(Refusal::NoHost)?;
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => check_literal(ip, allow),
        Err(_) if allow.allows_name(host) => Ok(Target::Checked),
        Err(_) => Ok(Target::Name(host.to_string())),
    }
}

fn check_literal(ip: IpAddr, allow: &AllowList) -> Result<Target, Refusal> {
    match blocked(ip) {
        Some(class) if !allow.allows_addr(ip) => Err(Refusal::Address(class)),
        _ => Ok(Target::Checked),
    }
}

/// Checks every address `name` resolved to: one blocked address refuses the
/// name (a client may connect to any of them), unless the name itself is on
/// the allow-list.
pub fn check_resolved(name: &str, addrs: &[IpAddr], allow: &AllowList) -> Result<(), Refusal> {
    if allow.allows_name(name) {
        return Ok(());
    }
    if addrs.is_empty() {
        return Err(Refusal::Unresolved);
    }
    match addrs.iter().find_map(|ip| blocked(*ip)) {
        Some(class) => Err(Refusal::ResolvesTo(class)),
        None => Ok(()),
    }
}

/// An IPv4 address written as IPv6 (mapped `::ffff:a.b.c.d`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The class that keeps `ip` from being a webhook target, if any.
pub fn blocked(ip: IpAddr) -> Option<Blocked> {
    match canonical(ip) {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn blocked_v4(ip: Ipv4Addr) -> Option<Blocked> {
    if ip.is_unspecified() {
        Some(Blocked::Unspecified)
    } else if ip.is_broadcast() {
        Some(Blocked::Broadcast)
    } else if ip.is_loopback() {
        Some(Blocked::Loopback)
    } else if ip.is_private() {
        Some(Blocked::Private)
    } else if ip.is_link_local() {
        Some(Blocked::LinkLocal)
    } else if ip.is_multicast() {
        Some(Blocked::Multicast)
    } else if in_v4(ip, [100, 64, 0, 0], 10) {
        Some(Blocked::SharedAddressSpace)
    } else if in_v4(ip, [0, 0, 0, 0], 8)
        || in_v4(ip, [192, 0, 0, 0], 24)
        || in_v4(ip, [198, 18, 0, 0], 15)
        || in_v4(ip, [240, 0, 0, 0], 4)
    {
        // "This network", IETF protocol assignments, benchmarking, and the
        // former class E: none is a public webhook.
        Some(Blocked::Reserved)
    } else {
        None
    }
}

fn blocked_v6(ip: Ipv6Addr) -> Option<Blocked> {
    let bits = u128::from(ip);
    let within = |net: u128, prefix: u32| {
        let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
        bits & mask == net & mask
    };
    // The low 32 bits as IPv4, for forms that embed an IPv4 address.
    let embedded = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if ip.is_unspecified() {
        Some(Blocked::Unspecified)
    } else if ip.is_loopback() {
        Some(Blocked::Loopback)
    } else if within(0xfc00 << 112, 7) {
        Some(Blocked::Private)
    } else if within(0xfe80 << 112, 10) || within(0xfec0 << 112, 10) {
        // Link-local, and the site-local block it replaced.
        Some(Blocked::LinkLocal)
    } else if ip.is_multicast() {
        Some(Blocked::Multicast)
    } else if within(0, 96) || within(0x0064_ff9b << 96, 96) {
        // IPv4-compatible and NAT64 (64:ff9b::/96) forms reach the IPv4
        // address they carry.
        blocked_v4(embedded)
    } else if within(0x2002 << 112, 16) {
        // 6to4 carries its IPv4 address in bits 16..48.
        blocked_v4(Ipv4Addr::from((bits >> 80) as u32))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    //! The classes A2A 1.0 section 13.2 names (private ranges, localhost,
    //! link-local) and the others a webhook must not reach.
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn none() -> AllowList {
        AllowList::default()
    }

    #[test]
    fn every_blocked_class() {
        let cases = [
            ("127.0.0.1", Blocked::Loopback),
            ("127.255.0.9", Blocked::Loopback),
            ("::1", Blocked::Loopback),
            ("10.0.0.1", Blocked::Private),
            ("172.16.0.1", Blocked::Private),
            ("172.31.255.255", Blocked::Private),
            ("192.168.1.1", Blocked::Private),
            ("fc00::1", Blocked::Private),
            ("fd12:3456::1", Blocked::Private),
            ("169.254.169.254", Blocked::LinkLocal),
            ("169.254.0.1", Blocked::LinkLocal),
            ("fe80::1", Blocked::LinkLocal),
            ("febf::1", Blocked::LinkLocal),
            ("0.0.0.0", Blocked::Unspecified),
            ("::", Blocked::Unspecified),
            ("224.0.0.1", Blocked::Multicast),
            ("239.255.255.250", Blocked::Multicast),
            ("ff02::1", Blocked::Multicast),
            ("255.255.255.255", Blocked::Broadcast),
            ("100.64.0.1", Blocked::SharedAddressSpace),
            ("100.127.255.254", Blocked::SharedAddressSpace),
            ("0.1.2.3", Blocked::Reserved),
            ("240.0.0.1", Blocked::Reserved),
        ];
        for (text, class) in cases {
            assert_eq!(blocked(ip(text)), Some(class), "{text}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "169.255.0.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(blocked(ip(text)), None, "{text}");
        }
    }

    #[test]
    fn ipv4_written_as_ipv6() {
        let cases = [
            ("::ffff:127.0.0.1", Blocked::Loopback),
            ("::ffff:10.0.0.1", Blocked::Private),
            ("::ffff:169.254.169.254", Blocked::LinkLocal),
            ("::ffff:0.0.0.0", Blocked::Unspecified),
            ("::ffff:100.64.0.1", Blocked::SharedAddressSpace),
            ("::ffff:224.0.0.1", Blocked::Multicast),
            ("::ffff:255.255.255.255", Blocked::Broadcast),
            ("::127.0.0.1", Blocked::Loopback),
            ("64:ff9b::a9fe:a9fe", Blocked::LinkLocal),
            ("2002:7f00:1::", Blocked::Loopback),
        ];
        for (text, class) in cases {
            assert_eq!(blocked(ip(text)), Some(class), "{text}");
        }
    }

    #[test]
    fn url_form() {
        let refuse = |url: &str| check_url(url, &none()).unwrap_err();
        assert_eq!(refuse("ftp://example.com/x"), Refusal::Scheme);
        assert_eq!(refuse("file:///etc/passwd"), Refusal::Scheme);
        assert_eq!(refuse("http://user:pw@example.com/"), Refusal::Userinfo);
        assert_eq!(refuse("http://user@example.com/"), Refusal::Userinfo);
        assert_eq!(refuse("not a url"), Refusal::Malformed);
        assert_eq!(
            refuse("http://169.254.169.254/latest/meta-data/"),
            Refusal::Address(Blocked::LinkLocal)
        );
        assert_eq!(
            refuse("http://10.0.0.1/"),
            Refusal::Address(Blocked::Private)
        );
        assert_eq!(
            refuse("http://[::1]:8080/"),
            Refusal::Address(Blocked::Loopback)
        );
        assert_eq!(
            refuse("http://[::ffff:127.0.0.1]/"),
            Refusal::Address(Blocked::Loopback)
        );
        // Other spellings of 127.0.0.1 that URL parsers accept.
        assert_eq!(
            refuse("http://2130706433/"),
            Refusal::Address(Blocked::Loopback)
        );
        assert_eq!(
            refuse("http://0x7f.1/"),
            Refusal::Address(Blocked::Loopback)
        );
        assert_eq!(refuse("http://0/"), Refusal::Address(Blocked::Unspecified));
        assert_eq!(
            check_url("https://hooks.example.com/a?b=c", &none()),
            Ok(Target::Name("hooks.example.com".into()))
        );
        assert_eq!(check_url("http://8.8.8.8/", &none()), Ok(Target::Checked));
    }

    #[test]
    fn resolved_names() {
        let public = [ip("93.184.216.34")];
        assert_eq!(check_resolved("example.com", &public, &none()), Ok(()));
        // One bad address among good ones refuses the name.
        let mixed = [ip("93.184.216.34"), ip("127.0.0.1")];
        assert_eq!(
            check_resolved("rebind.example", &mixed, &none()),
            Err(Refusal::ResolvesTo(Blocked::Loopback))
        );
        assert_eq!(
            check_resolved("mapped.example", &[ip("::ffff:192.168.0.1")], &none()),
            Err(Refusal::ResolvesTo(Blocked::Private))
        );
        assert_eq!(
            check_resolved("nothing.example", &[], &none()),
            Err(Refusal::Unresolved)
        );
    }

    #[test]
    fn allow_list() {
        let allow = AllowList::parse("127.0.0.1, 10.1.0.0/16, fd00::/8, Hooks.Internal.").unwrap();
        assert_eq!(
            check_url("http://127.0.0.1:9/", &allow),
            Ok(Target::Checked)
        );
        assert_eq!(
            check_url("http://[::ffff:127.0.0.1]/", &allow),
            Ok(Target::Checked)
        );
        assert_eq!(check_url("http://10.1.200.3/", &allow), Ok(Target::Checked));
        assert_eq!(check_url("http://[fd00::5]/", &allow), Ok(Target::Checked));
        assert_eq!(
            check_url("http://10.2.0.1/", &allow),
            Err(Refusal::Address(Blocked::Private))
        );
        assert_eq!(
            check_url("http://127.0.0.2/", &allow),
            Err(Refusal::Address(Blocked::Loopback))
        );
        assert_eq!(
            check_url("http://[::1]/", &allow),
            Err(Refusal::Address(Blocked::Loopback))
        );
        // A listed name is let through whatever it resolves to...
        assert_eq!(
            check_url("http://hooks.internal/x", &allow),
            Ok(Target::Checked)
        );
        assert_eq!(
            check_resolved("HOOKS.internal", &[ip("10.9.9.9")], &allow),
            Ok(())
        );
        // ...but a name is not let through for resolving to a listed address.
        assert_eq!(
            check_url("http://localhost/", &allow),
            Ok(Target::Name("localhost".into()))
        );
        assert_eq!(
            check_resolved("localhost", &[ip("127.0.0.1")], &allow),
            Err(Refusal::ResolvesTo(Blocked::Loopback))
        );
        for bad in ["10.0.0.0/33", "fd00::/129", "a b", "1.2.3.4/x", "http://x"] {
            assert!(AllowList::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(AllowList::parse(" , ").unwrap(), AllowList::default());
    }
}
