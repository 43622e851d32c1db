//! Multi-process tests, the latency/loss proxy, benchmarks and the overlay simulator.
//!
//! Tests here start real `superpeer` processes on 127.0.x.y addresses; nothing here is
//! linked into the product.
//!
//! Layout:
//! - `bench`: the `bench` binary's measurements of a real network, with baselines.
//! - `harness`: [`harness::Cluster`], real daemons on their own addresses and state dirs,
//!   waits with bounds, generated shares.
//! - `netns`: [`netns::Lab`], a small internet in network namespaces (public hosts, home
//!   routers with endpoint-independent or symmetric NAT) for NAT tests; needs root.
//! - `netns_nodes`: [`netns_nodes::Node`], a `superpeer` daemon in a lab's namespace.
//! - `proxy`: [`proxy::Proxy`], a userspace UDP proxy adding delay, jitter and loss.
//! - `sim`: the overlay simulator: the production state machines over a simulated network.
//! - `workload`: seeded catalogs, shares and queries with Zipf popularity, and the ground
//!   truth a search must match.

pub mod bench;
pub mod harness;
pub mod netns;
pub mod netns_nodes;
pub mod proxy;
pub mod sim;
pub mod workload;
