//! The PROXY protocol header (v2 binary, v1 text) a load balancer listed in `trusted_proxies`
//! puts in front of each connection it forwards: the client's own address, read before the
//! TLS handshake so that caps, the throttle, logs and `admin who` see the client and not the
//! balancer. The bytes are read exactly (the handshake follows) and parsed by the `ppp` crate.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A v2 header starts with these 12 bytes; a v1 header with `PROXY `.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (from the specification).
const V1_MAX_BYTES: usize = 107;

/// Why a trusted proxy's connection carried no usable header (it is closed).
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The first bytes are not a PROXY header.
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    /// A PROXY header the parser refused.
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(String),
    /// The connection failed or ended inside the header.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the header at the start of `tcp` and returns the client's address it carries, or
/// `None` for a header that names no client (v2 `LOCAL`, v1 `UNKNOWN`: the balancer's own
/// connection, such as a health check), which then counts as the balancer's.
pub async fn read_source(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, HeaderError> {
    let mut header = vec![0u8; 6];
    tcp.read_exact(&mut header).await?;
    if header[..] == V2_SIGNATURE[..6] {
        // Signature, version and command, family, then the length of what follows.
        header.resize(16, 0);
        tcp.read_exact(&mut header[6..]).await?;
        let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
        header.resize(16 + len, 0);
        tcp.read_exact(&mut header[16..]).await?;
    } else if header == b"PROXY " {
        // Text up to CRLF, a byte at a time: nothing past the header may be consumed.
        while !header.ends_with(b"\r\n") {
            if header.len() == V1_MAX_BYTES {
                return Err(HeaderError::Invalid(
                    "v1 header longer than 107 bytes".into(),
                ));
            }
            let mut byte = [0u8; 1];
            tcp.read_exact(&mut byte).await?;
            header.push(byte[0]);
        }
    } else {
        return Err(HeaderError::Missing);
    }
    parse(&header)
}

/// The client address in a complete header.
fn parse(header: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::{HeaderResult, v1, v2};
    let at = |ip: std::net::IpAddr, port| Some(SocketAddr::new(ip, port));
    match HeaderResult::parse(header) {
        HeaderResult::V2(Ok(h)) if h.command == v2::Command::Local => Ok(None),
        HeaderResult::V2(Ok(h)) => match h.addresses {
            v2::Addresses::IPv4(a) => Ok(at(a.source_address.into(), a.source_port)),
            v2::Addresses::IPv6(a) => Ok(at(a.source_address.into(), a.source_port)),
            v2::Addresses::Unspecified => Ok(None),
            v2::Addresses::Unix(_) => Err(HeaderError::Invalid("a Unix socket source".into())),
        },
        HeaderResult::V1(Ok(h)) => match h.addresses {
            v1::Addresses::Tcp4(a) => Ok(at(a.source_address.into(), a.source_port)),
            v1::Addresses::Tcp6(a) => Ok(at(a.source_address.into(), a.source_port)),
            v1::Addresses::Unknown => Ok(None),
        },
        HeaderResult::V2(Err(e)) => Err(HeaderError::Invalid(e.to_string())),
        HeaderResult::V1(Err(e)) => Err(HeaderError::Invalid(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(addresses.len()).unwrap().to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    #[test]
    fn a_v2_ipv4_header_gives_its_source() {
        let addrs = [203, 0, 113, 7, 10, 0, 0, 5, 0xC3, 0x50, 0x1D, 0x13];
        assert_eq!(
            parse(&v2(1, 0x11, &addrs)).unwrap(),
            Some("203.0.113.7:50000".parse().unwrap())
        );
    }

    #[test]
    fn a_v2_ipv6_header_gives_its_source() {
        let mut addrs = vec![0x20, 0x01, 0x0d, 0xb8];
        addrs.extend_from_slice(&[0; 11]);
        addrs.push(1);
        addrs.extend_from_slice(&[0; 16]);
        addrs.extend_from_slice(&[0x04, 0xD2, 0x1D, 0x13]);
        assert_eq!(
            parse(&v2(1, 0x21, &addrs)).unwrap(),
            Some("[2001:db8::1]:1234".parse().unwrap())
        );
    }

    #[test]
    fn a_local_header_names_no_client() {
        assert_eq!(parse(&v2(0, 0x00, &[])).unwrap(), None);
    }

    #[test]
    fn v1_text_headers_are_accepted_too() {
        assert_eq!(
            parse(b"PROXY TCP4 198.51.100.2 10.0.0.5 40000 7443\r\n").unwrap(),
            Some("198.51.100.2:40000".parse().unwrap())
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), None);
    }

    #[test]
    fn a_malformed_header_is_an_error() {
        assert!(parse(b"PROXY TCP4 1.2.3 10.0.0.5 1 2\r\n").is_err());
        assert!(parse(&v2(1, 0x11, &[1, 2, 3])).is_err());
    }
}
