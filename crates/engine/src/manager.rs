//! The RunManager: accepts messages, owns the live runs, and lets any connection of the
//! run's user follow, resume or stop them. Runs belong to the manager, not to sockets: a
//! run goes on when its client disconnects.
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apex_costs::PriceBook;
use apex_protocol::{now_ms, Branch, MessageId, OrgId, RunId, ThreadId, UserId, UserMessage};
use apex_store::{BeginOutcome, NewRun, Place, Store, StoreError, Write};
use apex_telemetry as m;
use futures_util::FutureExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::agents::ModelWriter;
use crate::cluster::{Cluster, RemoteFollow};
use crate::context::RunContext;
use crate::log::{Follow, RunLog};
use crate::sink::{EventSink, Outcome};
use crate::supervisor::Supervisor;
use crate::tools::Tools;
use crate::usage::{RunData, UsageSource};
use crate::writer::{self, WriterHandle};

#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// A run still going after this long ends with `run_timed_out`.
    pub run_timeout: Duration,
    /// How long a finished run stays in memory for followers before only the store has it.
    pub linger: Duration,
    /// An instance that has not renewed its lease for this long is gone: another instance
    /// ends its unfinished runs as interrupted. Renewed five times per lease.
    pub lease: Duration,
    /// The language model that writes reports; `None`: the built-in writer.
    pub model: Option<ModelWriter>,
    /// Runs one user may have in flight at once, on this instance and, in a cluster, in the
    /// whole deployment; more are refused (`too_many_runs`) until one ends.
    pub max_runs_per_user: usize,
    /// What usage costs: every run's tools price with it. The catalog alone by default.
    pub prices: PriceBook,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            run_timeout: Duration::from_secs(60),
            linger: Duration::from_secs(2),
            lease: Duration::from_secs(10),
            model: None,
            max_runs_per_user: 8,
            prices: PriceBook::default(),
        }
    }
}

/// A message was accepted: it is persisted and its run is under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub run_id: RunId,
    pub thread_id: ThreadId,
    pub message_id: MessageId,
    /// The `client_message_id` was seen before: this is the original run, nothing new started.
    pub duplicate: bool,
}

/// Where an accepted message goes, and for a regenerate the message answered again.
struct Placed {
    place: Place,
    again: Option<(MessageId, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The thread has an active run (its id, once it has one).
    #[error("the thread already has an active run")]
    ThreadBusy(Option<RunId>),
    #[error("not found")]
    NotFound,
    /// `parent_id`, `edit_of` or `regenerate` names no message of the thread
    /// (`not_found`), or one it cannot name (an answer, for an edit or a regenerate).
    #[error("{message}")]
    Branch { not_found: bool, message: String },
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Storage is failing (a full disk): the message was not saved, so not accepted.
    #[error("storage is unavailable")]
    StorageUnavailable,
    /// The user has `max_runs_per_user` runs in flight.
    #[error("too many runs in flight")]
    TooManyRuns(usize),
    #[error("storage failed: {0}")]
    Store(String),
}

impl From<StoreError> for StartError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            other => Self::Store(other.to_string()),
        }
    }
}

const CANCELLED: u8 = 1;
const INTERRUPTED: u8 = 2;

struct LiveRun {
    log: Arc<RunLog>,
    cancel: CancellationToken,
    reason: AtomicU8,
    finished_at: Mutex<Option<Instant>>,
}

#[derive(Clone)]
pub struct RunManager {
    inner: Arc<Inner>,
}

struct Inner {
    /// This process's id as the owner of the runs it executes.
    instance: Arc<str>,
    store: Arc<dyn Store>,
    /// The other instances of the deployment, when there are any (Redis).
    cluster: Option<Arc<dyn Cluster>>,
    writer: WriterHandle,
    writer_task: Mutex<Option<JoinHandle<()>>>,
    tools: Tools,
    source: Arc<dyn UsageSource>,
    supervisor: Supervisor,
    settings: EngineSettings,
    runs: Mutex<HashMap<RunId, Arc<LiveRun>>>,
    /// Threads with an active run, with the owner: another user's thread is never "busy",
    /// it does not exist for them.
    busy_threads: Mutex<HashMap<ThreadId, (UserId, RunId)>>,
    /// Runs in flight per user (reserved before the message is persisted).
    in_flight: Mutex<HashMap<UserId, usize>>,
    tracker: TaskTracker,
    accepting: AtomicBool,
    stop_sweeper: CancellationToken,
}

