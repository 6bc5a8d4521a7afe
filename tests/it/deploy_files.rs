//! The deployment kit checked against the exporter itself: what linters and
//! schema validators (`.ci/check-deploy-packaging`) cannot know. The
//! configurations in deploy/ pass the exporter's own validation; the
//! command lines parse as the exporter's flags; ports, probe and scrape
//! paths agree with the exporter's defaults and are really served; and the
//! files agree with one another (mounts, names, the systemd credentials).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{FIXTURE, RunningExporter, Scrape, get, test_config, test_server_settings, wait_for};
use partner_center_exporter::ServerSettings;
use partner_center_exporter::{Cli, Command, DEFAULT_LISTEN_ADDRESS, EXIT_CONFIG_ERROR};
use partner_center_exporter::{Config, REFRESH_TOKEN_ENV};
use serde_yaml_ng::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KUBERNETES: &str = "deploy/kubernetes";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative))
        .unwrap_or_else(|err| panic!("cannot read {relative}: {err}"))
}

fn yaml(relative: &str) -> Value {
    serde_yaml_ng::from_str(&read(relative))
        .unwrap_or_else(|err| panic!("{relative} is not one YAML document: {err}"))
}

/// The value at a dotted path (`spec.template.spec`, list indices as numbers).
fn at<'a>(value: &'a Value, dotted: &str) -> &'a Value {
    dotted.split('.').fold(value, |value, key| {
        let next = match key.parse::<usize>() {
            Ok(index) => value.get(index),
            Err(_) => value.get(key),
        };
        next.unwrap_or_else(|| panic!("no {dotted} (stopped at {key:?})"))
    })
}

fn str_at<'a>(value: &'a Value, dotted: &str) -> &'a str {
    at(value, dotted)
        .as_str()
        .unwrap_or_else(|| panic!("{dotted} is not a string"))
}

fn seq_at<'a>(value: &'a Value, dotted: &str) -> &'a [Value] {
    at(value, dotted)
        .as_sequence()
        .unwrap_or_else(|| panic!("{dotted} is not a list"))
}

fn string_map(value: &Value, dotted: &str) -> BTreeMap<String, String> {
    at(value, dotted)
        .as_mapping()
        .unwrap_or_else(|| panic!("{dotted} is not a mapping"))
        .iter()
        .map(|(key, value)| {
            (
                key.as_str().expect("string key").to_owned(),
                value.as_str().expect("string value").to_owned(),
            )
        })
        .collect()
}

/// The element of a list of mappings whose `key` is `wanted`.
fn named<'a>(items: &'a [Value], key: &str, wanted: &str) -> &'a Value {
    items
        .iter()
        .find(|item| item.get(key).and_then(Value::as_str) == Some(wanted))
        .unwrap_or_else(|| panic!("no element with {key}: {wanted}"))
}

/// Parses a command line the way the exporter's `main` does.
fn exporter_cli<'a>(args: impl IntoIterator<Item = &'a str>) -> Cli {
    let args: Vec<&str> = std::iter::once("partner-center-exporter")
        .chain(args)
        .collect();
    Cli::try_parse_args_from(&args)
        .unwrap_or_else(|err| panic!("{args:?} is not a valid exporter command line: {err}"))
}

fn port_of(listen_address: &str) -> u16 {
    listen_address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in listen address {listen_address:?}"))
}

/// The one port the exporter listens on with this command line.
fn listen_port(cli: &Cli) -> u16 {
    match cli.listen_addresses.as_slice() {
        [address] => port_of(address),
        other => panic!("expected one listen address, got {other:?}"),
    }
}

/// Whether a Prometheus `labeldrop` regex (fully anchored) removes `label`.
fn drops_label(relabeling: &Value, label: &str) -> bool {
    let action = relabeling.get("action").and_then(Value::as_str);
    let regex = relabeling.get("regex").and_then(Value::as_str);
    matches!(action, Some(action) if action.eq_ignore_ascii_case("labeldrop"))
        && regex.is_some_and(|regex| regex.split('|').any(|choice| choice == label))
}

/// The Kubernetes manifests of the kustomize base, and the Secret example.
struct Kubernetes {
    kustomization: Value,
    deployment: Value,
    service: Value,
    service_monitor: Value,
    config_map: Value,
    claim: Value,
    secret_example: Value,
    login_job_example: Value,
}

impl Kubernetes {
    fn load() -> Self {
        let file = |name: &str| yaml(&format!("{KUBERNETES}/{name}"));
        let kubernetes = Self {
            kustomization: file("kustomization.yaml"),
            deployment: file("deployment.yaml"),
            service: file("service.yaml"),
            service_monitor: file("servicemonitor.yaml"),
            config_map: file("configmap.yaml"),
            claim: file("persistentvolumeclaim.yaml"),
            secret_example: file("secret.example.yaml"),
            login_job_example: file("login-job.example.yaml"),
        };
        for (value, kind) in [
            (&kubernetes.deployment, "Deployment"),
            (&kubernetes.service, "Service"),
            (&kubernetes.service_monitor, "ServiceMonitor"),
            (&kubernetes.config_map, "ConfigMap"),
            (&kubernetes.claim, "PersistentVolumeClaim"),
            (&kubernetes.secret_example, "Secret"),
            (&kubernetes.login_job_example, "Job"),
        ] {
            assert_eq!(str_at(value, "kind"), kind);
        }
        kubernetes
    }

    fn pod(&self) -> &Value {
        at(&self.deployment, "spec.template.spec")
    }

    fn container(&self) -> &Value {
        let containers = seq_at(self.pod(), "containers");
        assert_eq!(containers.len(), 1, "one container: the exporter");
        &containers[0]
    }

