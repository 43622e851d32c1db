//! A leaf becoming a supernode without a restart, and stepping back down.
//!
//! Promotion keeps everything the user has: the same process, identity, address, shared
//! folder, downloads and control API. Step by step:
//! 1. The leaf stops accepting connections (the supernode accepts every kind from now on:
//!    probes, leaves, links, transfers of our files).
//! 2. It leaves its supernode cleanly (which drops our files from its index at once).
//! 3. A supernode starts on the same endpoint, with our list servers (it registers, and
//!    the list server dials it back before listing it), the supernodes we knew as its
//!    first peers, and our shared files in its own index.
//! 4. Searches and status go through that supernode from then on.
//!
//! Stepping down reverses it: the supernode tells its leaves where to go, unregisters and
//! closes its sessions; the leaf accepts again and joins the best supernode it knows.

use std::sync::Arc;
use std::time::Instant;

use superpeer_bootstrap_list::RegistrationStatus;
use superpeer_common::PeerAddr;
use superpeer_common::wire::{Query, Role};
use superpeer_supernode::{Supernode, SupernodeConfig, SupernodeHandle, TransferService};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{Actor, Event, lock};
use crate::leaf::election::Decision;
use crate::transfer::{ServedFiles, Uploads, serve_connection};

/// The supernode a promoted leaf runs.
pub(super) struct Promoted {
    pub(super) handle: SupernodeHandle,
    /// Promoted by the election (undone at once if no list server will list us).
    elected: bool,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Promoted {
    /// Stops the supernode and waits until it has let its leaves go.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// How a supernode serves transfers of our shared files.
pub fn transfer_service(served: ServedFiles, uploads: Arc<Uploads>) -> TransferService {
    Arc::new(move |conn, session| {
        let (served, uploads) = (served.clone(), uploads.clone());
        Box::pin(serve_connection(
            conn,
            session,
            Role::Supernode,
            served,
            uploads,
        ))
    })
}

impl Actor {
    /// Becomes a supernode (see the module docs).
    pub(super) async fn promote(&mut self, elected: bool) -> Result<(), String> {
        if self.promoted.is_some() {
            return Err("this node is a supernode already".into());
        }
        self.stop_accepting().await;
        self.leave_supernode("promoted to supernode").await;
        self.joiner.detached();
        self.end_searches();
        let mut config = SupernodeConfig::new(self.listen);
        config.advertise = Some(self.advertise);
        config.list_servers = self.config.list_servers.clone();
        config.peers = self
            .joiner
            .known()
            .into_iter()
            .map(|info| PeerAddr::pinned(info.node_id, info.addr))
            .collect();
        config.core.max_leaves = self.config.max_leaves;
        config.transfer = Some(transfer_service(self.served.clone(), self.uploads.clone()));
        let supernode = match Supernode::on_endpoint(self.endpoint.clone(), config) {
            Ok(supernode) => supernode,
            Err(e) => {
                self.start_accepting();
                return Err(format!("cannot start the supernode: {e}"));
            }
        };
        let handle = supernode.handle();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(supernode.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        let entries = lock(&self.entries).clone();
        handle.share(entries, Vec::new()).await;
        info!(advertise = %self.advertise, elected, "promoted to supernode");
        self.promoted = Some(Promoted {
            handle,
            elected,
            stop,
            task,
        });
        Ok(())
    }

    /// Runs the election: promotes, steps down, or asks the list servers, as it decides.
    /// Promoted, it watches our leaves and, for an elected promotion, whether any list
    /// server lists us.
    pub(super) async fn elect(&mut self, now: Instant) {
        self.election.set_attached(self.current.is_some());
        if let Some(promoted) = &self.promoted {
            let Some(status) = promoted.handle.status().await else {
                return;
            };
            let refused_everywhere = !status.registrations.is_empty()
                && status
                    .registrations
                    .iter()
                    .all(|(_, r)| matches!(r, RegistrationStatus::Refused(_)));
            if promoted.elected && refused_everywhere {
                warn!(
                    registrations = ?status.registrations,
                    "no list server will list us as a supernode; back to leaf"
                );
                let _ = self.demote().await;
                self.election.promotion_failed(now);
                return;
            }
            self.election.own_leaves(now, status.core.leaves as u32);
        }
        match self.election.poll(now) {
            None => {}
            Some(Decision::AskListServers) => self.refresh_lists(),
            Some(Decision::Promote) => match self.promote(true).await {
                Ok(()) => self.election.promoted(false),
                Err(e) => {
                    warn!("cannot promote: {e}");
                    self.election.promotion_failed(now);
                }
            },
            Some(Decision::Demote) => {
                info!("few leaves here while others have room: stepping down");
                if self.demote().await.is_ok() {
                    self.election.demoted(now);
                }
            }
        }
    }

    /// Steps back down to leaf (see the module docs).
    pub(super) async fn demote(&mut self) -> Result<(), String> {
        let Some(promoted) = self.promoted.take() else {
            return Err("this node is a leaf already".into());
        };
        promoted.stop().await;
        self.start_accepting();
        info!("stepped down to leaf");
        self.drive(std::time::Instant::now());
        Ok(())
    }

    /// Stops a promoted node's supernode at shutdown.
    pub(super) async fn stop_supernode(&mut self) {
        if let Some(promoted) = self.promoted.take() {
            promoted.stop().await;
        }
    }

    /// Searches through our own supernode; answers come back as [`Event::OwnSupernode`].
    pub(super) async fn search_as_supernode(&mut self, query: Query) -> Result<(), String> {
        let Some(promoted) = &self.promoted else {
            return Err("not a supernode".into());
        };
        let Some(mut answers) = promoted.handle.search(query).await else {
            return Err("the supernode has stopped".into());
        };
        let events = self.events.clone();
        tokio::spawn(async move {
            while let Some(msg) = answers.recv().await {
                if events.send(Event::OwnSupernode(msg)).await.is_err() {
                    break;
                }
            }
        });
        Ok(())
    }
}
