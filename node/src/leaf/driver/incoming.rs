//! The leaf's accept loop: what a leaf answers on its own address.

use std::sync::Arc;
use std::time::Duration;

use superpeer_common::Endpoint;
use superpeer_common::wire::{CloseCode, HelloReply, Intent, Role};
use tokio::sync::{Semaphore, watch};

use crate::transfer::{ServedFiles, Uploads, serve_connection};

/// Connections a leaf serves at once (probes and downloads of its files); more are refused
/// before their handshake, so a crowd cannot make a leaf hold more than this many.
pub const MAX_INCOMING: usize = 256;

/// Answers probes (dial-back checks, RTT measurements) and serves downloads of our shared
/// files, until `stop` turns true (promotion hands the endpoint to a supernode). Refuses
/// the rest: a leaf admits no leaves and links to no supernode.
pub async fn serve(
    endpoint: Endpoint,
    served: ServedFiles,
    uploads: Arc<Uploads>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_INCOMING));
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.incoming() => incoming,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(incoming) = incoming else { return };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let (served, uploads) = (served.clone(), uploads.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(conn) = superpeer_common::accept(incoming, Duration::from_secs(5)).await else {
                return;
            };
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
        });
    }
}
