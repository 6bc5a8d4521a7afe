//! A simulated Partner Center and Entra ID on 127.0.0.1, shared by the
//! demo (`--demo`), the benchmarks and the tests.
//!
//! One server plays both services, on raw TCP so that it can also send the
//! broken answers fault tests need:
//!
//! - Partner Center's collections, one [`Dataset`] per path
//!   ([`datasets`]): moving values generated per request, fixed bodies of
//!   any size built once, or items in pages chained by `links.next`;
//!   guarded by [`PartnerCenterAuth`]; all answered `503` while the
//!   [`OutageSwitch`] is on.
//! - Entra ID's v1 token endpoint, `POST /{tenant}/oauth2/token`
//!   ([`entra`]), with strict refresh-token rotation and refusals shaped
//!   like Entra ID's.
//! - A script of answers and faults ([`Step`]), per path or for any path,
//!   consumed one step per request before the normal answer is looked at.
//! - Plain routes of the caller's ([`SimulatorBuilder::route`]), such as a
//!   benchmark's statistics page.
//!
//! Every request is recorded ([`RequestLog`]): method, target, headers,
//! arrival and answer times, and a count per path.
//!
//! Connections are kept alive between well-formed answers (as the
//! exporter's HTTP client expects of Partner Center); every scripted step
//! but [`Step::Normal`] ends its connection, as a one-request-per-connection
//! fake would.
//!
//! The server stops when the [`Simulator`] is dropped, or when the
//! cancellation token given to [`SimulatorBuilder::shutdown`] is cancelled
//! (connections under way then run to their end).
//!
//! # Files
//! - [`http`]: the bounded request reader and plain answers.
//! - [`entra`]: the token endpoint.
//! - [`datasets`]: the collections, the demo's partner-level table among
//!   them, with each demo partner's figures.
//! - [`demo_partner`]: the demo's partners ([`demo_partner::DemoPartner`]:
//!   a large one and a smaller one) with their customers, their licences
//!   and the commercial analytics rows about them.
//! - [`demo_subscriptions`]: a demo partner's subscriptions and their
//!   provisioning status.
//! - [`demo_paths`]: every per-customer path of a demo partner, from the
//!   two above.
//! - [`script`]: the steps and their queues.
//! - [`record`]: the record of requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::secret::Secret;

pub mod datasets;
pub mod demo_partner;
pub mod demo_paths;
pub mod demo_subscriptions;
pub mod entra;
pub mod http;
pub mod record;
pub mod script;

pub use datasets::Dataset;
pub use entra::EntraSettings;
pub use http::Answer;
pub use record::{DEFAULT_RECORD_LIMIT, ReceivedRequest, RequestLog, Timing, WaitTimedOut};
pub use script::{Scope, Step};

use http::{Connection, Read, Request};

/// Most connections served at once; more are closed as they come. Bounds
/// what clients holding connections open (or a [`Step::Hang`]) can cost.
pub const MAX_CONNECTIONS: usize = 1024;

/// Which requests to Partner Center's collections are served.
#[derive(Debug, Clone, Default)]
pub enum PartnerCenterAuth {
    /// Every request, whatever its `Authorization` (as the benchmarks need).
    #[default]
    Open,
    /// Only `Authorization: Bearer` with this token (for
    /// `auth.bearer_token_file`); others get a 401.
    Bearer(Secret),
    /// Only access tokens the simulated Entra ID issued and that have not
    /// expired (the demo); without Entra ID settings, none.
    IssuedTokens,
}

/// A plain route's answer, from the record of requests so far.
pub type RouteHandler = Arc<dyn Fn(&RequestLog) -> Answer + Send + Sync>;

/// Whether the simulated Partner Center is down: while it is on, every
/// collection path answers `503` (the token endpoint keeps working).
/// Clones share one switch.
#[derive(Clone, Debug, Default)]
pub struct OutageSwitch(Arc<AtomicBool>);

impl OutageSwitch {
    /// Whether collection requests are answered `503` now.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Starts (`true`) or ends the outage.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Release);
    }

    /// Starts the outage if there is none, ends it otherwise; returns
    /// whether an outage is simulated now.
    pub fn toggle(&self) -> bool {
        // fetch_xor returns the old value: one atomic step, so two toggles
        // at once still leave the switch where it started.
        !self.0.fetch_xor(true, Ordering::AcqRel)
    }
}

