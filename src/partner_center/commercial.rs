//! The commercial analytics reports ("Get licenses usage information",
//! "Get licenses deployment information"): where they live, and how their
//! pages are followed.
//!
//! Microsoft's pages name two roots for them, `/partner/v1/analytics/…`
//! and `/v1/analytics/…`, and only a live call tells which answers. With
//! `partner_center.commercial_api_prefix: auto` the one that answered last
//! is tried first, the other after a 404, and a change is logged; a pinned
//! prefix is used alone. The envelope is `Value` / `@nextLink` /
//! `TotalCount`: pages are followed by `@nextLink` when the service gives
//! one, else by `skip` while rows keep coming, and an answer that ends
//! short of its `TotalCount` is logged rather than passed off as whole.

use std::collections::HashSet;
use std::sync::Mutex;

use reqwest::{StatusCode, Url};
use tokio::time::Instant;
use uuid::Uuid;

use super::client::{
    Client, ClientError, Collection, FetchTrace, PageRequest, decode_on_blocking_pool,
};
use super::collection::{ItemDecoder, decode_commercial_page};
use crate::auth::Authenticator;
use crate::config::CommercialApiPrefix;

/// One of the two documented roots of the commercial reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportRoot {
    /// `/partner/v1`: the request examples', and every other analytics API's.
    PartnerV1,
    /// `/v1`: the syntax tables'.
    V1,
}

impl ReportRoot {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PartnerV1 => "/partner/v1",
            Self::V1 => "/v1",
        }
    }

    fn other(self) -> Self {
        match self {
            Self::PartnerV1 => Self::V1,
            Self::V1 => Self::PartnerV1,
        }
    }
}

/// Which root the reports are requested under; shared by every source
/// that reads one, since it is a property of the API, not of a report.
#[derive(Debug)]
pub struct ReportRoute {
    prefix: CommercialApiPrefix,
    /// With `auto`: the root that answered last.
    answered: Mutex<Option<ReportRoot>>,
}

impl ReportRoute {
    pub fn new(prefix: CommercialApiPrefix) -> Self {
        Self {
            prefix,
            answered: Mutex::new(None),
        }
    }

    /// The roots to try, in order.
    fn candidates(&self) -> Vec<ReportRoot> {
        match self.prefix {
            CommercialApiPrefix::PartnerV1 => vec![ReportRoot::PartnerV1],
            CommercialApiPrefix::V1 => vec![ReportRoot::V1],
            CommercialApiPrefix::Auto => {
                let first = self.answered().unwrap_or(ReportRoot::PartnerV1);
                vec![first, first.other()]
            }
        }
    }

    /// The root that answered last, if one has.
    pub fn answered(&self) -> Option<ReportRoot> {
        *self
            .answered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, root: ReportRoot) {
        let previous = self
            .answered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(root);
        if previous != Some(root) && self.prefix == CommercialApiPrefix::Auto {
            tracing::info!(
                prefix = root.as_str(),
                "the commercial analytics reports answer under this prefix; it is used from now on \
                 (partner_center.commercial_api_prefix pins it)"
            );
        }
    }
}

/// One report's request: which report, how many rows a page.
pub struct ReportRequest<'a, T> {
    pub route: &'a ReportRoute,
    /// Below the root, e.g. `analytics/commercial/usage/license`.
    pub path: &'a str,
    /// `top`: rows per page.
    pub page_size: u32,
    pub decode_item: ItemDecoder<T>,
}

