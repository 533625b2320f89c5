//! Unique loopback addresses, so tests in parallel threads and processes never collide.
//!
//! Every test picks a random `127.A.B.C` with `A` in `2..=250` (well away from
//! `127.0.0.x` and `127.0.1.1`, which the host may use) and proves the port is
//! free by binding it over both UDP and TCP before handing it out.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use anyhow::{Context, Result, bail};
use rand::Rng;

/// How many random addresses to try before giving up.
const ATTEMPTS: usize = 64;

/// Pick a random loopback address `127.A.B.C`, A in 2..=250, C in 1..=254.
pub fn random_loopback_ip() -> Ipv4Addr {
    let mut rng = rand::rng();
    Ipv4Addr::new(
        127,
        rng.random_range(2..=250),
        rng.random_range(0..=255),
        rng.random_range(1..=254),
    )
}

/// Bind UDP and TCP on the same `ip:port`; with port 0 the kernel picks the UDP port
/// and TCP must then get the same one.
pub fn bind_pair(ip: Ipv4Addr, port: u16) -> io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(SocketAddr::from((ip, port)))?;
    let port = udp.local_addr()?.port();
    let tcp = TcpListener::bind(SocketAddr::from((ip, port)))?;
    Ok((udp, tcp))
}

/// Bind UDP and TCP on a fresh random loopback address and `port` (0: any), retrying on collision.
pub fn bind_unique_pair(port: u16) -> Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match bind_pair(random_loopback_ip(), port) {
            Ok(pair) => return Ok(pair),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e).context(format!("no free loopback address for port {port}")),
        None => bail!("no free loopback address for port {port}"),
    }
}

/// A random loopback address whose `port` was free over UDP and TCP a moment ago.
///
/// The probe sockets are closed before returning so a child process can bind the
/// address; the random address space makes a collision in between very unlikely.
pub fn unique_addr(port: u16) -> Result<SocketAddr> {
    let (udp, _tcp) = bind_unique_pair(port)?;
    Ok(udp.local_addr()?)
}

/// A random loopback address with nothing listening on `port`: traffic sent there is
/// refused or lost, which makes it a dead upstream.
pub fn dead_addr(port: u16) -> Result<SocketAddr> {
    unique_addr(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random addresses stay inside the documented range.
    #[test]
    fn random_ip_in_range() {
        for _ in 0..1000 {
            let ip = random_loopback_ip().octets();
            assert_eq!(ip[0], 127);
            assert!((2..=250).contains(&ip[1]), "{ip:?}");
            assert!((1..=254).contains(&ip[3]), "{ip:?}");
        }
    }

    /// Port 0 yields a UDP and a TCP socket on the same address and port.
    #[test]
    fn pair_shares_port() -> Result<()> {
        let (udp, tcp) = bind_unique_pair(0)?;
        assert_eq!(udp.local_addr()?, tcp.local_addr()?);
        Ok(())
    }

    /// A fixed port is free on many distinct addresses at once.
    #[test]
    fn fixed_port_on_many_addresses() -> Result<()> {
        let pairs = (0..8)
            .map(|_| bind_unique_pair(5353))
            .collect::<Result<Vec<_>>>()?;
        for (udp, _) in &pairs {
            assert_eq!(udp.local_addr()?.port(), 5353);
        }
        Ok(())
    }
}
