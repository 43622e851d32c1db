//! The daemon's downloads: what `superpeer get` starts through the control API.
//!
//! - Holders come from search results the daemon has seen ([`Downloads::remember`]); for
//!   content no search has shown, the network is searched by content id (the supernodes
//!   look content ids up directly).
//! - A download belongs to the daemon, not to the request that started it: the client may
//!   hang up, and another `get` of the same content follows the running download. At most
//!   [`MAX_RUNNING`] run at once, one per content id (two would write the same partial file).
//! - Results are kept per content id and size: a copy published with a false size is a
//!   result of its own, never mixed with the holders of the true size. Sizes are tried
//!   most holders first; each is proven before anything is allocated for it (see
//!   [`crate::transfer::download`]), so a lie costs one failed proof. The holders dialled
//!   for one `get` are capped per IP address and in all ([`dialable`]).
//! - The transfer itself is [`crate::transfer::download`]: verified pieces from several
//!   holders, the partial file kept for a resume. A download whose remembered holders are
//!   all gone searches once more for fresh ones before it gives up.
//! - Each download's state (bytes, rate, sources) is kept for `status` and `GET /downloads`,
//!   and the last [`MAX_ENDED`] ended ones with it.
//! - The user may pause a download (its verified pieces stay for [`Downloads::resume`] or
//!   another `get`) or cancel it (its partial file goes too): the transfer is dropped, its
//!   connections closed, and followers hear that it failed and why.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use superpeer_common::wire::QueryHit;
use superpeer_common::{ContentId, Endpoint, NodeId, PeerAddr};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{info, warn};

use crate::control::{DownloadJson, GetEventJson, GetRequest, SourceJson};
use crate::leaf::LeafHandle;
use crate::names::sanitize;
use crate::nat::{Reached, Reacher};
use crate::transfer::{
    DownloadError, DownloadPlan, Progress, dialable, download_reaching, remove_partial,
};

/// Downloads running at once; more are refused until one ends.
pub const MAX_RUNNING: usize = 8;

/// Ended downloads kept for `status`.
pub const MAX_ENDED: usize = 20;

/// Search results remembered as sources for later downloads.
const MAX_KNOWN: usize = 10_000;

/// Sizes remembered, and tried, for one content id at most.
const MAX_SIZES: usize = 3;

/// How often a running download reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// After the first hit of a search by content id, how long to wait for more holders.
const GATHER_HOLDERS: Duration = Duration::from_millis(1500);

/// What a search for holders asks for (see [`search_holders`]).
const HOLDER_SEARCH_WANT: u32 = 50;

/// How long to keep retrying a search the leaf cannot start yet (not attached).
const SEARCH_RETRY_FOR: Duration = Duration::from_secs(15);

/// The downloads of one daemon. Cheap to clone.
#[derive(Clone)]
pub struct Downloads {
    inner: Arc<Inner>,
}

struct Inner {
    reacher: Reacher,
    dir: PathBuf,
    known: Mutex<Known>,
    running: Mutex<HashMap<ContentId, Arc<Running>>>,
    ended: Mutex<VecDeque<DownloadJson>>,
    /// Paused downloads (at most [`MAX_ENDED`]), for [`Downloads::resume`] and `cancel`.
    paused: Mutex<VecDeque<Paused>>,
}

/// How the user stops a download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Stop it, keeping its verified pieces for a resume.
    Pause,
    /// Stop it and remove its partial file.
    Cancel,
}

impl Stop {
    fn state(self) -> &'static str {
        match self {
            Stop::Pause => "paused",
            Stop::Cancel => "cancelled",
        }
    }
}

/// A paused download: what its `get` asked for, and where its partial file is.
struct Paused {
    content_id: ContentId,
    out: Option<PathBuf>,
    part: Option<(PathBuf, String)>,
}

/// Search results by content id, oldest evicted first; per content, one result per size
/// its holders give it (see [`SizeGroups`]).
#[derive(Default)]
struct Known {
    hits: HashMap<ContentId, SizeGroups>,
    order: VecDeque<ContentId>,
}