/// What a simulator serves, before it starts.
pub struct SimulatorBuilder {
    port: u16,
    datasets: BTreeMap<String, Dataset>,
    routes: BTreeMap<String, RouteHandler>,
    entra: Option<EntraSettings>,
    auth: PartnerCenterAuth,
    outage: OutageSwitch,
    scripts: Vec<(Scope, Vec<Step>, Option<Step>)>,
    record_limit: usize,
    shutdown: Option<CancellationToken>,
}

impl Default for SimulatorBuilder {
    fn default() -> Self {
        Self {
            port: 0,
            datasets: BTreeMap::new(),
            routes: BTreeMap::new(),
            entra: None,
            auth: PartnerCenterAuth::Open,
            outage: OutageSwitch::default(),
            scripts: Vec::new(),
            record_limit: DEFAULT_RECORD_LIMIT,
            shutdown: None,
        }
    }
}

impl SimulatorBuilder {
    /// Listens on this port of 127.0.0.1 (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Serves `dataset` at `path` (below the root; a leading `/` is added),
    /// replacing what was there. A base URL with a path prefix is served by
    /// giving the prefix here too (`small/v1/analytics/licenses/usage`).
    pub fn dataset(mut self, path: &str, dataset: Dataset) -> Self {
        self.datasets
            .insert(record::normalise(path).into_owned(), dataset);
        self
    }

    /// Serves every `(path, dataset)`.
    pub fn datasets<P: AsRef<str>>(
        mut self,
        datasets: impl IntoIterator<Item = (P, Dataset)>,
    ) -> Self {
        for (path, dataset) in datasets {
            self = self.dataset(path.as_ref(), dataset);
        }
        self
    }

    /// Answers `path` with `handler`, whatever the method, outage or
    /// authorisation: for pages of the caller's own, such as statistics.
    pub fn route(
        mut self,
        path: &str,
        handler: impl Fn(&RequestLog) -> Answer + Send + Sync + 'static,
    ) -> Self {
        self.routes
            .insert(record::normalise(path).into_owned(), Arc::new(handler));
        self
    }

    /// Plays Entra ID's v1 token endpoint with these settings.
    pub fn entra(mut self, settings: EntraSettings) -> Self {
        self.entra = Some(settings);
        self
    }

    /// Which requests Partner Center serves (default: all).
    pub fn partner_center_auth(mut self, auth: PartnerCenterAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Uses `outage` as the outage switch, so its holder can flip it.
    pub fn outage(mut self, outage: OutageSwitch) -> Self {
        self.outage = outage;
        self
    }

    /// Starts with this script for `scope` (see [`Simulator::script`]).
    pub fn script(mut self, scope: Scope, steps: Vec<Step>, then: Option<Step>) -> Self {
        self.scripts.push((scope, steps, then));
        self
    }

    /// Keeps at most `limit` requests in full in the record (default
    /// [`DEFAULT_RECORD_LIMIT`]); counts are kept for all.
    pub fn record_limit(mut self, limit: usize) -> Self {
        self.record_limit = limit;
        self
    }

    /// Stops accepting connections when `shutdown` is cancelled.
    pub fn shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Binds 127.0.0.1 and starts serving on the current Tokio runtime.
    pub async fn start(self) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await?;
        let address = listener.local_addr()?;
        let base_url = format!("http://{address}");
        let scripts = script::Scripts::default();
        for (scope, steps, then) in self.scripts {
            scripts.replace(scope, steps, then);
        }
        let shared = Arc::new(Shared {
            origin: base_url.clone(),
            datasets: self.datasets,
            routes: self.routes,
            entra: self.entra.map(entra::TokenEndpoint::new),
            auth: self.auth,
            outage: self.outage,
            scripts,
            log: RequestLog::new(self.record_limit),
        });
        let shutdown = self.shutdown.unwrap_or_default();
        let task = tokio::spawn(accept_loop(listener, shared.clone(), shutdown));
        Ok(Simulator {
            shared,
            address,
            base_url,
            task,
        })
    }
}

