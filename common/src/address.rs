//! Peer addresses: `HOST:PORT`, or `NODEID@HOST:PORT` to pin whom we expect to reach.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::identity::{NodeId, ParseNodeIdError};

/// Where to reach a peer and, when pinned, which node id must answer there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerAddr {
    /// The node id that must answer; `None` accepts whoever does.
    pub node_id: Option<NodeId>,
    /// The UDP address to dial.
    pub addr: SocketAddr,
}

impl PeerAddr {
    /// An address pinned to `node_id`.
    pub fn pinned(node_id: NodeId, addr: SocketAddr) -> Self {
        Self {
            node_id: Some(node_id),
            addr,
        }
    }

    /// An address that accepts any node id.
    pub fn unpinned(addr: SocketAddr) -> Self {
        Self {
            node_id: None,
            addr,
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.node_id {
            Some(id) => write!(f, "{id}@{}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Why a string is not a peer address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParsePeerAddrError {
    /// The part before `@` is not a node id.
    #[error("bad node id before '@': {0}")]
    NodeId(#[from] ParseNodeIdError),
    /// The address part is not `HOST:PORT` or does not resolve.
    #[error("expected HOST:PORT or NODEID@HOST:PORT, got {0:?}")]
    Address(String),
}

impl FromStr for PeerAddr {
    type Err = ParsePeerAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (node_id, host_port) = match s.split_once('@') {
            Some((id, rest)) => (Some(id.parse::<NodeId>()?), rest),
            None => (None, s),
        };
        let addr = match host_port.parse::<SocketAddr>() {
            Ok(addr) => addr,
            // A host name: resolve it now, once (command-line parsing time).
            Err(_) => host_port
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| ParsePeerAddrError::Address(host_port.to_owned()))?,
        };
        Ok(Self { node_id, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn parses_pinned_and_plain_addresses() {
        let pinned: PeerAddr = format!("{ID}@127.0.0.3:4000").parse().unwrap();
        assert_eq!(pinned.node_id.unwrap().to_string(), ID);
        assert_eq!(pinned.addr, "127.0.0.3:4000".parse().unwrap());
        assert_eq!(pinned.to_string(), format!("{ID}@127.0.0.3:4000"));

        let plain: PeerAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(plain, PeerAddr::unpinned("127.0.0.1:9".parse().unwrap()));
        assert_eq!("localhost:9".parse::<PeerAddr>().unwrap().addr.port(), 9);
        let v6: PeerAddr = "[::1]:7".parse().unwrap();
        assert!(v6.addr.is_ipv6());
    }

    #[test]
    fn rejects_malformed_addresses() {
        assert!(matches!(
            "abc@127.0.0.1:1".parse::<PeerAddr>(),
            Err(ParsePeerAddrError::NodeId(_))
        ));
        assert!(matches!(
            format!("{ID}@nowhere").parse::<PeerAddr>(),
            Err(ParsePeerAddrError::Address(_))
        ));
        assert!(matches!(
            "127.0.0.1".parse::<PeerAddr>(),
            Err(ParsePeerAddrError::Address(_))
        ));
        assert!(matches!(
            "127.0.0.1:99999".parse::<PeerAddr>(),
            Err(ParsePeerAddrError::Address(_))
        ));
    }
}
