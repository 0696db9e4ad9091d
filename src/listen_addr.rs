//! An address to listen on as a user writes it, in `--listen` or the
//! config's `listen`: an IP address and port (`127.0.0.1:7878`,
//! `[::1]:8443`) or a host name and port (`localhost:8443`), the host name
//! resolved when the server binds.

use std::fmt;
use std::net::{AddrParseError, SocketAddr};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Socket(SocketAddr),
    /// A host name, lowercased, and a port.
    Host {
        host: String,
        port: u16,
    },
}

/// A host name that did not resolve to any address.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {addr}: {source}")]
pub struct ResolveError {
    addr: String,
    #[source]
    source: std::io::Error,
}

impl ListenAddr {
    /// The port asked for; 0 lets the system pick one.
    pub fn port(&self) -> u16 {
        match self {
            ListenAddr::Socket(addr) => addr.port(),
            ListenAddr::Host { port, .. } => *port,
        }
    }

    /// The addresses a server may bind for this one, IPv4 first: a name
    /// such as `localhost` commonly resolves to both `::1` and `127.0.0.1`,
    /// and a machine with IPv6 turned off cannot bind `::1`. The server
    /// binds the first that works (see `server::Server::bind`). Resolving
    /// blocks in `getaddrinfo`, which tokio runs on its blocking pool.
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, ResolveError> {
        let (host, port) = match self {
            ListenAddr::Socket(addr) => return Ok(vec![*addr]),
            ListenAddr::Host { host, port } => (host.as_str(), *port),
        };
        let failed = |source| ResolveError {
            addr: self.to_string(),
            source,
        };
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for addr in tokio::net::lookup_host((host, port))
            .await
            .map_err(failed)?
        {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        if addrs.is_empty() {
            return Err(failed(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address",
            )));
        }
        addrs.sort_by_key(SocketAddr::is_ipv6);
        Ok(addrs)
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> Self {
        ListenAddr::Socket(addr)
    }
}

impl FromStr for ListenAddr {
    /// The standard library's error for text that is neither form, which
    /// is what users have always been shown.
    type Err = AddrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let not_ip = match text.parse::<SocketAddr>() {
            Ok(addr) => return Ok(ListenAddr::Socket(addr)),
            Err(e) => e,
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(|| not_ip.clone())?;
        let port = port.parse::<u16>().map_err(|_| not_ip.clone())?;
        if !is_host_name(host) {
            return Err(not_ip);
        }
        Ok(ListenAddr::Host {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// Letters, digits, `-` and `.` (RFC 1123), as a resolver accepts them;
/// anything else (a bracket, a space, a second colon) is a typo, not a name.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['-', '.'])
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Socket(addr) => write!(f, "{addr}"),
            ListenAddr::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_addresses_and_host_names() {
        let socket = |text: &str| ListenAddr::Socket(text.parse().unwrap());
        assert_eq!("127.0.0.1:0".parse(), Ok(socket("127.0.0.1:0")));
        assert_eq!("[::1]:8443".parse(), Ok(socket("[::1]:8443")));
        let host = ListenAddr::Host {
            host: "localhost".to_owned(),
            port: 8443,
        };
        assert_eq!("LocalHost:8443".parse(), Ok(host.clone()));
        assert_eq!(host.to_string(), "localhost:8443");
        assert_eq!(socket("[::1]:8443").to_string(), "[::1]:8443");
    }

    #[test]
    fn refuses_what_is_no_address_with_the_standard_message() {
        let standard = "x".parse::<SocketAddr>().unwrap_err();
        for text in [
            "localhost",
            "localhost:",
            "localhost:99999",
            ":8443",
            "-bad:1",
            "a b:1",
            "::1:8443",
            "[::1]",
        ] {
            assert_eq!(text.parse::<ListenAddr>(), Err(standard.clone()), "{text}");
        }
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback_ipv4_first() {
        let addr: ListenAddr = "localhost:8443".parse().unwrap();
        let resolved = tokio::time::timeout(std::time::Duration::from_secs(10), addr.resolve())
            .await
            .expect("resolves in time")
            .unwrap();
        assert!(!resolved.is_empty());
        assert!(resolved
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8443));
        let first_v6 = resolved.iter().position(SocketAddr::is_ipv6);
        let last_v4 = resolved.iter().rposition(SocketAddr::is_ipv4);
        if let (Some(v6), Some(v4)) = (first_v6, last_v4) {
            assert!(v4 < v6, "{resolved:?}");
        }
        let literal: ListenAddr = "[::1]:0".parse().unwrap();
        assert_eq!(
            literal.resolve().await.unwrap(),
            ["[::1]:0".parse().unwrap()]
        );
    }
}