    /// The container's command line: the image's entrypoint (no `command`
    /// is set) with the Deployment's `args`.
    fn cli(&self) -> Cli {
        assert!(
            self.container().get("command").is_none(),
            "the image's ENTRYPOINT starts the exporter"
        );
        exporter_cli(
            seq_at(self.container(), "args")
                .iter()
                .map(|arg| arg.as_str().expect("string argument")),
        )
    }

    fn volume(&self, name: &str) -> &Value {
        named(seq_at(self.pod(), "volumes"), "name", name)
    }

    /// The volume mounted at `mount_path` and the path, for files below it.
    fn volume_at(&self, file: &Path) -> (&Value, &Path) {
        let mounts = seq_at(self.container(), "volumeMounts");
        let mount = mounts
            .iter()
            .find(|mount| file.starts_with(str_at(mount, "mountPath")))
            .unwrap_or_else(|| panic!("{} is on no volume", file.display()));
        (
            self.volume(str_at(mount, "name")),
            Path::new(str_at(mount, "mountPath")),
        )
    }

    fn container_port(&self, name: &str) -> u16 {
        let port = named(seq_at(self.container(), "ports"), "name", name);
        u16::try_from(at(port, "containerPort").as_u64().expect("number")).expect("port")
    }

    fn config_text(&self, key: &str) -> &str {
        // Not through `at`: the key has a dot of its own.
        at(&self.config_map, "data")
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("the ConfigMap has no key {key}"))
    }
}

#[test]
fn kustomization_lists_every_manifest_and_tags_the_crate_version() {
    let kubernetes = Kubernetes::load();
    let resources: Vec<&str> = seq_at(&kubernetes.kustomization, "resources")
        .iter()
        .map(|resource| resource.as_str().expect("file name"))
        .collect();
    let on_disk: Vec<String> = std::fs::read_dir(repo_path(KUBERNETES))
        .expect("deploy/kubernetes")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    for name in &on_disk {
        assert!(
            resources.contains(&name.as_str()) || name.ends_with(".example.yaml"),
            "{KUBERNETES}/{name} is neither in kustomization.yaml's resources nor an example"
        );
    }
    for resource in &resources {
        assert!(
            on_disk.iter().any(|name| name == resource),
            "kustomization.yaml lists {resource}, which does not exist"
        );
    }
    assert!(
        !resources.contains(&"secret.example.yaml"),
        "the placeholder Secret would overwrite the real one on every apply"
    );

    let image = str_at(kubernetes.container(), "image");
    let entry = named(seq_at(&kubernetes.kustomization, "images"), "name", image);
    assert_eq!(
        str_at(entry, "newTag"),
        env!("CARGO_PKG_VERSION"),
        "the base deploys the image of this version"
    );
}

#[test]
fn kubernetes_config_map_holds_a_valid_config_matching_the_mounts() {
    let kubernetes = Kubernetes::load();
    let cli = kubernetes.cli();
    assert!(cli.command.is_none(), "the Deployment runs the exporter");

    // The config file is the ConfigMap's key, on the ConfigMap's volume.
    let config_path = cli.config_file.clone();
    let (config_volume, config_dir) = kubernetes.volume_at(&config_path);
    assert_eq!(
        str_at(config_volume, "configMap.name"),
        str_at(&kubernetes.config_map, "metadata.name")
    );
    let key = config_path
        .strip_prefix(config_dir)
        .expect("below the mount")
        .to_str()
        .expect("UTF-8");
    let text = kubernetes.config_text(key);

    // The client secret is a key of the Secret, on the Secret's volume.
    let mut document: Value = serde_yaml_ng::from_str(text).expect("embedded config is YAML");
    let secret_file = PathBuf::from(str_at(&document, "auth.client_secret_file"));
    let (secret_volume, secret_dir) = kubernetes.volume_at(&secret_file);
    let secret_name = str_at(secret_volume, "secret.secretName");
    assert_eq!(
        secret_name,
        str_at(&kubernetes.secret_example, "metadata.name")
    );
    let secret_key = secret_file
        .strip_prefix(secret_dir)
        .expect("below the mount")
        .to_str()
        .expect("UTF-8");
    assert!(
        string_map(&kubernetes.secret_example, "stringData").contains_key(secret_key),
        "secret.example.yaml shows no key {secret_key}"
    );

    // The optional refresh token comes from the same Secret under the
    // variable the exporter reads.
    let env = seq_at(kubernetes.container(), "env");
    let refresh_token = named(env, "name", REFRESH_TOKEN_ENV);
    assert_eq!(
        str_at(refresh_token, "valueFrom.secretKeyRef.name"),
        secret_name
    );
    assert_eq!(
        at(refresh_token, "valueFrom.secretKeyRef.optional").as_bool(),
        Some(true),
        "the Secret needs no refresh token once `login` has stored one"
    );

    // state_dir is the persistent volume.
    let state_dir = PathBuf::from(str_at(&document, "state_dir"));
    let (state_volume, state_mount) = kubernetes.volume_at(&state_dir);
    assert_eq!(state_mount, state_dir, "state_dir is the volume's root");
    assert_eq!(
        str_at(state_volume, "persistentVolumeClaim.claimName"),
        str_at(&kubernetes.claim, "metadata.name"),
        "the rotated refresh token must survive the pod"
    );

    // The exporter's own validation, with the secret where the mount would
    // put it (validation reads the file).
    let secrets = tempfile::tempdir().expect("temp dir");
    let stand_in = secrets.path().join(secret_key);
    std::fs::write(&stand_in, "placeholder-client-secret\n").expect("write secret");
    document["auth"]["client_secret_file"] = Value::from(stand_in.to_str().expect("UTF-8"));
    let text = serde_yaml_ng::to_string(&document).expect("YAML");
    let config = Config::from_yaml(&text, &config_path)
        .unwrap_or_else(|err| panic!("the ConfigMap's config is refused: {err}"));
    assert_eq!(config.state_dir.as_deref(), Some(state_dir.as_path()));
    assert_eq!(config.warnings(), Vec::<String>::new());
}

