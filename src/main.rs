//! The `partner-center-exporter` binary: parses flags, sets up logging,
//! loads the configuration and hands over to the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use partner_center_exporter::Schedule;
use partner_center_exporter::login::{self, LoginPacing, LoginTarget};
use partner_center_exporter::{AppError, bind_all, build_info, demo, shutdown, telemetry};
use partner_center_exporter::{AuthMethod, Config};
use partner_center_exporter::{Cli, Command, EXIT_CONFIG_ERROR, EXIT_INTERRUPTED};
use partner_center_exporter::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_SHUTDOWN_GRACE, DEFAULT_WRITE_STALL_TIMEOUT,
    ServerSettings,
};
use partner_center_exporter::{WebOptions, WebSecurity};

/// jemalloc hands a poll's large buffers back to the system when they are
/// freed, with no variable to set; glibc's allocator keeps them unless
/// started with `GLIBC_TUNABLES` (see Cargo.toml and docs/performance.md).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    telemetry::init(cli.log_level, cli.log_format);

    if let Some(Command::Login(args)) = &cli.command {
        return run_login(&cli, args.tenant.as_deref());
    }
    if cli.config_check {
        return check_config(&cli);
    }
    let config = if cli.demo {
        None
    } else {
        match Config::load(&cli.config_file) {
            Ok(config) => Some(config),
            Err(err) => {
                tracing::error!(error = %err, "invalid configuration");
                return ExitCode::from(EXIT_CONFIG_ERROR);
            }
        }
    };

    let web = match &cli.web_config_file {
        None => None,
        Some(path) => match WebSecurity::load(path, web_options(&cli)) {
            Ok(web) => Some(web),
            Err(err) => {
                tracing::error!(error = %err, "invalid web configuration");
                return ExitCode::from(EXIT_CONFIG_ERROR);
            }
        },
    };

    raise_open_file_limit();
    let Some(runtime) = build_runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(run(cli, config, web)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is_config_error() => {
            tracing::error!(error = %err, "cannot start");
            ExitCode::from(EXIT_CONFIG_ERROR)
        }
        Err(err) => {
            tracing::error!(error = %err, "exporter failed");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime, with timers and I/O; `None` after logging why it cannot start.
fn build_runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    match builder.enable_all().build() {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            None
        }
    }
}

/// Raises the soft limit on open files to the hard limit, as the Go
/// runtime does for Go exporters: every connection is a file descriptor,
/// and the soft limit systemd gives services (1024) is a few hundred idle
/// clients away from refusing Prometheus. Idle connections are closed after
/// the header-read timeout; this only makes room for a burst of them.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(err) => tracing::warn!(
            error = %err,
            "cannot raise the open file limit; many idle connections may exhaust it"
        ),
    }
}

fn web_options(cli: &Cli) -> WebOptions {
    WebOptions {
        healthz_without_auth: cli.healthz_without_auth,
        ..WebOptions::default()
    }
}

/// `--config.check`: report on the file (and the web configuration file,
/// if one is given) and exit, starting nothing.
fn check_config(cli: &Cli) -> ExitCode {
    let mut valid = match Config::load(&cli.config_file) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("warning: {}: {warning}", cli.config_file.display());
            }
            println!("{}: configuration is valid", cli.config_file.display());
            if config.is_multi_tenant() {
                for (name, tenant) in config.tenant_configs() {
                    print_tenant(name.unwrap_or_default(), tenant);
                }
            } else {
                print_sources(&config, "");
            }
            true
        }
        Err(err) => {
            eprintln!("error: {err}");
            false
        }
    };
    if let Some(path) = &cli.web_config_file {
        match WebSecurity::load(path, web_options(cli)) {
            Ok(web) => println!(
                "{}: web configuration is valid: {}",
                path.display(),
                web.current().summary()
            ),
            Err(err) => {
                eprintln!("error: {err}");
                valid = false;
            }
        }
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG_ERROR)
    }
}

/// The enabled sources of `config`, each on a line of its own after `prefix`.
fn print_sources(config: &Config, prefix: &str) {
    for schedule in Schedule::from_config(config) {
        println!(
            "{prefix}source {}: enabled, every {}{}",
            schedule.source,
            humantime::format_duration(schedule.interval),
            schedule.source.cost()
        );
    }
}

/// One tenant of a file with `tenants`: how it authenticates, where its
/// API is, and its enabled sources, each line starting with its name.
fn print_tenant(name: &str, config: &Config) {
    let prefix = format!("tenant {name}: ");
    match config.auth.method() {
        Ok(AuthMethod::RefreshToken(settings)) => {
            let token = if login::needs_login(config) {
                format!(
                    "; no refresh token yet: run `partner-center-exporter login --tenant {name}`"
                )
            } else {
                String::new()
            };
            println!(
                "{prefix}auth: App+User refresh token for {} at Entra ID authority {}{token}",
                settings.tenant_id, settings.authority
            );
        }
        Ok(AuthMethod::BearerTokenFile(file)) => {
            println!("{prefix}auth: bearer token file {}", file.display());
        }
        // Validation refused every other case.
        Err((key, message)) => println!("{prefix}auth: {key}: {message}"),
    }
    println!("{prefix}API: {}", config.partner_center.base_url);
    if let Some(dir) = &config.state_dir {
        println!("{prefix}state_dir: {}", dir.display());
    }
    print_sources(config, &prefix);
}

