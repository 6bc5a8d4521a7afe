//! The built `partner-center-exporter` binary as a user runs it: exit codes,
//! `--config.check`, flags, logs on standard error, the demo's endpoints and
//! `/metrics`, several listen addresses, shutdown on SIGTERM and SIGINT, and
//! a configuration file run against a fake Partner Center on 127.0.0.1.

use crate::common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{ExporterProcess, Exposition, Scrape, describe, promtool_check_metrics, text};
use partner_center_exporter::EXIT_CONFIG_ERROR;
use partner_center_exporter::demo::{CONTOSO_TENANT, DEMO_TENANTS, FABRIKAM_TENANT};

const VERSION: &str = env!("CARGO_PKG_VERSION");

const PERCENT: &str = "partner_center_license_usage_prorated_percent";
const PROCESSED: &str = "partner_center_license_usage_processed_timestamp_seconds";

/// The (workload, service, channel) sets of Microsoft's documented example.
const DOCUMENTED_SERIES: [(&str, &str, &str); 5] = [
    ("Microsoft Dynamics CRM", "crm", "reseller"),
    ("SharePoint", "crm", "reseller"),
    ("Exchange", "o365", "reseller"),
    ("SharePoint", "o365", "reseller"),
    ("Skype For Business", "o365", "reseller"),
];

/// Longest wait for a process that should exit on its own (config errors,
/// flag errors, `--version`): generous for a loaded machine, but finite.
const EXIT_LIMIT: Duration = Duration::from_secs(20);
/// Longest wait for a log line of a starting exporter.
const LOG_LIMIT: Duration = Duration::from_secs(20);
/// Longest wait for a demo poll to notice the start or end of a simulated
/// outage: a poll interval (15 s), the retries of a failing poll (about
/// 3.5 s), and room for a loaded machine.
const OUTAGE_LIMIT: Duration = Duration::from_secs(45);
/// Longest wait for the exit after SIGTERM: above the 10 s connection grace,
/// so only a real hang fails.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Process helpers
// ---------------------------------------------------------------------------

/// Runs the binary with `args` in `dir` (if given) and waits, within
/// [`EXIT_LIMIT`], for it to exit by itself.
fn run_in(dir: Option<&Path>, args: &[&str]) -> Output {
    ExporterProcess::run_to_exit(dir, args, EXIT_LIMIT)
}

fn run(args: &[&str]) -> Output {
    run_in(None, args)
}

async fn get(client: &reqwest::Client, address: SocketAddr, path: &str) -> reqwest::Response {
    client
        .get(format!("http://{address}{path}"))
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {path} on {address}: {err}"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn midnight_utc(unix_seconds: u64) -> u64 {
    unix_seconds - unix_seconds % 86_400
}

// ---------------------------------------------------------------------------
// Configuration files
// ---------------------------------------------------------------------------

/// A temporary directory with a token file and a configuration file.
struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("token"), "access-token\n").expect("write token");
        Self { dir }
    }

    fn with_config(yaml: &str) -> Self {
        let dir = Self::new();
        std::fs::write(dir.config_path(), yaml).expect("write config");
        dir
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("exporter.yml")
    }

    fn config_flag(&self) -> String {
        format!("--config.file={}", self.config_path().display())
    }
}

/// The example configuration's keys, pointing at the token file next to it.
const GOOD_CONFIG: &str = "\
partner_center:
  base_url: https://api.partnercenter.microsoft.com
  application_name: partner-center-exporter
  locale: en-US
  request_timeout: 30s
  max_pages: 100
auth:
  bearer_token_file: token
poll:
  interval: 15m
  timeout: 2m
";

// ---------------------------------------------------------------------------
// --config.check
// ---------------------------------------------------------------------------