#[test]
fn kubernetes_ports_and_paths_match_the_exporter_defaults() {
    let kubernetes = Kubernetes::load();
    let cli = kubernetes.cli();
    let default_port = port_of(DEFAULT_LISTEN_ADDRESS);
    assert_eq!(listen_port(&cli), default_port);

    // Probes and the Service reach the container port by name.
    let port_name = str_at(&kubernetes.service, "spec.ports.0.targetPort");
    assert_eq!(kubernetes.container_port(port_name), default_port);
    assert_eq!(
        at(&kubernetes.service, "spec.ports.0.port").as_u64(),
        Some(u64::from(default_port))
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            str_at(kubernetes.container(), &format!("{probe}.httpGet.port")),
            port_name,
            "{probe} port"
        );
    }
    assert_eq!(
        str_at(kubernetes.container(), "livenessProbe.httpGet.path"),
        "/healthz"
    );
    assert_eq!(
        str_at(kubernetes.container(), "readinessProbe.httpGet.path"),
        "/readyz"
    );

    // Deployment -> Service -> ServiceMonitor selection.
    let pod_labels = string_map(&kubernetes.deployment, "spec.template.metadata.labels");
    let service_labels = string_map(&kubernetes.service, "metadata.labels");
    for (key, value) in string_map(&kubernetes.service, "spec.selector") {
        assert_eq!(pod_labels.get(&key), Some(&value), "Service selector {key}");
    }
    for (key, value) in string_map(&kubernetes.service_monitor, "spec.selector.matchLabels") {
        assert_eq!(
            service_labels.get(&key),
            Some(&value),
            "ServiceMonitor selector {key}"
        );
    }
    let endpoints = seq_at(&kubernetes.service_monitor, "spec.endpoints");
    assert_eq!(endpoints.len(), 1);
    let endpoint = &endpoints[0];
    assert_eq!(
        str_at(endpoint, "port"),
        str_at(&kubernetes.service, "spec.ports.0.name")
    );
    assert_eq!(str_at(endpoint, "path"), cli.telemetry_path);

    // The license series' own `service` label must survive the scrape: the
    // target's `service` label is dropped before it, or scraped labels win.
    let honor_labels = endpoint.get("honorLabels").and_then(Value::as_bool) == Some(true);
    let drops_service = endpoint
        .get("relabelings")
        .and_then(Value::as_sequence)
        .is_some_and(|relabelings| relabelings.iter().any(|r| drops_label(r, "service")));
    assert!(
        honor_labels || drops_service,
        "the operator's `service` target label would rename the exporter's to exported_service"
    );

    // Two replicas would race on rotating the same refresh token.
    assert_eq!(
        at(&kubernetes.deployment, "spec.replicas").as_u64(),
        Some(1)
    );
    assert_eq!(
        str_at(&kubernetes.deployment, "spec.strategy.type"),
        "Recreate"
    );
}

/// The login Job signs in for the Deployment: same image and version, same
/// configuration, Secret and state volume, same user, so the refresh token
/// lands where the exporter looks for it and is writable by it.
#[test]
fn kubernetes_login_job_stores_the_token_where_the_deployment_reads_it() {
    let kubernetes = Kubernetes::load();
    let job = &kubernetes.login_job_example;
    let pod = at(job, "spec.template.spec");
    let containers = seq_at(pod, "containers");
    assert_eq!(containers.len(), 1, "one container: login");
    let container = &containers[0];

    let args: Vec<&str> = seq_at(container, "args")
        .iter()
        .map(|arg| arg.as_str().expect("string argument"))
        .collect();
    let login = exporter_cli(args);
    assert!(
        matches!(login.command, Some(Command::Login(_))),
        "the Job runs `login`"
    );
    assert_eq!(login.config_file, kubernetes.cli().config_file);

    let image = str_at(kubernetes.container(), "image");
    let tag = str_at(
        named(seq_at(&kubernetes.kustomization, "images"), "name", image),
        "newTag",
    );
    assert_eq!(
        str_at(container, "image"),
        format!("{image}:{tag}"),
        "the image the base deploys"
    );
    assert_eq!(
        at(pod, "volumes"),
        at(kubernetes.pod(), "volumes"),
        "the Deployment's volumes"
    );
    assert_eq!(
        at(container, "volumeMounts"),
        at(kubernetes.container(), "volumeMounts"),
        "mounted where the Deployment mounts them"
    );
    assert_eq!(
        at(pod, "securityContext"),
        at(kubernetes.pod(), "securityContext"),
        "the exporter's user must be able to replace the stored token"
    );
    assert_eq!(
        at(container, "securityContext"),
        at(kubernetes.container(), "securityContext")
    );
    assert_eq!(str_at(pod, "restartPolicy"), "Never");
}

