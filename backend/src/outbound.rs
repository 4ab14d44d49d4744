//! Where the console's own outbound requests (webhooks, which an admin names) may go: public addresses,
//! and the private ones a deployment allows explicitly (`--webhook-allow`).
//!
//! Why: a webhook URL is a request the server makes for whoever wrote it. Without this, an admin's
//! session (or anyone who gets one) could read the instance's credentials from
//! `169.254.169.254`, or reach services on loopback and the private network, with the delivery
//! status as a port scanner. So: a URL is checked when it is written (scheme, host, no user name or
//! password, an address literal in any form the URL parser accepts); every name is resolved by a
//! resolver that drops addresses that are not allowed, so the address checked is the address
//! connected to (a DNS answer that changes between check and connect cannot swap it); and no redirect
//! is followed.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The private destinations a deployment allows; everything public is allowed.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    allow: Vec<IpNet>,
}

impl Destinations {
    pub fn new(allow: Vec<IpNet>) -> Destinations {
        Destinations { allow }
    }

    /// Whether a request may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allow.iter().any(|net| net.contains(&canonical(ip)))
    }

    /// Checks a webhook URL as written; the error is a sentence about the URL.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw.trim())
            .map_err(|e| format!("not a URL ({e}): write it as https://host/path"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("an http:// or https:// URL, such as https://hooks.slack.com/services/…".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "a URL with a user name or password is refused (it would show in lists and logs); \
                 put the secret in the path, as Slack's webhook URLs do"
                    .into(),
            );
        }
        match url.host() {
            None => Err("the URL has no host".into()),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)).map(|()| url),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)).map(|()| url),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let loopback_allowed = self.permits(IpAddr::V4(Ipv4Addr::LOCALHOST))
                    || self.permits(IpAddr::V6(Ipv6Addr::LOCALHOST));
                if (name == "localhost" || name.ends_with(".localhost")) && !loopback_allowed {
                    Err(format!(
                        "{name} is this machine; webhooks go to other hosts (or allow it with --webhook-allow 127.0.0.1)"
                    ))
                } else {
                    // Other names are checked where they are resolved, at every delivery.
                    Ok(url)
                }
            }
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(format!(
                "{ip} is a {} address; webhooks go to public addresses unless the console is started with --webhook-allow for it",
                kind(canonical(ip))
            ))
        }
    }

    /// An HTTP client for webhook deliveries: it connects only to permitted addresses and follows no
    /// redirect (a 3xx is a failed delivery).
    pub fn client(self: &Arc<Self>, timeout: Duration) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve and connect for us, past the checked resolver: webhooks go direct
            // (HTTP_PROXY and friends are for AWS).
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver(self.clone())))
            .build()
    }
}

/// Resolves names and keeps only the addresses the destinations permit, so that the connection goes
/// to an address that was checked.
struct CheckedResolver(Arc<Destinations>);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let destinations = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| destinations.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                let refused = found
                    .first()
                    .map_or_else(String::new, |a| format!(" ({})", a.ip()));
                let message = format!(
                    "{host} resolves only to addresses webhooks may not reach{refused}; allow them with --webhook-allow"
                );
                return Err(message.into());
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An IPv6 address that carries an IPv4 one (mapped, compatible, NAT64, 6to4) as that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(mapped) = v6.to_ipv4_mapped() {
        return Some(mapped);
    }
    // IPv4-compatible (::a.b.c.d), but not :: and ::1 themselves.
    if s[..6].iter().all(|&x| x == 0) && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail);
    }
    // IPv4-translated (::ffff:0:a.b.c.d).
    if s[..4].iter().all(|&x| x == 0) && s[4] == 0xffff && s[5] == 0 {
        return Some(tail);
    }
    // NAT64, well-known (64:ff9b::/96) and local-use (64:ff9b:1::/48, the address in the last 32 bits
    // as RFC 6052 places it for a /96 and commonly for a /48).
    if s[0] == 0x64 && s[1] == 0xff9b && (s[2..6].iter().all(|&x| x == 0) || s[2] == 1) {
        return Some(tail);
    }
    // 6to4 (2002:a.b.c.d::/48).
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// Whether an address is on the public internet (none of loopback, private, link-local, unspecified,
/// multicast, broadcast, shared, documentation, benchmarking or reserved ranges).
pub fn is_public(ip: IpAddr) -> bool {
    kind(canonical(ip)) == "public"
}

