//! The overlay simulator (being written).