/// The results for one content id, one per size claimed, at most [`MAX_SIZES`]. A content
/// has one true size; the others are lies (or stale), so only a few are worth keeping, and
/// the one with fewest holders goes first.
#[derive(Clone, Debug, Default)]
struct SizeGroups(Vec<QueryHit>);

impl SizeGroups {
    /// Takes in a result: it replaces the one of the same size (a later result carries
    /// every holder known so far).
    fn add(&mut self, hit: &QueryHit) {
        match self.0.iter_mut().find(|known| known.size == hit.size) {
            Some(known) => *known = hit.clone(),
            None => self.0.push(hit.clone()),
        }
        // Most holders first: the order sizes are tried in.
        self.0
            .sort_by_key(|known| std::cmp::Reverse(known.holders.len()));
        self.0.truncate(MAX_SIZES);
    }

    /// The sizes to try, most holders first, with the holders a download may dial: over
    /// all sizes together at most a few per IP address and a few in all (see
    /// [`dialable`]), so a search result cannot aim one `get` at a third party.
    fn plans(&self, me: NodeId) -> Vec<QueryHit> {
        let all: Vec<PeerAddr> = self
            .0
            .iter()
            .flat_map(|hit| hit.holders.iter())
            .filter(|h| h.node_id != me)
            .map(|h| PeerAddr::pinned(h.node_id, h.addr))
            .collect();
        let allowed = dialable(&all);
        self.0
            .iter()
            .map(|hit| {
                let mut hit = hit.clone();
                hit.holders.retain(|h| {
                    allowed
                        .iter()
                        .any(|a| a.node_id == Some(h.node_id) && a.addr == h.addr)
                });
                hit
            })
            .filter(|hit| !hit.holders.is_empty())
            .collect()
    }
}

/// A running download: its state, and the events its followers hear.
struct Running {
    state: Mutex<RunState>,
    events: broadcast::Sender<GetEventJson>,
    /// Set by the user to stop it.
    stop: watch::Sender<Option<Stop>>,
    /// The `--out` it was asked with (a resume asks the same).
    out: Option<PathBuf>,
}

struct RunState {
    content_id: ContentId,
    name: String,
    searching: bool,
    size: u64,
    bytes_done: u64,
    rate: f64,
    sources: BTreeMap<NodeId, u64>,
    /// How each source was reached.
    reached: BTreeMap<NodeId, Reached>,
    /// Holders dropped, and why.
    dropped: BTreeMap<NodeId, String>,
    /// Where the partial file is (folder, name), once the transfer has begun.
    part: Option<(PathBuf, String)>,
}

impl RunState {
    fn json(&self, state: &str) -> DownloadJson {
        DownloadJson {
            content_id: self.content_id.to_string(),
            name: self.name.clone(),
            state: state.into(),
            size: self.size,
            bytes_done: self.bytes_done,
            rate: if state == "running" { self.rate } else { 0.0 },
            sources: self.sources_with_state(),
            path: None,
            error: None,
        }
    }
}