/// The commented two-tenant example of a configuration text, uncommented:
/// the comment lines from `# tenants:` to the end of that comment block.
fn commented_tenants(what: &str, text: &str) -> Vec<Value> {
    let mut lines = text
        .lines()
        .skip_while(|line| line.trim() != "# tenants:")
        .map_while(|line| line.trim_start().strip_prefix('#'))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .peekable();
    assert!(
        lines.peek().is_some(),
        "{what} shows no commented tenants example"
    );
    let yaml_text: String = lines.map(|line| format!("{line}\n")).collect();
    let example: Value = serde_yaml_ng::from_str(&yaml_text)
        .unwrap_or_else(|err| panic!("{what}'s tenants example is not YAML: {err}\n{yaml_text}"));
    let tenants = seq_at(&example, "tenants").to_vec();
    assert!(
        tenants.len() >= 2,
        "{what}: a tenants example of several tenants"
    );
    let mut names = std::collections::BTreeSet::new();
    for tenant in &tenants {
        let name = str_at(tenant, "name");
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'),
            "{what}: tenant name {name:?} is not [a-z0-9_-]"
        );
        assert!(names.insert(name), "{what}: tenant {name} twice");
        for key in ["tenant_id", "client_id", "client_secret_file"] {
            str_at(tenant, &format!("auth.{key}"));
        }
    }
    tenants
}

/// The commented two-tenant variants of the Kubernetes examples fit
/// together and the Deployment: each tenant's client_secret_file is the
/// Secret's key `<name>-client-secret` on the Secret's mount, the Secret
/// example shows a key for every tenant and none for a tenant that is not
/// there, and the login Job's commented --tenant names one of them.
/// (The exporter's own validation of `tenants` is for the configuration
/// tests; this checks the kit's files against one another.)
#[test]
fn kubernetes_two_tenant_examples_fit_the_secret_and_the_login_job() {
    let kubernetes = Kubernetes::load();
    let tenants = commented_tenants(
        "configmap.yaml",
        kubernetes.config_text("partner-center-exporter.yml"),
    );
    let secret_keys = string_map(&kubernetes.secret_example, "stringData");
    let mut names = Vec::new();
    for tenant in &tenants {
        let name = str_at(tenant, "name");
        let secret_file = PathBuf::from(str_at(tenant, "auth.client_secret_file"));
        let (volume, mount) = kubernetes.volume_at(&secret_file);
        assert_eq!(
            str_at(volume, "secret.secretName"),
            str_at(&kubernetes.secret_example, "metadata.name"),
            "tenant {name}'s client secret is on the Secret's volume"
        );
        let key = secret_file
            .strip_prefix(mount)
            .expect("below the mount")
            .to_str()
            .expect("UTF-8");
        assert_eq!(key, format!("{name}-client-secret"), "tenant {name}");
        assert!(
            secret_keys.contains_key(key),
            "secret.example.yaml shows no key {key}"
        );
        names.push(name);
    }
    for key in secret_keys.keys() {
        if let Some(name) = key.strip_suffix("-client-secret") {
            assert!(
                names.contains(&name),
                "secret.example.yaml's {key} is no tenant's of configmap.yaml"
            );
        }
    }

    let job = read(&format!("{KUBERNETES}/login-job.example.yaml"));
    let tenant_args: Vec<&str> = job
        .lines()
        .filter_map(|line| line.trim().strip_prefix("# - --tenant="))
        .collect();
    assert_eq!(tenant_args.len(), 1, "one commented --tenant argument");
    assert!(
        names.contains(&tenant_args[0]),
        "the login Job's --tenant={} is no tenant of configmap.yaml",
        tenant_args[0]
    );
    for name in &names {
        assert!(
            job.contains(name),
            "the login Job's instructions sign in {name} too"
        );
    }
}

const PROMETHEUS: &str = "deploy/prometheus";

/// The rule files prometheus.yml loads, in its order, as paths from the
/// repository's root.
fn rule_files() -> Vec<String> {
    let prometheus = yaml(&format!("{PROMETHEUS}/prometheus.yml"));
    let files: Vec<String> = seq_at(&prometheus, "rule_files")
        .iter()
        .map(|file| {
            let file = file.as_str().expect("a rule file name");
            assert!(
                !file.contains('/') && !file.contains('*'),
                "prometheus.yml loads {file}: rule files sit beside it, named one by one"
            );
            format!("{PROMETHEUS}/{file}")
        })
        .collect();
    assert!(!files.is_empty(), "prometheus.yml loads rule files");
    files
}

/// The `job="…"` values the alerting rules select.
fn job_selectors(rules: &str) -> Vec<&str> {
    rules
        .match_indices("job=\"")
        .map(|(at, prefix)| {
            let rest = &rules[at + prefix.len()..];
            &rest[..rest.find('"').expect("closing quote")]
        })
        .collect()
}

