//! Multi-process tests, the latency/loss proxy, benchmarks and the overlay simulator.
//!
//! Tests here start real `superpeer` processes on 127.0.0.x addresses; nothing here is
//! linked into the product.
//!
//! Layout: filled in by the integration and benchmark issues.
