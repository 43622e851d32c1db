//! Self-test of the namespace lab (`superpeer_integration::netns`): the NAT it builds maps
//! and filters as its docs say, labs with the same addresses coexist, and nothing is left
//! behind after a drop. Skips (printing why) where labs cannot be built: not root, no `ip`
//! or `nft`, no `python3`.
//!
//! The test process stays in the root namespace, so every socket is made by a small
//! `python3` UDP agent started inside a namespace with `Host::spawn`: it prints
//! `bound PORT`, then `recv IP PORT PAYLOAD` for each datagram, and sends
//! `PAYLOAD` to `IP:PORT` for each `send IP PORT PAYLOAD` line on its stdin.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use superpeer_integration::netns::{Home, Host, Lab, Nat};

/// Bound on every wait for a datagram or a counter.
const LIMIT: Duration = Duration::from_secs(10);
/// How often a sender repeats a datagram until it is seen (the first may wait for ARP).
const RESEND: Duration = Duration::from_millis(200);

const AGENT: &str = r#"
import os, select, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("bound", s.getsockname()[1], flush=True)
pending = b""
while True:
    ready, _, _ = select.select([s, 0], [], [])
    if s in ready:
        try:
            data, (ip, port) = s.recvfrom(2048)
            print("recv", ip, port, data.decode(), flush=True)
        except OSError:
            pass
    if 0 in ready:
        chunk = os.read(0, 4096)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            _, ip, port, payload = line.decode().split()
            s.sendto(payload.encode(), (ip, int(port)))
"#;

/// A datagram as an agent saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    from: SocketAddrV4,
    payload: String,
}

