//! The environment variables that route and trust upstream requests on a
//! corporate network: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`
//! (each also in lower case) and `SSL_CERT_FILE`, `SSL_CERT_DIR`.
//!
//! tfmirror does not apply them itself: every HTTP client it has to the
//! outside honours them already, in the same way, and was checked to
//! (`tests/e2e/corporate_network.rs`):
//! - reqwest 0.12 (registries, provider zips, module archives) and reqwest
//!   0.13 (gix's git fetches, object_store's shared tier) both read the
//!   proxy variables with hyper-util's `Matcher`, curl's rules: upper case
//!   first, `ALL_PROXY` for a scheme without its own, `NO_PROXY` host
//!   suffixes, IP ranges and `*`, `user:pass@` in the proxy URL sent as
//!   `Proxy-Authorization: Basic`. Loopback addresses are not exempt
//!   (unlike Go's clients): `NO_PROXY` must name them.
//! - both take their CA certificates from rustls-native-certs (reqwest
//!   0.13 through rustls-platform-verifier), which reads `SSL_CERT_FILE`
//!   and `SSL_CERT_DIR` *instead of* the system store when either is set,
//!   as OpenSSL does, and the system store otherwise.
//!
//! What lives here is what tfmirror adds: the one line the server logs at
//! start, saying where requests go (read with that same `Matcher`, so the
//! log cannot tell another story than the clients), with credentials
//! redacted; and the variables a service file carries along.

use std::path::Path;

use hyper_util::client::proxy::matcher::Matcher;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The proxy variables, each pair in the order curl and hyper-util read
/// them: the first one *set* (even to nothing) wins.
const ALL_PROXY: [&str; 2] = ["ALL_PROXY", "all_proxy"];
const HTTP_PROXY: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
const HTTPS_PROXY: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
const NO_PROXY: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// Where rustls-native-certs reads CA certificates instead of the system
/// store.
const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
const SSL_CERT_DIR: &str = "SSL_CERT_DIR";

/// Every variable that changes how an upstream is reached, in the order a
/// service file lists them.
const VARIABLES: [&str; 10] = [
    HTTPS_PROXY[0],
    HTTPS_PROXY[1],
    HTTP_PROXY[0],
    HTTP_PROXY[1],
    ALL_PROXY[0],
    ALL_PROXY[1],
    NO_PROXY[0],
    NO_PROXY[1],
    SSL_CERT_FILE,
    SSL_CERT_DIR,
];

/// Set by a CGI server; hyper-util then ignores every proxy variable (the
/// "httpoxy" defence), and so does the log.
const CGI: &str = "REQUEST_METHOD";

/// The network variables of one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkEnv {
    /// Each of [`VARIABLES`] that is set, with its value, in that order.
    set: Vec<(&'static str, String)>,
    cgi: bool,
}

/// How requests to one scheme leave tfmirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// Through the proxy named by `variable`, shown with its credentials
    /// redacted.
    Proxy {
        variable: &'static str,
        shown: String,
    },
}

impl NetworkEnv {
    /// This process's environment.
    pub fn from_env() -> NetworkEnv {
        NetworkEnv::from_lookup(|name| std::env::var(name).ok())
    }