#[test]
fn config_check_accepts_a_good_file() {
    let dir = ConfigDir::with_config(GOOD_CONFIG);
    let output = run(&[&dir.config_flag(), "--config.check"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("configuration is valid"),
        "{}",
        describe(&output)
    );
    assert!(
        stdout.contains(&dir.config_path().display().to_string()),
        "stdout must name the file: {}",
        describe(&output)
    );
    assert!(
        !text(&output.stderr).contains("warning"),
        "a good file gives no warning: {}",
        describe(&output)
    );
}

#[test]
fn config_check_accepts_the_shipped_example_apart_from_its_paths() {
    // The example file is what users copy; only its secret files and state
    // directory cannot exist here, so they are pointed into the test's directory.
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/partner-center-exporter.example.yml"
    ))
    .expect("read the example configuration");
    let mut config = example.clone();
    for (shipped, local) in [
        ("/run/secrets/client-secret", "client-secret"),
        ("/run/secrets/refresh-token", "refresh-token"),
        ("/var/lib/partner-center-exporter", "state"),
    ] {
        assert!(
            example.contains(shipped),
            "the example no longer has {shipped}"
        );
        config = config.replace(shipped, local);
    }
    let dir = ConfigDir::with_config(&config);
    std::fs::write(dir.dir.path().join("client-secret"), "secret\n").expect("write");
    std::fs::write(dir.dir.path().join("refresh-token"), "refresh\n").expect("write");
    let output = run(&[&dir.config_flag(), "--config.check"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(text(&output.stdout).contains("configuration is valid"));
    assert!(
        !text(&output.stderr).contains("warning"),
        "the example gives no warning: {}",
        describe(&output)
    );

    // Its commented-out alternative, the bearer token file, is valid too.
    let bearer = "  # bearer_token_file: /run/secrets/partner-center-token";
    assert!(
        example.contains(bearer),
        "the example no longer shows bearer_token_file"
    );
    let app_user_keys = [
        "tenant_id:",
        "client_id:",
        "client_secret_file:",
        "refresh_token_file:",
    ];
    let bearer_only: String = example
        .lines()
        .filter(|line| {
            !app_user_keys
                .iter()
                .any(|key| line.trim_start().starts_with(key))
        })
        .map(|line| {
            if line == bearer {
                "  bearer_token_file: token".to_owned()
            } else {
                line.replace("/var/lib/partner-center-exporter", "state")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = ConfigDir::with_config(&bearer_only);
    let output = run(&[&dir.config_flag(), "--config.check"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn config_check_refuses_bad_files_naming_the_key() {
    struct Case {
        name: &'static str,
        /// `None`: the configuration file does not exist.
        yaml: Option<&'static str>,
        /// Text stderr must contain besides the file name.
        expected: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "unknown key",
            yaml: Some("auth:\n  bearer_token_file: token\npoll:\n  intervall: 5m\n"),
            expected: &["poll.intervall", "line 4"],
        },
        Case {
            name: "wrong type",
            yaml: Some("auth:\n  bearer_token_file: token\npartner_center:\n  max_pages: lots\n"),
            expected: &["partner_center.max_pages", "lots"],
        },
        Case {
            name: "unparsable duration",
            yaml: Some("auth:\n  bearer_token_file: token\npoll:\n  interval: 15 parsecs\n"),
            expected: &["poll.interval", "15 parsecs", "line 4"],
        },
        Case {
            name: "duration without a unit",
            yaml: Some("auth:\n  bearer_token_file: token\npoll:\n  timeout: 300\n"),
            expected: &["poll.timeout", "unit"],
        },
        Case {
            name: "missing token file",
            yaml: Some("auth:\n  bearer_token_file: no-such-token\n"),
            expected: &["auth.bearer_token_file", "no-such-token"],
        },
        Case {
            name: "missing auth section",
            yaml: Some("poll:\n  interval: 5m\n"),
            expected: &["`auth`"],
        },
        Case {
            name: "empty auth section",
            yaml: Some("auth: {}\n"),
            expected: &["auth", "bearer_token_file"],
        },
        Case {
            name: "empty file",
            yaml: Some(""),
            expected: &["empty", "auth"],
        },
        Case {
            name: "file does not exist",
            yaml: None,
            expected: &["cannot read configuration file"],
        },
    ];
    for case in cases {
        let dir = match case.yaml {
            Some(yaml) => ConfigDir::with_config(yaml),
            None => ConfigDir::new(),
        };
        let output = run(&[&dir.config_flag(), "--config.check"]);
        let name = case.name;
        assert_eq!(
            output.status.code(),
            Some(i32::from(EXIT_CONFIG_ERROR)),
            "{name}: {}",
            describe(&output)
        );
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("error"),
            "{name}: stderr says it is an error: {}",
            describe(&output)
        );
        assert!(
            stderr.contains(&dir.config_path().display().to_string()),
            "{name}: stderr names the file: {}",
            describe(&output)
        );
        for expected in case.expected {
            assert!(
                stderr.contains(expected),
                "{name}: stderr lacks {expected:?}: {}",
                describe(&output)
            );
        }
        assert!(
            !text(&output.stdout).contains("valid"),
            "{name}: stdout must not call it valid: {}",
            describe(&output)
        );
    }
}

#[test]
fn config_check_resolves_the_token_file_against_the_config_directory() {
    // Run from another directory: a relative token path must still be found
    // next to the configuration file, not in the working directory.
    let dir = ConfigDir::with_config("auth:\n  bearer_token_file: token\n");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let output = run_in(
        Some(elsewhere.path()),
        &[&dir.config_flag(), "--config.check"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn config_check_warns_about_a_short_poll_interval() {
    let dir = ConfigDir::with_config("auth:\n  bearer_token_file: token\npoll:\n  interval: 2s\n");
    let output = run(&[&dir.config_flag(), "--config.check"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(text(&output.stdout).contains("configuration is valid"));
    let stderr = text(&output.stderr);
    let warning = stderr
        .lines()
        .find(|line| line.contains("warning"))
        .unwrap_or_else(|| panic!("no warning: {}", describe(&output)));
    assert!(warning.contains("poll.interval"), "{warning}");
    assert!(warning.contains("2s"), "{warning}");
}

/// Two tenants: `contoso-eu` (App+User, the global cloud, with the
/// per-customer licences turned on) and `contoso-usgov` (a bearer token
/// file, its own API root); the top-level sections are their defaults.
const TWO_TENANTS: &str = "\
partner_center:
  max_pages: 50
sources:
  customer_licenses:
    interval: 2h
state_dir: state
tenants:
  - name: contoso-eu
    auth:
      tenant_id: contoso.onmicrosoft.com
      client_id: 3f2c5e2a-0000-4000-8000-00000000000a
      client_secret_file: client-secret
    sources:
      customer_licenses:
        enabled: true
  - name: contoso-usgov
    auth:
      bearer_token_file: token
    partner_center:
      base_url: https://api.partnercenter.example.us
";

impl ConfigDir {
    /// A directory with [`TWO_TENANTS`] changed by `edit`, and the files it names.
    fn with_two_tenants(edit: impl FnOnce(&str) -> String) -> Self {
        let dir = Self::with_config(&edit(TWO_TENANTS));
        std::fs::write(dir.dir.path().join("client-secret"), "secret\n").expect("write");
        dir
    }
}

#[test]
fn config_check_lists_each_tenant_with_its_auth_api_and_sources() {
    let dir = ConfigDir::with_two_tenants(str::to_owned);
    let output = run(&[&dir.config_flag(), "--config.check"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    let state = dir.dir.path().join("state");
    let expected = [
        format!("{}: configuration is valid", dir.config_path().display()),
        "tenant contoso-eu: auth: App+User refresh token for contoso.onmicrosoft.com at \
         Entra ID authority https://login.microsoftonline.com/; no refresh token yet: \
         run `partner-center-exporter login --tenant contoso-eu`"
            .to_owned(),
        "tenant contoso-eu: API: https://api.partnercenter.microsoft.com/".to_owned(),
        format!(
            "tenant contoso-eu: state_dir: {}",
            state.join("contoso-eu").display()
        ),
        "tenant contoso-eu: source license_usage: enabled, every 15m".to_owned(),
        "tenant contoso-eu: source license_deployment: enabled, every 15m".to_owned(),
        "tenant contoso-eu: source customer_licenses: enabled, every 2h, the customer listing \
         and one request per covered customer"
            .to_owned(),
        format!(
            "tenant contoso-usgov: auth: bearer token file {}",
            dir.dir.path().join("token").display()
        ),
        "tenant contoso-usgov: API: https://api.partnercenter.example.us/".to_owned(),
        format!(
            "tenant contoso-usgov: state_dir: {}",
            state.join("contoso-usgov").display()
        ),
        "tenant contoso-usgov: source license_usage: enabled, every 15m".to_owned(),
        "tenant contoso-usgov: source license_deployment: enabled, every 15m".to_owned(),
    ];
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "{}",
        describe(&output)
    );
    assert!(
        text(&output.stderr).is_empty(),
        "no warning: {}",
        describe(&output)
    );
}

#[test]
fn the_shipped_examples_tenants_are_valid_once_uncommented() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/partner-center-exporter.example.yml"
    ))
    .expect("read the example configuration");
    let mut config = String::new();
    let mut in_auth = false;
    let mut in_tenants = false;
    for line in example.lines() {
        // The top-level auth section goes: tenants replace it.
        if line == "auth:" {
            in_auth = true;
            continue;
        }
        if in_auth && (line.is_empty() || line.starts_with(' ')) {
            continue;
        }
        in_auth = false;
        if line == "# tenants:" {
            in_tenants = true;
        } else if !line.starts_with("#   ") {
            in_tenants = false;
        }
        let line = match line.strip_prefix("# ") {
            Some(uncommented) if in_tenants => uncommented,
            _ => line,
        };
        config.push_str(line);
        config.push('\n');
    }
    assert!(
        config.contains("\ntenants:\n"),
        "the example no longer shows tenants"
    );
    for (shipped, local) in [
        ("/run/secrets/contoso-eu-client-secret", "client-secret-eu"),
        (
            "/run/secrets/contoso-usgov-client-secret",
            "client-secret-usgov",
        ),
        ("/var/lib/partner-center-exporter", "state"),
    ] {
        assert!(
            config.contains(shipped),
            "the example no longer has {shipped}"
        );
        config = config.replace(shipped, local);
    }
    let dir = ConfigDir::with_config(&config);
    for file in ["client-secret-eu", "client-secret-usgov"] {
        std::fs::write(dir.dir.path().join(file), "secret\n").expect("write");
    }
    let output = run(&[&dir.config_flag(), "--config.check"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    for expected in [
        "tenant contoso-eu: source customer_licenses: enabled, every 1h",
        "tenant contoso-usgov: auth: App+User refresh token for contoso.onmicrosoft.us at \
         Entra ID authority https://login.microsoftonline.us/",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected}: {}",
            describe(&output)
        );
    }
}

#[test]
fn config_check_refuses_bad_tenants_naming_them() {
    /// A case's name, how it changes [`TWO_TENANTS`], and what stderr says.
    type Case = (&'static str, fn(&str) -> String, &'static [&'static str]);
    let cases: [Case; 7] = [
        (
            "an error inside a tenant",
            |yaml| {
                yaml.replace(
                    "      base_url: https://api.partnercenter.example.us\n",
                    "      base_url: https://api.partnercenter.example.us\n      max_pages: 0\n",
                )
            },
            &["tenants[1] (contoso-usgov): partner_center.max_pages: must be at least 1"],
        ),
        (
            "two tenants of one name",
            |yaml| yaml.replace("name: contoso-usgov", "name: contoso-eu"),
            &["tenants: tenants[0] and tenants[1] are both named contoso-eu"],
        ),
        (
            "a name that is no label value",
            |yaml| yaml.replace("name: contoso-usgov", "name: Contoso US"),
            &[
                "tenants[1].name: \"Contoso US\" is not a valid tenant name",
                "a-z, 0-9, _ and -",
            ],
        ),
        (
            "a shared refresh token file",
            |yaml| {
                yaml.replace(
                    "      client_secret_file: client-secret\n",
                    "      client_secret_file: client-secret\n      refresh_token_file: token\n",
                )
                .replace(
                    "      bearer_token_file: token\n",
                    "      tenant_id: contoso.onmicrosoft.us\n      client_id: 3f2c5e2a-0000-4000-8000-00000000000b\n      client_secret_file: client-secret\n      refresh_token_file: ./token\n",
                )
            },
            &[
                "tenants[0] (contoso-eu) and tenants[1] (contoso-usgov) have the same auth.refresh_token_file",
            ],
        ),
        (
            "a top-level auth",
            |yaml| format!("auth:\n  bearer_token_file: token\n{yaml}"),
            &["auth: is not used with tenants: each tenant has its own auth"],
        ),
        (
            "no tenant",
            |_| "tenants: []\n".to_owned(),
            &["tenants: is empty"],
        ),
        (
            "an unknown key in a tenant",
            |yaml| {
                yaml.replace(
                    "  - name: contoso-usgov\n",
                    "  - name: contoso-usgov\n    scrape_interval: 1m\n",
                )
            },
            &[
                "tenants[1] (contoso-usgov): ",
                "unknown field `scrape_interval`",
            ],
        ),
    ];
    for (name, edit, expected) in cases {
        let dir = ConfigDir::with_two_tenants(edit);
        let output = run(&[&dir.config_flag(), "--config.check"]);
        assert_eq!(
            output.status.code(),
            Some(i32::from(EXIT_CONFIG_ERROR)),
            "{name}: {}",
            describe(&output)
        );
        let stderr = text(&output.stderr);
        assert!(
            stderr.starts_with(&format!("error: {}: ", dir.config_path().display())),
            "{name}: {}",
            describe(&output)
        );
        for expected in expected {
            assert!(
                stderr.contains(expected),
                "{name}: stderr lacks {expected:?}: {}",
                describe(&output)
            );
        }
        assert!(output.stdout.is_empty(), "{name}: {}", describe(&output));
    }
}

#[test]
fn config_check_refuses_secrets_in_the_environment_with_tenants() {
    let dir = ConfigDir::with_two_tenants(str::to_owned);
    let output = ExporterProcess::command(&[&dir.config_flag(), "--config.check"])
        .env(
            partner_center_exporter::CLIENT_SECRET_ENV,
            "SECRET-FROM-ENV",
        )
        .output()
        .expect("run the exporter binary");
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{}",
        describe(&output)
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "tenants: PARTNER_CENTER_CLIENT_SECRET cannot say which tenant it belongs to; \
             unset it and use each tenant's auth.client_secret_file and auth.refresh_token_file"
        ),
        "{}",
        describe(&output)
    );
    assert!(!stderr.contains("SECRET-FROM-ENV"), "{}", describe(&output));
}

// ---------------------------------------------------------------------------
// Startup failures and flags
// ---------------------------------------------------------------------------

#[test]
fn starting_with_a_bad_config_exits_78_and_logs_the_error() {
    let dir = ConfigDir::with_config(
        "auth:\n  bearer_token_file: token\npoll:\n  interval: 15 parsecs\n",
    );
    // 127.0.0.1:0 so that a wrongly started exporter cannot collide with anything.
    let output = run(&[&dir.config_flag(), "--web.listen-address=127.0.0.1:0"]);
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{}",
        describe(&output)
    );
    let stderr = text(&output.stderr);
    let line = stderr
        .lines()
        .find(|line| line.contains("level=error"))
        .unwrap_or_else(|| panic!("no error logged: {}", describe(&output)));
    assert!(line.contains("poll.interval"), "{line}");
    assert!(line.contains("15 parsecs"), "{line}");
    assert!(
        !stderr.contains("message=listening"),
        "nothing may start on a bad config: {stderr}"
    );
}

#[test]
fn starting_with_a_missing_config_file_exits_78() {
    let dir = ConfigDir::new();
    let output = run(&[&dir.config_flag(), "--web.listen-address=127.0.0.1:0"]);
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{}",
        describe(&output)
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("level=error"), "{stderr}");
    assert!(
        stderr.contains(&dir.config_path().display().to_string()),
        "{stderr}"
    );
}

#[test]
fn command_line_mistakes_exit_2() {
    let cases: [(&[&str], &str); 18] = [
        (&["--no-such-flag"], "--no-such-flag"),
        (&["--log.level=verbose"], "verbose"),
        (&["--log.format=text"], "text"),
        (&["--web.telemetry-path=metrics"], "metrics"),
        (&["--web.telemetry-path=/healthz"], "/healthz"),
        (&["--demo", "--config.check"], "--config.check"),
        (&["--demo", "--config.file=exporter.yml"], "--config.file"),
        (&["--web.listen-address=:abc"], ":abc"),
        (&["--web.listen-address=localhost"], "localhost"),
        (&["--web.listen-address=127.0.0.1:99999"], "127.0.0.1:99999"),
        (&["--web.max-requests=-1"], "-1"),
        // The exporter's own flags mean nothing to `login`, on either side of it.
        (&["--demo", "login"], "--demo"),
        (&["login", "--demo"], "--demo"),
        (&["--config.check", "login"], "--config.check"),
        (
            &["--web.listen-address=127.0.0.1:0", "login"],
            "--web.listen-address",
        ),
        (
            &["login", "--web.telemetry-path=/m"],
            "--web.telemetry-path",
        ),
        (&["login", "--web.max-requests=5"], "--web.max-requests"),
        // Secrets are never flags.
        (&["login", "--refresh-token=x"], "--refresh-token"),
    ];
    for (args, named) in cases {
        let output = run(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            describe(&output)
        );
        let stderr = text(&output.stderr);
        assert!(stderr.contains("error"), "{args:?}: {}", describe(&output));
        assert!(
            stderr.contains(named),
            "{args:?}: stderr should name {named:?}: {}",
            describe(&output)
        );
        assert!(
            output.stdout.is_empty(),
            "{args:?}: nothing on stdout: {}",
            describe(&output)
        );
    }
}

#[test]
fn version_prints_the_cargo_version() {
    let output = run(&["--version"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with(&format!("partner-center-exporter {VERSION} ")),
        "{stdout}"
    );
    assert!(stdout.contains("revision"), "{stdout}");
}

#[test]
fn help_lists_every_flag() {
    let output = run(&["--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    for flag in [
        "--config.file",
        "--config.check",
        "--web.listen-address",
        "--web.telemetry-path",
        "--web.max-requests",
        "--web.config.file",
        "--web.healthz-without-auth",
        "--log.level",
        "--log.format",
        "--demo",
        "--version",
        "--help",
    ] {
        assert!(stdout.contains(flag), "--help lacks {flag}:\n{stdout}");
    }
    assert!(stdout.contains(":10042"), "default port shown:\n{stdout}");
    assert!(
        stdout.contains("login") && stdout.contains("device-code flow"),
        "the login subcommand is listed:\n{stdout}"
    );
}

#[test]
fn login_help_names_its_flags_and_purpose() {
    let output = run(&["login", "--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    for expected in [
        "device-code flow",
        "state_dir",
        "--config.file",
        "--log.level",
        "--log.format",
        "--tenant <NAME>",
        "state_dir/NAME",
    ] {
        assert!(
            stdout.contains(expected),
            "login --help lacks {expected}:\n{stdout}"
        );
    }
    for exporter_only in [
        "--demo",
        "--web.listen-address",
        "--web.max-requests",
        "--config.check",
    ] {
        assert!(
            !stdout.contains(exporter_only),
            "login --help offers {exporter_only}:\n{stdout}"
        );
    }
}

#[test]
fn a_listen_address_in_use_exits_1() {
    // Held for the whole test, so the port is certainly taken.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("local addr");
    let flag = format!("--web.listen-address={address}");
    let output = run(&["--demo", &flag]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("level=error"), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// The demo, end to end
// ---------------------------------------------------------------------------

#[tokio::test]
async fn demo_serves_the_documented_series_and_endpoints() {
    let midnight_before = midnight_utc(unix_now());
    let mut exporter = ExporterProcess::spawn(&["--demo", "--web.listen-address=127.0.0.1:0"]);
    let addresses = exporter.listening_addresses(1).await;
    let address = addresses[0];
    assert!(address.ip().is_loopback(), "{address}");
    assert_ne!(address.port(), 0, "the real port is logged");

    let client = exporter.client();
    let body = exporter.until_tenants_up(&DEMO_TENANTS).await.text;
    let midnight_after = midnight_utc(unix_now());
    promtool_check_metrics(&body);
    let metrics = Exposition::parse(&body);

    assert_eq!(
        metrics.types.get(PERCENT).map(String::as_str),
        Some("gauge")
    );
    assert_eq!(
        metrics.types.get(PROCESSED).map(String::as_str),
        Some("gauge")
    );
    let expected: BTreeSet<(String, String, String)> = DOCUMENTED_SERIES
        .iter()
        .map(|(w, s, c)| ((*w).to_owned(), (*s).to_owned(), (*c).to_owned()))
        .collect();
    for family in [PERCENT, PROCESSED] {
        // The documented series once per tenant, each with its tenant label.
        for tenant in DEMO_TENANTS {
            let mut seen = BTreeSet::new();
            for sample in metrics
                .family(family)
                .into_iter()
                .filter(|sample| sample.labels["tenant"] == tenant)
            {
                let keys: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
                assert_eq!(
                    keys,
                    ["channel", "service", "tenant", "workload"],
                    "{sample:?}"
                );
                seen.insert((
                    sample.labels["workload"].clone(),
                    sample.labels["service"].clone(),
                    sample.labels["channel"].clone(),
                ));
            }
            assert_eq!(seen, expected, "{tenant}: {family} label sets:\n{body}");
        }
        assert_eq!(
            metrics.family(family).len(),
            5 * DEMO_TENANTS.len(),
            "{family}:\n{body}"
        );
    }
    for tenant in DEMO_TENANTS {
        for (workload, service, channel) in DOCUMENTED_SERIES {
            let labels = [
                ("tenant", tenant),
                ("workload", workload),
                ("service", service),
                ("channel", channel),
            ];
            let percent = metrics.value(PERCENT, &labels).expect("percent");
            assert!(
                (0.0..=100.0).contains(&percent),
                "{tenant} {workload}/{service}: {percent}"
            );
            let processed = metrics.value(PROCESSED, &labels).expect("processed");
            assert!(
                processed == midnight_before as f64 || processed == midnight_after as f64,
                "{tenant} {workload}/{service}: processed {processed}, today's midnight UTC is {midnight_after}"
            );
        }
        assert_eq!(
            metrics.value(
                "partner_center_items_skipped_total",
                &[("tenant", tenant), ("source", "license_usage")]
            ),
            Some(0.0),
            "{tenant}"
        );
    }
    let percents = |tenant: &str| -> Vec<f64> {
        metrics
            .family(PERCENT)
            .into_iter()
            .filter(|sample| sample.labels["tenant"] == tenant)
            .map(|sample| sample.value)
            .collect()
    };
    assert_ne!(
        percents(CONTOSO_TENANT),
        percents(FABRIKAM_TENANT),
        "each tenant's figures are its own:\n{body}"
    );
    let build_info = metrics.family("partner_center_exporter_build_info");
    assert_eq!(build_info.len(), 1, "{body}");
    assert_eq!(build_info[0].labels["version"], VERSION);
    assert_eq!(build_info[0].value, 1.0);
    assert!(
        !metrics.family("process_start_time_seconds").is_empty(),
        "process metrics are served:\n{body}"
    );

    let landing = get(&client, address, "/").await;
    assert_eq!(landing.status(), 200);
    assert!(
        landing.headers()["content-type"]
            .to_str()
            .expect("ASCII")
            .starts_with("text/html"),
        "{:?}",
        landing.headers()
    );
    let page = landing.text().await.expect("landing page");
    assert!(page.contains(VERSION), "{page}");
    assert!(page.contains("href=\"/metrics\""), "{page}");

    let healthz = get(&client, address, "/healthz").await;
    assert_eq!(healthz.status(), 200);
    // Ready once every source has finished its first poll; the budget
    // spaces the two sources' first requests.
    common::wait_for(Duration::from_secs(10), "/readyz to answer 200", || async {
        get(&client, address, "/readyz").await.status() == 200
    })
    .await;
    let readyz = get(&client, address, "/readyz").await;
    let body = readyz.text().await.expect("readiness");
    assert!(
        body.starts_with("ready\ncontoso-eu/license_usage: up, 5 series\n"),
        "{body}"
    );
    assert!(
        body.contains("\nfabrikam-us/license_usage: up, 5 series\n"),
        "{body}"
    );
    let unknown = get(&client, address, "/no-such-page").await;
    assert_eq!(unknown.status(), 404);
    let post = client
        .post(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("POST /metrics");
    assert_eq!(post.status(), 405);
    let allow = post
        .headers()
        .get("allow")
        .map(|v| v.to_str().expect("ASCII"));
    assert!(
        allow.is_some_and(|allow| allow.contains("GET")),
        "405 names the allowed methods: {allow:?}"
    );

    // A user sees no error or warning in a healthy demo but the one it
    // shows on purpose: the customer without a GDAP role, named once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = exporter.log_lines();
    let warnings: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("level=error") || line.contains("level=warn"))
        .collect();
    assert!(
        warnings
            .iter()
            .all(|line| line.contains("source=customer_licenses")
                && line.contains("reason=forbidden")),
        "{}",
        exporter.log_text()
    );
    assert!(warnings.len() <= 1, "{}", exporter.log_text());
}

#[tokio::test]
async fn demo_serves_every_per_customer_family_with_one_customer_refused() {
    let mut exporter = ExporterProcess::spawn(&["--demo", "--web.listen-address=127.0.0.1:0"]);
    let address = exporter.listening_addresses(1).await[0];
    // The fan-out paces its 36 requests under the tenant's budget (one
    // every 50 ms for contoso-eu, every 200 ms for fabrikam-us): seconds,
    // more on a busy machine.
    let metrics = exporter
        .scrape_until(Duration::from_secs(90), |metrics| {
            DEMO_TENANTS.iter().all(|tenant| {
                ["customer_licenses", "customer_usage", "customer_deployment"]
                    .iter()
                    .all(|source| {
                        metrics.value(
                            "partner_center_up",
                            &[("tenant", tenant), ("source", source)],
                        ) == Some(1.0)
                    })
            })
        })
        .await;
    promtool_check_metrics(&metrics.text);
    let of_tenant = |family: &str, tenant: &str| -> Vec<&common::exposition::Sample> {
        metrics
            .family(family)
            .into_iter()
            .filter(|sample| sample.labels.get("tenant").map(String::as_str) == Some(tenant))
            .collect()
    };
    for family in [
        "partner_center_customer_licenses",
        "partner_center_customer_licenses_consumed",
        "partner_center_customer_sku_info",
        "partner_center_customer_info",
        "partner_center_customer_workload_licenses_active",
        "partner_center_customer_workload_licenses_qualified",
        "partner_center_product_info",
        "partner_center_workload_info",
        "partner_center_customer_product_licenses_deployed",
        "partner_center_customer_product_licenses_sold",
        "partner_center_customer_up",
        "partner_center_customer_errors_total",
    ] {
        for tenant in DEMO_TENANTS {
            assert!(
                !of_tenant(family, tenant).is_empty(),
                "{family} missing for {tenant}:\n{}",
                metrics.text
            );
        }
        assert_eq!(
            of_tenant(family, CONTOSO_TENANT).len() + of_tenant(family, FABRIKAM_TENANT).len(),
            metrics.family(family).len(),
            "every {family} series names its tenant"
        );
    }
    let customers = of_tenant("partner_center_customer_info", CONTOSO_TENANT).len();
    assert!(
        (25..=40).contains(&customers),
        "about 30 customers, not {customers}"
    );
    let fabrikam_customers = of_tenant("partner_center_customer_info", FABRIKAM_TENANT).len();
    assert!(
        (5..=8).contains(&fabrikam_customers),
        "a few customers of fabrikam-us, not {fabrikam_customers}"
    );
    // Customers, products and workloads of its own.
    for (family, label) in [
        ("partner_center_customer_info", "customer_tenant_id"),
        ("partner_center_customer_info", "customer_name"),
        ("partner_center_product_info", "product_id"),
        ("partner_center_workload_info", "workload_code"),
    ] {
        let values = |tenant: &str| -> BTreeSet<String> {
            of_tenant(family, tenant)
                .iter()
                .map(|sample| sample.labels[label].clone())
                .collect()
        };
        assert!(
            values(CONTOSO_TENANT).is_disjoint(&values(FABRIKAM_TENANT)),
            "{family} {label}: {:?} and {:?}",
            values(CONTOSO_TENANT),
            values(FABRIKAM_TENANT)
        );
    }
    let down: Vec<_> = metrics
        .family("partner_center_customer_up")
        .into_iter()
        .filter(|sample| sample.value == 0.0)
        .collect();
    assert_eq!(down.len(), 1, "one customer answers 403: {down:?}");
    assert_eq!(down[0].labels["tenant"], CONTOSO_TENANT, "{down:?}");
    assert!(
        of_tenant("partner_center_customer_up", FABRIKAM_TENANT)
            .iter()
            .all(|sample| sample.value == 1.0),
        "every customer of fabrikam-us answers:\n{}",
        metrics.text
    );
    let reasons = metrics.family("partner_center_customer_error_reason");
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0].labels["reason"], "forbidden");
    assert_eq!(reasons[0].labels["tenant"], CONTOSO_TENANT);
    // The free SKU with 10,000 units is left out by the default filter.
    assert!(
        !metrics
            .family("partner_center_customer_sku_info")
            .iter()
            .any(|sample| sample.labels["sku_part_number"] == "FLOW_FREE"),
        "{}",
        metrics.text
    );
    // The landing page says how each tenant's customers fared.
    let page = get(&exporter.client(), address, "/")
        .await
        .text()
        .await
        .expect("landing page");
    let row = |tenant: &str| -> String {
        let start = format!("<tr><td>{tenant}</td><td>customer_licenses</td>");
        page.lines()
            .find(|line| line.starts_with(&start))
            .unwrap_or_else(|| panic!("no customer_licenses row of {tenant}:\n{page}"))
            .to_owned()
    };
    let contoso = row(CONTOSO_TENANT);
    assert!(
        contoso.contains(&format!(
            "; {customers} customers, 1 failing (see partner_center_customer_up)"
        )),
        "{contoso}"
    );
    let fabrikam = row(FABRIKAM_TENANT);
    assert!(
        fabrikam.contains(&format!("; {fabrikam_customers} customers</td>")),
        "{fabrikam}"
    );
}

#[tokio::test]
async fn demo_serves_metrics_on_a_custom_telemetry_path() {
    let mut exporter = ExporterProcess::spawn(&[
        "--demo",
        "--web.listen-address=127.0.0.1:0",
        "--web.telemetry-path=/custom/metrics",
    ]);
    let address = exporter.listening_addresses(1).await[0];
    let client = exporter.client();
    let custom = get(&client, address, "/custom/metrics").await;
    assert_eq!(custom.status(), 200);
    let body = custom.text().await.expect("body");
    assert!(body.contains("partner_center_up"), "{body}");
    assert_eq!(get(&client, address, "/metrics").await.status(), 404);
    let page = get(&client, address, "/")
        .await
        .text()
        .await
        .expect("landing page");
    assert!(page.contains("href=\"/custom/metrics\""), "{page}");
}

#[tokio::test]
async fn sigterm_stops_the_demo_cleanly() {
    // The demo keeps its access token in a temporary directory; point
    // TMPDIR at one of ours to see that it is cleaned up.
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut command = ExporterProcess::command(&["--demo", "--web.listen-address=127.0.0.1:0"]);
    command.env("TMPDIR", tmp.path());
    let mut exporter = ExporterProcess::spawn_command(command);
    exporter.listening_addresses(1).await;
    // The harness's one client keeps its idle keep-alive connection open
    // from here on, as Prometheus does.
    exporter.until_tenants_up(&DEMO_TENANTS).await;
    let leftovers = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("read TMPDIR")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    };
    assert_eq!(
        leftovers(tmp.path()).len(),
        1,
        "the demo's token directory, both tenants' in it, is in TMPDIR while it runs"
    );

    exporter.terminate();
    let status = exporter.wait_exit(SHUTDOWN_LIMIT).await;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM is a normal stop; stderr:\n{}",
        exporter.log_text()
    );
    let log = exporter.log_text();
    assert!(
        exporter
            .log_lines()
            .iter()
            .any(|line| line.contains("shutting down") && line.contains("signal=SIGTERM")),
        "the signal is logged:\n{log}"
    );
    assert!(
        exporter
            .log_lines()
            .iter()
            .any(|line| line.contains("message=stopped")),
        "the stop is logged:\n{log}"
    );
    assert!(
        !exporter
            .log_lines()
            .iter()
            .any(|line| line.contains("level=error")),
        "{log}"
    );
    assert_eq!(
        leftovers(tmp.path()),
        Vec::<String>::new(),
        "the demo's token directory is removed on exit"
    );
}

#[tokio::test]
async fn sigint_stops_the_demo_too() {
    let mut exporter = ExporterProcess::spawn(&["--demo", "--web.listen-address=127.0.0.1:0"]);
    exporter.listening_addresses(1).await;
    exporter.until_tenants_up(&DEMO_TENANTS).await;
    exporter.signal("-INT");
    let status = exporter.wait_exit(SHUTDOWN_LIMIT).await;
    assert_eq!(status.code(), Some(0), "{}", exporter.log_text());
    assert!(
        exporter
            .log_lines()
            .iter()
            .any(|line| line.contains("shutting down") && line.contains("signal=SIGINT")),
        "{}",
        exporter.log_text()
    );
}

#[tokio::test]
async fn sigusr1_starts_and_ends_a_simulated_outage_of_the_first_demo_tenant() {
    let mut exporter = ExporterProcess::spawn(&["--demo", "--web.listen-address=127.0.0.1:0"]);
    exporter.listening_addresses(1).await;
    exporter.until_tenants_up(&DEMO_TENANTS).await;
    let up = |m: &Exposition, tenant: &str, source: &str| {
        m.value(
            "partner_center_up",
            &[("tenant", tenant), ("source", source)],
        )
    };
    let last_success = |m: &Exposition, tenant: &str| {
        m.value(
            "partner_center_last_success_timestamp_seconds",
            &[("tenant", tenant), ("source", "license_usage")],
        )
        .unwrap_or(0.0)
    };

    exporter.signal("-USR1");
    let started = exporter
        .wait_for_line("the outage start", LOG_LIMIT, |line| {
            line.contains("outage started")
        })
        .await;
    assert!(started.contains("level=info"), "{started}");
    assert!(started.contains("tenant=contoso-eu"), "{started}");
    let outage_began = unix_now() as f64;
    // The next poll, at most a poll interval away, meets 503s, retries them
    // and fails; the last good values stay served. The other tenant's
    // Partner Center keeps answering: its polls in the meantime succeed.
    let during = exporter
        .scrape_until(OUTAGE_LIMIT, |m| {
            up(m, CONTOSO_TENANT, "license_usage") == Some(0.0)
                && last_success(m, FABRIKAM_TENANT) >= outage_began
        })
        .await;
    assert!(
        during
            .value(
                "partner_center_poll_errors_total",
                &[
                    ("tenant", CONTOSO_TENANT),
                    ("source", "license_usage"),
                    ("reason", "http")
                ]
            )
            .is_some_and(|errors| errors >= 1.0),
        "a 503 fails the poll with reason http:\n{}",
        during.text
    );
    assert!(
        during
            .value(
                "partner_center_request_retries_total",
                &[("reason", "http"), ("tenant", CONTOSO_TENANT)]
            )
            .is_some_and(|retries| retries >= 1.0),
        "503 is retried:\n{}",
        during.text
    );
    assert_eq!(during.family(PERCENT).len(), 10, "{}", during.text);
    for source in [
        "license_usage",
        "license_deployment",
        "customer_licenses",
        "customer_usage",
        "customer_deployment",
        "subscriptions",
    ] {
        assert_eq!(
            up(&during, FABRIKAM_TENANT, source),
            Some(1.0),
            "fabrikam-us {source} stays up:\n{}",
            during.text
        );
        assert_eq!(
            during.value(
                "partner_center_poll_errors_total",
                &[
                    ("tenant", FABRIKAM_TENANT),
                    ("source", source),
                    ("reason", "http")
                ]
            ),
            Some(0.0),
            "fabrikam-us {source}:\n{}",
            during.text
        );
    }
    assert_eq!(
        during.value(
            "partner_center_request_retries_total",
            &[("reason", "http"), ("tenant", FABRIKAM_TENANT)]
        ),
        Some(0.0),
        "{}",
        during.text
    );

    exporter.signal("-USR1");
    let ended = exporter
        .wait_for_line("the outage end", LOG_LIMIT, |line| {
            line.contains("outage ended")
        })
        .await;
    assert!(ended.contains("level=info"), "{ended}");
    let after = exporter
        .scrape_until(OUTAGE_LIMIT, |m| {
            up(m, CONTOSO_TENANT, "license_usage") == Some(1.0)
        })
        .await;
    assert_eq!(
        up(&after, FABRIKAM_TENANT, "license_usage"),
        Some(1.0),
        "{}",
        after.text
    );
    assert!(exporter.is_running(), "SIGUSR1 does not stop the demo");
}

#[tokio::test]
async fn json_logs_are_json_objects() {
    let mut exporter = ExporterProcess::spawn(&[
        "--demo",
        "--web.listen-address=127.0.0.1:0",
        "--log.format=json",
    ]);
    let listening = exporter
        .wait_for_line("a JSON listening line", LOG_LIMIT, |line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|value| value["message"] == "listening")
        })
        .await;
    let listening: serde_json::Value = serde_json::from_str(&listening).expect("JSON");
    let address: SocketAddr = listening["address"]
        .as_str()
        .unwrap_or_else(|| panic!("address field: {listening}"))
        .parse()
        .expect("host:port");
    exporter
        .wait_for_line("a JSON poll succeeded line", LOG_LIMIT, |line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|value| value["message"] == "poll succeeded")
        })
        .await;
    let client = exporter.client();
    assert_eq!(get(&client, address, "/healthz").await.status(), 200);

    exporter.terminate();
    let status = exporter.wait_exit(SHUTDOWN_LIMIT).await;
    assert_eq!(status.code(), Some(0), "{}", exporter.log_text());
    assert!(exporter.log_lines().len() >= 4, "{}", exporter.log_text());
    for line in &exporter.log_lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        let object = value
            .as_object()
            .unwrap_or_else(|| panic!("not a JSON object: {line}"));
        let level = object.get("level").and_then(serde_json::Value::as_str);
        assert!(
            level.is_some_and(|level| !level.is_empty()),
            "no level: {line}"
        );
        let message = object.get("message").and_then(serde_json::Value::as_str);
        assert!(
            message.is_some_and(|message| !message.is_empty()),
            "no message: {line}"
        );
    }
}

#[test]
fn json_format_applies_to_configuration_errors() {
    let dir = ConfigDir::new();
    let output = run(&[
        &dir.config_flag(),
        "--web.listen-address=127.0.0.1:0",
        "--log.format=json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{}",
        describe(&output)
    );
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!lines.is_empty(), "{}", describe(&output));
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["message"].is_string(), "{line}");
    }
}

