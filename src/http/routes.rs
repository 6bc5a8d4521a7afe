//! The endpoints: `/metrics` (the parts rendered ahead put together),
//! the landing page, `/healthz` and `/readyz`, behind the web
//! configuration's gate. Nothing here reaches Partner Center or changes
//! state: it only reads what the pollers last published.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body::ResponseBody;
use crate::build_info;
use crate::collect::state::{ExporterState, SourceStatus};
use crate::exposition::metrics::CONTENT_TYPE;
use crate::http::web::{Denial, WebSecurity};

/// Bodies smaller than this are sent as they are: gzip would not pay off.
const MIN_GZIP_BYTES: usize = 1024;

/// The request router and the state it reads.
pub(super) struct Routes {
    state: Arc<ExporterState>,
    telemetry_path: String,
    scrape_slots: ScrapeSlots,
    /// Basic auth, rate limit and extra headers, when configured.
    web: Option<Arc<WebSecurity>>,
}

/// The `--web.max-requests` limit, like promhttp's `MaxRequestsInFlight`,
/// on the telemetry path only: `/healthz` and the other small pages still
/// answer while scrapes are refused, so an overload is visible as such.
///
/// A scrape holds its slot until its body has been handed to the socket
/// (see [`ResponseBody`]), not just until it is rendered: a client that
/// asks for the metrics and does not read them keeps its slot until it is
/// dropped for stalling (see `StallGuard` in [`super::server`]), which bounds the memory such
/// clients can tie up to `max_requests` bodies.
struct ScrapeSlots {
    /// `None` when there is no limit.
    slots: Option<Arc<Semaphore>>,
    limit: usize,
}

impl ScrapeSlots {
    fn new(limit: usize) -> Self {
        // A semaphore holds at most MAX_PERMITS; any limit that high is no
        // limit in practice.
        let slots =
            (limit > 0).then(|| Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))));
        Self { slots, limit }
    }

    /// `Ok(None)` without a limit, `Ok(Some(slot))` within it, `Err(())`
    /// when every slot is taken.
    fn try_take(&self) -> Result<Option<OwnedSemaphorePermit>, ()> {
        match &self.slots {
            None => Ok(None),
            Some(slots) => slots.clone().try_acquire_owned().map(Some).map_err(|_| ()),
        }
    }
}

impl Routes {
    pub(super) fn new(
        state: Arc<ExporterState>,
        telemetry_path: String,
        max_requests: usize,
        web: Option<Arc<WebSecurity>>,
    ) -> Self {
        Self {
            state,
            telemetry_path,
            scrape_slots: ScrapeSlots::new(max_requests),
            web,
        }
    }

    /// The web configuration's gate, then the endpoint.
    pub(super) async fn respond(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ResponseBody> {
        let Some(web) = &self.web else {
            return self.handle(&request, peer);
        };
        let active = web.current();
        let mut response = match web
            .admit(&active, request.uri().path(), request.headers())
            .await
        {
            Ok(()) => self.handle(&request, peer),
            Err(Denial::Unauthorized) => {
                tracing::debug!(%peer, path = request.uri().path(), "basic auth failed; answering 401");
                let mut response = text(StatusCode::UNAUTHORIZED, "401 Unauthorized\n");
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Basic realm=\"partner-center-exporter\", charset=\"UTF-8\"",
                    ),
                );
                response
            }
            Err(Denial::RateLimited) => {
                text(StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests\n")
            }
        };
        active.add_headers(response.headers_mut());
        response
    }