impl RunState {
    /// Every holder heard of in this run: the ones that sent pieces (as in
    /// [`sources_json`]), then the ones reached or dropped that sent nothing, each with its
    /// state (`sending`, `connected` or `dropped`, with the reason; `sent` once ended).
    fn sources_with_state(&self) -> Vec<SourceJson> {
        let mut list = sources_json(&self.sources, &self.reached);
        let silent = self
            .reached
            .keys()
            .chain(self.dropped.keys())
            .filter(|id| !self.sources.contains_key(id))
            .collect::<std::collections::BTreeSet<_>>();
        list.extend(silent.into_iter().map(|id| SourceJson {
            node_id: id.to_string(),
            bytes: 0,
            reached: self.reached.get(id).map(|how| how.name().to_string()),
            state: None,
            reason: None,
        }));
        for source in &mut list {
            let dropped = source
                .node_id
                .parse::<NodeId>()
                .ok()
                .and_then(|id| self.dropped.get(&id));
            (source.state, source.reason) = match dropped {
                Some(reason) => (Some("dropped".into()), Some(reason.clone())),
                None if source.bytes > 0 => (Some("sending".into()), None),
                None => (Some("connected".into()), None),
            };
        }
        list
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Downloads {
    /// Downloads into `dir`, dialling holders from `endpoint` (directly only).
    pub fn new(endpoint: Endpoint, dir: PathBuf) -> Downloads {
        Self::reaching(Reacher::direct(endpoint), dir)
    }

    /// Downloads into `dir`, reaching holders as `reacher` does (firewalled ones too).
    pub fn reaching(reacher: Reacher, dir: PathBuf) -> Downloads {
        Downloads {
            inner: Arc::new(Inner {
                reacher,
                dir,
                known: Mutex::new(Known::default()),
                running: Mutex::new(HashMap::new()),
                ended: Mutex::new(VecDeque::new()),
                paused: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Remembers a search result's holders for a later `get` of its content.
    pub fn remember(&self, hit: &QueryHit) {
        let mut known = lock(&self.inner.known);
        let mut fresh = false;
        known
            .hits
            .entry(hit.content_id)
            .or_insert_with(|| {
                fresh = true;
                SizeGroups::default()
            })
            .add(hit);
        if fresh {
            known.order.push_back(hit.content_id);
            if known.order.len() > MAX_KNOWN {
                if let Some(old) = known.order.pop_front() {
                    known.hits.remove(&old);
                }
            }
        }
    }

    /// Downloads running (first) and recently ended.
    pub fn list(&self) -> Vec<DownloadJson> {
        let mut list: Vec<DownloadJson> = lock(&self.inner.running)
            .values()
            .map(|r| {
                let state = lock(&r.state);
                state.json(if state.searching {
                    "searching"
                } else {
                    "running"
                })
            })
            .collect();
        list.extend(lock(&self.inner.ended).iter().rev().cloned());
        list
    }

    /// Starts the download `request` asks for, or follows it if it runs already; events
    /// arrive on the returned channel until it finished or failed.
    pub fn get(
        &self,
        request: GetRequest,
        leaf: LeafHandle,
    ) -> Result<mpsc::Receiver<GetEventJson>, String> {
        let content_id: ContentId = request
            .content_id
            .trim()
            .parse()
            .map_err(|e: superpeer_common::ParseContentIdError| e.to_string())?;
        let target = match &request.out {
            None => None,
            Some(out) => Some(out_target(out)?),
        };
        let mut running = lock(&self.inner.running);
        if let Some(current) = running.get(&content_id) {
            let events = current.events.subscribe();
            let first = lock(&current.state).json("running");
            return Ok(follow(events, Some(progress_event(&first))));
        }
        if running.len() >= MAX_RUNNING {
            return Err(format!(
                "{MAX_RUNNING} downloads are running already; try again when one ends"
            ));
        }
        // Started afresh: whatever an earlier run of it left in the lists is over.
        lock(&self.inner.ended).retain(|d| d.content_id != content_id.to_string());
        lock(&self.inner.paused).retain(|p| p.content_id != content_id);
        let (events, subscriber) = broadcast::channel(256);
        let (stop, mut stopped) = watch::channel(None);
        let run = Arc::new(Running {
            state: Mutex::new(RunState {
                content_id,
                name: String::new(),
                searching: true,
                size: 0,
                bytes_done: 0,
                rate: 0.0,
                sources: BTreeMap::new(),
                reached: BTreeMap::new(),
                dropped: BTreeMap::new(),
                part: None,
            }),
            events,
            stop,
            out: request.out.clone(),
        });
        running.insert(content_id, run.clone());
        drop(running);
        let this = self.clone();
        tokio::spawn(async move {
            // Stopping drops the transfer: its workers and connections go with it.
            let (ended, stop) = tokio::select! {
                ended = this.run(content_id, target, leaf, &run) => (ended, None),
                Ok(stop) = stopped.wait_for(Option::is_some) => {
                    let stop = *stop;
                    let error = match stop {
                        Some(Stop::Cancel) => "cancelled by the user",
                        _ => "paused by the user; resume it, or `get` it again",
                    };
                    (GetEventJson::Failed { error: error.into() }, stop)
                }
            };
            // Ended before it is announced: a `get` after the last event starts afresh.
            this.end(content_id, &run, ended.clone(), stop).await;
            let _ = run.events.send(ended);
        });
        Ok(follow(subscriber, None))
    }

    /// Pauses the running download of `content_id`: it stops, its verified pieces stay.
    pub fn pause(&self, content_id: &str) -> Result<(), String> {
        self.stop_running(parse_id(content_id)?, Stop::Pause)
    }

    /// Starts a paused download again, as its `get` asked (it resumes from its pieces).
    pub fn resume(&self, content_id: &str, leaf: LeafHandle) -> Result<(), String> {
        let content_id = parse_id(content_id)?;
        let out = {
            let paused = lock(&self.inner.paused);
            let found = paused.iter().find(|p| p.content_id == content_id);
            found.ok_or("that download is not paused")?.out.clone()
        };
        let request = GetRequest {
            content_id: content_id.to_string(),
            out,
        };
        // Nobody follows it here: the download belongs to the daemon.
        self.get(request, leaf).map(drop)
    }

    /// Cancels the download of `content_id`, running or paused, and removes its partial
    /// file.
    pub async fn cancel(&self, content_id: &str) -> Result<(), String> {
        let content_id = parse_id(content_id)?;
        let paused = {
            let mut paused = lock(&self.inner.paused);
            let at = paused.iter().position(|p| p.content_id == content_id);
            at.and_then(|at| paused.remove(at))
        };
        let Some(paused) = paused else {
            return self.stop_running(content_id, Stop::Cancel);
        };
        if let Some(ended) = lock(&self.inner.ended)
            .iter_mut()
            .find(|d| d.content_id == content_id.to_string())
        {
            ended.state = Stop::Cancel.state().into();
        }
        discard_part(content_id, paused.part).await;
        Ok(())
    }

    fn stop_running(&self, content_id: ContentId, stop: Stop) -> Result<(), String> {
        let running = lock(&self.inner.running);
        let run = running
            .get(&content_id)
            .ok_or("that download is not running")?;
        run.stop.send_replace(Some(stop));
        Ok(())
    }

    /// Finds holders, downloads, and returns the last event (finished or failed).
    async fn run(
        &self,
        content_id: ContentId,
        target: Option<(PathBuf, String)>,
        leaf: LeafHandle,
        run: &Running,
    ) -> GetEventJson {
        let started = Instant::now();
        let remembered = lock(&self.inner.known).hits.get(&content_id).cloned();
        let (mut groups, mut fresh) = (remembered, false);
        loop {
            let current = match groups.take() {
                Some(groups) => groups,
                None => {
                    let _ = run.events.send(GetEventJson::Searching {
                        content_id: content_id.to_string(),
                    });
                    fresh = true;
                    match search_holders(&leaf, content_id).await {
                        Ok(hits) => {
                            let mut groups = SizeGroups::default();
                            for hit in &hits {
                                self.remember(hit);
                                groups.add(hit);
                            }
                            groups
                        }
                        Err(error) => return GetEventJson::Failed { error },
                    }
                }
            };
            match self.each_size(&current, &target, run, started).await {
                Ok(event) => return event,
                // The remembered holders are gone: look for fresh ones once.
                Err(DownloadError::NoHolders { .. } | DownloadError::SizeUnproven { .. })
                    if !fresh =>
                {
                    continue;
                }
                Err(e) => {
                    return GetEventJson::Failed {
                        error: e.to_string(),
                    };
                }
            }
        }
    }

    /// Tries the sizes the holders give, most holders first, until one is proven (the
    /// content has one true size; a lying copy fails its proof without allocating).
    async fn each_size(
        &self,
        groups: &SizeGroups,
        target: &Option<(PathBuf, String)>,
        run: &Running,
        started: Instant,
    ) -> Result<GetEventJson, DownloadError> {
        let mut last = DownloadError::NoHolders {
            missing: 0,
            total: 0,
        };
        for hit in groups.plans(self.inner.reacher.endpoint().node_id()) {
            match self.transfer(&hit, target.clone(), run, started).await {
                Err(e @ DownloadError::SizeUnproven { .. }) => last = e,
                outcome => return outcome,
            }
        }
        Err(last)
    }

    /// One attempt with the holders of `hit`.
    async fn transfer(
        &self,
        hit: &QueryHit,
        target: Option<(PathBuf, String)>,
        run: &Running,
        started: Instant,
    ) -> Result<GetEventJson, DownloadError> {
        let holders: Vec<PeerAddr> = hit
            .holders
            .iter()
            .map(|h| PeerAddr::pinned(h.node_id, h.addr))
            .collect();
        let (dir, name) = target.unwrap_or_else(|| (self.inner.dir.clone(), hit.name.clone()));
        {
            let mut state = lock(&run.state);
            state.name = sanitize(&hit.name);
            state.size = hit.size;
            state.searching = false;
            state.part = Some((dir.clone(), name.clone()));
        }
        let plan = DownloadPlan {
            content_id: hit.content_id,
            size: hit.size,
            name,
            holders,
            via: hit
                .holders
                .iter()
                .filter_map(|h| Some((h.node_id, h.via?)))
                .collect(),
        };
        info!(content_id = %hit.content_id, holders = plan.holders.len(), "download requested");
        let (progress_tx, mut progress) = mpsc::channel(256);
        let reacher = self.inner.reacher.clone();
        let transfer = download_reaching(&reacher, plan, &dir, progress_tx);
        tokio::pin!(transfer);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut resumed = 0;
        let mut last = (Instant::now(), 0u64);
        let result = loop {
            tokio::select! {
                result = &mut transfer => break result,
                Some(event) = progress.recv() => {
                    if let Progress::Started { done_bytes, .. } = &event {
                        resumed = *done_bytes;
                        last = (Instant::now(), *done_bytes);
                    }
                    self.on_progress(run, hit, event);
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let mut state = lock(&run.state);
                    let seconds = now.duration_since(last.0).as_secs_f64();
                    if seconds > 0.0 {
                        let sample = state.bytes_done.saturating_sub(last.1) as f64 / seconds;
                        state.rate = if state.rate == 0.0 { sample } else { 0.5 * state.rate + 0.5 * sample };
                    }
                    last = (now, state.bytes_done);
                    let _ = run.events.send(progress_event(&state.json("running")));
                }
            }
        };
        // Pieces reported after the last tick.
        while let Ok(event) = progress.try_recv() {
            self.on_progress(run, hit, event);
        }
        let path = result?;
        let state = lock(&run.state);
        Ok(GetEventJson::Finished {
            path: path.display().to_string(),
            size: hit.size,
            resumed_bytes: resumed,
            fetched_bytes: state.sources.values().sum(),
            sources: sources_json(&state.sources, &state.reached),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn on_progress(&self, run: &Running, hit: &QueryHit, event: Progress) {
        let mut state = lock(&run.state);
        match event {
            Progress::Started { size, done_bytes } => {
                state.bytes_done = done_bytes;
                let _ = run.events.send(GetEventJson::Started {
                    content_id: hit.content_id.to_string(),
                    name: state.name.clone(),
                    size,
                    done_bytes,
                    holders: hit.holders.len(),
                });
            }
            Progress::Piece {
                bytes_done, from, ..
            } => {
                // Reports of pieces stored at the same time may arrive out of order.
                let piece = bytes_done.saturating_sub(state.bytes_done);
                state.bytes_done = state.bytes_done.max(bytes_done);
                *state.sources.entry(from).or_insert(0) += piece;
            }
            Progress::HolderReached { node_id, how } => {
                info!(content_id = %hit.content_id, holder = %node_id.short(), %how, "holder reached");
                state.reached.insert(node_id, how);
            }
            Progress::HolderDropped { node_id, reason } => {
                warn!(content_id = %hit.content_id, holder = ?node_id.map(|n| n.short()), %reason, "holder dropped");
                if let Some(node_id) = node_id {
                    state.dropped.insert(node_id, reason.clone());
                }
                let _ = run.events.send(GetEventJson::HolderDropped {
                    node_id: node_id.map(|n| n.to_string()),
                    reason,
                });
            }
            Progress::Finished { .. } => {}
        }
    }

    /// Moves a download from running to ended (paused or cancelled when `stop` says so).
    async fn end(
        &self,
        content_id: ContentId,
        run: &Running,
        last: GetEventJson,
        stop: Option<Stop>,
    ) {
        let (mut json, part) = {
            let state = lock(&run.state);
            (state.json("failed"), state.part.clone())
        };
        match last {
            GetEventJson::Finished { path, size, .. } => {
                json.state = "finished".into();
                json.bytes_done = size;
                json.path = Some(path);
            }
            GetEventJson::Failed { error } => {
                warn!(%content_id, %error, "download failed");
                json.error = Some(error);
            }
            _ => {}
        }
        match stop {
            Some(Stop::Pause) => {
                json.error = None;
                let mut paused = lock(&self.inner.paused);
                paused.push_back(Paused {
                    content_id,
                    out: run.out.clone(),
                    part,
                });
                while paused.len() > MAX_ENDED {
                    paused.pop_front();
                }
            }
            Some(Stop::Cancel) => {
                json.error = None;
                discard_part(content_id, part).await;
            }
            None => {}
        }
        if let Some(stop) = stop {
            json.state = stop.state().into();
        }
        for source in &mut json.sources {
            if source.state.as_deref() == Some("sending") {
                source.state = Some("sent".into());
            }
        }
        lock(&self.inner.running).remove(&content_id);
        let mut ended = lock(&self.inner.ended);
        ended.retain(|d| d.content_id != json.content_id);
        ended.push_back(json);
        while ended.len() > MAX_ENDED {
            ended.pop_front();
        }
    }
}

fn parse_id(content_id: &str) -> Result<ContentId, String> {
    content_id
        .trim()
        .parse()
        .map_err(|e: superpeer_common::ParseContentIdError| e.to_string())
}

/// Removes a cancelled download's partial file, if it had one.
async fn discard_part(content_id: ContentId, part: Option<(PathBuf, String)>) {
    let Some((dir, name)) = part else { return };
    let removed =
        tokio::task::spawn_blocking(move || remove_partial(&dir, &name, content_id)).await;
    if let Ok(Err(e)) = removed {
        warn!(%content_id, error = %e, "cannot remove a cancelled download's partial file");
    }
}

/// The folder and name `--out` asks for; it must be an absolute file path (the CLI makes
/// it so) in an existing folder.
fn out_target(out: &Path) -> Result<(PathBuf, String), String> {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("--out {} does not name a file", out.display()))?;
    let dir = out
        .parent()
        .filter(|d| out.is_absolute() && d.is_dir())
        .ok_or_else(|| format!("--out {}: no such folder", out.display()))?;
    Ok((dir.to_path_buf(), name.to_string()))
}

/// Searches the network for holders of `content_id`: the first hit, with the holders that
/// arrive shortly after it; one hit per size the holders give.
async fn search_holders(leaf: &LeafHandle, content_id: ContentId) -> Result<Vec<QueryHit>, String> {
    let deadline = Instant::now() + SEARCH_RETRY_FOR;
    let mut hits = loop {
        // `want` counts contents, and there is one: asking for more makes the supernodes
        // gather holders from every supernode whose summary has the id, not stop at the first.
        match leaf
            .search(vec![content_id.to_string()], HOLDER_SEARCH_WANT)
            .await
        {
            Ok(hits) => break hits,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let mut found = SizeGroups::default();
    loop {
        let next = match found.0.first() {
            None => hits.recv().await,
            Some(_) => match tokio::time::timeout(GATHER_HOLDERS, hits.recv()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        let Some(hit) = next else { break };
        let hit = hit?;
        if hit.content_id == content_id {
            found.add(&hit);
        }
    }
    if found.0.is_empty() {
        return Err(format!("no holder of {content_id} found on the network"));
    }
    Ok(found.0)
}

/// A receiver of `events` (after `first`) that ends with the download.
fn follow(
    mut events: broadcast::Receiver<GetEventJson>,
    first: Option<GetEventJson>,
) -> mpsc::Receiver<GetEventJson> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        if let Some(first) = first {
            if tx.send(first).await.is_err() {
                return;
            }
        }
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                // A slow client skips progress it missed.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let last = matches!(
                event,
                GetEventJson::Finished { .. } | GetEventJson::Failed { .. }
            );
            if tx.send(event).await.is_err() || last {
                return;
            }
        }
    });
    rx
}

fn progress_event(state: &DownloadJson) -> GetEventJson {
    GetEventJson::Progress {
        bytes_done: state.bytes_done,
        size: state.size,
        rate: state.rate,
        sources: state.sources.len(),
    }
}

fn sources_json(
    sources: &BTreeMap<NodeId, u64>,
    reached: &BTreeMap<NodeId, Reached>,
) -> Vec<SourceJson> {
    sources
        .iter()
        .map(|(node_id, bytes)| SourceJson {
            node_id: node_id.to_string(),
            bytes: *bytes,
            reached: reached.get(node_id).map(|how| how.name().to_string()),
            state: None,
            reason: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use superpeer_common::Identity;
    use superpeer_supernode::RelayCaps;

    use super::*;
    use crate::leaf::{Leaf, LeafConfig, LeafCoreConfig};

    /// A node that is bound but never run: a search it is asked for never starts, so a
    /// download of content no search has shown stays `searching` until it is stopped.
    fn idle_node(dir: &Path) -> Leaf {
        let config = LeafConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            list_servers: Vec::new(),
            peers: Vec::new(),
            state_dir: dir.to_path_buf(),
            core: LeafCoreConfig::default(),
            max_neighbors: None,
            directory: true,
            max_files_per_leaf: None,
            max_connections: None,
            relay: RelayCaps::default(),
        };
        Leaf::bind(Arc::new(Identity::generate().unwrap()), config, None).unwrap()
    }

    /// Waits (bounded) until the download of `id` is in `state`.
    async fn until_state(downloads: &Downloads, id: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let list = downloads.list();
            let found = list
                .iter()
                .filter(|d| d.content_id == id)
                .collect::<Vec<_>>();
            assert!(found.len() <= 1, "one entry per content: {list:?}");
            if found.first().is_some_and(|d| d.state == state) {
                return;
            }
            assert!(Instant::now() < deadline, "never {state}: {list:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn last_event(mut events: mpsc::Receiver<GetEventJson>) -> GetEventJson {
        let mut last = None;
        while let Some(event) = events.recv().await {
            last = Some(event);
        }
        last.unwrap()
    }

    #[tokio::test]
    async fn a_download_pauses_resumes_and_cancels() {
        let dir = tempfile::tempdir().unwrap();
        let leaf = idle_node(dir.path());
        let downloads = Downloads::reaching(leaf.reacher(), dir.path().join("downloads"));
        let id = ContentId::of_bytes(b"wanted").to_string();
        let get = |downloads: &Downloads| {
            let request = GetRequest {
                content_id: id.clone(),
                out: None,
            };
            downloads.get(request, leaf.handle()).unwrap()
        };

        let events = get(&downloads);
        until_state(&downloads, &id, "searching").await;
        assert!(downloads.resume(&id, leaf.handle()).is_err(), "not paused");
        downloads.pause(&id).unwrap();
        until_state(&downloads, &id, "paused").await;
        let GetEventJson::Failed { error } = last_event(events).await else {
            panic!("a follower hears that it stopped")
        };
        assert!(error.contains("paused"), "{error}");
        assert!(downloads.pause(&id).is_err(), "not running any more");
        assert!(downloads.list()[0].error.is_none());

        downloads.resume(&id, leaf.handle()).unwrap();
        until_state(&downloads, &id, "searching").await;
        downloads.cancel(&id).await.unwrap();
        until_state(&downloads, &id, "cancelled").await;
        assert!(downloads.resume(&id, leaf.handle()).is_err());
        assert!(
            downloads.cancel(&id).await.is_err(),
            "nothing left to cancel"
        );

        // A paused download can be cancelled too; a new `get` starts it afresh.
        let _events = get(&downloads);
        until_state(&downloads, &id, "searching").await;
        downloads.pause(&id).unwrap();
        until_state(&downloads, &id, "paused").await;
        downloads.cancel(&id).await.unwrap();
        until_state(&downloads, &id, "cancelled").await;
        let _events = get(&downloads);
        until_state(&downloads, &id, "searching").await;
        assert!(downloads.pause("not an id").is_err());
    }
}
