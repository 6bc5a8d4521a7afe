//! The command line, following the Prometheus exporters' flag conventions.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_CONFIG_FILE;
use crate::http::server::DEFAULT_MAX_REQUESTS;

/// Where the exporter listens unless told otherwise: port 10042 on every
/// interface. Prometheus' 9100–9999 exporter range is fully allocated, so
/// this is a fixed port outside it, documented in README.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":10042";

/// Exit code for a configuration that was refused (sysexits' `EX_CONFIG`),
/// distinct from 1 (a runtime failure) and 2 (a command-line mistake).
pub const EXIT_CONFIG_ERROR: u8 = 78;

/// Exit code after an interrupted `login` (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "partner-center-exporter",
    version = crate::build_info::LONG_VERSION,
    about = "Prometheus exporter for Microsoft Partner Center license data",
    long_about = "Polls Partner Center's license datasets (the sources: license \
        usage per workload, service and channel; license deployment per service \
        and channel), each on its own interval, and serves them with each \
        source's health on the telemetry path.",
    // `--help` is the Prometheus exporters' way; a `help` subcommand would be a second one.
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Path to the YAML configuration file.
    #[arg(long = "config.file", value_name = "PATH", default_value = DEFAULT_CONFIG_FILE, global = true)]
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

    /// Maximum number of parallel scrape requests. Use 0 to disable.
    #[arg(long = "web.max-requests", value_name = "N", default_value_t = DEFAULT_MAX_REQUESTS)]
    pub max_requests: usize,

    /// Path to a web configuration file in Prometheus exporter-toolkit's
    /// format (TLS, client certificates, basic auth, response headers, rate
    /// limit). Re-read when it or a file it names changes. Without it the
    /// exporter serves plain HTTP to anyone.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Answer /healthz without basic auth and rate limit, for orchestrator
    /// probes that cannot send credentials. TLS, and a client certificate
    /// if the web configuration requires one, still apply.
    #[arg(long = "web.healthz-without-auth", requires = "web_config_file")]
    pub healthz_without_auth: bool,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info, global = true)]
    pub log_level: LogLevel,

    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt, global = true)]
    pub log_format: LogFormat,

    /// Run against two built-in simulated partner tenants (Partner Center
    /// and Entra ID) on 127.0.0.1 instead of the configuration file: no
    /// credentials needed.
    #[arg(long = "demo", conflicts_with = "config_file")]
    pub demo: bool,

    /// What to do instead of running the exporter.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands: one-off tasks instead of the exporter.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Sign in once with the device-code flow and store the refresh token in state_dir
    #[command(
        long_about = "Sign in once with the device-code flow and store the refresh token in state_dir.\n\n\
        Runs the OAuth 2.0 device-code flow against auth.tenant_id and auth.client_id of the \
        configuration file: prints a URL and a code, waits while you enter the code there and \
        sign in as a Partner Center admin agent (MFA included), then stores the refresh token \
        in state_dir, where the exporter picks it up. Needs the App+User method, state_dir, and \
        \"Allow public client flows\" on the app registration.\n\n\
        With several tenants in the configuration file, --tenant names the one to sign in; its \
        refresh token goes to its own directory, state_dir/NAME, and the tenants that still \
        need a sign-in are listed afterwards."
    )]
    Login(LoginArgs),
}

/// The flags of `login`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct LoginArgs {
    /// The tenant to sign in: the name of one entry of the configuration
    /// file's tenants. Needed when it lists several.
    #[arg(long = "tenant", value_name = "NAME")]
    pub tenant: Option<String>,
}

/// Flags of the exporter itself, meaningless for a subcommand: their clap
/// ids and how they are written.
const EXPORTER_ONLY_FLAGS: [(&str, &str); 7] = [
    ("demo", "--demo"),
    ("config_check", "--config.check"),
    ("listen_addresses", "--web.listen-address"),
    ("telemetry_path", "--web.telemetry-path"),
    ("max_requests", "--web.max-requests"),
    ("web_config_file", "--web.config.file"),
    ("healthz_without_auth", "--web.healthz-without-auth"),
];

impl Cli {
    /// Parses the process's arguments; on a mistake prints it and exits
    /// with 2 (or 0 for `--help` and `--version`), like [`Parser::parse`].
    pub fn parse_args() -> Self {
        Self::try_parse_args_from(std::env::args_os()).unwrap_or_else(|err| err.exit())
    }