/// The PrometheusRule is the rule files of prometheus.yml (recording
/// rules and alerts), as generate-prometheusrule prints them: the
/// operator's users get exactly the rules `promtool test rules` checks, in
/// the same order, selecting the job the operator gives the exporter's
/// targets.
#[test]
fn prometheus_rule_is_the_rule_files_as_generated() {
    let rule_file = format!("{KUBERNETES}/prometheusrule.yaml");
    let generated = std::process::Command::new("bash")
        .arg(repo_path(&format!("{KUBERNETES}/generate-prometheusrule")))
        .output()
        .expect("run generate-prometheusrule");
    assert!(
        generated.status.success(),
        "generate-prometheusrule failed: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    assert!(
        String::from_utf8(generated.stdout).expect("UTF-8") == read(&rule_file),
        "{rule_file} is out of date: run {KUBERNETES}/generate-prometheusrule >{rule_file}"
    );

    // The same rules, value for value, not merely the same text moved:
    // every group of every rule file, in prometheus.yml's order.
    let rule = yaml(&rule_file);
    assert_eq!(str_at(&rule, "kind"), "PrometheusRule");
    let mut groups = Vec::new();
    for file in rule_files() {
        let rules = yaml(&file);
        let file_groups = seq_at(&rules, "groups");
        assert!(!file_groups.is_empty(), "{file} has rule groups");
        groups.extend(file_groups.iter().cloned());
    }
    assert_eq!(seq_at(&rule, "spec.groups"), groups.as_slice());
    let names: Vec<&str> = groups.iter().map(|group| str_at(group, "name")).collect();
    let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "one PrometheusRule needs unique group names: {names:?}"
    );

    // Without a jobLabel, the operator names the job after the Service;
    // plain Prometheus uses prometheus.yml's job_name.
    let kubernetes = Kubernetes::load();
    assert!(
        kubernetes
            .service_monitor
            .get("spec")
            .and_then(|spec| spec.get("jobLabel"))
            .is_none(),
        "with a jobLabel, the job no longer follows the Service's name"
    );
    let service_name = str_at(&kubernetes.service, "metadata.name");
    let prometheus = yaml(&format!("{PROMETHEUS}/prometheus.yml"));
    let exporter_job = named(
        seq_at(&prometheus, "scrape_configs"),
        "job_name",
        service_name,
    );
    assert_eq!(str_at(exporter_job, "job_name"), service_name);
    let alerts_text = read(&format!("{PROMETHEUS}/alerts.yml"));
    assert!(
        !job_selectors(&alerts_text).is_empty(),
        "the health alerts select the job"
    );
    for file in rule_files() {
        let text = read(&file);
        for selector in job_selectors(&text) {
            assert_eq!(selector, service_name, "{file} selects job={selector:?}");
        }
    }
    assert!(
        seq_at(&kubernetes.kustomization, "resources")
            .iter()
            .any(|resource| resource.as_str() == Some("prometheusrule.yaml")),
        "the base applies the rules"
    );
}

/// Every rule file in deploy/prometheus is loaded by prometheus.yml and
/// has unit tests beside it (`<name>_test.yml`) that load it; promtool
/// accepts the rules and their tests pass. Without promtool the promtool
/// half fails when `CI` is set and is skipped loudly otherwise.
#[test]
fn rule_files_are_loaded_checked_and_tested() {
    let loaded = rule_files();
    let mut on_disk: Vec<String> = std::fs::read_dir(repo_path(PROMETHEUS))
        .expect("deploy/prometheus")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .filter(|name| {
            name.ends_with(".yml") && name != "prometheus.yml" && !name.ends_with("_test.yml")
        })
        .map(|name| format!("{PROMETHEUS}/{name}"))
        .collect();
    on_disk.sort();
    let mut sorted = loaded.clone();
    sorted.sort();
    assert_eq!(
        sorted, on_disk,
        "prometheus.yml's rule_files and the rule files in {PROMETHEUS}"
    );

    let mut tests = Vec::new();
    for file in &loaded {
        let test_file = format!("{}_test.yml", file.strip_suffix(".yml").expect(".yml"));
        let test = yaml(&test_file);
        let name = Path::new(file).file_name().expect("file name");
        assert!(
            seq_at(&test, "rule_files")
                .iter()
                .any(|loaded| loaded.as_str().map(std::ffi::OsStr::new) == Some(name)),
            "{test_file} does not load {file}"
        );
        assert!(!seq_at(&test, "tests").is_empty(), "{test_file} has tests");
        tests.push(test_file);
    }

    let Some(promtool) = common::find_tool("promtool") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI (Debian package `prometheus`) but was not found"
        );
        eprintln!(
            "WARNING: promtool not found; skipping `promtool check rules` and `promtool test rules` \
             (install Debian's `prometheus` package)"
        );
        return;
    };
    for (command, files) in [("check", &loaded), ("test", &tests)] {
        let output = std::process::Command::new(&promtool)
            .arg(command)
            .arg("rules")
            .args(files.iter().map(|file| repo_path(file)))
            .output()
            .expect("run promtool");
        assert!(
            output.status.success(),
            "promtool {command} rules {files:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The label lists of every `on (...)`, `ignoring (...)`, `by (...)` and
/// `without (...)` in a PromQL text, with their keyword.
fn grouping_lists(text: &str) -> Vec<(&'static str, Vec<&str>)> {
    let mut lists = Vec::new();
    for keyword in ["on", "ignoring", "by", "without"] {
        for (at, _) in text.match_indices(keyword) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let rest = text[at + keyword.len()..].trim_start();
            let Some(inner) = rest.strip_prefix('(') else {
                continue;
            };
            let inner = &inner[..inner.find(')').expect("closing parenthesis")];
            lists.push((
                keyword,
                inner
                    .split(',')
                    .map(str::trim)
                    .filter(|label| !label.is_empty())
                    .collect(),
            ));
        }
    }
    lists
}

/// Every vector selector of a PromQL expression: the metric name (empty
/// for a bare `{...}`) and the text between its braces.
fn selectors(expr: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    for (open, _) in expr.match_indices('{') {
        let name_start = expr[..open]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |at| at + 1);
        let close = open + expr[open..].find('}').expect("closing brace");
        out.push((&expr[name_start..open], &expr[open + 1..close]));
    }
    out
}

