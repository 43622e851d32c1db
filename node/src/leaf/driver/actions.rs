//! The driver's two halves: events to the core, and the core's actions carried out. No
//! decision here, and nothing awaited: what takes time runs in a task that reports back.

use std::time::Instant;

use superpeer_bootstrap_list::fetch_supernodes;
use superpeer_common::PeerAddr;
use superpeer_common::wire::Role;
use tracing::{debug, info, warn};

use super::session::{self, Attached};
use super::supernode::{self, Settings};
use super::{Driver, Event};
use crate::leaf::core::{AttachOutcome, LeafAction, Mapping, Reach, SUPERNODES_ASKED, Source};
use crate::leaf::status::LeafStatus;
use crate::nat;

/// Candidates `status` lists (the best measured first).
const MAX_CANDIDATES_SHOWN: usize = 20;

impl Driver {
    /// One event, handed to the core (or answered from what the driver holds).
    pub(super) fn handle(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Probed {
                node_id,
                result,
                observed,
            } => {
                tracing::trace!(node = %node_id.short(), ?result, ?observed, "probed");
                if let Some(addr) = observed {
                    self.core.handle_observed(node_id, addr);
                }
                self.core.handle_probe(now, node_id, result);
            }
            Event::Attached { session, result } => {
                let outcome = match result {
                    Attached::Yes(link) => {
                        self.sessions.insert(session, link);
                        AttachOutcome::Welcomed
                    }
                    Attached::Full(try_instead) => {
                        info!("the supernode is full; trying its suggestions");
                        AttachOutcome::Full(try_instead)
                    }
                    Attached::Failed(why) => {
                        info!("cannot attach: {why}");
                        AttachOutcome::Failed(why)
                    }
                };
                let before = self.core.supernode().map(|v| v.node_id);
                self.core.handle_attach(now, session, outcome);
                if let Some(view) = self.core.supernode()
                    && before != Some(view.node_id)
                {
                    let rtt_ms = view.rtt.as_secs_f64() * 1000.0;
                    info!(supernode = %view.node_id.short(), addr = %view.addr, rtt_ms, "attached");
                }
            }
            Event::FromSupernode { session, msg } => {
                self.core.handle_message(now, session, msg);
                let reach = self.core.reachability().reach;
                self.reacher.set_behind_nat(
                    matches!(reach, Reach::Nat(_)),
                    reach == Reach::Nat(Mapping::EndpointDependent),
                );
            }
            Event::SessionEnded { session, why } => {
                if self.sessions.remove(&session).is_some() {
                    warn!("the session with the supernode ended: {why}");
                }
                self.core.handle_session_ended(now, session);
            }
            Event::Learned { infos, source } => self.core.handle_learned(now, &infos, source),
            Event::ShareChanged => {
                debug!("the shared folder may have changed");
                self.rescan();
            }
            Event::Rescanned { delta, shared } => {
                self.shared = shared;
                if let Some(folder) = self.folder.as_mut() {
                    folder.rescanning = false;
                    if std::mem::take(&mut folder.again) {
                        self.rescan();
                    }
                }
                if let Some(delta) = delta {
                    info!(
                        added = delta.added.len(),
                        removed = delta.removed.len(),
                        "shared folder changed"
                    );
                    self.core.handle_share_delta(delta);
                }
            }
            Event::Status(reply) => self.status(reply),
            Event::Search {
                words,
                want,
                results,
                started,
            } => {
                let answer = self.core.search(now, &words, want).map(|id| {
                    self.searches.insert(id, results);
                });
                let _ = started.send(answer);
            }
            Event::Promote(reply) => match self.core.promote(now) {
                Ok(()) => self.promote_reply = Some(reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Event::Demote(reply) => {
                let _ = reply.send(self.core.demote(now));
            }
            Event::OwnAnswer(msg) => self.core.handle_own_answer(msg),
            Event::Registrations(status) => {
                self.core
                    .handle_registrations(now, &status.registrations, status.core.leaves);
            }
            Event::SupernodeStarted(result) => {
                let result = result.map(|running| {
                    self.supernode = Some(running);
                    info!(advertise = %self.advertise, "running as a supernode");
                });
                if result.is_err() {
                    self.start_accepting();
                }
                self.core.handle_supernode_started(now, result);
            }
            Event::SupernodeStopped => {
                info!("stepped down to leaf");
                self.start_accepting();
                self.core.handle_supernode_stopped(now);
            }
        }
    }

    /// Carries out what the core asked for.
    pub(super) fn run_actions(&mut self) {
        while let Some(action) = self.core.poll_action() {
            self.act(action);
        }
    }

    fn act(&mut self, action: LeafAction) {
        tracing::trace!(?action, "action");
        match action {
            LeafAction::DialBack { requester, addr } => {
                debug!(peer = %requester.short(), %addr, "dialling back, as our supernode asks");
                tokio::spawn(nat::dial_back(
                    self.endpoint.clone(),
                    requester,
                    addr,
                    Role::Leaf,
                    self.served.clone(),
                    self.uploads.clone(),
                ));
            }
            LeafAction::OpenRelay {
                requester,
                token,
                relay,
            } => {
                debug!(peer = %requester.short(), "opening a relay leg, as our supernode asks");
                tokio::spawn(nat::relay_leg(
                    self.endpoint.clone(),
                    relay,
                    requester,
                    token,
                    Role::Leaf,
                    self.served.clone(),
                    self.uploads.clone(),
                ));
            }
            LeafAction::Probe(target) => {
                tokio::spawn(session::run_probe(
                    self.endpoint.clone(),
                    target,
                    self.events.clone(),
                ));
            }
            LeafAction::Attach { target, session } => {
                tokio::spawn(session::run_attach(
                    self.endpoint.clone(),
                    target,
                    self.advertise,
                    session,
                    self.events.clone(),
                ));
            }
            LeafAction::Send { session, msg } => {
                if let Some(link) = self.sessions.get(&session) {
                    link.send(msg);
                }
            }
            LeafAction::Leave { session, reason } => {
                if let Some(link) = self.sessions.remove(&session) {
                    info!("leaving the supernode: {reason}");
                    self.leaving.retain(|t| !t.is_finished());
                    self.leaving.push(link.leave(reason));
                }
            }
            LeafAction::Close { session, reason } => {
                if let Some(link) = self.sessions.remove(&session) {
                    link.close(reason);
                }
            }
            LeafAction::FetchLists => {
                debug!("asking the list servers for supernodes");
                self.fetch_lists();
            }
            // Written atomically by the writer's task, never on this loop.
            LeafAction::SaveCache(known) => self.cache.save(known),
            LeafAction::Hits { id, hits } => {
                let Some(results) = self.searches.get(&id) else {
                    return;
                };
                for hit in hits {
                    match results.try_send(Ok(hit)) {
                        Ok(()) => {}
                        // A slow reader loses hits rather than stalling the driver.
                        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => break,
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                            self.searches.remove(&id);
                            self.core.cancel_search(id);
                            return;
                        }
                    }
                }
            }
            LeafAction::SearchOver { id, refused } => {
                if let (Some(results), Some(reason)) = (self.searches.remove(&id), refused) {
                    let _ = results.try_send(Err(reason));
                }
            }
            LeafAction::StartSupernode => self.start_supernode(),
            LeafAction::StopSupernode => {
                if let Some(running) = self.supernode.take() {
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        running.stop().await;
                        let _ = events.send(Event::SupernodeStopped).await;
                    });
                }
            }
            LeafAction::SearchOwnSupernode(query) => {
                if let Some(running) = &self.supernode {
                    running.search(query, self.events.clone());
                }
            }
            LeafAction::ShareOwnSupernode { add, remove } => {
                if let Some(running) = &self.supernode {
                    running.share(add, remove);
                }
            }
            LeafAction::PromotionSettled(result) => {
                if let Some(reply) = self.promote_reply.take() {
                    let _ = reply.send(result);
                }
            }
        }
    }

    fn fetch_lists(&self) {
        for server in self.config.list_servers.clone() {
            let (endpoint, events) = (self.endpoint.clone(), self.events.clone());
            tokio::spawn(async move {
                match fetch_supernodes(&endpoint, &server, Role::Leaf, SUPERNODES_ASKED).await {
                    Ok(list) => {
                        debug!(
                            supernodes = list.supernodes.len(),
                            short = list.short_of_supernodes,
                            "list"
                        );
                        let learned = Event::Learned {
                            infos: list.supernodes,
                            source: Source::ListServer {
                                short: list.short_of_supernodes,
                            },
                        };
                        let _ = events.send(learned).await;
                    }
                    Err(e) => debug!(list_server = %server.addr, "cannot fetch supernodes: {e}"),
                }
            });
        }
    }

    /// Stops the leaf's accept loop, then starts the supernode on the same endpoint; the
    /// result comes back as [`Event::SupernodeStarted`].
    fn start_supernode(&mut self) {
        let accepting = self.accepting.take();
        let mut peers = self.config.peers.clone();
        peers.extend(
            self.core
                .known()
                .into_iter()
                .map(|info| PeerAddr::pinned(info.node_id, info.addr)),
        );
        let settings = Settings {
            endpoint: self.endpoint.clone(),
            advertise: self.advertise,
            list_servers: self.config.list_servers.clone(),
            peers,
            max_leaves: self.config.core.max_leaves,
            max_neighbors: self.config.max_neighbors,
            directory: self.config.directory,
            max_files_per_leaf: self.config.max_files_per_leaf,
            max_connections: self.config.max_connections,
            relay: self.config.relay.clone(),
            transfer: supernode::transfer_service(
                self.served.clone(),
                self.uploads.clone(),
                self.reacher.pushes(),
                self.endpoint.limits().receive_window,
            ),
        };
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Some((stop, task)) = accepting {
                let _ = stop.send(true);
                let _ = task.await;
            }
            let started = supernode::start(settings, events.clone());
            let _ = events.send(Event::SupernodeStarted(started)).await;
        });
    }

    /// Rescans the shared folder on a blocking thread (its lock is never taken here).
    fn rescan(&mut self) {
        let Some(folder) = self.folder.as_mut() else {
            return;
        };
        if folder.rescanning {
            folder.again = true;
            return;
        }
        folder.rescanning = true;
        let (shared_folder, served, events) = (
            folder.folder.clone(),
            self.served.clone(),
            self.events.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut folder = shared_folder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let delta = folder.rescan();
            served.replace(folder.paths());
            let shared = folder.len();
            drop(folder);
            let delta = match delta {
                Ok(delta) if !delta.is_empty() => Some(delta),
                Ok(_) => None,
                Err(e) => {
                    warn!("rescanning the shared folder failed: {e}");
                    None
                }
            };
            let _ = events.blocking_send(Event::Rescanned { delta, shared });
        });
    }

    /// Answers `status`: the leaf's part now, a supernode's own status from a task.
    fn status(&self, reply: tokio::sync::oneshot::Sender<LeafStatus>) {
        let mut status = LeafStatus {
            node_id: self.endpoint.node_id(),
            listen: self.listen,
            advertise: self.advertise,
            supernode: self.core.supernode(),
            attached: self.core.attached_supernodes(),
            candidates: if self.core.is_supernode() {
                Vec::new()
            } else {
                self.core.candidates(MAX_CANDIDATES_SHOWN)
            },
            shared_files: self.shared,
            hashing: self.hashing.as_ref().map(|h| h.now()),
            publication: self.core.publication(),
            searches: self.core.searches(),
            is_supernode: self.core.is_supernode(),
            reachability: self.core.reachability(),
            promoted: None,
        };
        let Some(running) = &self.supernode else {
            let _ = reply.send(status);
            return;
        };
        let handle = running.handle.clone();
        tokio::spawn(async move {
            status.promoted = handle.status().await;
            let _ = reply.send(status);
        });
    }
}
