//! Demo mode: a simulated Partner Center inside the process, so the exporter
//! can be tried without credentials.
//!
//! The simulation serves the five series of Microsoft's documented example
//! over real HTTP on 127.0.0.1, behind a bearer token kept in a temporary
//! file, so the demo runs the production client, decoder and token reading.

use std::convert::Infallible;
use std::f64::consts::TAU;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{AuthConfig, Config, PartnerCenterConfig, PollConfig};

/// The demo polls often so changes show up quickly; the simulation has no rate limit.
pub const DEMO_POLL_INTERVAL: Duration = Duration::from_secs(15);

/// One full swing of a simulated series.
const WAVE_PERIOD_SECONDS: f64 = 600.0;

/// The (workload, service, channel) sets of the documented example response.
pub const DEMO_SERIES: [(&str, &str, &str); 5] = [
    ("Microsoft Dynamics CRM", "crm", "reseller"),
    ("SharePoint", "crm", "reseller"),
    ("Exchange", "o365", "reseller"),
    ("SharePoint", "o365", "reseller"),
    ("Skype For Business", "o365", "reseller"),
];

/// A running simulation and the configuration that points the exporter at it.
pub struct Demo {
    /// The exporter configuration for the simulation; its base URL is where
    /// the simulation listens.
    pub config: Config,
    /// Holds the token file; removed when the demo ends.
    _token_dir: TokenDir,
}

/// Starts the simulated Partner Center on 127.0.0.1 (a free port) until
/// `shutdown` is cancelled.
pub async fn start(shutdown: CancellationToken) -> std::io::Result<Demo> {
    let token = uuid::Uuid::new_v4().to_string();
    let token_dir = TokenDir::create(&token)?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    let base_url = Url::parse(&format!("http://{address}"))
        .map_err(|err| std::io::Error::other(err.to_string()))?;
    tokio::spawn(serve(
        listener,
        Arc::new(format!("Bearer {token}")),
        shutdown,
    ));

    let config = Config {
        partner_center: PartnerCenterConfig {
            base_url,
            request_timeout: Duration::from_secs(5),
            ..PartnerCenterConfig::default()
        },
        auth: AuthConfig {
            bearer_token_file: Some(token_dir.file.clone()),
            ..AuthConfig::default()
        },
        poll: PollConfig {
            interval: DEMO_POLL_INTERVAL,
            timeout: Duration::from_secs(10),
        },
        state_dir: None,
    };
    Ok(Demo {
        config,
        _token_dir: token_dir,
    })
}

async fn serve(listener: TcpListener, expected_auth: Arc<String>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "demo Partner Center cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let expected_auth = expected_auth.clone();
        let service = hyper::service::service_fn(move |request| {
            let response = respond(&request, &expected_auth, SystemTime::now());
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "demo Partner Center connection ended with an error");
            }
        });
    }
}

fn respond(
    request: &Request<Incoming>,
    expected_auth: &str,
    now: SystemTime,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/v1/analytics/licenses/usage" {
        return json(
            StatusCode::NOT_FOUND,
            r#"{"code":404,"description":"Not found","source":"demo"}"#.to_owned(),
        );
    }
    if request.method() != Method::GET {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"code":405,"description":"Method not allowed","source":"demo"}"#.to_owned(),
        );
    }
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|value| value.as_bytes() == expected_auth.as_bytes());
    if !authorized {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"code":401,"description":"Unauthorized","source":"demo"}"#.to_owned(),
        );
    }
    json(StatusCode::OK, usage_body(now).to_string())
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// The license usage collection the simulation serves at `now`.
pub fn usage_body(now: SystemTime) -> serde_json::Value {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let midnight =
        chrono::DateTime::from_timestamp((seconds as i64).div_euclid(86_400) * 86_400, 0)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string();
    let items: Vec<serde_json::Value> = DEMO_SERIES
        .iter()
        .map(|(workload, service, channel)| {
            serde_json::json!({
                "proratedLicensesUsagePercent": simulated_percent(workload, service, channel, seconds),
                "workloadName": workload,
                "processedDateTime": midnight,
                "serviceName": service,
                "channel": channel,
                "attributes": { "objectType": "PartnerLicensesUsageInsights" }
            })
        })
        .collect();
    serde_json::json!({
        "totalCount": items.len(),
        "items": items,
        "attributes": { "objectType": "Collection" }
    })
}

/// A value between 5 and 95 that follows a slow wave whose phase and
/// centre are fixed per series, so every series moves differently but the
/// same series always gives the same value at the same time.
fn simulated_percent(workload: &str, service: &str, channel: &str, unix_seconds: f64) -> f64 {
    let seed = fnv1a([workload, service, channel]);
    let phase = (seed % 1000) as f64 / 1000.0 * TAU;
    let centre = 35.0 + ((seed >> 16) % 30) as f64;
    let value = centre + 30.0 * (TAU * unix_seconds / WAVE_PERIOD_SECONDS + phase).sin();
    (value.clamp(5.0, 95.0) * 100.0).round() / 100.0
}

/// FNV-1a over the parts, each ended by a zero byte so that ("ab", "c")
/// and ("a", "bc") differ.
fn fnv1a(parts: [&str; 3]) -> u64 {
    crate::secret::fnv1a(
        parts
            .iter()
            .flat_map(|part| part.bytes().chain(std::iter::once(0))),
    )
}

/// A private temporary directory with the token file, removed on drop.
struct TokenDir {
    dir: PathBuf,
    file: PathBuf,
}

impl TokenDir {
    fn create(token: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "partner-center-exporter-demo-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir)?;
        let token_dir = Self {
            file: dir.join("access-token"),
            dir,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&token_dir.dir, std::fs::Permissions::from_mode(0o700))?;
        }
        std::fs::write(&token_dir.file, token)?;
        Ok(token_dir)
    }
}

impl Drop for TokenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partner_center::model::decode_usage_page;

    #[test]
    fn simulated_answer_decodes_to_the_documented_label_sets() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_123);
        let body = usage_body(now).to_string();
        let page = decode_usage_page(body.as_bytes()).expect("decodes");
        assert!(page.skipped.is_empty());
        let labels: Vec<(&str, &str, &str)> = page
            .items
            .iter()
            .map(|i| (i.workload.as_str(), i.service.as_str(), i.channel.as_str()))
            .collect();
        assert_eq!(labels, DEMO_SERIES.to_vec());
        for item in &page.items {
            assert!((0.0..=100.0).contains(&item.prorated_percent), "{item:?}");
            assert_eq!(
                item.processed_at.timestamp(),
                1_700_000_123 / 86_400 * 86_400
            );
        }
    }

    #[test]
    fn values_are_deterministic_and_move_over_time() {
        let at = |seconds| simulated_percent("Exchange", "o365", "reseller", seconds);
        assert_eq!(at(1000.0), at(1000.0));
        assert_ne!(
            at(1000.0),
            at(1150.0),
            "a value must change within a few polls"
        );
        assert_ne!(
            simulated_percent("Exchange", "o365", "reseller", 1000.0),
            simulated_percent("SharePoint", "o365", "reseller", 1000.0),
            "series differ"
        );
        for step in 0..200 {
            let value = at(f64::from(step) * 7.0);
            assert!((5.0..=95.0).contains(&value), "{value}");
        }
    }
}