    fn handle(&self, request: &Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        let path = request.uri().path();
        let method = request.method();
        let response = if path == self.telemetry_path {
            allow_get(method).unwrap_or_else(|| match self.scrape_slots.try_take() {
                Ok(slot) => self.metrics(request.headers(), slot),
                Err(()) => {
                    tracing::debug!(%peer, limit = self.scrape_slots.limit, "too many scrapes in flight; answering 503");
                    too_many_scrapes(self.scrape_slots.limit)
                }
            })
        } else {
            match path {
                "/" => allow_get(method).unwrap_or_else(|| self.landing_page()),
                "/healthz" => allow_get(method).unwrap_or_else(|| text(StatusCode::OK, "OK\n")),
                "/readyz" => allow_get(method).unwrap_or_else(|| self.readiness()),
                _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
            }
        };
        tracing::debug!(%method, path, status = response.status().as_u16(), "request");
        if method == Method::HEAD {
            without_body(response)
        } else {
            response
        }
    }

    /// A scrape: the parts rendered ahead put together, compressed as one
    /// gzip member when the client accepts gzip; nothing is rendered or
    /// compressed here (see [`crate::exposition`]).
    fn metrics(
        &self,
        request_headers: &HeaderMap,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Response<ResponseBody> {
        let exposition = self.state.exposition();
        let mut response = Response::builder()
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .header(header::VARY, "Accept-Encoding");
        let compressed = (accepts_gzip(request_headers)
            && exposition.plain_len() >= MIN_GZIP_BYTES)
            .then(|| exposition.gzip_frames())
            .flatten();
        let frames = match compressed {
            Some(frames) => {
                response = response.header(header::CONTENT_ENCODING, "gzip");
                frames
            }
            None => exposition.plain_frames(),
        };
        response
            .body(ResponseBody::frames(frames, slot))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "cannot build response\n"))
    }

    /// `/readyz`: 200 once every enabled source has finished its first
    /// poll and at least one has succeeded; the body names each source
    /// and its state either way.
    fn readiness(&self) -> Response<ResponseBody> {
        let mut body = if self.state.is_ready() {
            "ready\n".to_owned()
        } else {
            "not ready: waiting until every source has finished its first poll and one has succeeded\n"
                .to_owned()
        };
        // A named tenant's sources are `tenant/source`.
        for status in self.state.statuses() {
            let slot = match status.tenant.name() {
                Some(tenant) => format!("{tenant}/{}", status.source),
                None => status.source.to_string(),
            };
            body.push_str(&format!("{slot}: {}\n", readiness_state(&status)));
        }
        let code = if self.state.is_ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        text(code, body)
    }

    /// `/`: what the exporter is, its links, and a row per source (per
    /// tenant and source, with a tenant column, for a `tenants` configuration).
    fn landing_page(&self) -> Response<ResponseBody> {
        let format_time = |time: Option<chrono::DateTime<chrono::Utc>>| {
            time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "never".to_owned())
        };
        let statuses = self.state.statuses();
        let tenanted = statuses.iter().any(|status| status.tenant.name().is_some());
        let mut rows = String::new();
        for status in statuses {
            let mut result = match (&status.last_poll_at, &status.last_error) {
                (None, _) => "no poll has finished yet".to_owned(),
                (Some(_), None) => format!("succeeded, {} series", status.series),
                (Some(_), Some(error)) => format!("failed: {error}"),
            };
            if status.withdrawn {
                result.push_str(" (series withdrawn: no success within poll.max_staleness)");
            }
            if let Some((customers, failing)) = status.customers {
                result.push_str(&customer_summary(customers, failing));
            }
            let tenant_cell = match status.tenant.name() {
                Some(tenant) => format!("<td>{}</td>", html_escape(tenant)),
                None if tenanted => "<td></td>".to_owned(),
                None => String::new(),
            };
            rows.push_str(&format!(
                "<tr>{tenant_cell}<td>{source}</td><td>{last_poll}</td><td>{result}</td><td>{series}</td><td>{last_success}</td></tr>\n",
                source = html_escape(status.source.as_str()),
                last_poll = format_time(status.last_poll_at),
                result = html_escape(&result),
                series = status.series,
                last_success = format_time(status.last_success_at),
            ));
        }
        let path = html_escape(&self.telemetry_path);
        let page = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Partner Center Exporter</title></head>\n<body>\n\