/// A running simulator; it stops when dropped.
pub struct Simulator {
    shared: Arc<Shared>,
    address: SocketAddr,
    /// `http://127.0.0.1:port`, without a trailing `/`.
    base_url: String,
    task: JoinHandle<()>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // Ends the accept loop, and with it every connection it serves.
        self.task.abort();
    }
}

impl Simulator {
    /// A simulator to configure.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder::default()
    }

    /// A server that answers every request, whatever its path, with the
    /// next of `steps`, then with `then` for ever: the fault tests'
    /// scripted upstream.
    pub async fn scripted(steps: Vec<Step>, then: Step) -> std::io::Result<Self> {
        Self::builder()
            .script(Scope::Any, steps, Some(then))
            .start()
            .await
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:port`, without a trailing `/`: the exporter's
    /// `partner_center.base_url` and `auth.authority`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The URL of `path` (a leading `/` is added).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, record::normalise(path))
    }

    /// The outage switch.
    pub fn outage(&self) -> &OutageSwitch {
        &self.shared.outage
    }

    /// The record of requests.
    pub fn log(&self) -> &RequestLog {
        &self.shared.log
    }

    /// Every request in the record, in order.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.shared.log.requests()
    }

    /// The requests to `path` since the start.
    pub fn request_count(&self, path: &str) -> u64 {
        self.shared.log.count(path)
    }

    /// Waits until at least `count` requests have arrived; returns the
    /// record then, or, after `limit`, what had arrived.
    pub async fn wait_for_requests(
        &self,
        count: usize,
        limit: Duration,
    ) -> Result<Vec<ReceivedRequest>, WaitTimedOut> {
        self.shared.log.wait_for(count as u64, limit).await?;
        Ok(self.received())
    }

    /// Replaces what is left of the script for any path: `steps` in
    /// order, then `then` for ever (the scripted upstream's `replace`).
    pub fn replace(&self, steps: Vec<Step>, then: Step) {
        self.shared.scripts.replace(Scope::Any, steps, Some(then));
    }

    /// Replaces what is left of `scope`'s script: `steps` in order, then
    /// `then` for every request; without `then`, once the steps are used
    /// up the request goes on to the script for any path (for a path's
    /// scope), then to the normal answer.
    pub fn script(&self, scope: impl Into<Scope>, steps: Vec<Step>, then: Option<Step>) {
        self.shared.scripts.replace(scope.into(), steps, then);
    }

    /// Adds `steps` to the end of `scope`'s queue.
    pub fn push_steps(&self, scope: impl Into<Scope>, steps: impl IntoIterator<Item = Step>) {
        self.shared.scripts.push(scope.into(), steps);
    }

    /// Steps of `scope` not played yet.
    pub fn pending_steps(&self, scope: impl Into<Scope>) -> usize {
        self.shared.scripts.pending(&scope.into())
    }

    /// The refresh token the simulated Entra ID accepts now, if it plays one.
    pub fn current_refresh_token(&self) -> Option<Secret> {
        self.shared
            .entra
            .as_ref()
            .map(entra::TokenEndpoint::current_refresh_token)
    }

    /// How many refresh tokens the simulated Entra ID redeemed.
    pub fn token_redemptions(&self) -> u64 {
        self.shared
            .entra
            .as_ref()
            .map_or(0, entra::TokenEndpoint::redeemed)
    }
}

/// What every connection task shares.
struct Shared {
    /// `http://127.0.0.1:port`, for `links.next`.
    origin: String,
    datasets: BTreeMap<String, Dataset>,
    routes: BTreeMap<String, RouteHandler>,
    entra: Option<entra::TokenEndpoint>,
    auth: PartnerCenterAuth,
    outage: OutageSwitch,
    scripts: script::Scripts,
    log: RequestLog,
}

