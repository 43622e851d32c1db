//! Downloads waiting for a firewalled holder's reverse connection ([`Intent::Push`]).
//!
//! [`Intent::Push`]: superpeer_common::wire::Intent::Push
//!
//! A downloader registers before it asks the holder's supernode; the connection the holder
//! makes is handed to it only if its node id is the one awaited (the TLS handshake proved
//! it). A push nobody waits for is refused: nobody can make us serve or keep connections
//! we did not ask for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use superpeer_common::wire::{CloseCode, HelloReply, Role};
use superpeer_common::{Connection, NodeId, Session};
use tokio::sync::oneshot;

/// Downloads waiting at once at most (each waits a few seconds).
pub const MAX_WAITING: usize = 256;

/// See the module docs. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Pushes(Arc<Mutex<Waiting>>);

#[derive(Debug, Default)]
struct Waiting {
    next: u64,
    by_node: HashMap<NodeId, Vec<(u64, oneshot::Sender<Connection>)>>,
    count: usize,
}

/// One download's wait; dropping it stops waiting.
#[derive(Debug)]
pub struct PushWait {
    pushes: Pushes,
    from: NodeId,
    key: u64,
    /// The connection, when the holder made it.
    pub arrived: oneshot::Receiver<Connection>,
}

impl Pushes {
    /// Waits for a reverse connection from `from`; `None` when too many wait already.
    pub fn expect(&self, from: NodeId) -> Option<PushWait> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.lock();
        if waiting.count >= MAX_WAITING {
            return None;
        }
        waiting.next += 1;
        let key = waiting.next;
        waiting.by_node.entry(from).or_default().push((key, tx));
        waiting.count += 1;
        Some(PushWait {
            pushes: self.clone(),
            from,
            key,
            arrived: rx,
        })
    }

    /// Hands a reverse connection to a download waiting for its node; gives it back when
    /// none is.
    pub fn deliver(&self, conn: Connection) -> Result<(), Connection> {
        let peer = conn.peer();
        let mut conn = conn;
        let mut waiting = self.lock();
        loop {
            let Some(list) = waiting.by_node.get_mut(&peer) else {
                return Err(conn);
            };
            let popped = list.pop();
            if list.is_empty() {
                waiting.by_node.remove(&peer);
            }
            let Some((_, tx)) = popped else {
                return Err(conn);
            };
            waiting.count -= 1;
            match tx.send(conn) {
                Ok(()) => return Ok(()),
                // That download stopped waiting; try the next.
                Err(back) => conn = back,
            }
        }
    }

    /// Whether a download waits for `from`.
    pub fn awaits(&self, from: &NodeId) -> bool {
        self.lock().by_node.get(from).is_some_and(|l| !l.is_empty())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for PushWait {
    fn drop(&mut self) {
        let mut waiting = self.pushes.lock();
        let mut removed = false;
        if let Some(list) = waiting.by_node.get_mut(&self.from) {
            let before = list.len();
            list.retain(|(key, _)| *key != self.key);
            removed = list.len() < before;
            if list.is_empty() {
                waiting.by_node.remove(&self.from);
            }
        }
        if removed {
            waiting.count -= 1;
        }
    }
}

/// Answers a reverse connection's hello (`Intent::Push`): welcomed and handed to the
/// download waiting for that node, or refused when none is. A connection taken is admitted
/// with `receive_window` (as a connection we dialled has it): an incoming connection keeps
/// the small window of strangers until then, which would hold the download to 64 KiB a
/// round trip.
pub async fn take_push(
    conn: Connection,
    mut session: Session,
    role: Role,
    pushes: &Pushes,
    receive_window: u32,
) {
    if !pushes.awaits(&conn.peer()) {
        let refusal = HelloReply::Refused {
            reason: "no download waits for a connection from you".into(),
            try_instead: Vec::new(),
        };
        let _ = session.reply(&refusal).await;
        conn.finish_and_close(&mut session, CloseCode::Refused, "unsolicited")
            .await;
        return;
    }
    conn.admit(receive_window);
    if session.reply(&HelloReply::Welcome { role }).await.is_err() {
        return;
    }
    if let Err(conn) = pushes.deliver(conn) {
        conn.close(CloseCode::Normal, "no longer wanted");
    }
}