/// Reserves a thread while its message is being persisted.
const RESERVED: RunId = RunId(Uuid::nil());

impl RunManager {
    /// Recovers from a previous crash (unfinished runs become `interrupted`) and starts the
    /// persistence writer.
    pub async fn start(
        store: Arc<dyn Store>,
        settings: EngineSettings,
        tools: Tools,
        source: Arc<dyn UsageSource>,
    ) -> Result<Self, StoreError> {
        Self::start_in_cluster(store, settings, tools, source, None).await
    }

    /// [`start`](Self::start) as one instance of several: runs executing elsewhere can be
    /// followed and stopped from here, and this instance's runs from elsewhere.
    pub async fn start_in_cluster(
        store: Arc<dyn Store>,
        settings: EngineSettings,
        tools: Tools,
        source: Arc<dyn UsageSource>,
        cluster: Option<Arc<dyn Cluster>>,
    ) -> Result<Self, StoreError> {
        let instance: Arc<str> = Arc::from(Uuid::now_v7().to_string());
        // A database that is not there yet does not stop the start: the lease task below
        // renews and recovers as soon as it is.
        match store.heartbeat(&instance, now_ms()).await {
            Ok(()) => match store.interrupt_orphaned(&instance, settings.lease).await {
                Ok(interrupted) if !interrupted.is_empty() => {
                    tracing::warn!(
                        count = interrupted.len(),
                        "runs left unfinished by a stopped instance were marked interrupted"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "recovering unfinished runs failed; retrying"),
            },
            Err(e) => tracing::warn!(error = %e, "the store is unavailable at startup; retrying"),
        }
        let (writer, writer_task) = writer::spawn(store.clone(), cluster.clone());
        let inner = Arc::new(Inner {
            instance,
            store,
            cluster: cluster.clone(),
            writer,
            writer_task: Mutex::new(Some(writer_task)),
            tools,
            source,
            supervisor: Supervisor::new(settings.model.clone()),
            settings,
            runs: Mutex::default(),
            busy_threads: Mutex::default(),
            in_flight: Mutex::default(),
            tracker: TaskTracker::new(),
            accepting: AtomicBool::new(true),
            stop_sweeper: CancellationToken::new(),
        });
        tokio::spawn(sweep(Arc::downgrade(&inner), inner.settings.linger, inner.stop_sweeper.clone()));
        tokio::spawn(hold_lease(Arc::downgrade(&inner), inner.settings.lease, inner.stop_sweeper.clone()));
        if let Some(cluster) = cluster {
            tokio::spawn(obey_stop_requests(Arc::downgrade(&inner), cluster.stop_requests(), inner.stop_sweeper.clone()));
        }
        Ok(Self { inner })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The other instances, when this one is part of a cluster.
    pub fn cluster(&self) -> Option<&Arc<dyn Cluster>> {
        self.inner.cluster.as_ref()
    }

    /// Persists the message and starts its run. Returns once the message is durable.
    /// The run reads the usage of `org` (the user's own space, or a shared organization
    /// the caller checked they belong to). `demo`: the user is a demo identity (demo data
    /// until they import).
    pub async fn submit(&self, user_id: &UserId, org: &OrgId, demo: bool, msg: UserMessage) -> Result<Accepted, StartError> {
        let received = Instant::now();
        let inner = &self.inner;
        if !inner.accepting.load(Ordering::Acquire) {
            return Err(StartError::ShuttingDown);
        }
        let user = user_id.clone();
        // Held until the run ends (moved into its task), or released on refusal.
        let slot = InFlight::take(inner, &user).await.ok_or(StartError::TooManyRuns(inner.settings.max_runs_per_user))?;
        // Where the message goes, read before the thread is reserved (nothing to undo).
        let placed = match (msg.thread_id, msg.branch) {
            (Some(thread), Some(branch)) => self.place(user_id, thread, branch).await?,
            _ => Placed { place: Place::Latest, again: None },
        };
        let mut reserved = None;
        if let Some(thread) = msg.thread_id {
            let busy_with = {
                let mut busy = inner.busy_threads.lock().expect("busy lock");
                match busy.get(&thread) {
                    // A run whose terminal event is out no longer holds the thread, even
                    // if its task has not cleaned up yet: the client may already have
                    // seen the end and asked again.
                    Some((owner, run)) if *owner == user && !inner.has_ended(*run) => Some(*run),
                    // Not this user's thread: the store will answer NotFound.
                    Some((owner, _)) if *owner != user => None,
                    _ => {
                        busy.insert(thread, (user.clone(), RESERVED));
                        reserved = Some(thread);
                        None
                    }
                }
            };
            if let Some(run) = busy_with {
                return self.busy_or_resent(user_id, &msg, run).await;
            }
        }
        let text = placed.again.as_ref().map_or_else(|| msg.text.clone(), |(_, text)| text.clone());
        let mut new = NewRun::new(user_id, msg.thread_id, text.clone(), msg.client_message_id.clone(), now_ms())
            .owned_by(&inner.instance)
            .placed(placed.place);
        if let Some((message_id, _)) = placed.again {
            new.message_id = message_id;
        }
        let outcome = inner.writer.begin(new).await;
        let begun = match outcome {
            Some(BeginOutcome::Begun(b)) => b,
            other => {
                if let Some(thread) = reserved {
                    inner.busy_threads.lock().expect("busy lock").remove(&thread);
                }
                return match other {
                    Some(BeginOutcome::Duplicate(b)) => {
                        Ok(Accepted { run_id: b.run_id, thread_id: b.thread_id, message_id: b.message_id, duplicate: true })
                    }
                    Some(BeginOutcome::ThreadNotFound) => Err(StartError::NotFound),
                    _ => Err(StartError::StorageUnavailable),
                };
            }
        };
        inner.busy_threads.lock().expect("busy lock").insert(begun.thread_id, (user.clone(), begun.run_id));

        let live = Arc::new(LiveRun {
            log: Arc::new(RunLog::new(begun.run_id, begun.thread_id, user.clone())),
            cancel: CancellationToken::new(),
            reason: AtomicU8::new(0),
            finished_at: Mutex::new(None),
        });
        inner.runs.lock().expect("runs lock").insert(begun.run_id, live.clone());
        let ctx = RunContext {
            data: RunData::new(inner.source.clone(), org.clone(), demo)
                .with_cluster(inner.cluster.clone())
                .with_prices(inner.settings.prices.clone()),
            user_id: user,
            demo,
            thread_id: begun.thread_id,
            run_id: begun.run_id,
            message_id: MessageId::new(),
            text: Arc::from(text),
            memory: Some(Arc::new(crate::question::StoreMemory(inner.store.clone()))),
        };
        let task_inner = inner.clone();
        // A root span: a run outlives the connection that started it, and is a trace of its own.
        let span =
            tracing::info_span!(parent: None, "run", user_id = %ctx.user_id, thread_id = %ctx.thread_id, run_id = %ctx.run_id);
        metrics::counter!(m::RUNS_STARTED).increment(1);
        inner.tracker.spawn(
            async move {
                task_inner.execute(live, ctx, received).await;
                drop(slot);
            }
            .instrument(span),
        );
        Ok(Accepted { run_id: begun.run_id, thread_id: begun.thread_id, message_id: begun.message_id, duplicate: false })
    }

    /// Where a message that names an earlier one goes: after it (`parent_id`), beside it
    /// (`edit_of`), or nowhere, its run answering it again (`regenerate`, with its text).
    async fn place(&self, user_id: &UserId, thread: ThreadId, branch: Branch) -> Result<Placed, StartError> {
        let messages = self.inner.store.thread_messages(user_id, thread).await.map_err(|e| match e {
            StoreError::NotFound => StartError::NotFound,
            // As for a message that cannot be saved: not accepted, retry later.
            _ => StartError::StorageUnavailable,
        })?;
        let (field, id) = (branch.field(), branch.message_id());
        let Some(named) = messages.iter().find(|m| m.id == id) else {
            return Err(StartError::Branch { not_found: true, message: format!("`{field}`: this thread has no message {id}") });
        };
        if named.role != "user" && !matches!(branch, Branch::After(_)) {
            let message = format!("`{field}` names a message you sent; {id} is an answer");
            return Err(StartError::Branch { not_found: false, message });
        }
        Ok(match branch {
            Branch::After(_) => Placed { place: Place::After(Some(id)), again: None },
            Branch::EditOf(_) => Placed { place: Place::After(named.parent_id), again: None },
            Branch::Regenerate(_) => Placed { place: Place::Again, again: Some((id, named.content.clone())) },
        })
    }

    /// A message for a busy thread: refused, unless it is a resend of one already accepted
    /// (same `client_message_id`), which gets the original run back.
    async fn busy_or_resent(&self, user_id: &UserId, msg: &UserMessage, active: RunId) -> Result<Accepted, StartError> {
        if let Some(cid) = &msg.client_message_id {
            if let Some(b) = self.inner.store.find_client_message(user_id, cid).await? {
                return Ok(Accepted { run_id: b.run_id, thread_id: b.thread_id, message_id: b.message_id, duplicate: true });
            }
        }
        Err(StartError::ThreadBusy((active != RESERVED).then_some(active)))
    }

    /// Follows a run of this user from `after_seq`: its missed events, then live ones until
    /// the terminal event. Another user's run is `NotFound`.
    pub async fn follow(&self, user_id: &UserId, run_id: RunId, after_seq: u64) -> Result<Follow, StartError> {
        // A follow after a seq is a resume: what it replays is counted as it is read.
        let resumed = |source: &'static str, replayed: usize| {
            if after_seq > 0 {
                metrics::counter!(m::RESUMES, "source" => source).increment(1);
                metrics::counter!(m::EVENTS_REPLAYED).increment(replayed as u64);
            }
        };
        if let Some(log) = self.live_log(user_id, run_id) {
            resumed("live", log.published_after(after_seq));
            return Ok(log.follow(after_seq));
        }
        if let Some(cluster) = &self.inner.cluster {
            // Subscribed before the store is read, so nothing falls between the two.
            let rx = cluster.subscribe(run_id).await;
            let run = self.inner.store.get_run(user_id, run_id).await?;
            if !run.status.is_finished() {
                resumed("remote", 0);
                return Ok(Follow::Remote(Box::new(RemoteFollow {
                    store: self.inner.store.clone(),
                    user_id: user_id.clone(),
                    run_id,
                    rx,
                    sent: after_seq,
                    done: false,
                    primed: false,
                })));
            }
        }
        let events = self.inner.store.run_events(user_id, run_id, after_seq).await?;
        resumed("stored", events.len());
        Ok(Follow::Stored(Some(events.into_iter().map(Arc::from).collect())))
    }

    /// The in-memory log of a run of this user, while it is live or lingering.
    pub fn live_log(&self, user_id: &UserId, run_id: RunId) -> Option<Arc<RunLog>> {
        let runs = self.inner.runs.lock().expect("runs lock");
        runs.get(&run_id).filter(|r| r.log.user_id == *user_id).map(|r| r.log.clone())
    }

    /// Stops a run of this user. Returns false when the run had already finished.
    pub async fn stop(&self, user_id: &UserId, run_id: RunId) -> Result<bool, StartError> {
        let live = {
            let runs = self.inner.runs.lock().expect("runs lock");
            runs.get(&run_id).filter(|r| r.log.user_id == *user_id).cloned()
        };
        match live {
            Some(run) if !run.log.is_finished() => {
                let _ = run.reason.compare_exchange(0, CANCELLED, Ordering::AcqRel, Ordering::Acquire);
                run.cancel.cancel();
                Ok(true)
            }
            Some(_) => Ok(false),
            None => {
                let run = self.inner.store.get_run(user_id, run_id).await?;
                match &self.inner.cluster {
                    // Executing on another instance: that one stops it.
                    Some(cluster) if !run.status.is_finished() => {
                        cluster.request_stop(run_id).await;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
        }
    }

    /// Runs executing now.
    pub fn active_runs(&self) -> usize {
        self.inner.tracker.len()
    }

    /// Writes waiting to be persisted.
    pub fn persistence_backlog(&self) -> usize {
        self.inner.writer.backlog()
    }

    /// Whether the last writes could be committed, and why not.
    pub fn storage_health(&self) -> &Arc<crate::writer::StorageHealth> {
        self.inner.writer.health()
    }

    pub fn is_accepting(&self) -> bool {
        self.inner.accepting.load(Ordering::Acquire)
    }

    /// Stops accepting runs, lets active ones finish within `grace`, interrupts the rest
    /// (their partial answers are kept), and flushes everything to the store.
    /// Returns how many runs had to be interrupted.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let inner = &self.inner;
        inner.accepting.store(false, Ordering::Release);
        inner.tracker.close();
        let mut interrupted = 0;
        if tokio::time::timeout(grace, inner.tracker.wait()).await.is_err() {
            for run in inner.runs.lock().expect("runs lock").values() {
                if !run.log.is_finished()
                    && run.reason.compare_exchange(0, INTERRUPTED, Ordering::AcqRel, Ordering::Acquire).is_ok()
                {
                    interrupted += 1;
                    run.cancel.cancel();
                }
            }
            inner.tracker.wait().await;
        }
        inner.stop_sweeper.cancel();
        // Every run has ended, so nothing else queues writes: once this flush returns,
        // all of them are durable.
        inner.writer.flush().await;
        if let Some(task) = inner.writer_task.lock().expect("writer lock").take() {
            task.abort();
        }
        interrupted
    }
}

impl Inner {
    /// True once the run's terminal event has been published.
    fn has_ended(&self, run_id: RunId) -> bool {
        self.runs.lock().expect("runs lock").get(&run_id).is_some_and(|r| r.log.is_finished())
    }

    async fn execute(self: Arc<Self>, live: Arc<LiveRun>, ctx: RunContext, received: Instant) {
        let _active = ActiveRun::start();
        self.writer.send(Write::RunStarted { run_id: ctx.run_id, at_ms: now_ms() }).await;
        let sink = EventSink::new(live.log.clone(), self.writer.clone(), received);
        let pipeline = AssertUnwindSafe(self.supervisor.run(&ctx, &self.tools, &sink)).catch_unwind();
        let outcome = tokio::select! {
            biased;
            _ = live.cancel.cancelled() => match live.reason.load(Ordering::Acquire) {
                INTERRUPTED => Outcome::Interrupted,
                _ => Outcome::Cancelled,
            },
            _ = live.log.storage_lost() => Outcome::Failed {
                code: crate::writer::STORAGE_UNAVAILABLE.into(),
                message: "the run could not be saved (storage is failing); ask again once it recovers".into(),
            },
            result = tokio::time::timeout(self.settings.run_timeout, pipeline) => match result {
                Ok(Ok(Ok(answer))) => Outcome::Completed { text: answer.text, suggestions: answer.suggestions },
                Ok(Ok(Err(e))) => Outcome::Failed { code: e.code().into(), message: e.to_string() },
                Ok(Err(_panic)) => {
                    tracing::error!(run_id = %ctx.run_id, "an agent panicked; the run ends as failed");
                    Outcome::Failed { code: "internal".into(), message: "an internal error ended the run".into() }
                }
                Err(_elapsed) => Outcome::TimedOut,
            },
        };
        // Recorded before the terminal event: once the answer is complete, so is its usage.
        self.record_model_usage(sink.take_model_usage()).await;
        let status = sink.finish(&ctx, outcome).await;
        tracing::debug!(run_id = %ctx.run_id, status = status.as_str(), "run finished");
        let mut busy = self.busy_threads.lock().expect("busy lock");
        if busy.get(&ctx.thread_id).is_some_and(|(_, run)| *run == ctx.run_id) {
            busy.remove(&ctx.thread_id);
        }
        drop(busy);
        *live.finished_at.lock().expect("finished lock") = Some(Instant::now());
    }
}

/// The account whose usage data is Apex's own model usage: a token for this user id
/// (`apex token --user apex`) analyzes what Apex spent, by end user, day and model.
pub const OWN_USAGE_ACCOUNT: &str = "apex";

impl Inner {
    /// Apex's own model calls become usage data of the [`OWN_USAGE_ACCOUNT`] account, the
    /// user they answered as the `user` tag: the OTLP GenAI spans go through the same
    /// import as any OpenTelemetry export (keyed by trace and span, so never counted
    /// twice). Users' own data stays theirs: a model-written answer does not turn a demo
    /// user's dataset into one row of Apex's spend. A local model runs on this machine and
    /// has no per-token price: its calls cost zero.
    async fn record_model_usage(&self, spans: Vec<serde_json::Value>) {
        if spans.is_empty() {
            return;
        }
        let mut rows = Vec::new();
        let body = spans.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("\n");
        let parsed = apex_costs::import::import(
            apex_costs::import::Format::OtelSpansJson,
            body.as_bytes(),
            |mut row| {
                if row.record.provider == "local" {
                    row.record.cost = Some(apex_costs::Money::ZERO);
                }
                rows.push(row);
            },
            |bad| tracing::warn!(reason = %bad.reason, "a model usage span was not importable"),
        );
        if let Err(e) = parsed {
            tracing::warn!(error = %e, "the run's model usage could not be read back");
            return;
        }
        if let Err(e) = self.store.import_usage(&OrgId::new(OWN_USAGE_ACCOUNT), &rows, now_ms()).await {
            tracing::warn!(error = %e, "the run's model usage could not be recorded");
        }
    }
}

/// One of a user's runs in flight: counted while it lives, on this instance and, in a
/// cluster, in the deployment-wide count.
struct InFlight {
    inner: Arc<Inner>,
    user: UserId,
    /// The run's name in the cluster's count, when it was counted there.
    cluster_slot: Option<String>,
}

impl InFlight {
    async fn take(inner: &Arc<Inner>, user: &UserId) -> Option<Self> {
        let max = inner.settings.max_runs_per_user.max(1);
        {
            let mut counts = inner.in_flight.lock().expect("in-flight lock");
            let count = counts.entry(user.clone()).or_insert(0);
            if *count >= max {
                return None;
            }
            *count += 1;
        }
        // From here on, dropping `taken` gives the local count back.
        let mut taken = Self { inner: inner.clone(), user: user.clone(), cluster_slot: None };
        if let Some(cluster) = &inner.cluster {
            let slot = Uuid::now_v7().to_string();
            // Counted across instances for as long as a run can last, with room for the
            // lease after which another instance ends a dead instance's runs.
            let ttl = inner.settings.run_timeout + inner.settings.lease * 2;
            match cluster.admit_run(user.as_str(), &slot, max, ttl).await {
                Some(false) => return None,
                Some(true) => taken.cluster_slot = Some(slot),
                None => {} // the bus cannot say: this instance's count alone applies
            }
        }
        Some(taken)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut counts = self.inner.in_flight.lock().expect("in-flight lock");
            if let Some(count) = counts.get_mut(&self.user) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&self.user);
                }
            }
        }
        if let (Some(slot), Some(cluster)) = (self.cluster_slot.take(), self.inner.cluster.clone()) {
            let user = self.user.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { cluster.release_run(user.as_str(), &slot).await });
            }
        }
    }
}