    /// Parses `args` (the program name first), refusing exporter-only flags
    /// next to a subcommand.
    ///
    /// Those flags are checked here rather than with clap's
    /// `args_conflicts_with_subcommands`, which would also refuse the global
    /// `--config.file` before `login`.
    pub fn try_parse_args_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Self::command();
        let matches = command.try_get_matches_from_mut(args)?;
        if let Some(subcommand) = matches.subcommand_name() {
            for (id, flag) in EXPORTER_ONLY_FLAGS {
                if matches.value_source(id) == Some(ValueSource::CommandLine) {
                    return Err(command.error(
                        clap::error::ErrorKind::ArgumentConflict,
                        format!("the argument '{flag}' cannot be used with the '{subcommand}' subcommand"),
                    ));
                }
            }
        }
        Self::from_arg_matches(&matches).map_err(|err| err.format(&mut command))
    }
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

    #[test]
    fn every_flag_has_help() {
        let mut command = Cli::command();
        command.clone().debug_assert();
        // Building propagates the global flags into the subcommands.
        command.build();
        for arg in command.get_arguments() {
            assert!(
                arg.get_help().is_some(),
                "flag {:?} has no help",
                arg.get_id()
            );
        }
        let mut subcommands = 0;
        for subcommand in command.get_subcommands() {
            subcommands += 1;
            assert!(
                subcommand.get_about().is_some(),
                "subcommand {} has no help",
                subcommand.get_name()
            );
            for arg in subcommand.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "flag {:?} of {} has no help",
                    arg.get_id(),
                    subcommand.get_name()
                );
            }
        }
        assert!(subcommands >= 1, "the login subcommand is checked too");
    }

    #[test]
    fn login_takes_the_global_flags_on_either_side() {
        for args in [
            &["partner-center-exporter", "login", "--config.file=x.yml"][..],
            &["partner-center-exporter", "--config.file=x.yml", "login"],
            &[
                "partner-center-exporter",
                "--log.level=debug",
                "login",
                "--config.file",
                "x.yml",
                "--log.format=json",
            ],
        ] {
            let cli =
                Cli::try_parse_args_from(args).unwrap_or_else(|err| panic!("{args:?}: {err}"));
            assert_eq!(
                cli.command,
                Some(Command::Login(LoginArgs::default())),
                "{args:?}"
            );
            assert_eq!(cli.config_file, PathBuf::from("x.yml"), "{args:?}");
        }
        let cli = Cli::try_parse_args_from([
            "partner-center-exporter",
            "--log.level=debug",
            "login",
            "--log.format=json",
        ])
        .expect("parses");
        assert_eq!(cli.log_level, LogLevel::Debug);
        assert_eq!(cli.log_format, LogFormat::Json);
        assert_eq!(cli.config_file, PathBuf::from(DEFAULT_CONFIG_FILE));
        let cli = Cli::try_parse_args_from(["partner-center-exporter"]).expect("parses");
        assert_eq!(cli.command, None, "no subcommand runs the exporter");
    }

    #[test]
    fn login_takes_a_tenant() {
        for args in [
            &["partner-center-exporter", "login", "--tenant", "contoso-eu"][..],
            &[
                "partner-center-exporter",
                "--config.file=x.yml",
                "login",
                "--tenant=contoso-eu",
            ],
        ] {
            let cli =
                Cli::try_parse_args_from(args).unwrap_or_else(|err| panic!("{args:?}: {err}"));
            assert_eq!(
                cli.command,
                Some(Command::Login(LoginArgs {
                    tenant: Some("contoso-eu".to_owned())
                })),
                "{args:?}"
            );
        }
        for args in [
            &["partner-center-exporter", "--tenant=contoso-eu"][..],
            &["partner-center-exporter", "--tenant=contoso-eu", "login"],
            &["partner-center-exporter", "login", "--tenant"],
        ] {
            let err = Cli::try_parse_args_from(args).expect_err("refused");
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn login_refuses_the_exporters_own_flags() {
        for args in [
            &["partner-center-exporter", "--demo", "login"][..],
            &["partner-center-exporter", "login", "--demo"],
            &["partner-center-exporter", "--config.check", "login"],
            &["partner-center-exporter", "login", "--config.check"],
            &[
                "partner-center-exporter",
                "--web.listen-address=:9000",
                "login",
            ],
            &[
                "partner-center-exporter",
                "login",
                "--web.listen-address=:9000",
            ],
            &[
                "partner-center-exporter",
                "--web.telemetry-path=/m",
                "login",
            ],
            &["partner-center-exporter", "login", "--web.max-requests=5"],
            &[
                "partner-center-exporter",
                "login",
                "--web.config.file=w.yml",
            ],
            &["partner-center-exporter", "login", "--refresh-token=x"],
            &["partner-center-exporter", "login", "extra"],
        ] {
            let err = Cli::try_parse_args_from(args).expect_err("refused");
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn defaults_follow_prometheus_conventions() {
        let cli = Cli::try_parse_from(["partner-center-exporter"]).expect("parses");
        assert_eq!(cli.config_file, PathBuf::from(DEFAULT_CONFIG_FILE));
        assert_eq!(cli.listen_addresses, vec![":10042"]);
        assert_eq!(cli.telemetry_path, "/metrics");
        assert_eq!(cli.max_requests, 40, "node_exporter's default");
        assert_eq!(cli.log_level, LogLevel::Info);
        assert_eq!(cli.log_format, LogFormat::Logfmt);
        assert!(!cli.demo && !cli.config_check);
        assert_eq!(cli.web_config_file, None, "plain HTTP unless asked");
        assert!(!cli.healthz_without_auth);
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
            ["partner-center-exporter", "--web.max-requests=-1"],
            ["partner-center-exporter", "--web.max-requests=many"],
            ["partner-center-exporter", "--web.healthz-without-auth"],
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