<h1>Partner Center Exporter</h1>\n\
<p>Prometheus exporter for Microsoft Partner Center license data. Version {version} (revision {revision}).</p>\n\
<ul>\n<li><a href=\"{path}\">Metrics</a></li>\n<li><a href=\"/healthz\">Health</a></li>\n<li><a href=\"/readyz\">Readiness</a></li>\n</ul>\n\
<h2>Sources</h2>\n<table>\n\
<tr>{tenant_heading}<th align=\"left\">Source</th><th align=\"left\">Last poll</th><th align=\"left\">Result</th><th align=\"left\">Series</th><th align=\"left\">Last success</th></tr>\n\
{rows}</table>\n</body>\n</html>\n",
            tenant_heading = if tenanted {
                "<th align=\"left\">Tenant</th>"
            } else {
                ""
            },
            version = html_escape(build_info::VERSION),
            revision = html_escape(build_info::REVISION),
        );
        Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(ResponseBody::new(Bytes::from(page)))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "cannot build response\n"))
    }
}

/// One source's line on `/readyz`.
fn readiness_state(status: &SourceStatus) -> String {
    let mut state = match (&status.last_poll_at, &status.last_error) {
        (None, _) => "waiting for the first poll".to_owned(),
        (Some(_), None) => format!("up, {} series", status.series),
        (Some(_), Some(_)) if status.last_success_at.is_some() => format!(
            "down: the last poll failed; serving {} series from the last success",
            status.series
        ),
        (Some(_), Some(_)) => "down: no poll has succeeded yet".to_owned(),
    };
    if status.withdrawn {
        state.push_str(" (series withdrawn: no success within poll.max_staleness)");
    }
    if let Some((customers, failing)) = status.customers {
        state.push_str(&customer_summary(customers, failing));
    }
    state
}

/// How a fan-out source's customers fared, for `/` and `/readyz`.
fn customer_summary(customers: usize, failing: usize) -> String {
    match failing {
        0 => format!("; {customers} customers"),
        _ => format!("; {customers} customers, {failing} failing (see partner_center_customer_up)"),
    }
}

/// The answer to a HEAD request: the GET answer's status and headers,
/// with its length stated, and no body (RFC 9110 §9.3.2). A scrape slot
/// the body held is released at once.
fn without_body(response: Response<ResponseBody>) -> Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.remaining()));
    Response::from_parts(parts, ResponseBody::empty())
}

/// The answer to a scrape beyond `--web.max-requests`.
fn too_many_scrapes(limit: usize) -> Response<ResponseBody> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("503 too many scrapes in flight (limit {limit}); try again later\n"),
    )
}

/// `None` for GET and HEAD; otherwise the 405 answer.
fn allow_get(method: &Method) -> Option<Response<ResponseBody>> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(response)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): its own
/// q-value if gzip is listed, otherwise that of `*`; `q=0` refuses.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    let entries = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for entry in entries {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let quality = parts
            .filter_map(|param| param.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, value)| value.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(quality);
        } else if coding == "*" {
            any = Some(quality);
        }
    }
    gzip.or(any).is_some_and(|quality| quality > 0.0)
}

fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept_encoding: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept_encoding).expect("header"),
        );
        headers
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&headers("gzip")));
        assert!(accepts_gzip(&headers("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(&headers("*")));
        assert!(!accepts_gzip(&headers("gzip;q=0")));
        assert!(
            !accepts_gzip(&headers("gzip; Q=0")),
            "the parameter name is case-insensitive"
        );
        assert!(
            !accepts_gzip(&headers("gzip;q=0, *")),
            "an explicit refusal beats *"
        );
        assert!(!accepts_gzip(&headers("*;q=0")));
        assert!(
            accepts_gzip(&headers("*;q=0, gzip")),
            "an explicit gzip beats a refused *"
        );
        assert!(!accepts_gzip(&headers("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }
}