/// `login`: the device-code sign-in that stores a refresh token in
/// `state_dir`, for `tenant` if the file has `tenants`. Instructions go to
/// standard output, logs to standard error.
fn run_login(cli: &Cli, tenant: Option<&str>) -> ExitCode {
    let file = cli.config_file.display();
    let config = match Config::load(&cli.config_file) {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(error = %err, "invalid configuration");
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    };
    let (name, tenant_config) = match login::choose_tenant(&config, tenant) {
        Ok(choice) => choice,
        Err(err) => {
            tracing::error!(error = %format!("{file}: {err}"), "cannot run login");
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    };
    let tenant_prefix = name
        .map(|name| format!("tenant {name}: "))
        .unwrap_or_default();
    let target = match LoginTarget::from_config(tenant_config) {
        Ok(target) => target,
        Err(err) => {
            tracing::error!(error = %format!("{file}: {tenant_prefix}{err}"), "cannot run login");
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    };
    // After the check above, so that a missing state_dir is one error, not
    // a warning and then an error.
    for warning in tenant_config.warnings() {
        tracing::warn!("{tenant_prefix}{warning}");
    }
    // One thread is plenty for one sign-in.
    let Some(runtime) = build_runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let on_signal = shutdown::cancel_on_signal(cancel.clone())
            .map_err(|err| format!("cannot install the SIGTERM/SIGINT handlers: {err}"))?;
        tokio::spawn(on_signal);
        let result = login::run(
            &target,
            LoginPacing::STANDARD,
            &cancel,
            &mut std::io::stdout(),
        )
        .await;
        // Ends the signal task.
        cancel.cancel();
        Ok::<_, String>(result)
    });
    match result {
        Ok(Ok(_)) => {
            if config.is_multi_tenant() {
                print_tenants_needing_login(&config);
            }
            ExitCode::SUCCESS
        }
        Ok(Err(err @ login::LoginError::Interrupted)) => {
            tracing::warn!("{err}");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Ok(Err(err)) if err.is_config_error() => {
            tracing::error!(error = %err, "cannot run login");
            ExitCode::from(EXIT_CONFIG_ERROR)
        }
        Ok(Err(err)) => {
            tracing::error!(error = %err, "login failed");
            ExitCode::FAILURE
        }
        Err(message) => {
            tracing::error!(error = %message, "cannot run login");
            ExitCode::FAILURE
        }
    }
}

/// After a sign-in: which tenants still have no refresh token.
fn print_tenants_needing_login(config: &Config) {
    let waiting = login::tenants_needing_login(config);
    if waiting.is_empty() {
        println!("Every tenant has a refresh token now.");
    } else {
        println!(
            "Still to sign in: {}; run `partner-center-exporter login --tenant NAME` for each.",
            waiting.join(", ")
        );
    }
}

async fn run(cli: Cli, config: Option<Config>, web: Option<WebSecurity>) -> Result<(), AppError> {
    tracing::info!(
        version = build_info::VERSION,
        revision = build_info::REVISION,
        rustversion = build_info::RUST_VERSION,
        "starting partner-center-exporter"
    );
    let shutdown = CancellationToken::new();
    let on_signal = shutdown::cancel_on_signal(shutdown.clone()).map_err(AppError::Signals)?;
    tokio::spawn(on_signal);

    // The demo's simulation must outlive the exporter, so it is held here.
    let (config, _demo) = match config {
        Some(config) => {
            for warning in config.warnings() {
                tracing::warn!("{warning}");
            }
            (config, None)
        }
        None => {
            let demo = demo::start(shutdown.clone())
                .await
                .map_err(AppError::Demo)?;
            // Before the server starts, so that a SIGUSR1 sent as soon as
            // the exporter answers finds its handler in place.
            #[cfg(unix)]
            tokio::spawn(
                demo::toggle_outage_on_sigusr1(demo.outage.clone(), shutdown.clone())
                    .map_err(AppError::Demo)?,
            );
            for (tenant, url) in demo.tenant_urls() {
                tracing::info!(
                    tenant,
                    url = %url,
                    "demo mode: polling a simulated partner tenant: its Partner Center, serving the \
                     documented example series and customers of its own, and its Entra ID"
                );
            }
            tracing::info!(
                outage_tenant = demo.outage.tenant(),
                "demo mode: SIGUSR1 starts or ends a simulated outage of the first tenant's Partner \
                 Center only; the other tenant's keeps answering"
            );
            (demo.config.clone(), Some(demo))
        }
    };
    let listeners = bind_all(&cli.listen_addresses).await?;
    let settings = ServerSettings {
        telemetry_path: cli.telemetry_path,
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        max_requests: cli.max_requests,
        write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
        web: web.map(std::sync::Arc::new),
    };
    partner_center_exporter::run(config, listeners, settings, shutdown).await
}
