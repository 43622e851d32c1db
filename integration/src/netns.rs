//! A small internet in Linux network namespaces, for NAT tests.
//!
//! 127.0.x.y cannot show what a home router does to a peer's traffic: which external port
//! a mapping gets, whether it is the same for every destination, and which inbound
//! datagrams it lets through. A [`Lab`] builds that with real kernel NAT (nftables
//! masquerade and conntrack) in namespaces of its own:
//!
//! ```text
//!                 internet namespace (bridge br0, 198.18.0.0/24, no address of its own)
//!        ┌──────────────┬────────────┴───────────┬─────────────────────┐
//!   public host     public host            home router (Nat)       home router ...
//!   198.18.0.1      198.18.0.2             wan 198.18.0.3
//!                                          lan bridge 192.168.1.1, masquerade out of wan
//!                                          ┌───────┴────────┐
//!                                     home host          home host
//!                                     192.168.1.2        192.168.1.3 (default via .1)
//! ```
//!
//! Each box is a namespace named `sp{pid}-{tag}-{name}`; every link is a veth pair created
//! from inside the lab's namespaces, so nothing is added to the root namespace and two labs
//! with the same addresses (two tests at once) never see each other.
//!
//! The router's [`Nat`] decides the mapping:
//! - [`Nat::EndpointIndependent`]: plain `masquerade`. Linux keeps the source port when the
//!   resulting tuple is free, so one socket has one external `wan_ip:port` for every
//!   destination (what hole punching needs).
//! - [`Nat::Symmetric`]: `masquerade fully-random`: every new flow (destination) gets a random
//!   external port, so the port a peer observed is useless to a third party.
//!
//! Filtering is the same for both: conntrack lets in replies to flows the home opened; any new
//! flow arriving on `wan` (to the router itself or forwarded towards the LAN) is dropped and
//! counted ([`Home::unsolicited_drops`]). Since a datagram only reaches the LAN through the
//! conntrack entry of the exact flow the home opened, Linux filters by address and port.
//!
//! Children started with [`Host::spawn`] are killed and every namespace is deleted when the
//! [`Lab`] drops, also when a test panics; a later run deletes namespaces left by a run that
//! was killed (`sp{pid}-` of a pid no longer alive). Needs root, `ip` and `nft`
//! ([`Lab::available`]).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// The internet bridge's namespace, `sp{pid}-{tag}-inet`; no host may take this name.
const INTERNET: &str = "inet";
/// Longest tag or host name: namespace names stay readable in `ip netns list`.
const MAX_NAME: usize = 16;
/// The public network's first three octets (198.18.0.0/15 is reserved for benchmarks).
const PUBLIC_NET: [u8; 3] = [198, 18, 0];
/// Highest host octet handed out on a /24.
const LAST_OCTET: u8 = 254;
/// A home host's first octet: .1 is the router.
const FIRST_HOME_HOST: u8 = 2;

/// What went wrong building or using a [`Lab`].
#[derive(Debug)]
pub enum LabError {
    /// A command that builds the lab could not start or exited with a failure.
    Command {
        /// The command line.
        command: String,
        /// Its stderr, or why it could not start.
        detail: String,
    },
    /// A tag or host name that is empty, too long, not `[a-z0-9-]`, reserved or already used.
    BadName(String),
    /// No address is left on the public /24, for home LANs or on one home's LAN.
    Exhausted(&'static str),
    /// [`Host::spawn`] was given a command not made by that host's [`Host::command`].
    NotInNamespace(String),
    /// The [`Lab`] was dropped: its namespaces are gone.
    Closed,
}

impl std::fmt::Display for LabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Command { command, detail } => write!(f, "`{command}` failed: {detail}"),
            Self::BadName(name) => write!(
                f,
                "bad lab name {name:?}: 1-{MAX_NAME} of [a-z0-9-], unique, not {INTERNET:?}"
            ),
            Self::Exhausted(what) => write!(f, "no address left for {what}"),
            Self::NotInNamespace(ns) => {
                write!(f, "command was not made by Host::command of namespace {ns}")
            }
            Self::Closed => write!(f, "the lab was dropped"),
        }
    }
}

