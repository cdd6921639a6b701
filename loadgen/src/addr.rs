//! Where the generator may connect and from which source addresses.
//!
//! The generator is a benchmark tool, not a stress weapon: it only talks to
//! loopback (127.0.0.0/8 or ::1). Past a few tens of thousands of streams one
//! source address runs out of ephemeral ports towards one destination, so
//! connections are spread over 127.0.0.1, 127.0.0.2, ... .

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};

/// Connections per source address before the next one is used: well under
/// the 28k ephemeral ports of Linux's default `ip_local_port_range`.
pub const PER_SOURCE: usize = 20_000;

/// Parses `HOST:PORT` (an IP, or `localhost`) and refuses anything that is
/// not loopback.
pub fn loopback_target(text: &str) -> anyhow::Result<SocketAddr> {
    let text = text.trim();
    let text = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text)
        .trim_end_matches('/');
    let address: SocketAddr = match text.strip_prefix("localhost:") {
        Some(port) => SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port.parse()
                .with_context(|| format!("bad port in {text:?}"))?,
        ),
        None => text
            .parse()
            .with_context(|| format!("{text:?} is not an IP:PORT address"))?,
    };
    if !address.ip().is_loopback() {
        bail!("refusing {address}: steward-loadgen only targets loopback (127.0.0.0/8 or ::1)");
    }
    Ok(address)
}

/// How many 127.0.0.x source addresses `agents` connections need.
pub fn sources_needed(agents: usize) -> usize {
    agents.div_ceil(PER_SOURCE).max(1)
}

/// The source address of connection `index` out of `agents`, or `None` to
/// let the kernel choose (one source suffices, or the target is IPv6 ::1,
/// which has no neighbours).
pub fn source_for(target: SocketAddr, agents: usize, index: usize) -> Option<IpAddr> {
    let sources = sources_needed(agents);
    if sources == 1 || !target.is_ipv4() {
        return None;
    }
    // 127.0.0.1 .. 127.0.0.254, then 127.0.1.1 ..: never .0 or .255.
    let slot = (index % sources) as u32;
    let host = 1 + slot % 254;
    let subnet = slot / 254;
    Some(IpAddr::V4(Ipv4Addr::from(
        (127u32 << 24) | (subnet << 8) | host,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn loopback_targets_are_accepted_and_others_refused() {
        for (text, ok) in [
            ("127.0.0.1:50051", true),
            ("127.8.9.10:1", true),
            ("https://127.0.0.1:443/", true),
            ("http://127.0.0.1:8428", true),
            ("[::1]:50051", true),
            ("localhost:9", true),
            ("10.0.0.1:50051", false),
            ("0.0.0.0:50051", false),
            ("[::]:50051", false),
            ("[::ffff:127.0.0.1]:1", false),
            ("192.168.1.5:443", false),
            ("example.com:443", false),
            ("127.0.0.1", false),
        ] {
            assert_eq!(loopback_target(text).is_ok(), ok, "{text}");
        }
    }

    #[test]
    fn few_agents_use_the_kernels_choice() {
        let target = loopback_target("127.0.0.1:1").unwrap();
        assert_eq!(sources_needed(1), 1);
        assert_eq!(sources_needed(PER_SOURCE), 1);
        assert_eq!(source_for(target, PER_SOURCE, 5), None);
    }

    #[test]
    fn many_agents_spread_evenly_over_loopback_sources() {
        let target = loopback_target("127.0.0.1:1").unwrap();
        let agents = 3 * PER_SOURCE;
        assert_eq!(sources_needed(agents), 3);
        let picked: Vec<_> = (0..4)
            .map(|i| source_for(target, agents, i).unwrap())
            .collect();
        assert_eq!(
            picked,
            ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1"]
                .map(|ip| ip.parse::<IpAddr>().unwrap())
        );
        // Beyond 254 sources the next /24 is used, skipping .0 and .255.
        let huge = 300 * PER_SOURCE;
        assert_eq!(
            source_for(target, huge, 254).unwrap(),
            "127.0.1.1".parse::<IpAddr>().unwrap()
        );
        assert!(
            (0..huge)
                .step_by(997)
                .all(|i| source_for(target, huge, i).is_some_and(|ip| ip.is_loopback()))
        );
    }

    #[test]
    fn ipv6_loopback_has_no_spread() {
        let target = loopback_target("[::1]:1").unwrap();
        assert_eq!(source_for(target, 10 * PER_SOURCE, 3), None);
    }
}
