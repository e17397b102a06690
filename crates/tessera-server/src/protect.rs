//! What the HTTP edge protects before any use case runs: the client address
//! (`X-Forwarded-For` believed only from trusted proxies), the header and
//! announced-body size checks, and the body-read timeout. The throttle limits themselves live in
//! `tessera_app::throttle`.

use crate::error::ApiError;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower_http::timeout::{TimeoutBody, TimeoutError};

/// Requests whose headers (names and values) add up to more are refused with 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// An address range such as `10.0.0.0/8` or `fd00::/8`; a bare address is a /32 or
/// /128. Matching is `ipnet`'s; IPv4-mapped IPv6 clients match IPv4 ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet(ipnet::IpNet);

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let err = || format!("`{raw}` is not an IP address or a CIDR range such as 10.0.0.0/8");
        let raw = raw.trim();
        let net = match raw.parse::<ipnet::IpNet>() {
            Ok(net) => net,
            Err(_) => ipnet::IpNet::from(raw.parse::<IpAddr>().map_err(|_| err())?),
        };
        // A mapped IPv4 address given as IPv6 means the IPv4 address.
        Ok(IpNet(match net.addr().to_canonical() {
            IpAddr::V4(v4) if net.addr().is_ipv6() && net.prefix_len() >= 96 => {
                ipnet::IpNet::new(IpAddr::V4(v4), net.prefix_len() - 96).map_err(|_| err())?
            }
            _ => net,
        }))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Set once a request carried `X-Forwarded-For` while no proxy is trusted.
static WARNED_UNTRUSTED_FORWARD: AtomicBool = AtomicBool::new(false);

/// One `X-Forwarded-For` entry: an address, optionally with a port or in brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })
        .map(|ip: IpAddr| ip.to_canonical())
}

/// The client's address: the socket peer, unless the peer is a trusted proxy; then
/// `X-Forwarded-For` is read right to left, skipping trusted hops, and the first
/// address not trusted is the client. Entries left of it were written by the client
/// and are never read. An unreadable entry stops the walk at the last known hop.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        if trusted.is_empty()
            && headers.contains_key("x-forwarded-for")
            && !WARNED_UNTRUSTED_FORWARD.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "requests carry X-Forwarded-For but no proxy is trusted: limits apply to the \
                 socket address; behind a proxy set trusted_proxies (TESSERA_TRUSTED_PROXIES)"
            );
        }
        return Some(peer);
    }
    let values: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let mut client = peer;
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        match parse_hop(hop) {
            Some(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            None => break,
        }
    }
    Some(client)
}

/// Refuses a request whose headers are larger than [`MAX_HEADER_BYTES`] (431), and
/// one that announces a body over `body_limit` (413) at once, before any of the body
/// is read: a client announcing a huge body and sending it slowly, or not at all,
/// holds nothing. Bodies without a length (chunked) are cut at the limit as they are
/// read. The connection is closed after the 413: the body it announced is not read.
pub async fn limit_request(body_limit: usize, req: Request, next: Next) -> Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "the request headers are too large",
        )
        .into_response();
    }
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > body_limit as u64) {
        let mut res = ApiError::payload_too_large().into_response();
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    next.run(req).await
}

/// A client that stops sending the body it announced is answered 408
/// `request_timeout` once no part of the body has arrived for `limit` (tower-http's
/// `TimeoutBody` notices; the handler's own error for the broken body is replaced).
pub async fn body_read_timeout(limit: Duration, req: Request, next: Next) -> Response {
    if HttpBody::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let stalled = Arc::new(AtomicBool::new(false));
    let seen = stalled.clone();
    let req = req.map(|body| {
        Body::new(TimeoutBody::new(limit, body).map_err(move |e| {
            if e.is::<TimeoutError>() {
                seen.store(true, Ordering::Relaxed);
            }
            e
        }))
    });
    let res = next.run(req).await;
    if !stalled.load(Ordering::Relaxed) {
        return res;
    }
    let mut res = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request body did not arrive in time",
    )
    .into_response();
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let one: IpNet = "fd00::1".parse().unwrap();
        assert!(one.contains("fd00::1".parse().unwrap()));
        assert!(!one.contains("fd00::2".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fdff::9".parse().unwrap()));
        // An IPv4 range written as mapped IPv6 is that IPv4 range.
        let mapped: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains("10.9.8.7".parse().unwrap()));
        assert!(mapped.contains("::ffff:10.9.8.7".parse().unwrap()));
        assert_eq!(
            " 10.1.2.3 ".parse::<IpNet>().unwrap().to_string(),
            "10.1.2.3/32"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "example.com",
            "10.0.0.0/x",
            "10.0.0/8",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn without_trusted_proxies_the_socket_is_the_client() {
        let h = xff(&["203.0.113.7"]);
        assert_eq!(client_ip(ip("198.51.100.1"), &h, &[]), ip("198.51.100.1"));
        // A peer that is not a trusted proxy cannot speak for anyone else either.
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("198.51.100.1"), &h, &t), ip("198.51.100.1"));
        assert_eq!(client_ip(None, &h, &t), None);
    }

    #[test]
    fn forwarded_for_is_read_right_to_left_skipping_trusted_hops() {
        let t = nets(&["10.0.0.0/8", "fd00::/8"]);
        let peer = ip("10.0.0.2");
        // The client forged two entries; the proxy appended the real address.
        let h = xff(&["1.1.1.1, 2.2.2.2, 203.0.113.7"]);
        assert_eq!(client_ip(peer, &h, &t), ip("203.0.113.7"));
        // Two trusted hops, across two header lines.
        let h = xff(&["6.6.6.6, 203.0.113.7", "10.0.0.9"]);
        assert_eq!(client_ip(peer, &h, &t), ip("203.0.113.7"));
        // Ports and brackets are tolerated; mapped addresses are canonical.
        let h = xff(&["[2001:db8::1]:443"]);
        assert_eq!(client_ip(peer, &h, &t), ip("2001:db8::1"));
        let h = xff(&["::ffff:203.0.113.7"]);
        assert_eq!(client_ip(peer, &h, &t), ip("203.0.113.7"));
        // Garbage stops the walk at the last hop known.
        let h = xff(&["evil, 10.0.0.5"]);
        assert_eq!(client_ip(peer, &h, &t), ip("10.0.0.5"));
        let h = xff(&["not-an-ip"]);
        assert_eq!(client_ip(peer, &h, &t), peer);
        // No header: the proxy itself.
        assert_eq!(client_ip(peer, &HeaderMap::new(), &t), peer);
        // Everything trusted: the leftmost hop.
        let h = xff(&["10.9.9.9, 10.0.0.7"]);
        assert_eq!(client_ip(peer, &h, &t), ip("10.9.9.9"));
    }
}
