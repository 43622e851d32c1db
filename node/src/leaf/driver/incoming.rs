//! The leaf's accept loop: what a leaf answers on its own address.

use std::sync::Arc;
use std::time::Duration;

use superpeer_common::wire::{CloseCode, HelloReply, Intent, Role};
use superpeer_common::{Admitted, Endpoint, Gate, GateLimits};
use tokio::sync::watch;
use tracing::debug;

use crate::nat::{Pushes, take_push};
use crate::transfer::{ServedFiles, Uploads, serve_connection};

/// Longest an incoming handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers probes (dial-back checks, RTT measurements) and serves downloads of our shared
/// files, at most [`GateLimits::LEAF`] connections at once (256, 16 per source address:
/// more are refused before their handshake, so neither a crowd nor one client can hold
/// them all), until `stop` turns true (promotion hands the endpoint to a supernode). Refuses
/// the rest: a leaf admits no leaves and links to no supernode.
pub async fn serve(
    endpoint: Endpoint,
    served: ServedFiles,
    uploads: Arc<Uploads>,
    pushes: Pushes,
    mut stop: watch::Receiver<bool>,
) {
    let gate = Gate::new(GateLimits::LEAF);
    let receive_window = endpoint.limits().receive_window;
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.incoming() => incoming,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(incoming) = incoming else { return };
        let source = incoming.remote_address();
        let (mut ticket, incoming) = match gate.admit(incoming) {
            Admitted::Serve(ticket, incoming) => (ticket, *incoming),
            Admitted::Retried => continue,
            Admitted::Refused(why) => {
                debug!(%source, "refusing a connection: {why}");
                continue;
            }
        };
        let (served, uploads, pushes) = (served.clone(), uploads.clone(), pushes.clone());
        tokio::spawn(async move {
            let Ok(conn) = superpeer_common::accept(incoming, HANDSHAKE_TIMEOUT).await else {
                return;
            };
            if !ticket.established() {
                conn.close(CloseCode::Refused, "too many connections from this address");
                return;
            }
            let Ok((mut session, hello)) = conn.accept_session().await else {
                return;
            };
            match hello.intent {
                Intent::Probe => {
                    if let Err(e) =
                        superpeer_common::answer_probe(&mut session, Role::Leaf, || None).await
                    {
                        conn.close_for(&e);
                    }
                }
                Intent::Transfer => {
                    serve_connection(conn, session, Role::Leaf, served, uploads).await;
                }
                // A firewalled holder dialling back for one of our downloads.
                Intent::Push => {
                    take_push(conn, session, Role::Leaf, &pushes, receive_window).await;
                }
                other => {
                    let reason = format!("a leaf does not serve {other:?}");
                    let _ = session
                        .reply(&HelloReply::Refused {
                            reason,
                            try_instead: Vec::new(),
                        })
                        .await;
                    conn.finish_and_close(&mut session, CloseCode::Refused, "intent not served")
                        .await;
                }
            }
            // The slot is held until the connection is served.
            drop(ticket);
        });
    }
}