/// What kind of address `ip` is, in a word a sentence can use.
fn kind(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(a) => {
            let [x, y, ..] = a.octets();
            if a.is_loopback() {
                "loopback"
            } else if a.is_unspecified() || x == 0 {
                "unspecified"
            } else if a.is_link_local() {
                "link-local (the instance metadata service is one)"
            } else if a.is_private()
                || (x == 100 && (64..128).contains(&y))
                || (x == 192 && y == 0 && a.octets()[2] == 0)
            {
                "private"
            } else if a.is_multicast() || a.is_broadcast() || x >= 240 {
                "multicast or reserved"
            } else if a.is_documentation() || (x == 198 && (18..20).contains(&y)) {
                "documentation or benchmarking"
            } else if x == 192 && y == 88 && a.octets()[2] == 99 {
                "multicast or reserved"
            } else {
                "public"
            }
        }
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            if a.is_loopback() {
                "loopback"
            } else if a.is_unspecified() {
                "unspecified"
            } else if (s0 & 0xffc0) == 0xfe80 {
                "link-local"
            } else if (s0 & 0xfe00) == 0xfc00 || (s0 & 0xffc0) == 0xfec0 {
                "private"
            } else if a.is_multicast() {
                "multicast or reserved"
            } else if s0 == 0x2001 && a.segments()[1] == 0x0db8 {
                "documentation or benchmarking"
            } else if s0 == 0x2001 && a.segments()[1] == 0 {
                // Teredo carries an IPv4 address (obscured) and reaches it through a relay.
                "tunnelled (Teredo)"
            } else if s0 == 0x0100 && a.segments()[1..4].iter().all(|&x| x == 0) {
                "discard-only"
            } else {
                "public"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_their_disguises_are_refused() {
        let d = Destinations::default();
        for url in [
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "http://127.0.0.1:8080/",
            "http://[::1]:8080/",
            "http://0.0.0.0:8080/",
            "http://2130706433:8080/",
            "http://0x7f000001/",
            "http://017700000001/",
            "http://[::ffff:127.0.0.1]:8080/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://10.0.0.5/",
            "http://172.16.3.4/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://localhost:9000/",
            "http://api.localhost/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[64:ff9b:1::a9fe:a9fe]/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
            "http://[100::1]/",
            "http://192.88.99.1/",
        ] {
            assert!(d.check_url(url).is_err(), "{url} must be refused");
        }
        for url in [
            "https://hooks.slack.com/services/T0/B0/secret",
            "http://93.184.216.34/",
            "https://[2606:4700::1111]/",
        ] {
            assert!(d.check_url(url).is_ok(), "{url} is public");
        }
        assert!(d.check_url("https://user:pw@hooks.example.com/x").is_err());
        assert!(d.check_url("ftp://hooks.example.com/x").is_err());
    }

    #[test]
    fn an_allowed_network_is_reachable_in_every_spelling() {
        let d = Destinations::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(d.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(d.check_url("http://[::ffff:127.0.0.1]:9000/hook").is_ok());
        assert!(d.check_url("http://169.254.169.254/").is_err());
        assert!(
            d.check_url("http://localhost:9000/hook").is_ok(),
            "localhost is loopback, allowed"
        );
        assert!(d.permits("127.0.0.1".parse().unwrap()));
        assert!(!d.permits("10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_to_loopback_is_not_connected_to() {
        use reqwest::dns::Resolve;
        let resolver = CheckedResolver(Arc::new(Destinations::default()));
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(resolver.resolve(name).await.is_err());
        let allowed = CheckedResolver(Arc::new(Destinations::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ])));
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(allowed.resolve(name).await.is_ok());
    }
}
