//! Fake-clock tests of the leaf core's decisions.