/// A tenant's figures must never meet another tenant's: every join and
/// aggregation that keeps job and instance keeps tenant too, and none
/// drops it (`without`, `ignoring`). A label missing on both sides, as on
/// a single-tenant exporter's series, still matches.
fn assert_joins_keep_the_tenant(what: &str, text: &str) {
    for (keyword, labels) in grouping_lists(text) {
        if matches!(keyword, "on" | "by") && labels.contains(&"instance") {
            assert!(
                labels.contains(&"tenant"),
                "{what}: {keyword} ({}) keeps instance but not tenant",
                labels.join(", ")
            );
        }
        if matches!(keyword, "ignoring" | "without") {
            assert!(
                !labels.contains(&"tenant"),
                "{what}: {keyword} ({}) drops tenant",
                labels.join(", ")
            );
        }
    }
}

/// The prefix that names the tenant of an alert in its summary and
/// description, and writes nothing without a tenant label.
const TENANT_PREFIX: &str = "with $labels.tenant }}tenant {{ . }}: {{ end";

/// With `tenants`, every series the exporter publishes carries a tenant
/// label. The rules keep it in every join and aggregation; each alert that
/// reads the exporter's series names the tenant in its summary and
/// description, and every query of its annotations selects it (`tenant=""`
/// without the label, which matches the series that have none). The
/// promtool scenarios for two tenants (alerts_test.yml) check the texts.
#[test]
fn rules_keep_each_tenant_apart_and_alerts_name_it() {
    let mut alerts = 0;
    for file in rule_files() {
        let rules = yaml(&file);
        for group in seq_at(&rules, "groups") {
            for rule in seq_at(group, "rules") {
                let expr = str_at(rule, "expr");
                let name = rule
                    .get("alert")
                    .or_else(|| rule.get("record"))
                    .and_then(Value::as_str)
                    .expect("a named rule");
                assert_joins_keep_the_tenant(&format!("{file}: {name}"), expr);
                if rule.get("alert").is_none() {
                    continue;
                }
                // The scrape target's alerts read `up` only, which has no
                // tenant: the target is the exporter's, whatever it polls.
                if !expr.contains("partner_center_") {
                    assert!(expr.contains("up{"), "{name}: {expr}");
                    continue;
                }
                alerts += 1;
                for annotation in ["summary", "description"] {
                    let text = str_at(rule, &format!("annotations.{annotation}"));
                    assert!(
                        text.contains(TENANT_PREFIX),
                        "{file}: {name}'s {annotation} does not name the tenant ({TENANT_PREFIX}):\n{text}"
                    );
                }
                for (annotation, text) in string_map(rule, "annotations") {
                    assert_joins_keep_the_tenant(&format!("{file}: {name}'s {annotation}"), &text);
                    for (at, _) in text.match_indices("job=%q") {
                        let selector = &text[at..at + text[at..].find('}').expect("closing brace")];
                        assert!(
                            selector.contains("tenant=%q"),
                            "{file}: {name}'s {annotation} queries {{{selector}}} of every tenant"
                        );
                    }
                    assert_eq!(
                        text.matches("tenant=%q").count(),
                        text.matches("$labels.instance $labels.tenant").count(),
                        "{file}: {name}'s {annotation}: each tenant=%q is given $labels.tenant"
                    );
                }
            }
        }
    }
    assert!(alerts >= 10, "{alerts} alerts read the exporter's series");
}

const DASHBOARD: &str = "deploy/grafana/partner-center-license-usage.json";

/// The dashboard has a tenant variable whose All (`.*`) also matches a
/// single-tenant exporter's series, which have no tenant label; every
/// query selects `tenant=~"$tenant"` (but `up`, the scrape target's) and
/// keeps the tenant in its joins and sums; and every legend that names a
/// series shows its tenant through a label the query builds, since Grafana
/// would print a missing label's name (`{{tenant}}` reads "tenant").
#[test]
fn dashboard_selects_and_shows_the_tenant() {
    let dashboard: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).expect("JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let position = |name: &str| {
        variables
            .iter()
            .position(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let tenant = &variables[position("tenant")];
    assert_eq!(tenant["includeAll"], true, "{tenant}");
    assert_eq!(tenant["multi"], true, "{tenant}");
    assert_eq!(tenant["allValue"], ".*", "{tenant}");
    assert!(
        tenant["query"]["query"]
            .as_str()
            .is_some_and(|query| query.starts_with("label_values(partner_center_up")
                && query.ends_with(", tenant)")),
        "{tenant}"
    );
    for later in &variables[position("tenant") + 1..] {
        let query = later["query"]["query"].as_str().expect("query");
        assert!(
            query.contains("tenant=~\"$tenant\""),
            "variable {}: {query}",
            later["name"]
        );
    }

    fn panels(list: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        for panel in list.as_array().into_iter().flatten() {
            panels(&panel["panels"], out);
            out.push(panel.clone());
        }
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let mut queries = 0;
    for panel in &all {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            queries += 1;
            assert_joins_keep_the_tenant(title, expr);
            for (name, matchers) in selectors(expr) {
                if name == "up" {
                    assert!(!matchers.contains("tenant"), "{title}: {expr}");
                    continue;
                }
                assert!(
                    matchers.contains("tenant=~\"$tenant\""),
                    "{title}: {name}{{{matchers}}} ignores the tenant variable"
                );
            }
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            assert!(
                !legend.contains("{{tenant}}"),
                "{title}: a single tenant's legend would read \"tenant\": {legend}"
            );
            if panel["type"] == "table" || expr.starts_with("up{") {
                continue;
            }
            let shown = legend
                .split("{{")
                .skip(1)
                .filter_map(|rest| rest.split_once("}}"))
                .map(|(label, _)| label.trim())
                .find(|label| label.starts_with("tenant_"))
                .unwrap_or_else(|| {
                    panic!("{title}: the legend {legend:?} does not show the tenant")
                });
            assert!(
                expr.contains("label_join(") && expr.contains(&format!("\"{shown}\", ")),
                "{title}: the query does not build {shown}: {expr}"
            );
        }
    }
    assert!(queries >= 30, "{queries} panel queries");
}

/// The probe and scrape paths of the manifests, asked of a running exporter
/// polling a fake Partner Center: every one answers 200 once the first poll
/// succeeded.
#[tokio::test]
async fn kubernetes_probe_and_scrape_paths_are_served() {
    let kubernetes = Kubernetes::load();
    let cli = kubernetes.cli();
    let liveness = str_at(kubernetes.container(), "livenessProbe.httpGet.path").to_owned();
    let readiness = str_at(kubernetes.container(), "readinessProbe.httpGet.path").to_owned();
    let scrape = str_at(&kubernetes.service_monitor, "spec.endpoints.0.path").to_owned();

    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(common::USAGE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_raw(FIXTURE, "application/json"))
        .mount(&upstream)
        .await;
    let (config, dir) = test_config(&upstream.uri(), Duration::from_secs(3600));
    let settings = ServerSettings {
        telemetry_path: cli.telemetry_path.clone(),
        ..test_server_settings()
    };
    let exporter = RunningExporter::start_with_settings(config, dir, settings).await;

    let ready_url = exporter.url(&readiness);
    wait_for(common::WAIT, "the readiness path to answer 200", || async {
        get(&ready_url).await.status() == 200
    })
    .await;
    let live = get(&exporter.url(&liveness)).await;
    assert_eq!(live.status(), 200, "{liveness}");
    let metrics = get(&exporter.url(&scrape)).await;
    assert_eq!(metrics.status(), 200, "{scrape}");
    let body = metrics.text().await.expect("body");
    assert!(
        body.lines()
            .any(|line| line == "partner_center_up{source=\"license_usage\"} 1"),
        "{scrape} serves the exporter's metrics:\n{body}"
    );
    exporter.stop().await.expect("clean stop");
}

/// The instructions of a Dockerfile's last stage, continuation lines joined.
fn final_stage(dockerfile: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                let (keyword, rest) = pending.split_once(' ').unwrap_or((&pending, ""));
                instructions.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
                pending.clear();
            }
        }
    }
    let last_from = instructions
        .iter()
        .rposition(|(keyword, _)| keyword == "FROM")
        .expect("a FROM");
    instructions.split_off(last_from)
}

