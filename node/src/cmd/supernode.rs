//! `superpeer supernode`: runs a node that starts as a supernode. It is the same daemon as
//! a leaf's, started promoted, so it shares its `--share` folder, searches and downloads like
//! any leaf; it never steps down by itself.

use crate::cli::SupernodeArgs;
use crate::leaf::{ElectionConfig, LeafCoreConfig};

pub fn run(args: SupernodeArgs) -> anyhow::Result<()> {
    let core = LeafCoreConfig {
        election: ElectionConfig {
            enabled: false,
            ..ElectionConfig::default()
        },
        start_as_supernode: true,
        ..LeafCoreConfig::default()
    };
    let supernode = super::daemon::SupernodeTunables {
        max_neighbors: args.max_neighbors.map(usize::from),
        directory: !args.no_directory,
    };
    super::daemon::run(args.daemon, core, supernode)
}