impl std::error::Error for LabError {}

/// A home router's mapping behaviour (filtering is the same for both, see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// `masquerade`: one external port per socket, kept equal to the internal one if free.
    EndpointIndependent,
    /// `masquerade fully-random`: a new random external port per destination.
    Symmetric,
}

/// One lab: an internet namespace with a bridge, and the hosts and homes hanging off it.
/// Dropping it kills what was spawned in it and deletes all its namespaces.
#[derive(Debug)]
pub struct Lab {
    shared: Arc<Shared>,
}

/// What the lab, its homes and hosts share. Every change holds `state` from start to end,
/// so [`Lab`]'s drop never races a namespace being made.
#[derive(Debug)]
struct Shared {
    /// `sp{pid}-{tag}`.
    prefix: String,
    internet: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    closed: bool,
    /// Namespaces in creation order.
    namespaces: Vec<String>,
    names: HashSet<String>,
    children: Vec<Child>,
    /// Last octet given out on 198.18.0.0/24.
    public_octets: u8,
    /// Third octet of the last home LAN.
    homes: u8,
    /// Hosts so far on each home LAN, by its third octet.
    home_hosts: HashMap<u8, u8>,
    /// Veth ends made in the internet namespace (`v{n}`).
    veths: u32,
}

/// A machine in the lab: one namespace with one address.
#[derive(Debug, Clone)]
pub struct Host {
    name: String,
    ns: String,
    ip: Ipv4Addr,
    shared: Arc<Shared>,
}

/// A home: a NAT router between the internet bridge and a LAN bridge, and its hosts.
#[derive(Debug, Clone)]
pub struct Home {
    router: Host,
    /// Third octet of the LAN, 192.168.`lan`.0/24.
    lan: u8,
}

/// A child started by [`Host::spawn`]: its pid and the pipes the command asked for. The
/// [`Lab`] keeps the child itself, to kill and reap it when it drops.
#[derive(Debug)]
pub struct Spawned {
    /// The program's pid (`ip netns exec` execs it in place).
    pub pid: u32,
    /// Its stdin, if piped.
    pub stdin: Option<ChildStdin>,
    /// Its stdout, if piped.
    pub stdout: Option<ChildStdout>,
    /// Its stderr, if piped.
    pub stderr: Option<ChildStderr>,
}

impl Lab {
    /// Whether labs can be built here: root, `ip` and `nft` present, and a namespace can be
    /// made. The error says what is missing, for a test to print before skipping. Checked
    /// once per process: parallel tests would race for the probe namespace's name.
    pub fn available() -> Result<(), String> {
        static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
        AVAILABLE.get_or_init(check_available).clone()
    }

    /// Builds the internet namespace with its bridge, after deleting namespaces left by runs
    /// that were killed. `tag` (1-16 of `[a-z0-9-]`) must differ between the labs alive at
    /// once in one process.
    pub fn new(tag: &str) -> Result<Lab, LabError> {
        check_name(tag)?;
        sweep_stale();
        let prefix = format!("sp{}-{tag}", std::process::id());
        let internet = format!("{prefix}-{INTERNET}");
        let lab = Lab {
            shared: Arc::new(Shared {
                prefix,
                internet: internet.clone(),
                state: Mutex::new(State::default()),
            }),
        };
        {
            let mut state = lab.shared.lock()?;
            add_namespace(&mut state, &internet)?;
            ip(&internet, &["link", "add", "br0", "type", "bridge"])?;
            ip(&internet, &["link", "set", "br0", "up"])?;
        }
        Ok(lab)
    }