fn exec_form(value: &str) -> Vec<String> {
    serde_json::from_str(value).unwrap_or_else(|err| panic!("{value} is not exec form: {err}"))
}

#[test]
fn dockerfile_matches_the_exporter_and_the_deployment() {
    let dockerfile = read("deploy/docker/Dockerfile");
    assert!(
        dockerfile.contains("cargo build --release --locked"),
        "the image is built from Cargo.lock as committed"
    );
    let stage = final_stage(&dockerfile);
    let only = |keyword: &str| -> &str {
        let found: Vec<&str> = stage
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, rest)| rest.as_str())
            .collect();
        match found.as_slice() {
            [one] => one,
            other => panic!("expected one {keyword} in the final stage, got {other:?}"),
        }
    };

    // ENTRYPOINT + CMD is the exporter's command line.
    let entrypoint = exec_form(only("ENTRYPOINT"));
    let cmd = exec_form(only("CMD"));
    assert_eq!(entrypoint.len(), 1, "ENTRYPOINT is the binary alone");
    let binary = &entrypoint[0];
    assert!(
        stage
            .iter()
            .any(|(k, rest)| k == "COPY" && rest.ends_with(&format!(" {binary}"))),
        "the final stage copies the binary to {binary}"
    );
    let cli = exporter_cli(cmd.iter().map(String::as_str));
    let default_port = port_of(DEFAULT_LISTEN_ADDRESS);
    assert_eq!(listen_port(&cli), default_port);
    assert_eq!(only("EXPOSE"), default_port.to_string());

    // The Deployment runs this image: same user, same state volume.
    let kubernetes = Kubernetes::load();
    let (uid, gid) = only("USER").split_once(':').expect("USER uid:gid");
    assert_ne!(uid, "0", "the image runs as non-root");
    let security = at(kubernetes.pod(), "securityContext");
    assert_eq!(at(security, "runAsUser").as_u64(), uid.parse().ok());
    assert_eq!(at(security, "runAsGroup").as_u64(), gid.parse().ok());
    let volumes = exec_form(only("VOLUME"));
    let kubernetes_config: Value =
        serde_yaml_ng::from_str(kubernetes.config_text("partner-center-exporter.yml"))
            .expect("YAML");
    assert_eq!(
        volumes,
        [str_at(&kubernetes_config, "state_dir")],
        "the image's volume is state_dir"
    );
    // deploy/systemd's example config fits the image as well (mounted at
    // the CMD's config directory with client-secret beside it).
    let systemd_config: Value =
        serde_yaml_ng::from_str(&read("deploy/systemd/partner-center-exporter.yml")).expect("YAML");
    assert_eq!(str_at(&systemd_config, "state_dir"), volumes[0]);
    assert_eq!(
        cli.config_file.file_name(),
        Some(std::ffi::OsStr::new("partner-center-exporter.yml"))
    );
    let state_copy = stage
        .iter()
        .find(|(k, rest)| k == "COPY" && rest.trim_end_matches('/').ends_with(&volumes[0]))
        .expect("the final stage creates the state directory");
    assert!(
        state_copy.1.contains(&format!("--chown={uid}:{gid}")),
        "the state directory belongs to the runtime user: {}",
        state_copy.1
    );
}