/// A UDP socket inside a namespace, driven over the agent's stdin and stdout.
struct Agent {
    port: u16,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Agent {
    fn start(host: &Host, port: u16) -> Agent {
        let mut command = host.command("python3");
        command
            .args(["-c", AGENT, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let spawned = host.spawn(command).unwrap();
        let stdout = spawned.stdout.unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let bound = lines
            .recv_timeout(LIMIT)
            .unwrap_or_else(|e| panic!("agent in {} did not bind: {e}", host.name()));
        let port = bound.strip_prefix("bound ").unwrap().parse().unwrap();
        Agent {
            port,
            stdin: spawned.stdin.unwrap(),
            lines,
        }
    }

    fn send(&mut self, to: SocketAddrV4, payload: &str) {
        writeln!(self.stdin, "send {} {} {payload}", to.ip(), to.port()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next datagram, if one arrives before `deadline`.
    fn next(&self, deadline: Instant) -> Option<Seen> {
        let left = deadline.checked_duration_since(Instant::now())?;
        let line = self.lines.recv_timeout(left).ok()?;
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("recv"), "agent said {line:?}");
        let ip: Ipv4Addr = words.next().unwrap().parse().unwrap();
        let port = words.next().unwrap().parse().unwrap();
        Some(Seen {
            from: SocketAddrV4::new(ip, port),
            payload: words.next().unwrap_or_default().to_owned(),
        })
    }

    /// Waits (bounded) for a datagram carrying `payload`; returns it and what came before.
    fn expect(&self, payload: &str) -> (Seen, Vec<Seen>) {
        let deadline = Instant::now() + LIMIT;
        let mut before = Vec::new();
        while let Some(seen) = self.next(deadline) {
            if seen.payload == payload {
                return (seen, before);
            }
            before.push(seen);
        }
        panic!("no {payload:?} within {LIMIT:?} (saw {before:?})");
    }
}

fn addr(host: &Host, agent: &Agent) -> SocketAddrV4 {
    SocketAddrV4::new(host.ip(), agent.port)
}

/// Sends `payload` from `from` to every target until each has seen it (bounded); returns the
/// source each target saw.
fn send_until_seen(
    from: &mut Agent,
    targets: &[(SocketAddrV4, &Agent)],
    payload: &str,
) -> Vec<SocketAddrV4> {
    let deadline = Instant::now() + LIMIT;
    let mut seen: Vec<Option<SocketAddrV4>> = vec![None; targets.len()];
    while seen.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "{payload:?} not seen by all within {LIMIT:?}: {seen:?}"
        );
        for ((to, _), got) in targets.iter().zip(&seen) {
            if got.is_none() {
                from.send(*to, payload);
            }
        }
        let round = Instant::now() + RESEND;
        for ((_, agent), got) in targets.iter().zip(seen.iter_mut()) {
            while let Some(s) = agent.next(round) {
                if s.payload == payload {
                    // Every repeat of one socket's datagram uses the same mapping.
                    assert!(
                        got.is_none_or(|g| g == s.from),
                        "mapping moved: {got:?} then {}",
                        s.from
                    );
                    *got = Some(s.from);
                    break;
                }
            }
        }
    }
    seen.into_iter().flatten().collect()
}

fn lab_or_skip(tag: &str) -> Option<Lab> {
    if let Err(why) = Lab::available() {
        println!("skipping: {why}");
        return None;
    }
    let python = Command::new("python3").arg("--version").output();
    if !python.is_ok_and(|o| o.status.success()) {
        println!("skipping: no python3 for the UDP agents");
        return None;
    }
    Some(Lab::new(tag).unwrap())
}

/// Two public hosts with an agent each, and one home with one host.
struct World {
    home: Home,
    inside: Host,
    a: Host,
    b: Host,
}

fn world(lab: &Lab, nat: Nat) -> World {
    let a = lab.public_host("a").unwrap();
    let b = lab.public_host("b").unwrap();
    let home = lab.home("home", nat).unwrap();
    let inside = home.host("pc").unwrap();
    World { home, inside, a, b }
}

#[test]
fn endpoint_independent_nat_keeps_one_port_for_every_destination() {
    let Some(lab) = lab_or_skip("eim") else {
        return;
    };
    let w = world(&lab, Nat::EndpointIndependent);
    let (agent_a, agent_b) = (Agent::start(&w.a, 0), Agent::start(&w.b, 0));
    let mut inside = Agent::start(&w.inside, 0);
    let targets = [
        (addr(&w.a, &agent_a), &agent_a),
        (addr(&w.b, &agent_b), &agent_b),
    ];
    let seen = send_until_seen(&mut inside, &targets, "hello");
    for from in &seen {
        assert_eq!(
            *from.ip(),
            w.home.wan_ip(),
            "source is the router's WAN address"
        );
    }
    assert_eq!(
        seen[0].port(),
        seen[1].port(),
        "one mapping for both destinations"
    );
    assert_eq!(
        seen[0].port(),
        inside.port,
        "masquerade kept the host's own port"
    );
}

#[test]
fn symmetric_nat_maps_each_destination_to_its_own_port() {
    let Some(lab) = lab_or_skip("sym") else {
        return;
    };
    let w = world(&lab, Nat::Symmetric);
    let (agent_a, agent_b) = (Agent::start(&w.a, 0), Agent::start(&w.b, 0));
    let targets = [
        (addr(&w.a, &agent_a), &agent_a),
        (addr(&w.b, &agent_b), &agent_b),
    ];
    // Random ports collide with chance 1/64k: one retry on a new socket rules that out.
    let mut ports = Vec::new();
    for attempt in 0..2 {
        let mut inside = Agent::start(&w.inside, 0);
        let seen = send_until_seen(&mut inside, &targets, &format!("hello{attempt}"));
        for from in &seen {
            assert_eq!(*from.ip(), w.home.wan_ip());
        }
        ports = vec![seen[0].port(), seen[1].port()];
        if ports[0] != ports[1] {
            break;
        }
    }
    assert_ne!(
        ports[0], ports[1],
        "two destinations, two external ports: {ports:?}"
    );
}

#[test]
fn the_router_lets_in_only_replies_from_the_peer_the_home_sent_to() {
    let Some(lab) = lab_or_skip("filter") else {
        return;
    };
    let w = world(&lab, Nat::EndpointIndependent);
    let (mut agent_a, mut agent_b) = (Agent::start(&w.a, 0), Agent::start(&w.b, 0));
    let mut inside = Agent::start(&w.inside, 0);
    let mapped = SocketAddrV4::new(w.home.wan_ip(), inside.port);
    let drops = |at_least: u64| {
        let deadline = Instant::now() + LIMIT;
        while w.home.unsolicited_drops().unwrap() < at_least {
            assert!(
                Instant::now() < deadline,
                "router never dropped datagram {at_least}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let before = w.home.unsolicited_drops().unwrap();

    // Never used outbound: the router drops it.
    agent_a.send(mapped, "unsolicited");
    drops(before + 1);

    // The home opens the flow to a; a's reply comes back through it.
    let seen = send_until_seen(&mut inside, &[(addr(&w.a, &agent_a), &agent_a)], "open");
    assert_eq!(seen, [mapped]);
    agent_a.send(mapped, "reply");
    let (reply, earlier) = inside.expect("reply");
    assert_eq!(reply.from, addr(&w.a, &agent_a));
    assert!(earlier.is_empty(), "only the reply got in: {earlier:?}");

    // b was never sent to: the mapping does not let it in (address-dependent filtering).
    agent_b.send(mapped, "from-b");
    drops(before + 2);
    agent_a.send(mapped, "again");
    let (_, earlier) = inside.expect("again");
    assert!(earlier.is_empty(), "b got through: {earlier:?}");

    // Nor another port of a (port-dependent too).
    let mut other_port = Agent::start(&w.a, 0);
    other_port.send(mapped, "other-port");
    drops(before + 3);
    agent_a.send(mapped, "last");
    let (_, earlier) = inside.expect("last");
    assert!(
        earlier.is_empty(),
        "a's other port got through: {earlier:?}"
    );
}

#[test]
fn two_labs_with_the_same_addresses_do_not_see_each_other() {
    let Some(one) = lab_or_skip("one") else {
        return;
    };
    let two = Lab::new("two").unwrap();
    let mut sides = Vec::new();
    for lab in [&one, &two] {
        let listener = lab.public_host("listener").unwrap();
        let sender = lab.public_host("sender").unwrap();
        // The same address and port in both labs.
        let heard = Agent::start(&listener, 40000);
        let talker = Agent::start(&sender, 0);
        sides.push((listener, heard, talker));
    }
    assert_eq!(sides[0].0.ip(), sides[1].0.ip());
    assert_ne!(sides[0].0.ns(), sides[1].0.ns());
    for (i, (listener, heard, talker)) in sides.iter_mut().enumerate() {
        let to = addr(listener, heard);
        send_until_seen(talker, &[(to, heard)], &format!("lab{i}"));
    }
    // Each listener heard only its own lab's sender.
    for (i, (listener, heard, talker)) in sides.iter_mut().enumerate() {
        talker.send(addr(listener, heard), "end");
        let (_, earlier) = heard.expect("end");
        let own = format!("lab{i}");
        assert!(
            earlier.iter().all(|s| s.payload == own),
            "lab {i} heard {earlier:?}"
        );
    }
}

#[test]
fn dropping_the_lab_kills_its_children_and_deletes_its_namespaces() {
    let Some(lab) = lab_or_skip("drop") else {
        return;
    };
    let public = lab.public_host("a").unwrap();
    let home = lab.home("home", Nat::Symmetric).unwrap();
    let inside = home.host("pc").unwrap();
    let mut sleep = inside.command("sleep");
    sleep.arg("600");
    let pid = inside.spawn(sleep).unwrap().pid;
    let names = lab.namespaces();
    assert_eq!(
        names.len(),
        4,
        "internet, public host, router, home host: {names:?}"
    );
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(lab);
    assert_no_namespace(&names);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "child {pid} survived"
    );
    assert!(
        public.spawn(public.command("true")).is_err(),
        "a dropped lab spawns nothing"
    );

    // A test that panics still tears its lab down.
    let names = std::thread::spawn(|| {
        let lab = Lab::new("panic").unwrap();
        let _host = lab.public_host("a").unwrap();
        let names = lab.namespaces();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _lab = lab;
            panic!("a test failing with its lab alive");
        }))
        .unwrap_err();
        names
    })
    .join()
    .unwrap();
    assert_eq!(names.len(), 2);
    assert_no_namespace(&names);
}

fn assert_no_namespace(names: &[String]) {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    let alive: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| names.iter().any(|n| n == ns))
        .collect();
    assert!(alive.is_empty(), "left behind: {alive:?}");
}