    /// The environment `lookup` describes: tests pass a table.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> NetworkEnv {
        NetworkEnv {
            set: VARIABLES
                .iter()
                .filter_map(|&name| Some((name, lookup(name)?)))
                .collect(),
            cgi: lookup(CGI).is_some(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .find(|(set, _)| *set == name)
            .map(|(_, value)| value.as_str())
    }

    /// The variable of `pair` that counts, and its value.
    fn first(&self, pair: [&'static str; 2]) -> Option<(&'static str, &str)> {
        pair.into_iter()
            .find_map(|name| Some((name, self.get(name)?)))
    }

    /// The rules the HTTP clients follow, built by their own code from
    /// this environment.
    fn matcher(&self) -> Matcher {
        if self.cgi {
            return Matcher::builder().build();
        }
        let value = |pair| self.first(pair).map_or("", |(_, value)| value).to_owned();
        Matcher::builder()
            .all(value(ALL_PROXY))
            .http(value(HTTP_PROXY))
            .https(value(HTTPS_PROXY))
            .no(value(NO_PROXY))
            .build()
    }

    /// How a request to `url` leaves: straight to its host, or through
    /// which proxy.
    pub fn route(&self, url: &url::Url) -> Route {
        let Ok(uri) = url.as_str().parse::<hyper::Uri>() else {
            return Route::Direct;
        };
        let Some(intercept) = self.matcher().intercept(&uri) else {
            return Route::Direct;
        };
        let own = if url.scheme() == "https" {
            HTTPS_PROXY
        } else {
            HTTP_PROXY
        };
        let variable = [own, ALL_PROXY]
            .into_iter()
            .find_map(|pair| self.first(pair).filter(|(_, value)| !value.is_empty()))
            .map_or(own[0], |(name, _)| name);
        let proxy = intercept.uri();
        let credentials = intercept.basic_auth().is_some() || intercept.raw_auth().is_some();
        let shown = match (proxy.scheme_str(), proxy.authority()) {
            (Some(scheme), Some(authority)) if credentials => {
                format!("{scheme}://***@{authority}")
            }
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => redact(&proxy.to_string()),
        };
        Route::Proxy { variable, shown }
    }

    /// The line the server logs at start: where requests of each scheme
    /// go, which hosts skip the proxy, and which CA certificates TLS
    /// trusts. Reads `SSL_CERT_FILE` to count its certificates: call it
    /// off the async runtime.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let routes: Vec<(&str, Route)> = ["https", "http"]
            .into_iter()
            .map(|scheme| {
                let probe =
                    url::Url::parse(&format!("{scheme}://upstream.invalid/")).expect("a valid URL");
                (scheme, self.route(&probe))
            })
            .collect();
        if routes.iter().all(|(_, route)| *route == Route::Direct) {
            parts.push(self.why_direct());
        } else {
            let each: Vec<String> = routes
                .iter()
                .map(|(scheme, route)| match route {
                    Route::Direct => format!("{scheme} direct"),
                    Route::Proxy { variable, shown } => {
                        format!("{scheme} via proxy {shown} ({variable})")
                    }
                })
                .collect();
            parts.push(each.join(", "));
            if let Some((name, value)) = self.first(NO_PROXY).filter(|(_, v)| !v.is_empty()) {
                parts.push(format!("hosts matching {name}={value} go direct"));
            }
        }
        parts.push(self.trust());
        format!("upstream requests: {}", parts.join("; "))
    }

    /// Why no request is proxied, when none is.
    fn why_direct(&self) -> String {
        if self.cgi {
            return format!("direct ({CGI} is set, so proxy variables are ignored, as by curl)");
        }
        let proxies: Vec<&str> = [HTTPS_PROXY, HTTP_PROXY, ALL_PROXY]
            .into_iter()
            .filter_map(|pair| self.first(pair))
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, _)| name)
            .collect();
        match (proxies.is_empty(), self.first(NO_PROXY)) {
            (true, _) => "direct (no HTTPS_PROXY, HTTP_PROXY or ALL_PROXY is set)".to_owned(),
            (false, Some((name, value))) if value.trim() == "*" => {
                format!("direct ({name}=* exempts every host)")
            }
            (false, _) => format!(
                "direct ({} is not a proxy URL: it must be http://, https:// or socks5:// \
                 followed by host:port)",
                proxies.join(", ")
            ),
        }
    }

    /// Which CA certificates upstream TLS trusts.
    fn trust(&self) -> String {
        let file = self.get(SSL_CERT_FILE).map(|path| {
            let count = match certificates_in(Path::new(path)) {
                Ok(0) => "no certificate: every HTTPS upstream will fail its certificate check"
                    .to_owned(),
                Ok(1) => "1 certificate".to_owned(),
                Ok(n) => format!("{n} certificates"),
                Err(e) => format!("unreadable ({e}): every HTTPS upstream will fail"),
            };
            format!("{SSL_CERT_FILE}={path} ({count})")
        });
        let dir = self
            .get(SSL_CERT_DIR)
            .map(|dirs| format!("{SSL_CERT_DIR}={dirs}"));
        let named: Vec<String> = file.into_iter().chain(dir).collect();
        if named.is_empty() {
            "TLS trusts the system's CA certificates".to_owned()
        } else {
            format!(
                "TLS trusts the CA certificates of {} instead of the system's",
                named.join(" and ")
            )
        }
    }

    /// The variables a service started by a service manager needs to reach
    /// upstreams as this environment does: every one set here. Relative
    /// certificate paths are made absolute, as the service starts
    /// elsewhere.
    pub fn service_environment(&self) -> Vec<(&'static str, String)> {
        self.set
            .iter()
            .map(|(name, value)| (*name, self.absolute(name, value)))
            .collect()
    }

    /// `SSL_CERT_FILE` and `SSL_CERT_DIR` as absolute paths, for a process
    /// started in another directory; the other variables need nothing.
    pub fn absolute_cert_paths(&self) -> Vec<(&'static str, String)> {
        self.service_environment()
            .into_iter()
            .filter(|(name, _)| [SSL_CERT_FILE, SSL_CERT_DIR].contains(name))
            .collect()
    }

    fn absolute(&self, name: &str, value: &str) -> String {
        let absolute = |path: &str| -> String {
            if path.is_empty() {
                return path.to_owned();
            }
            std::path::absolute(path)
                .ok()
                .and_then(|p| p.to_str().map(str::to_owned))
                .unwrap_or_else(|| path.to_owned())
        };
        match name {
            SSL_CERT_FILE => absolute(value),
            SSL_CERT_DIR => value.split(':').map(absolute).collect::<Vec<_>>().join(":"),
            _ => value.to_owned(),
        }
    }

    /// Whether a proxy variable holds a user name or password: a file
    /// carrying them must be private.
    pub fn has_credentials(&self) -> bool {
        self.set
            .iter()
            .any(|(name, value)| !NO_PROXY.contains(name) && redact(value) != *value)
    }
}

