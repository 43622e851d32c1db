//! Peers behind NATs, in a small internet of network namespaces (`superpeer_integration::
//! netns`): a list server, two supernodes and a leaf on the public side (198.18.0.0/24), and
//! three homes behind routers that masquerade: two with endpoint-independent mappings
//! (plain `masquerade`, which keeps ports), one symmetric (`masquerade fully-random`). Every
//! node is a real `superpeer` process; the CLI runs inside each node's namespace. Every
//! download is checked against its content id.
//!
//! Skipped, with a message, where namespaces cannot be made (not root, no `nft`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use superpeer::control::{GetEventJson, StatusJson};
use superpeer_common::ContentId;
use superpeer_integration::harness::wait_for;
use superpeer_integration::netns::{Host, Lab, Nat};
use superpeer_integration::netns_nodes::Node;

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const PORT: u16 = 7600;

fn exe() -> &'static std::path::Path {
    std::path::Path::new(EXE)
}

/// Downloads `content_id` at `by`, checks the file against its id, and says how its one
/// source was reached.
fn fetch(by: &Node, content_id: &str) -> String {
    let finished = by
        .get(content_id)
        .unwrap_or_else(|e| panic!("download of {content_id}: {e:#}"));
    let GetEventJson::Finished { path, sources, .. } = finished else {
        unreachable!()
    };
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        ContentId::of_bytes(&bytes).to_string(),
        content_id,
        "{path}"
    );
    assert_eq!(sources.len(), 1, "one holder: {sources:?}");
    sources[0].reached.clone().unwrap_or_default()
}