/// A systemd unit file's settings, section.key -> values in order.
fn unit_settings(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "continuation lines are not expected: {line}"
        );
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').expect("key=value");
        settings
            .entry(format!("{section}.{}", key.trim()))
            .or_default()
            .push(value.trim().to_owned());
    }
    settings
}

#[test]
fn systemd_unit_and_its_config_work_together() {
    let unit = unit_settings(&read("deploy/systemd/partner-center-exporter.service"));
    let one = |key: &str| -> &str {
        match unit.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("expected one {key}, got {other:?}"),
        }
    };

    // LoadCredential=ID:SOURCE, as id -> source.
    let credentials: BTreeMap<&str, &str> = unit["Service.LoadCredential"]
        .iter()
        .map(|entry| entry.split_once(':').expect("ID:PATH"))
        .collect();

    // ExecStart, with %d (the credentials directory) standing for a
    // directory laid out as systemd would: every credential copied in.
    let credentials_dir = tempfile::tempdir().expect("temp dir");
    let exec_start =
        one("Service.ExecStart").replace("%d", credentials_dir.path().to_str().expect("UTF-8"));
    let mut words = exec_start.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/partner-center-exporter"));
    let cli = exporter_cli(words);
    assert!(cli.command.is_none());
    assert_eq!(listen_port(&cli), port_of(DEFAULT_LISTEN_ADDRESS));

    let config_id = cli
        .config_file
        .strip_prefix(credentials_dir.path())
        .expect("the configuration is a credential")
        .to_str()
        .expect("UTF-8");
    let config_source = Path::new(credentials[config_id]);
    assert_eq!(
        config_source,
        Path::new("/etc/partner-center-exporter/partner-center-exporter.yml")
    );
    let example = read("deploy/systemd/partner-center-exporter.yml");
    std::fs::write(&cli.config_file, &example).expect("write config");

    // The client secret is named relative to the config file, so it is the
    // credential inside the service and the file beside the config for
    // `login` run by hand: both must name the same source.
    let document: Value = serde_yaml_ng::from_str(&example).expect("YAML");
    let secret = str_at(&document, "auth.client_secret_file");
    assert!(
        Path::new(secret).is_relative(),
        "client_secret_file must be relative to work both inside and outside the service"
    );
    let secret_source = credentials
        .get(secret)
        .unwrap_or_else(|| panic!("no LoadCredential={secret}:..."));
    assert_eq!(
        Path::new(secret_source),
        config_source.parent().expect("dir").join(secret),
        "`login --config.file={}` reads the same secret the service gets",
        config_source.display()
    );
    std::fs::write(credentials_dir.path().join(secret), "placeholder\n").expect("write secret");

    // from_yaml, unlike load, ignores the secrets' environment variables,
    // which would conflict with client_secret_file.
    let config = Config::from_yaml(&example, &cli.config_file)
        .unwrap_or_else(|err| panic!("deploy/systemd/partner-center-exporter.yml: {err}"));
    assert_eq!(
        config.state_dir,
        Some(Path::new("/var/lib").join(one("Service.StateDirectory"))),
        "state_dir is the unit's StateDirectory="
    );
    assert_eq!(config.warnings(), Vec::<String>::new());

    // A configuration error (78), "run login" included, is not retried.
    assert!(
        one("Service.RestartPreventExitStatus")
            .split_whitespace()
            .any(|status| status == EXIT_CONFIG_ERROR.to_string()),
        "RestartPreventExitStatus= holds {EXIT_CONFIG_ERROR}"
    );
}

#[test]
fn image_and_unit_leave_the_allocator_as_built() {
    // The binary brings jemalloc with its options built in (Cargo.toml,
    // .cargo/config.toml); glibc's malloc tunables would no longer apply,
    // and a leftover GLIBC_TUNABLES would only mislead.
    let stage = final_stage(&read("deploy/docker/Dockerfile"));
    let image: Vec<&str> = stage
        .iter()
        .filter(|(keyword, _)| keyword == "ENV")
        .filter_map(|(_, rest)| rest.strip_prefix("GLIBC_TUNABLES="))
        .collect();
    let unit = unit_settings(&read("deploy/systemd/partner-center-exporter.service"));
    let systemd: Vec<&str> = unit
        .get("Service.Environment")
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|value| value.strip_prefix("GLIBC_TUNABLES="))
        .collect();
    assert_eq!(image, Vec::<&str>::new());
    assert_eq!(systemd, Vec::<&str>::new());
}

/// The systemd example configuration's commented two-tenant variant: each
/// tenant's client secret is a file beside the configuration, named
/// relative to it like client-secret, and the unit shows the credential
/// that copies it (commented, since a missing credential file fails the
/// start); the comments sign in each tenant with `login --tenant`.
#[test]
fn systemd_two_tenant_example_has_a_credential_per_client_secret() {
    let example = read("deploy/systemd/partner-center-exporter.yml");
    let unit = read("deploy/systemd/partner-center-exporter.service");
    let tenants = commented_tenants("deploy/systemd/partner-center-exporter.yml", &example);
    for tenant in &tenants {
        let name = str_at(tenant, "name");
        let secret = str_at(tenant, "auth.client_secret_file");
        assert_eq!(secret, format!("{name}-client-secret"), "tenant {name}");
        let credential = format!("#LoadCredential={secret}:/etc/partner-center-exporter/{secret}");
        assert!(
            unit.lines().any(|line| line.trim() == credential),
            "the unit shows no {credential}"
        );
    }
    let first = str_at(&tenants[0], "name");
    assert!(
        example.contains(&format!("login --tenant {first}")),
        "the example's comments sign in {first} with `login --tenant`"
    );
}
