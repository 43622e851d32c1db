//! `superpeer promote`: turns the running leaf into a supernode, without a restart.

use crate::cli::PromoteArgs;
use crate::control::ControlClient;
use crate::runtime;

pub fn run(args: PromoteArgs) -> anyhow::Result<()> {
    let client = ControlClient::from_state_dir(&runtime::state_dir(args.state_dir, None)?)?;
    let answer = client.promote()?;
    println!("role: {}", answer.role);
    for server in &answer.listed_by {
        println!("listed by: {server}");
    }
    if let Some(note) = &answer.note {
        println!("note: {note}");
    }
    Ok(())
}