/// Keeps the active-runs gauge right however the run task ends.
struct ActiveRun;

impl ActiveRun {
    fn start() -> Self {
        metrics::gauge!(m::RUNS_ACTIVE).increment(1.0);
        Self
    }
}

impl Drop for ActiveRun {
    fn drop(&mut self) {
        metrics::gauge!(m::RUNS_ACTIVE).decrement(1.0);
    }
}

/// Stops the runs of this instance that a connection on another instance asked to stop.
async fn obey_stop_requests(
    inner: std::sync::Weak<Inner>,
    mut requests: tokio::sync::broadcast::Receiver<RunId>,
    stop: CancellationToken,
) {
    loop {
        let run_id = tokio::select! {
            _ = stop.cancelled() => return,
            r = requests.recv() => match r {
                Ok(run_id) => run_id,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            },
        };
        let Some(inner) = inner.upgrade() else { return };
        let live = inner.runs.lock().expect("runs lock").get(&run_id).cloned();
        if let Some(run) = live.filter(|r| !r.log.is_finished()) {
            let _ = run.reason.compare_exchange(0, CANCELLED, Ordering::AcqRel, Ordering::Acquire);
            run.cancel.cancel();
        }
    }
}

/// Renews this instance's lease on its runs, and takes over the runs of instances whose
/// lease expired (they end as interrupted, with their partial answer; their followers on
/// other instances read that from the store).
async fn hold_lease(inner: std::sync::Weak<Inner>, lease: Duration, stop: CancellationToken) {
    let period = lease / 5;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        // The heartbeat is a write: while storage fails, it is also how recovery is seen
        // when no message arrives to try.
        if let Err(e) = inner.store.heartbeat(&inner.instance, now_ms()).await {
            tracing::warn!(error = %e, "renewing this instance's lease failed; retrying");
            inner.writer.health().probed(Some(&e));
            continue;
        }
        inner.writer.health().probed(None);
        match inner.store.interrupt_orphaned(&inner.instance, lease).await {
            Ok(runs) if !runs.is_empty() => {
                tracing::warn!(count = runs.len(), "took over the runs of an instance that stopped; they end as interrupted")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "looking for runs of stopped instances failed; retrying"),
        }
    }
}

/// Releases finished runs from memory once their linger period is over.
async fn sweep(inner: std::sync::Weak<Inner>, linger: Duration, stop: CancellationToken) {
    let period = (linger / 2).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        inner
            .runs
            .lock()
            .expect("runs lock")
            .retain(|_, run| run.finished_at.lock().expect("finished lock").is_none_or(|at| at.elapsed() < linger));
    }
}
