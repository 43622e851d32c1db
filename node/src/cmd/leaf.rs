//! `superpeer leaf`: runs a node as a leaf (it may elect itself supernode later).

use std::time::Duration;

use crate::cli::LeafArgs;
use crate::leaf::{ElectionConfig, LeafCoreConfig};

pub fn run(args: LeafArgs) -> anyhow::Result<()> {
    let core = LeafCoreConfig {
        election: ElectionConfig {
            enabled: !args.no_election,
            ..ElectionConfig::with_min_uptime(Duration::from_secs(args.promote_after))
        },
        ..LeafCoreConfig::default()
    };
    super::daemon::run(
        args.daemon,
        core,
        super::daemon::SupernodeTunables::default(),
    )
}
