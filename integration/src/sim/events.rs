//! Everything that happens in a run, as events in virtual time, and where each goes.

use std::time::Duration;

use superpeer::leaf::SessionNo;
use superpeer_bootstrap_list::RegistrationStatus;
use superpeer_common::NodeId;
use superpeer_common::wire::{
    LeafToSupernode, SupernodeInfo, SupernodeToLeaf, SupernodeToSupernode,
};
use superpeer_supernode::SessionId;

use super::world::World;

/// Everything that happens, at a virtual time. Events for a slot carry the slot's life;
/// events for a leaf carry the leaf's (each time it comes back it runs a new core).
/// Payloads are boxed: the queue holds millions of events, and sifting small ones is
/// what keeps it fast (40 bytes an event instead of 72).
pub enum Event {
    /// Started supernode n starts: it registers and its timers run.
    Start(u32),
    /// Supernode n's timers (the driver's 100 ms tick).
    Tick { sn: u32, life: u32 },
    /// Supernode n's registration reaches the list server.
    Register { sn: u32, life: u32 },
    /// The list server's dial-back to supernode n came back.
    DialBack { sn: u32, life: u32 },
    /// Supernode n's heartbeat reaches the list server.
    Heartbeat { sn: u32, life: u32 },
    /// The list server's answer reaches supernode n.
    Registration {
        sn: u32,
        life: u32,
        status: Box<RegistrationStatus>,
    },
    /// Supernode n asks the list server for supernodes (the driver's refresh timer).
    Fetch { sn: u32, life: u32 },
    /// An elected supernode reports its registrations and leaves to its leaf's core.
    Report { sn: u32, life: u32 },
    /// The list server's clock.
    ListTick,
    /// A dial reaches its target (see `links`).
    LinkAccept {
        dialer: u32,
        dialer_life: u32,
        dialer_session: SessionId,
        target: u32,
    },
    /// The target's welcome reaches the dialer.
    LinkConfirm {
        dialer: u32,
        dialer_life: u32,
        dialer_session: SessionId,
        target: u32,
        target_session: SessionId,
    },
    /// Supernode n fetches the membership (the driver's membership timer).
    Members { sn: u32, life: u32 },
    /// A directory connection reaches its target (see `direct`).
    DirectAccept {
        dialer: u32,
        dialer_life: u32,
        dialer_session: SessionId,
        target: u32,
    },
    /// The target took the directory session: the dialler hears it.
    DirectConfirm {
        dialer: u32,
        dialer_life: u32,
        dialer_session: SessionId,
        target: u32,
        target_session: SessionId,
    },
    /// A directory connection failed (refused, or nobody there).
    DirectFailed {
        dialer: u32,
        dialer_life: u32,
        target: Box<NodeId>,
    },
    /// A dial failed (refused, or nobody there).
    DialFailed {
        dialer: u32,
        dialer_life: u32,
        target: Box<NodeId>,
    },
    /// The other end closed supernode `sn`'s session (or went silent past the idle
    /// timeout).
    Gone { sn: u32, session: SessionId },
    /// A neighbour's message reaches supernode `sn`.
    ToSupernode {
        sn: u32,
        session: SessionId,
        msg: Box<SupernodeToSupernode>,
    },
    /// The next leaf of the initial population comes up.
    JoinNext(u32),
    /// Leaf n's core wanted to look at the clock (stale unless `seq` is its latest).
    Wake { leaf: u32, seq: u32 },
    /// The list server's answer reaches leaf n.
    ListAnswer { leaf: u32, life: u32 },
    /// Leaf n's probe of supernode slot `sn` answered, after `rtt` each way and back.
    ProbeDone {
        leaf: u32,
        life: u32,
        sn: u32,
        rtt: Duration,
    },
    /// Leaf n's probe of `target` failed.
    ProbeFailed {
        leaf: u32,
        life: u32,
        target: Box<NodeId>,
    },
    /// Leaf n's attach reaches supernode slot `sn`.
    LeafAttach {
        leaf: u32,
        life: u32,
        no: SessionNo,
        sn: u32,
    },
    /// How leaf n's attach went reaches it.
    Attached {
        leaf: u32,
        life: u32,
        no: SessionNo,
        reply: Box<AttachReply>,
    },
    /// A leaf's message reaches supernode `sn`.
    FromLeaf {
        sn: u32,
        session: SessionId,
        msg: Box<LeafToSupernode>,
    },
    /// A supernode's message reaches a leaf (dropped if that session is gone).
    ToLeaf {
        leaf: u32,
        life: u32,
        no: SessionNo,
        msg: Box<SupernodeToLeaf>,
    },
    /// A leaf's session ended (closed by the supernode, or silent past the idle timeout).
    LeafClosed { leaf: u32, life: u32, no: SessionNo },
    /// An answer of a leaf's own supernode to one of its own searches.
    OwnAnswer {
        leaf: u32,
        life: u32,
        msg: Box<SupernodeToLeaf>,
    },
    /// An elected supernode has finished stopping (its leaves told, its sessions closed).
    Stopped { sn: u32, life: u32 },
    /// Leaf n goes offline (churn); `life` tells stale departures apart.
    LeafLeave { leaf: u32, life: u32 },
    /// Leaf n comes back.
    LeafReturn(u32),
    /// Query n is sent.
    QueryStart(u32),
    /// The layout's links come up (instead of the supernodes' own dials).
    LayOut,
    /// The supernodes chosen to crash or stop do.
    Fault,
    /// The time series takes a sample.
    Sample,
}

