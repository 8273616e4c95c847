//! Where a capability token may travel: nowhere in clear text off this
//! machine.

use url::Url;

/// `url` parsed, when a capability token may be sent to it: it crosses no
/// network in clear text ([`https_or_loopback`]), and it has a host, no
/// user info, and neither a query nor a fragment.
pub fn token_url(url: &str) -> Option<Url> {
    Url::parse(url).ok().filter(|url| {
        https_or_loopback(url)
            && url.has_host()
            && url.username().is_empty()
            && url.password().is_none()
            && url.query().is_none()
            && url.fragment().is_none()
    })
}

/// Whether what travels to `url` crosses no network in clear text: it is
/// `https://`, or `http://` to this machine.
pub fn https_or_loopback(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => loopback(url),
        _ => false,
    }
}

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`).
fn loopback(url: &Url) -> bool {
    url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}