fn wait_status(node: &Node, what: &str, ok: impl Fn(&StatusJson) -> bool) -> StatusJson {
    wait_for(what, Duration::from_secs(40), || {
        let status = node.status()?;
        Ok(ok(&status).then_some(status))
    })
    .unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn leaves_behind_nats_share_and_download_from_anywhere() {
    if let Err(why) = Lab::available() {
        eprintln!("skipping: {why}");
        return;
    }
    let lab = Lab::new("nat").unwrap();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let list_host = lab.public_host("list").unwrap();
    let sn_hosts = [
        lab.public_host("sn1").unwrap(),
        lab.public_host("sn2").unwrap(),
    ];
    let pub_host = lab.public_host("pub").unwrap();
    let home_a = lab.home("ha", Nat::EndpointIndependent).unwrap();
    let home_b = lab.home("hb", Nat::EndpointIndependent).unwrap();
    let home_c = lab.home("hc", Nat::Symmetric).unwrap();
    let (a_host, b_host, c_host) = (
        home_a.host("a").unwrap(),
        home_b.host("b").unwrap(),
        home_c.host("c").unwrap(),
    );
    let listen = |ip: Ipv4Addr| format!("{ip}:{PORT}");

    let list = Node::start(
        exe(),
        &list_host,
        root,
        "list",
        &["list-server", "--listen", &listen(list_host.ip())],
    )
    .unwrap();
    let list_addr = list.proc.pinned.to_string();
    let supernodes: Vec<Node> = sn_hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            Node::start(
                exe(),
                host,
                root,
                &format!("sn{}", i + 1),
                &[
                    "supernode",
                    "--listen",
                    &listen(host.ip()),
                    "--list-server",
                    &list_addr,
                ],
            )
            .unwrap()
        })
        .collect();
    // Leaves start once both supernodes are listed, so each probes both (two views of its
    // mapping).
    wait_for(
        "both supernodes to be listed",
        Duration::from_secs(30),
        || {
            let out = Command::new("ip")
                .args(["netns", "exec", pub_host.ns(), EXE, "supernodes", "--json"])
                .args(["--list-server", &list_addr])
                .output()?;
            let listed = String::from_utf8_lossy(&out.stdout).lines().count();
            Ok((listed >= 2).then_some(()))
        },
    )
    .unwrap();
    let leaf = |host: &Host, label: &str, extra: &[&str]| {
        let share = root.join(label).join("share");
        std::fs::create_dir_all(&share).unwrap();
        let listen = listen(host.ip());
        let mut args = vec![
            "leaf",
            "--listen",
            &listen,
            "--list-server",
            &list_addr,
            "--share",
            share.to_str().unwrap(),
            "--no-election",
        ];
        args.extend_from_slice(extra);
        Node::start(exe(), host, root, label, &args).unwrap()
    };
    let public = leaf(&pub_host, "pub", &[]);
    let a = leaf(&a_host, "a", &[]);
    // b claims the public leaf's address as its own: believed only after a dial-back
    // reaches b there, which it cannot.
    let stolen = listen(pub_host.ip());
    let b = leaf(&b_host, "b", &["--advertise", &stolen]);
    let c = leaf(&c_host, "c", &[]);
    let public_file = public
        .share_file("public lighthouse.bin", 2_000_000, 1)
        .unwrap();
    let a_file = a.share_file("alpha harbour.bin", 3_000_000, 2).unwrap();
    let b_file = b.share_file("bravo harbour.bin", 3_000_000, 3).unwrap();
    let c_file = c.share_file("charlie harbour.bin", 3_000_000, 4).unwrap();

    // Reachability: what each leaf's supernode saw, and the mapping two supernodes saw.
    let attached_and = |node: &Node, kind: &str, mapping: Option<&str>| {
        wait_status(
            node,
            &format!("{} to be {kind} {mapping:?}", node.proc.label),
            |s| {
                s.supernode.is_some()
                    && s.reachability.kind == kind
                    && s.reachability.mapping.as_deref() == mapping
                    && s.publication.as_ref().is_some_and(|p| p.pending == 0)
            },
        )
    };
    let status = attached_and(&public, "public", None);
    assert_eq!(
        status.reachability.observed,
        Some(listen(pub_host.ip())),
        "a public leaf is seen where it listens"
    );
    for (node, home) in [(&a, &home_a), (&b, &home_b)] {
        let status = attached_and(node, "nat", Some("endpoint-independent"));
        let observed = status.reachability.observed.unwrap();
        assert!(
            observed.starts_with(&format!("{}:", home.wan_ip())),
            "{} is seen at its router's public address, not {observed}",
            node.proc.label
        );
    }
    attached_and(&c, "nat", Some("endpoint-dependent"));

    // Search results name a NATed holder at its public address, marked firewalled.
    let hit = wait_for("alpha to be found", Duration::from_secs(20), || {
        Ok(public
            .search("alpha")?
            .into_iter()
            .find(|h| h.content_id == a_file))
    })
    .unwrap();
    let holder = &hit.holders[0];
    assert!(holder.firewalled, "{holder:?}");
    assert!(
        holder.addr.starts_with(&format!("{}:", home_a.wan_ip())),
        "a holder is never named at a private address: {holder:?}"
    );
    let b_hit = wait_for("bravo to be found", Duration::from_secs(20), || {
        Ok(public
            .search("bravo")?
            .into_iter()
            .find(|h| h.content_id == b_file))
    })
    .unwrap();
    let b_holder = &b_hit.holders[0];
    assert!(
        b_holder.firewalled && b_holder.addr.starts_with(&format!("{}:", home_b.wan_ip())),
        "a claimed public address is not believed: {b_holder:?}"
    );
    let public_hit = public.search("lighthouse").unwrap();
    assert!(
        public_hit
            .iter()
            .all(|h| h.holders.iter().all(|x| !x.firewalled))
    );

    // Every pairing, each download verified.
    assert_eq!(
        fetch(&public, &a_file),
        "reverse",
        "public downloads from NATed"
    );
    assert_eq!(
        fetch(&a, &public_file),
        "direct",
        "NATed downloads from public"
    );
    assert_eq!(
        fetch(&a, &b_file),
        "punched",
        "NATed from NATed, both endpoint-independent"
    );
    assert_eq!(
        fetch(&a, &c_file),
        "relayed",
        "NATed from a symmetric-NAT holder"
    );
    let relayed: u64 = supernodes
        .iter()
        .filter_map(|sn| sn.status().ok()?.relay)
        .map(|r| r.admitted)
        .sum();
    assert!(relayed >= 1, "a supernode counts the relayed session");
    let a_status = a.status().unwrap();
    let reached: Vec<_> = a_status
        .downloads
        .iter()
        .flat_map(|d| d.sources.iter().filter_map(|s| s.reached.clone()))
        .collect();
    assert!(
        reached.contains(&"relayed".to_string()),
        "status says how: {reached:?}"
    );

    // A NATed leaf is no supernode, and promote says why.
    let out = a.cli(&["promote"]).unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cannot be reached from outside"), "{said}");
    assert_eq!(a.status().unwrap().role, "leaf");
    drop(lab);
}
