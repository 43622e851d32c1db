//! The baselines a download is compared with, measured in the same run: the same bytes over
//! one bare quinn stream between two endpoints with the transport settings the daemons use
//! (the transport's limit), and over a plain TCP connection (the machine's limit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use superpeer_common::{Endpoint, Identity, PeerAddr, TransportLimits, accept};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes per write: one piece, as a holder sends it.
const WRITE: usize = 512 * 1024;

/// Time to move `size` bytes over one quinn stream on 127.0.0.1, in the direction a
/// download's data flows: from the endpoint that was dialled (the holder) to the one that
/// dialled (the downloader).
pub async fn bare_quinn(size: usize, limits: TransportLimits) -> anyhow::Result<Duration> {
    let endpoint = |limits: TransportLimits| -> anyhow::Result<Endpoint> {
        let identity = Arc::new(Identity::generate()?);
        Ok(Endpoint::bind(identity, "127.0.0.1:0".parse()?, limits)?)
    };
    let sender = endpoint(limits.clone())?;
    let receiver = endpoint(limits)?;
    let target = PeerAddr::pinned(sender.node_id(), sender.local_addr()?);
    let sending = tokio::spawn(async move {
        let incoming = sender.incoming().await.context("no connection")?;
        let conn = accept(incoming, Duration::from_secs(5)).await?;
        let mut send = conn.quinn().open_uni().await?;
        let chunk = vec![0x5a; WRITE];
        let mut left = size;
        while left > 0 {
            let n = left.min(WRITE);
            send.write_all(chunk.get(..n).unwrap_or_default()).await?;
            left -= n;
        }
        send.finish()?;
        let _ = send.stopped().await;
        Ok::<_, anyhow::Error>((conn, sender))
    });
    let started = Instant::now();
    let conn = receiver.connect(&target).await?;
    let mut recv = conn.quinn().accept_uni().await?;
    let mut total = 0;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        total += chunk.bytes.len();
    }
    let took = started.elapsed();
    anyhow::ensure!(total == size, "received {total} of {size} bytes");
    let _kept = sending.await??;
    Ok(took)
}

/// Time to move `size` bytes over one TCP connection on 127.0.0.1.
pub async fn tcp_copy(size: usize) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let receiving = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = vec![0; WRITE];
        let mut total = 0;
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        anyhow::ensure!(total == size, "received {total} of {size} bytes");
        Ok::<_, anyhow::Error>(())
    });
    let chunk = vec![0x5a; WRITE];
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await?;
    let mut left = size;
    while left > 0 {
        let n = left.min(WRITE);
        stream.write_all(chunk.get(..n).unwrap_or_default()).await?;
        left -= n;
    }
    stream.shutdown().await?;
    receiving.await??;
    Ok(started.elapsed())
}