/// `url` with any `user:password@` replaced by `***@`, for logs and
/// messages. Works on text, so a value that is not a valid URL is redacted
/// too.
pub fn redact(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

/// How many PEM certificates `path` holds.
fn certificates_in(path: &Path) -> Result<usize, rustls_pki_types::pem::Error> {
    CertificateDer::pem_file_iter(path)?.try_fold(0, |n, cert| cert.map(|_| n + 1))
}

/// A hint for a failure whose causes `message` spells, naming the setting
/// that fixes it: a certificate no trusted CA signed, or a proxy that
/// would not open the tunnel. `None` for any other failure.
pub fn network_hint(message: &str) -> Option<&'static str> {
    let certificate = [
        "invalid peer certificate",
        "UnknownIssuer",
        "certificate verify",
    ];
    if certificate.iter().any(|m| message.contains(m)) {
        return Some(
            "the upstream's certificate is not signed by a CA tfmirror trusts; behind a \
             TLS-inspecting proxy, set SSL_CERT_FILE to a PEM file with its CA (and the \
             system's) in tfmirror's environment",
        );
    }
    // hyper-util's words for a CONNECT that failed: the proxy refused,
    // asked for credentials, or could not be reached.
    message.contains("tunnel error").then_some(
        "the proxy named by HTTPS_PROXY, HTTP_PROXY or ALL_PROXY (see the start of \
         server.log) did not open a connection: check its address and credentials, or list \
         the host in NO_PROXY",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> NetworkEnv {
        NetworkEnv::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).unwrap()
    }

    fn proxy(variable: &'static str, shown: &str) -> Route {
        Route::Proxy {
            variable,
            shown: shown.to_owned(),
        }
    }

    #[test]
    fn redacts_credentials_and_nothing_else() {
        assert_eq!(
            redact("http://user:pa%40ss@proxy:3128"),
            "http://***@proxy:3128"
        );
        assert_eq!(redact("http://user@proxy:3128/"), "http://***@proxy:3128/");
        assert_eq!(redact("user:pass@proxy:3128"), "***@proxy:3128");
        assert_eq!(redact("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(redact("http://proxy:3128/a@b"), "http://proxy:3128/a@b");
        assert_eq!(redact(""), "");
    }

    #[test]
    fn upper_case_wins_and_all_proxy_fills_in() {
        let both = env(&[
            ("HTTPS_PROXY", "http://upper:3128"),
            ("https_proxy", "http://lower:3128"),
        ]);
        assert_eq!(
            both.route(&url("https://registry.terraform.io/")),
            proxy("HTTPS_PROXY", "http://upper:3128")
        );
        assert_eq!(both.route(&url("http://example.com/")), Route::Direct);

        let lower = env(&[("https_proxy", "proxy.corp:8080")]);
        assert_eq!(
            lower.route(&url("https://example.com/")),
            proxy("https_proxy", "http://proxy.corp:8080")
        );

        let all = env(&[
            ("all_proxy", "http://all:1"),
            ("HTTP_PROXY", "http://plain:2"),
        ]);
        assert_eq!(
            all.route(&url("https://example.com/")),
            proxy("all_proxy", "http://all:1")
        );
        assert_eq!(
            all.route(&url("http://example.com/")),
            proxy("HTTP_PROXY", "http://plain:2")
        );
    }

    /// Suffixes match a host and its subdomains, `*` matches every host,
    /// and loopback is proxied unless named: what reqwest does.
    #[test]
    fn no_proxy_follows_curl() {
        let corp = env(&[
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("no_proxy", "corp.example, .internal,10.0.0.0/8"),
        ]);
        let direct = [
            "https://corp.example/",
            "https://git.corp.example/",
            "https://a.b.internal/",
            "https://10.1.2.3/",
        ];
        for host in direct {
            assert_eq!(corp.route(&url(host)), Route::Direct, "{host}");
        }
        let proxied = [
            "https://notcorp.example/",
            "https://registry.terraform.io/",
            "https://127.0.0.1:8443/",
            "https://localhost:8443/",
        ];
        for host in proxied {
            assert!(
                matches!(corp.route(&url(host)), Route::Proxy { .. }),
                "{host}"
            );
        }
        let star = env(&[("HTTPS_PROXY", "http://proxy:3128"), ("NO_PROXY", "*")]);
        assert_eq!(star.route(&url("https://anything/")), Route::Direct);
    }

    #[test]
    fn summary_says_where_requests_go_without_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let pem = |n: u32| {
            let key = rcgen::KeyPair::generate().unwrap();
            let params = rcgen::CertificateParams::new(vec![format!("ca{n}")]).unwrap();
            params.self_signed(&key).unwrap().pem()
        };
        std::fs::write(&ca, format!("{}{}", pem(1), pem(2))).unwrap();
        let ca = ca.to_str().unwrap();
        let corporate = env(&[
            ("HTTPS_PROXY", "http://jo:s3cret@127.0.0.1:3128"),
            ("NO_PROXY", "localhost,.corp"),
            ("SSL_CERT_FILE", ca),
        ]);
        let summary = corporate.summary();
        assert!(
            !summary.contains("s3cret") && !summary.contains("jo:"),
            "{summary}"
        );
        assert_eq!(
            summary,
            format!(
                "upstream requests: https via proxy http://***@127.0.0.1:3128 (HTTPS_PROXY), \
                 http direct; hosts matching NO_PROXY=localhost,.corp go direct; TLS trusts \
                 the CA certificates of SSL_CERT_FILE={ca} (2 certificates) instead of the \
                 system's"
            )
        );
        assert_eq!(
            env(&[]).summary(),
            "upstream requests: direct (no HTTPS_PROXY, HTTP_PROXY or ALL_PROXY is set); TLS \
             trusts the system's CA certificates"
        );
        assert_eq!(
            env(&[("HTTPS_PROXY", "ftp://proxy:21")]).summary(),
            "upstream requests: direct (HTTPS_PROXY is not a proxy URL: it must be http://, \
             https:// or socks5:// followed by host:port); TLS trusts the system's CA \
             certificates"
        );
        assert!(env(&[("HTTP_PROXY", "http://p:1"), ("NO_PROXY", "*")])
            .summary()
            .contains("direct (NO_PROXY=* exempts every host)"));
        assert!(
            env(&[("HTTPS_PROXY", "http://p:1"), ("REQUEST_METHOD", "GET")])
                .summary()
                .contains("REQUEST_METHOD is set")
        );
        let missing = env(&[("SSL_CERT_FILE", "/nonexistent/ca.pem")]).summary();
        assert!(missing.contains("unreadable"), "{missing}");
    }

    #[test]
    fn a_service_gets_the_variables_with_absolute_paths() {
        let vars = env(&[
            ("no_proxy", "localhost"),
            ("HTTPS_PROXY", "http://u:p@proxy:3128"),
            ("SSL_CERT_FILE", "certs/ca.pem"),
            ("SSL_CERT_DIR", "/etc/ssl/certs:more"),
            ("TF_TOKEN_x", "never"),
        ]);
        let cwd = std::env::current_dir().unwrap();
        let cwd = cwd.to_str().unwrap();
        assert_eq!(
            vars.service_environment(),
            vec![
                ("HTTPS_PROXY", "http://u:p@proxy:3128".to_owned()),
                ("no_proxy", "localhost".to_owned()),
                ("SSL_CERT_FILE", format!("{cwd}/certs/ca.pem")),
                ("SSL_CERT_DIR", format!("/etc/ssl/certs:{cwd}/more")),
            ]
        );
        assert_eq!(vars.absolute_cert_paths().len(), 2);
        assert!(vars.has_credentials());
        assert!(!env(&[("HTTPS_PROXY", "http://proxy:3128")]).has_credentials());
        assert!(!env(&[("NO_PROXY", "user@host")]).has_credentials());
    }

    #[test]
    fn hints_at_certificate_and_proxy_failures_only() {
        let certificate = "error sending request: client error (Connect): invalid peer \
                           certificate: UnknownIssuer";
        assert!(network_hint(certificate).unwrap().contains("SSL_CERT_FILE"));
        let proxy = "client error (Connect): tunnel error: proxy authorization required";
        assert!(network_hint(proxy).unwrap().contains("HTTPS_PROXY"));
        assert!(network_hint("connection refused").is_none());
    }
}