    /// A host on the internet bridge with the next 198.18.0.N/24.
    pub fn public_host(&self, name: &str) -> Result<Host, LabError> {
        let mut state = self.shared.lock()?;
        let ns = self.shared.claim(&mut state, name)?;
        let addr = next_public(&mut state)?;
        add_namespace(&mut state, &ns)?;
        self.shared.plug(&mut state, &ns, "eth0", addr)?;
        Ok(Host {
            name: name.to_owned(),
            ns,
            ip: addr,
            shared: Arc::clone(&self.shared),
        })
    }

    /// A home router with the next 198.18.0.N/24 on its `wan` side, LAN 192.168.K.1/24 for
    /// the next K, forwarding, and the nftables NAT and filter for `nat`.
    pub fn home(&self, name: &str, nat: Nat) -> Result<Home, LabError> {
        let mut state = self.shared.lock()?;
        let ns = self.shared.claim(&mut state, name)?;
        let wan_ip = next_public(&mut state)?;
        let lan = state.homes.checked_add(1).filter(|k| *k <= LAST_OCTET);
        let lan = lan.ok_or(LabError::Exhausted("home LANs"))?;
        state.homes = lan;
        add_namespace(&mut state, &ns)?;
        self.shared.plug(&mut state, &ns, "wan", wan_ip)?;
        let gateway = format!("192.168.{lan}.1/24");
        ip(&ns, &["link", "add", "lan", "type", "bridge"])?;
        ip(&ns, &["addr", "add", &gateway, "dev", "lan"])?;
        ip(&ns, &["link", "set", "lan", "up"])?;
        run(Command::new("ip")
            .args(["netns", "exec", &ns, "sysctl", "-qw"])
            .arg("net.ipv4.ip_forward=1"))?;
        run(Command::new("ip")
            .args(["netns", "exec", &ns, "nft"])
            .arg(ruleset(nat)))?;
        Ok(Home {
            router: Host {
                name: name.to_owned(),
                ns,
                ip: wan_ip,
                shared: Arc::clone(&self.shared),
            },
            lan,
        })
    }

    /// The lab's namespaces alive now, in creation order.
    pub fn namespaces(&self) -> Vec<String> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .namespaces
            .clone()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.closed = true;
        for mut child in state.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Hosts first, the internet last; deleting a namespace deletes its veths.
        for ns in state.namespaces.drain(..).rev() {
            delete_namespace(&ns);
        }
    }
}

impl Home {
    /// A host on this home's LAN with the next 192.168.K.(2+i)/24, default route via the
    /// router.
    pub fn host(&self, name: &str) -> Result<Host, LabError> {
        let shared = &self.router.shared;
        let mut state = shared.lock()?;
        let ns = shared.claim(&mut state, name)?;
        let index = state.home_hosts.get(&self.lan).copied().unwrap_or(0);
        let octet = FIRST_HOME_HOST
            .checked_add(index)
            .filter(|o| *o <= LAST_OCTET)
            .ok_or(LabError::Exhausted("a home LAN"))?;
        state.home_hosts.insert(self.lan, index.saturating_add(1));
        add_namespace(&mut state, &ns)?;
        let host_ip = Ipv4Addr::new(192, 168, self.lan, octet);
        let port = format!("h{index}");
        veth((&self.router.ns, &port, "lan"), (&ns, "eth0", host_ip))?;
        let gateway = format!("192.168.{}.1", self.lan);
        ip(&ns, &["route", "add", "default", "via", &gateway])?;
        Ok(Host {
            name: name.to_owned(),
            ns,
            ip: host_ip,
            shared: Arc::clone(shared),
        })
    }

    /// The router's address on the internet: what peers see as the home's source.
    pub fn wan_ip(&self) -> Ipv4Addr {
        self.router.ip
    }

    /// The router itself (its [`Host::ip`] is the WAN address), to run `nft` or `conntrack`
    /// in it.
    pub fn router(&self) -> &Host {
        &self.router
    }

