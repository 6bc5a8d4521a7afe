//! Logging set-up: logfmt or JSON lines on standard error, filtered by level.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{LogFormat, LogLevel};

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
        }
    }
}

/// Installs the process-wide log subscriber. Called once, before the
/// configuration is read, so configuration errors are logged in the chosen format.
///
/// Debug logs of the libraries underneath (hyper, reqwest, rustls) are kept
/// at `info`: they would print request internals that operators do not need.
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::from(level))
        .with_target("hyper", LevelFilter::INFO.min(level.into()))
        .with_target("hyper_util", LevelFilter::INFO.min(level.into()))
        .with_target("reqwest", LevelFilter::INFO.min(level.into()))
        .with_target("rustls", LevelFilter::INFO.min(level.into()))
        .with_target("h2", LevelFilter::INFO.min(level.into()));
    let registry = tracing_subscriber::registry().with(filter);
    // A second initialisation (only possible in tests) keeps the first one.
    let _ = match format {
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .with_span_name(false)
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
}
