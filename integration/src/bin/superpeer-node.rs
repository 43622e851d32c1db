//! The `superpeer` program, built as part of this crate so that its tests always run the
//! current code (`CARGO_BIN_EXE_superpeer-node`) even with `cargo test -p
//! superpeer-integration` alone.

fn main() -> std::process::ExitCode {
    superpeer::main_entry()
}