/// How an attach ended, as the leaf's driver reports it.
pub enum AttachReply {
    /// Welcome, on the supernode's session `session` of slot `sn`.
    Welcomed { sn: u32, session: SessionId },
    /// Full; try these.
    Full(Vec<SupernodeInfo>),
    /// No connection or no welcome.
    Failed(&'static str),
}

impl World<'_> {
    /// Hands `event` to what handles it.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Start(sn) => self.start(sn),
            Event::Tick { sn, life } => self.tick(sn, life),
            Event::Register { sn, life } => self.register(sn, life),
            Event::DialBack { sn, life } => self.dial_back(sn, life),
            Event::Heartbeat { sn, life } => self.heartbeat(sn, life),
            Event::Registration { sn, life, status } => self.registration(sn, life, *status),
            Event::Fetch { sn, life } => self.fetch(sn, life),
            Event::Report { sn, life } => self.report_registrations(sn, life),
            Event::ListTick => self.list_tick(),
            Event::LinkAccept {
                dialer,
                dialer_life,
                dialer_session,
                target,
            } => self.link_accept(dialer, dialer_life, dialer_session, target),
            Event::LinkConfirm {
                dialer,
                dialer_life,
                dialer_session,
                target,
                target_session,
            } => self.link_confirm(dialer, dialer_life, dialer_session, target, target_session),
            Event::DialFailed {
                dialer,
                dialer_life,
                target,
            } => self.dial_failed(dialer, dialer_life, *target),
            Event::Members { sn, life } => self.members_fetch(sn, life),
            Event::DirectAccept {
                dialer,
                dialer_life,
                dialer_session,
                target,
            } => self.direct_accept(dialer, dialer_life, dialer_session, target),
            Event::DirectConfirm {
                dialer,
                dialer_life,
                dialer_session,
                target,
                target_session,
            } => self.direct_confirm(dialer, dialer_life, dialer_session, target, target_session),
            Event::DirectFailed {
                dialer,
                dialer_life,
                target,
            } => self.direct_failed(dialer, dialer_life, *target),
            Event::Gone { sn, session } => self.gone(sn, session),
            Event::ToSupernode { sn, session, msg } => self.deliver_to_supernode(sn, session, *msg),
            Event::JoinNext(leaf) => self.join_next(leaf),
            Event::Wake { leaf, seq } => self.wake(leaf, seq),
            Event::ListAnswer { leaf, life } => self.list_answer(leaf, life),
            Event::ProbeDone {
                leaf,
                life,
                sn,
                rtt,
            } => self.probe_done(leaf, life, sn, rtt),
            Event::ProbeFailed { leaf, life, target } => self.probe_failed(leaf, life, *target),
            Event::LeafAttach { leaf, life, no, sn } => self.leaf_attach(leaf, life, no, sn),
            Event::Attached {
                leaf,
                life,
                no,
                reply,
            } => self.attached(leaf, life, no, *reply),
            Event::FromLeaf { sn, session, msg } => self.deliver_from_leaf(sn, session, *msg),
            Event::ToLeaf {
                leaf,
                life,
                no,
                msg,
            } => self.deliver_to_leaf(leaf, life, no, *msg),
            Event::LeafClosed { leaf, life, no } => self.leaf_closed(leaf, life, no),
            Event::OwnAnswer { leaf, life, msg } => self.own_answer(leaf, life, *msg),
            Event::Stopped { sn, life } => self.stopped(sn, life),
            Event::LeafLeave { leaf, life } => self.leaf_leave(leaf, life),
            Event::LeafReturn(leaf) => self.leaf_return(leaf),
            Event::QueryStart(q) => self.query_start(q),
            Event::LayOut => self.lay_out(),
            Event::Fault => self.fault(),
            Event::Sample => self.sample(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn events_stay_small() {
        // Millions wait in the queue at once: payloads are boxed to keep them at 32 bytes.
        assert!(std::mem::size_of::<super::Event>() <= 32);
    }
}
