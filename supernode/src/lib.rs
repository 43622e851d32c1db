//! The supernode role: leaf admission, the content index of attached leaves, keyword query
//! routing across the supernode overlay, and the overlay links themselves.
//!
//! It does not run the list server (see `superpeer-bootstrap-list`) nor the leaf side of
//! sharing and downloading (see the `superpeer` binary). Its decisions live in plain state
//! machines with time passed in, so the simulator can drive the same code.
//!
//! Layout: filled in by the supernode issue.