    /// Datagrams arriving on `wan` that belonged to no flow the home opened, dropped by the
    /// router so far: a bounded wait on this proves a datagram was filtered.
    pub fn unsolicited_drops(&self) -> Result<u64, LabError> {
        let mut list = self.router.command("nft");
        list.args(["list", "counter", "ip", "filter", "unsolicited"]);
        let out = run(&mut list)?;
        // "table ip filter { counter unsolicited { packets N bytes M } }"
        let packets = out
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1);
        packets
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| LabError::Command {
                command: describe(&list),
                detail: format!("no packet count in {out:?}"),
            })
    }
}

impl Host {
    /// The name given to [`Lab::public_host`] or [`Home::host`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its only address (a router's is its WAN address).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Its namespace, for `ip netns exec`.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// `ip netns exec NS program`: add arguments, then run it or give it to [`Host::spawn`].
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns, program]);
        command
    }

    /// Starts `command` (made by [`Host::command`]) and keeps the child, to be killed
    /// (SIGKILL) and reaped when the [`Lab`] drops.
    pub fn spawn(&self, mut command: Command) -> Result<Spawned, LabError> {
        let args: Vec<_> = command.get_args().take(3).collect();
        if command.get_program() != "ip" || args != ["netns", "exec", self.ns.as_str()] {
            return Err(LabError::NotInNamespace(self.ns.clone()));
        }
        let mut state = self.shared.lock()?;
        let mut child = command.spawn().map_err(|e| LabError::Command {
            command: describe(&command),
            detail: e.to_string(),
        })?;
        let spawned = Spawned {
            pid: child.id(),
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        };
        state.children.push(child);
        Ok(spawned)
    }
}

impl Shared {
    fn lock(&self) -> Result<MutexGuard<'_, State>, LabError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return Err(LabError::Closed);
        }
        Ok(state)
    }

    /// Reserves `name` in this lab; returns its namespace's name.
    fn claim(&self, state: &mut State, name: &str) -> Result<String, LabError> {
        check_name(name)?;
        if !state.names.insert(name.to_owned()) {
            return Err(LabError::BadName(name.to_owned()));
        }
        Ok(format!("{}-{name}", self.prefix))
    }

    /// A veth from the internet bridge to `ns`, where it is named `dev` and has `addr`/24.
    fn plug(&self, state: &mut State, ns: &str, dev: &str, addr: Ipv4Addr) -> Result<(), LabError> {
        state.veths = state.veths.saturating_add(1);
        let end = format!("v{}", state.veths);
        veth((&self.internet, &end, "br0"), (ns, dev, addr))
    }
}

/// The router's nftables: masquerade out of `wan` (fully random for [`Nat::Symmetric`]),
/// and new flows from `wan` dropped and counted. Forwarding otherwise accepts: with
/// `br_netfilter` loaded, traffic between LAN hosts crosses the bridge through this
/// forward hook too.
fn ruleset(nat: Nat) -> String {
    let masquerade = match nat {
        Nat::EndpointIndependent => "masquerade",
        Nat::Symmetric => "masquerade fully-random",
    };
    format!(
        "table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan\" {masquerade}
  }}
}}
table ip filter {{
  counter unsolicited {{ }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname \"wan\" ct state established,related accept
    iifname \"wan\" counter name \"unsolicited\" drop
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname \"wan\" ct state established,related accept
    iifname \"wan\" counter name \"unsolicited\" drop
  }}
}}
"
    )
}

fn next_public(state: &mut State) -> Result<Ipv4Addr, LabError> {
    let octet = state
        .public_octets
        .checked_add(1)
        .filter(|o| *o <= LAST_OCTET);
    let octet = octet.ok_or(LabError::Exhausted("the public network"))?;
    state.public_octets = octet;
    let [a, b, c] = PUBLIC_NET;
    Ok(Ipv4Addr::new(a, b, c, octet))
}