impl Client {
    /// Fetches a whole commercial report: the first page under the first
    /// root that does not answer 404, then every further page. All
    /// requests carry `correlation_id` and share `deadline`, as for
    /// [`Client::fetch_collection`].
    pub async fn fetch_report<T: Send + 'static>(
        &self,
        report: &ReportRequest<'_, T>,
        auth: &Authenticator,
        correlation_id: Uuid,
        deadline: Instant,
        trace: &mut FetchTrace,
    ) -> Result<Collection<T>, ClientError> {
        let candidates = report.route.candidates();
        let mut found = None;
        for (index, root) in candidates.iter().enumerate() {
            let url = self.report_page_url(*root, report, 0)?;
            let request = PageRequest {
                url,
                correlation_id,
                extra_headers: &[],
            };
            match self.get_with_retries(&request, auth, deadline, trace).await {
                Ok(answer) => {
                    report.route.remember(*root);
                    found = Some((*root, answer));
                    break;
                }
                Err(err)
                    if err.status() == Some(StatusCode::NOT_FOUND)
                        && index + 1 < candidates.len() =>
                {
                    tracing::info!(
                        prefix = root.as_str(),
                        report = report.path,
                        "the commercial analytics report is not found under this prefix; trying the other"
                    );
                }
                Err(err) => return Err(err),
            }
        }
        let Some((root, (mut body, mut ids))) = found else {
            // Every candidate answered 404; the last error was returned above.
            return Err(ClientError::Paging(
                "no commercial analytics prefix answered".to_owned(),
            ));
        };
        let mut collection = Collection::default();
        let mut rows = 0u64;
        let mut seen_links = HashSet::new();
        loop {
            collection.pages += 1;
            let page_number = collection.pages;
            let page = decode_on_blocking_pool(body, decode_commercial_page, report.decode_item)
                .await
                .map_err(|source| ClientError::Decode {
                    source,
                    ids: ids.clone(),
                })?;
            let page_rows = (page.items.len() + page.skipped.len()) as u64;
            rows += page_rows;
            let total = page.total_count;
            collection.add_page(page.items);
            collection
                .skipped
                .extend(page.skipped.into_iter().map(|item| (page_number, item)));
            let next_url = if let Some(next) = page.next {
                if !seen_links.insert(next.uri.clone()) {
                    return Err(ClientError::Paging(
                        "@nextLink repeats an earlier page".to_owned(),
                    ));
                }
                Some(self.resolve_report_link(&next.uri)?)
            } else {
                let more = match total {
                    Some(total) => page_rows > 0 && rows < total,
                    None => page_rows >= u64::from(report.page_size),
                };
                if more {
                    Some(self.report_page_url(root, report, rows)?)
                } else {
                    None
                }
            };
            let Some(url) = next_url else {
                if let Some(total) = total.filter(|total| rows < *total) {
                    tracing::warn!(
                        report = report.path,
                        rows,
                        total_count = total,
                        "the commercial analytics report ended with fewer rows than its TotalCount; \
                         publishing the rows received"
                    );
                }
                return Ok(collection);
            };
            if collection.pages >= self.max_pages {
                return Err(ClientError::Paging(format!(
                    "the report has more than {} pages (partner_center.max_pages)",
                    self.max_pages
                )));
            }
            let request = PageRequest {
                url,
                correlation_id,
                extra_headers: &[],
            };
            (body, ids) = self
                .get_with_retries(&request, auth, deadline, trace)
                .await?;
        }
    }

    /// A page of `report` under `root`, from row `skip` on.
    fn report_page_url(
        &self,
        root: ReportRoot,
        report: &ReportRequest<'_, impl Sized>,
        skip: u64,
    ) -> Result<Url, ClientError> {
        let path = format!(
            "{}/{}?top={}&skip={skip}",
            root.as_str().trim_start_matches('/'),
            report.path.trim_matches('/'),
            report.page_size
        );
        Self::join(&self.base_url, &path).map_err(|err| {
            ClientError::Setup(format!("cannot build the URL of {}: {err}", report.path))
        })
    }

    /// An `@nextLink`: an absolute URI on the API's own origin (the token
    /// never goes elsewhere), or a path below the API root.
    fn resolve_report_link(&self, link: &str) -> Result<Url, ClientError> {
        let link = link.trim();
        if let Ok(absolute) = Url::parse(link) {
            if absolute.origin() != self.base_url.origin() {
                return Err(ClientError::Paging(format!(
                    "@nextLink points to another origin ({})",
                    absolute.origin().ascii_serialization()
                )));
            }
            return Ok(absolute);
        }
        Self::join(&self.base_url, link)
            .map_err(|err| ClientError::Paging(format!("@nextLink is not a usable URI: {err}")))
    }
}
