//! `superpeer`: one program for every role of the network. See the library (`lib.rs`).

fn main() -> std::process::ExitCode {
    superpeer::main_entry()
}
