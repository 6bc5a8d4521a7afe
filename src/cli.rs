//! The command line, following the Prometheus exporters' flag conventions.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::config::DEFAULT_CONFIG_FILE;

/// Where the exporter listens unless told otherwise: port 10042 on every
/// interface. Prometheus' 9100–9999 exporter range is fully allocated, so
/// this is a fixed port outside it, documented in README.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":10042";

/// Exit code for a configuration that was refused (sysexits' `EX_CONFIG`),
/// distinct from 1 (a runtime failure) and 2 (a command-line mistake).
pub const EXIT_CONFIG_ERROR: u8 = 78;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "partner-center-exporter",
    version = crate::build_info::LONG_VERSION,
    about = "Prometheus exporter for Microsoft Partner Center license usage",
    long_about = "Polls the Partner Center license usage analytics \
        (GET /v1/analytics/licenses/usage) on an interval and serves the \
        prorated usage per workload, service and channel on the telemetry path."
)]
pub struct Cli {
    /// Path to the YAML configuration file.
    #[arg(long = "config.file", value_name = "PATH", default_value = DEFAULT_CONFIG_FILE)]
    pub config_file: PathBuf,

    /// Validate the configuration file, print the result and exit without starting.
    #[arg(long = "config.check", conflicts_with = "demo")]
    pub config_check: bool,

    /// Address to listen on for web requests, as host:port or :port (all
    /// interfaces). Repeat the flag to listen on several addresses.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDRESS",
        default_value = DEFAULT_LISTEN_ADDRESS,
        action = clap::ArgAction::Append,
        value_parser = parse_listen_address
    )]
    pub listen_addresses: Vec<String>,

    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics", value_parser = parse_telemetry_path)]
    pub telemetry_path: String,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt)]
    pub log_format: LogFormat,

    /// Run against a built-in simulated Partner Center on 127.0.0.1 instead
    /// of the configuration file: no credentials needed.
    #[arg(long = "demo", conflicts_with = "config_file")]
    pub demo: bool,
}

/// Log severities, as `--log.level` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// Log line formats, as `--log.format` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// A listen address is `:port` or `host:port` (IPv6 hosts in brackets),
/// with a port from 0 to 65535. Host names are resolved when binding.
fn parse_listen_address(address: &str) -> Result<String, String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} lacks a port; write host:port or :port"))?;
    port.parse::<u16>()
        .map_err(|_| format!("{address:?} has no valid port (0 to 65535)"))?;
    let bracketed = host.starts_with('[') || host.ends_with(']');
    if bracketed && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("{address:?} has an unbalanced IPv6 bracket"));
    }
    if !bracketed && host.contains(':') {
        return Err(format!(
            "{address:?}: put an IPv6 address in brackets, like [::1]:10042"
        ));
    }
    if host.chars().any(char::is_whitespace) {
        return Err(format!("{address:?} contains white space"));
    }
    Ok(address.to_owned())
}

/// The telemetry path must be an absolute path that does not shadow the
/// exporter's other endpoints.
fn parse_telemetry_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/'"));
    }
    if matches!(path, "/" | "/healthz" | "/readyz") {
        return Err(format!("{path:?} is reserved for another endpoint"));
    }
    if path.contains(['?', '#']) || path.chars().any(char::is_whitespace) {
        return Err(format!("{path:?} is not a plain URL path"));
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_flag_has_help() {
        let command = Cli::command();
        command.clone().debug_assert();
        for arg in command.get_arguments() {
            assert!(
                arg.get_help().is_some(),
                "flag {:?} has no help",
                arg.get_id()
            );
        }
    }

    #[test]
    fn defaults_follow_prometheus_conventions() {
        let cli = Cli::try_parse_from(["partner-center-exporter"]).expect("parses");
        assert_eq!(cli.config_file, PathBuf::from(DEFAULT_CONFIG_FILE));
        assert_eq!(cli.listen_addresses, vec![":10042"]);
        assert_eq!(cli.telemetry_path, "/metrics");
        assert_eq!(cli.log_level, LogLevel::Info);
        assert_eq!(cli.log_format, LogFormat::Logfmt);
        assert!(!cli.demo && !cli.config_check);
    }

    #[test]
    fn listen_address_is_repeatable() {
        let cli = Cli::try_parse_from([
            "partner-center-exporter",
            "--web.listen-address=127.0.0.1:9000",
            "--web.listen-address",
            "[::1]:9000",
            "--web.listen-address=localhost:9000",
            "--web.listen-address=:0",
        ])
        .expect("parses");
        assert_eq!(
            cli.listen_addresses,
            vec!["127.0.0.1:9000", "[::1]:9000", "localhost:9000", ":0"]
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            ["partner-center-exporter", "--log.level=verbose"],
            ["partner-center-exporter", "--log.format=text"],
            ["partner-center-exporter", "--web.telemetry-path=metrics"],
            ["partner-center-exporter", "--web.telemetry-path=/healthz"],
            ["partner-center-exporter", "--web.listen-address=:abc"],
            ["partner-center-exporter", "--web.listen-address=localhost"],
            [
                "partner-center-exporter",
                "--web.listen-address=127.0.0.1:99999",
            ],
            ["partner-center-exporter", "--web.listen-address=::1:9000"],
            ["partner-center-exporter", "--web.listen-address=[::1:9000"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn demo_excludes_config_flags() {
        for flag in ["--config.check", "--config.file=x.yml"] {
            assert!(
                Cli::try_parse_from(["partner-center-exporter", "--demo", flag]).is_err(),
                "{flag}"
            );
        }
    }
}