/// Makes `ns` with `lo` up and records it for deletion, even when a later step fails.
fn add_namespace(state: &mut State, ns: &str) -> Result<(), LabError> {
    run(Command::new("ip").args(["netns", "add", ns]))?;
    state.namespaces.push(ns.to_owned());
    ip(ns, &["link", "set", "lo", "up"])
}

/// A veth pair made in namespace `from`, its end `end` a port of `bridge` there; the peer
/// is made directly in `to` (so no name is ever taken in the root namespace), named `dev`,
/// with `addr`/24.
fn veth(
    (from, end, bridge): (&str, &str, &str),
    (to, dev, addr): (&str, &str, Ipv4Addr),
) -> Result<(), LabError> {
    ip(
        from,
        &[
            "link", "add", end, "type", "veth", "peer", "name", dev, "netns", to,
        ],
    )?;
    ip(from, &["link", "set", end, "master", bridge, "up"])?;
    ip(to, &["addr", "add", &format!("{addr}/24"), "dev", dev])?;
    ip(to, &["link", "set", dev, "up"])
}

/// `ip -n NS args...`.
fn ip(ns: &str, args: &[&str]) -> Result<(), LabError> {
    run(Command::new("ip").args(["-n", ns]).args(args)).map(drop)
}

/// Runs `command` to the end; its stdout, or its stderr as the error.
fn run(command: &mut Command) -> Result<String, LabError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command {
            command: describe(command),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: describe(command),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

fn check_name(name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name != INTERNET
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LabError::BadName(name.to_owned()))
    }
}

/// Kills what still runs in `ns` (a grandchild, or the children of a killed run), then
/// deletes it. Errors are ignored: this is teardown.
fn delete_namespace(ns: &str) {
    if let Ok(pids) = run(Command::new("ip").args(["netns", "pids", ns])) {
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if !pids.is_empty() {
            let _ = run(Command::new("kill").arg("-KILL").args(&pids));
        }
    }
    let _ = run(Command::new("ip").args(["netns", "delete", ns]));
}

/// Deletes namespaces named `sp{pid}-...` whose pid is no longer alive: a run that was
/// killed before its labs dropped.
fn sweep_stale() {
    let Ok(list) = run(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for ns in list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        if stale_owner(ns)
            .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        {
            delete_namespace(ns);
        }
    }
}

/// The pid in a lab namespace's name `sp{pid}-...`.
fn stale_owner(ns: &str) -> Option<u32> {
    let (pid, _) = ns.strip_prefix("sp")?.split_once('-')?;
    pid.parse().ok()
}

fn check_available() -> Result<(), String> {
    if !is_root() {
        return Err("netns lab needs root (network namespaces, nftables)".into());
    }
    for (tool, arg) in [("ip", "-V"), ("nft", "--version")] {
        let found = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!("netns lab needs `{tool}` on PATH"));
        }
    }
    let probe = format!("sp{}-probe", std::process::id());
    run(Command::new("ip").args(["netns", "add", &probe]))
        .map_err(|e| format!("cannot make a network namespace: {e}"))?;
    delete_namespace(&probe);
    Ok(())
}

fn is_root() -> bool {
    // "Uid:\treal\teffective\tsaved\tfs"
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("home-1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("Home").is_err());
        assert!(check_name("inet").is_err());
        assert!(check_name("a-very-long-name-indeed").is_err());
    }

    #[test]
    fn stale_owner_reads_the_pid() {
        assert_eq!(stale_owner("sp1234-eim-home"), Some(1234));
        assert_eq!(stale_owner("sp-x"), None);
        assert_eq!(stale_owner("spare-ns"), None);
        assert_eq!(stale_owner("other"), None);
    }

    #[test]
    fn symmetric_is_fully_random() {
        assert!(ruleset(Nat::Symmetric).contains("masquerade fully-random"));
        assert!(!ruleset(Nat::EndpointIndependent).contains("fully-random"));
    }
}
