//! Where a delivery may go. A destination names a URL; before it is stored, and again before each
//! delivery (a name can be pointed elsewhere later), the URL must be HTTPS (plain HTTP only to
//! loopback, and only where the local gateway allows it) and every address its host resolves to
//! must be public: never loopback, private, link-local, the cloud metadata service, unique-local
//! IPv6, or any other range a request from inside the service must not reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;
use url::Url;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum OutboundError {
    #[error("the URL is not valid: {0}")]
    Invalid(String),
    #[error("the URL must use https")]
    NotHttps,
    #[error("the URL must not carry a user name or password; put credentials in the destination's secret")]
    Credentials,
    /// The address is kept for the code; the message names none, and reads as [`Self::Unresolved`]
    /// does: a tenant learns neither whether a name exists inside nor where it points.
    #[error("{}", NOT_PUBLIC)]
    Forbidden(IpAddr),
    #[error("{}", NOT_PUBLIC)]
    Unresolved,
}

/// What a host that does not resolve, or resolves to an address deliveries may not reach, is told.
const NOT_PUBLIC: &str = "the URL's host does not resolve to public addresses only (deliveries never reach private, \
     loopback, link-local, metadata or reserved ones)";

/// Whether plain HTTP to a loopback address is allowed: only for the local gateway, where a
/// developer points a destination at a receiver on the same machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loopback {
    #[default]
    Refused,
    AllowedOverHttp,
}

/// Checks the URL's form (not yet its addresses): https, a host, no credentials.
pub fn check_url(text: &str, loopback: Loopback) -> Result<Url, OutboundError> {
    let url = Url::parse(text.trim()).map_err(|e| OutboundError::Invalid(e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboundError::Credentials);
    }
    let host = url.host().ok_or_else(|| OutboundError::Invalid("no host".into()))?;
    match url.scheme() {
        "https" => {}
        "http" if loopback == Loopback::AllowedOverHttp && is_loopback_host(&host) => {}
        _ => return Err(OutboundError::NotHttps),
    }
    // A literal address is judged now; a name, when it is resolved.
    if let Some(ip) = literal(&host)
        && forbidden(ip)
        && !(loopback == Loopback::AllowedOverHttp && ip.is_loopback())
    {
        return Err(OutboundError::Forbidden(ip));
    }
    Ok(url)
}

fn literal(host: &url::Host<&str>) -> Option<IpAddr> {
    match host {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        url::Host::Domain(_) => None,
    }
}

fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        other => literal(other).is_some_and(|ip| ip.is_loopback()),
    }
}

/// Every address `url`'s host resolves to, each checked: the addresses a delivery then connects
/// to (connecting to these, not resolving the name again, so the answer cannot change between the
/// check and the connection).
pub async fn resolve(url: &Url, loopback: Loopback) -> Result<Vec<SocketAddr>, OutboundError> {
    let host = url.host_str().ok_or_else(|| OutboundError::Invalid("no host".into()))?;
    let port = url.port_or_known_default().ok_or_else(|| OutboundError::Invalid("no port".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|_| OutboundError::Unresolved)?.collect();
    check_addresses(&addresses, loopback)?;
    Ok(addresses)
}

/// Refuses a resolution if any of its addresses may not be reached.
pub fn check_addresses(addresses: &[SocketAddr], loopback: Loopback) -> Result<(), OutboundError> {
    if addresses.is_empty() {
        return Err(OutboundError::Unresolved);
    }
    match addresses
        .iter()
        .map(SocketAddr::ip)
        .find(|ip| forbidden(*ip) && !(loopback == Loopback::AllowedOverHttp && ip.is_loopback()))
    {
        Some(ip) => Err(OutboundError::Forbidden(ip)),
        None => Ok(()),
    }
}

/// Addresses a delivery must never reach.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address in IPv6 clothing is judged as itself.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254.0.0/16: the metadata service (169.254.169.254) among them
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7 (fd00::/8 among them)
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b // NAT64, which reaches IPv4 behind it
        || first == 0x2002 // 6to4, likewise
        || (first == 0x2001 && ip.segments()[1] == 0) // Teredo, likewise (2001::/32)
        || ip.segments()[..5] == [0, 0, 0, 0, 0xffff] // IPv4-translated (SIIT, ::ffff:0:0/96)
        || ip.segments()[..4] == [0x0100, 0, 0, 0] // discard-only (100::/64)
        || ip.to_ipv4().is_some_and(forbidden_v4) // IPv4-compatible (::a.b.c.d)
        || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) // the metadata service over IPv6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_without_credentials_and_no_forbidden_literal() {
        assert!(check_url("https://siem.example.com/hook?x=1", Loopback::Refused).is_ok());
        for (url, error) in [
            ("http://siem.example.com/hook", OutboundError::NotHttps),
            ("ftp://siem.example.com/", OutboundError::NotHttps),
            ("https://user:pw@siem.example.com/", OutboundError::Credentials),
            ("https://169.254.169.254/latest/meta-data/", OutboundError::Forbidden("169.254.169.254".parse().unwrap())),
            ("https://10.0.0.8/", OutboundError::Forbidden("10.0.0.8".parse().unwrap())),
            ("https://[::1]/", OutboundError::Forbidden("::1".parse().unwrap())),
            ("https://[fd00::1]/", OutboundError::Forbidden("fd00::1".parse().unwrap())),
            ("https://[::ffff:127.0.0.1]/", OutboundError::Forbidden("::ffff:7f00:1".parse().unwrap())),
            ("https://0x7f000001/", OutboundError::Forbidden("127.0.0.1".parse().unwrap())),
            ("http://127.0.0.1:9000/", OutboundError::NotHttps),
        ] {
            assert_eq!(check_url(url, Loopback::Refused).unwrap_err(), error, "{url}");
        }
        assert!(matches!(check_url("not a url", Loopback::Refused), Err(OutboundError::Invalid(_))));
        // Locally, a receiver on the same machine, over plain HTTP: loopback only.
        assert!(check_url("http://127.0.0.1:9000/hook", Loopback::AllowedOverHttp).is_ok());
        assert!(check_url("http://localhost:9000/hook", Loopback::AllowedOverHttp).is_ok());
        assert_eq!(check_url("http://10.0.0.8/", Loopback::AllowedOverHttp).unwrap_err(), OutboundError::NotHttps);
    }

    #[test]
    fn forbidden_ranges() {
        for ip in [
            "0.0.0.0",
            "127.0.0.53",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip} is forbidden");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn a_name_is_judged_by_every_address_it_resolves_to() {
        let url = check_url("https://localhost:8443/hook", Loopback::Refused).unwrap();
        assert!(
            matches!(resolve(&url, Loopback::Refused).await, Err(OutboundError::Forbidden(ip)) if ip.is_loopback())
        );
        let local = check_url("http://localhost:8443/hook", Loopback::AllowedOverHttp).unwrap();
        assert!(resolve(&local, Loopback::AllowedOverHttp).await.unwrap().iter().all(|a| a.ip().is_loopback()));
        let nowhere = check_url("https://no-such-host.invalid/", Loopback::Refused).unwrap();
        assert_eq!(resolve(&nowhere, Loopback::Refused).await.unwrap_err(), OutboundError::Unresolved);
    }
}