#[tokio::test]
async fn every_listen_address_serves() {
    let mut exporter = ExporterProcess::spawn(&[
        "--demo",
        "--web.listen-address=127.0.0.1:0",
        "--web.listen-address=127.0.0.1:0",
    ]);
    let addresses = exporter.listening_addresses(2).await;
    assert_ne!(addresses[0], addresses[1], "two distinct listeners");
    let client = exporter.client();
    for address in addresses {
        assert!(address.ip().is_loopback(), "{address}");
        let response = get(&client, address, "/healthz").await;
        assert_eq!(response.status(), 200, "{address}");
    }
}

#[tokio::test]
async fn a_configured_exporter_polls_the_configured_partner_center() {
    // A fake Partner Center on 127.0.0.1 that answers only with the token
    // from the configured file, so the whole path from configuration file to
    // Authorization header is the binary's own.
    let upstream = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/v1/analytics/licenses/usage"))
        .and(wiremock::matchers::header(
            "authorization",
            "Bearer access-token",
        ))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_raw(common::FIXTURE, "application/json; charset=utf-8"),
        )
        .mount(&upstream)
        .await;
    let dir = ConfigDir::with_config(&format!(
        "partner_center:\n  base_url: {}\n  application_name: cli-test\n  locale: de-DE\n\
         auth:\n  bearer_token_file: token\npoll:\n  interval: 2s\n",
        upstream.uri()
    ));
    let mut exporter =
        ExporterProcess::spawn(&[&dir.config_flag(), "--web.listen-address=127.0.0.1:0"]);
    let address = exporter.listening_addresses(1).await[0];
    let warning = exporter
        .wait_for_line("the short-interval warning", LOG_LIMIT, |line| {
            line.contains("level=warn")
        })
        .await;
    assert!(warning.contains("poll.interval"), "{warning}");

    let client = exporter.client();
    let body = exporter.until_up().await.text;
    promtool_check_metrics(&body);
    let metrics = Exposition::parse(&body);
    assert_eq!(metrics.family(PERCENT).len(), 5, "{body}");
    assert_eq!(
        metrics.value(
            PROCESSED,
            &[
                ("workload", "Exchange"),
                ("service", "o365"),
                ("channel", "reseller")
            ]
        ),
        Some(1_489_017_600.0),
        "2017-03-09T00:00:00+00:00 from the documented example:\n{body}"
    );
    // Ready once every source has finished its first poll; the budget
    // spaces the two sources' first requests.
    common::wait_for(Duration::from_secs(10), "/readyz to answer 200", || async {
        get(&client, address, "/readyz").await.status() == 200
    })
    .await;

    let requests = upstream.received_requests().await.expect("recorded");
    let request = requests.first().expect("at least one poll");
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .map(|value| value.to_str().expect("ASCII").to_owned())
    };
    assert_eq!(
        header("ms-partnercenter-application").as_deref(),
        Some("cli-test")
    );
    assert_eq!(header("x-locale").as_deref(), Some("de-DE"));
    assert!(
        !exporter.log_text().contains("access-token"),
        "the token never appears in logs:\n{}",
        exporter.log_text()
    );
}