impl Shared {
    /// The answer without a script: a plain route, a dataset, the token
    /// endpoint, or a 404.
    fn answer(&self, request: &Request) -> Answer {
        let path = request.path();
        if let Some(route) = self.routes.get(path) {
            return route(&self.log);
        }
        if let Some(dataset) = self.datasets.get(path) {
            let mut answer = self.partner_center(request, dataset);
            // As Partner Center does: its request ids come back.
            for name in ["MS-RequestId", "MS-CorrelationId"] {
                if let Some(value) = request.header(name) {
                    answer = answer.with_header(name, value);
                }
            }
            return answer;
        }
        if let (Some(entra), Some(tenant)) = (&self.entra, entra::tenant_of(path)) {
            return entra.respond(tenant, request);
        }
        // Partner Center's error shape, so that a client falling back from
        // one path to another on 404 (the commercial analytics) reads it
        // as Partner Center's.
        Answer::json(
            404,
            r#"{"code":404,"description":"Not found","data":[],"source":"simulator"}"#,
        )
    }

    /// A collection for an authorised GET, unless an outage is simulated.
    fn partner_center(&self, request: &Request, dataset: &Dataset) -> Answer {
        // Checked first, as an outage at Partner Center's front door
        // answers before anything looks at the request.
        if self.outage.is_on() {
            return Answer::json(
                503,
                r#"{"code":503,"description":"Service Unavailable (simulated outage)","source":"simulator"}"#,
            );
        }
        if request.method != "GET" {
            return Answer::json(
                405,
                r#"{"code":405,"description":"Method not allowed","source":"simulator"}"#,
            )
            .with_header("Allow", "GET");
        }
        if !self.authorised(request) {
            return Answer::json(
                401,
                r#"{"code":401,"description":"Unauthorized","source":"simulator"}"#,
            );
        }
        dataset.answer(request, &self.origin, SystemTime::now())
    }

    fn authorised(&self, request: &Request) -> bool {
        let token = || {
            request
                .header("authorization")
                .and_then(|value| value.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
        };
        match &self.auth {
            PartnerCenterAuth::Open => true,
            PartnerCenterAuth::Bearer(expected) => token() == Some(expected.expose()),
            PartnerCenterAuth::IssuedTokens => match (token(), &self.entra) {
                (Some(token), Some(entra)) => entra.access_token_is_valid(token, request.at),
                _ => false,
            },
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    // Owned here, so that dropping the simulator (which aborts this task)
    // ends every connection, a hanging one included.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => {
                // Answers under way are finished, as a server stopping
                // gracefully would.
                connections.detach_all();
                return;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                while connections.try_join_next().is_some() {}
                if connections.len() >= MAX_CONNECTIONS {
                    tracing::debug!("the simulator is at its connection limit; closing a new one");
                    continue;
                }
                connections.spawn(serve_connection(shared.clone(), stream));
            }
            Err(err) => {
                tracing::warn!(error = %err, "the simulator cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers the requests of one connection until it ends.
async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let mut connection = Connection::new(stream);
    loop {
        let request = match connection.read_request().await {
            Read::Request(request) => request,
            Read::Closed => return,
            Read::Malformed { status, reason } => {
                let body = serde_json::json!({ "code": status, "description": reason });
                if connection
                    .write_answer(&Answer::json(status, body.to_string()), true)
                    .await
                    .is_ok()
                {
                    linger(&mut connection.stream).await;
                }
                return;
            }
        };
        let sequence = shared.log.push(&request);
        match shared.scripts.next(request.path()) {
            None | Some(Step::Normal) => {}
            Some(step) => {
                if step.play(&mut connection.stream).await {
                    shared.log.answered(sequence, Instant::now());
                }
                return;
            }
        }
        let answer = shared.answer(&request);
        if connection
            .write_answer(&answer, request.close)
            .await
            .is_err()
        {
            return;
        }
        shared.log.answered(sequence, Instant::now());
        if request.close {
            linger(&mut connection.stream).await;
            return;
        }
    }
}

/// Longest a closing connection is read on after the last answer.
const LINGER: Duration = Duration::from_secs(1);

/// Closes the sending side and reads on for a moment (a lingering close):
/// a client still sending a body the simulator did not read then gets the
/// answer, rather than a reset that may discard it.
async fn linger(stream: &mut TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 8192];
    let mut discarded = 0;
    while discarded < 2 * http::MAX_DISCARDED_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(read)) if read > 0 => discarded += read,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests;
