//! Several partner tenants in one configuration file: the `tenants` list,
//! each entry's overrides merged key by key over the top-level sections,
//! and the checks that span tenants.
//!
//! A tenant's effective configuration is an ordinary [`Config`], checked by
//! [`Config::validate`] like a file without `tenants`, so every rule holds
//! per tenant. Its `state_dir` is `<state_dir>/<name>`: the refresh token
//! and the lookups of each tenant live in a directory of their own.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::{
    AuthConfig, CLIENT_SECRET_ENV, Config, ConfigError, CustomersConfig, PartnerCenterConfig,
    PollConfig, REFRESH_TOKEN_ENV, SecretEnvironment, SkusConfig, SourcesConfig,
    SubscriptionsConfig, schema_message,
};

/// One partner tenant of a file with `tenants`.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// Its `name`: the value of its series' `tenant` label, unique in the
    /// file, 1 to [`MAX_TENANT_NAME_LEN`] characters of `a-z`, `0-9`, `_`, `-`.
    pub name: String,
    /// Its effective configuration: the top-level sections with the
    /// tenant's overrides merged in, its own `auth`, the shared `poll`,
    /// `state_dir` `<state_dir>/<name>` (none when `state_dir` is unset),
    /// relative paths resolved against the file's directory, and no
    /// `tenants` of its own.
    pub config: Config,
}

/// The longest tenant name: a label value this short stays readable in
/// every query and fits a file name.
pub const MAX_TENANT_NAME_LEN: usize = 63;

/// The sections a tenant entry may override.
const OVERRIDABLE_SECTIONS: [&str; 5] = [
    "partner_center",
    "sources",
    "customers",
    "skus",
    "subscriptions",
];

/// Keys that are shared by every tenant and so refused in an entry, with
/// why; an entry's other unknown keys are refused by the schema.
const SHARED_KEYS: [&str; 2] = ["poll", "state_dir"];

/// The whole file when it has `tenants`: read from the text, so that
/// schema errors carry their line as in a file without `tenants`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    #[serde(default)]
    partner_center: PartnerCenterConfig,
    #[serde(default)]
    poll: PollConfig,
    #[serde(default)]
    sources: SourcesConfig,
    #[serde(default)]
    customers: CustomersConfig,
    #[serde(default)]
    skus: SkusConfig,
    #[serde(default)]
    subscriptions: SubscriptionsConfig,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    tenants: Vec<TenantEntry>,
}

/// One entry of `tenants` as written.
///
/// The overrides are read here only to check them with their lines: the
/// values in force come from merging the entry's text over the top-level
/// sections, which needs to know which keys the entry sets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantEntry {
    name: String,
    auth: AuthConfig,
    #[serde(default, rename = "partner_center")]
    _partner_center: Option<PartnerCenterConfig>,
    #[serde(default, rename = "sources")]
    _sources: Option<SourcesConfig>,
    #[serde(default, rename = "customers")]
    _customers: Option<CustomersConfig>,
    #[serde(default, rename = "skus")]
    _skus: Option<SkusConfig>,
    #[serde(default, rename = "subscriptions")]
    _subscriptions: Option<SubscriptionsConfig>,
}

/// The overridable sections of one tenant, after the merge.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    #[serde(default)]
    partner_center: PartnerCenterConfig,
    #[serde(default)]
    sources: SourcesConfig,
    #[serde(default)]
    customers: CustomersConfig,
    #[serde(default)]
    skus: SkusConfig,
    #[serde(default)]
    subscriptions: SubscriptionsConfig,
}

/// The document as a YAML mapping, if it is one with a `tenants` key.
/// Anything else, unreadable YAML included, is left to the reader of files
/// without `tenants`, which reports it as it always has.
pub(super) fn tenants_document(text: &str) -> Option<Mapping> {
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(Value::Mapping(mapping)) if mapping.contains_key("tenants") => Some(mapping),
        _ => None,
    }
}

/// Reads, merges and validates a file with `tenants`; `document` is its
/// text as a YAML mapping.
pub(super) fn load(
    text: &str,
    document: Mapping,
    path: &Path,
    environment: SecretEnvironment,
) -> Result<Config, ConfigError> {
    let invalid = |key: &'static str, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        key,
        message,
    };
    if document.contains_key("auth") {
        return Err(invalid(
            "auth",
            "is not used with tenants: each tenant has its own auth; move it into the tenants' entries"
                .to_owned(),
        ));
    }
    let entries: &[Value] = document
        .get("tenants")
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice);
    for (index, entry) in entries.iter().enumerate() {
        for key in SHARED_KEYS {
            if entry
                .as_mapping()
                .is_some_and(|entry| entry.contains_key(key))
            {
                return Err(entry_error(
                    path,
                    index,
                    &raw_name(entry),
                    format!(
                        "{key}: is shared by every tenant; set it at the top level, not in a tenant"
                    ),
                ));
            }
        }
    }
    let file: TenantsFile =
        serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
            .map_err(|err| tenant_schema_error(&err, entries, path))?;
    if file.tenants.is_empty() {
        return Err(invalid(
            "tenants",
            "is empty; list at least one tenant, or remove `tenants` and configure a top-level `auth`"
                .to_owned(),
        ));
    }
    let set_variables: Vec<&str> = [
        (CLIENT_SECRET_ENV, environment.client_secret.is_some()),
        (REFRESH_TOKEN_ENV, environment.refresh_token.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if !set_variables.is_empty() {
        return Err(invalid(
            "tenants",
            format!(
                "{} cannot say which tenant {} to; unset {} and use each tenant's \
                 auth.client_secret_file and auth.refresh_token_file \
                 (or `partner-center-exporter login --tenant NAME`)",
                set_variables.join(" and "),
                if set_variables.len() == 1 {
                    "it belongs"
                } else {
                    "they belong"
                },
                if set_variables.len() == 1 {
                    "it"
                } else {
                    "them"
                },
            ),
        ));
    }
    check_names(&file.tenants, path)?;

    let base_dir = path.parent().unwrap_or_else(|| Path::new(""));
    let state_dir = file.state_dir.map(|dir| {
        if dir.is_relative() {
            base_dir.join(dir)
        } else {
            dir
        }
    });
    // Checked here: joined with a tenant's name, an empty one would no
    // longer look empty.
    if state_dir
        .as_ref()
        .is_some_and(|dir| dir.as_os_str().is_empty())
    {
        return Err(invalid("state_dir", "must not be empty".to_owned()));
    }

    let mut tenants = Vec::with_capacity(file.tenants.len());
    for (index, entry) in file.tenants.into_iter().enumerate() {
        let tenant_error = |message: String| ConfigError::Tenant {
            path: path.to_owned(),
            index,
            name: entry.name.clone(),
            message,
        };
        let overrides = entries.get(index).and_then(Value::as_mapping);
        let mut merged = Mapping::new();
        for section in OVERRIDABLE_SECTIONS {
            // An empty section in an entry (`sources:`) overrides nothing,
            // as it reads as none.
            let value = match (
                document.get(section),
                overrides
                    .and_then(|entry| entry.get(section))
                    .filter(|over| !over.is_null()),
            ) {
                (Some(base), Some(over)) => deep_merge(base, over),
                (Some(value), None) | (None, Some(value)) => value.clone(),
                (None, None) => continue,
            };
            merged.insert(Value::from(section), value);
        }
        let sections: Sections = serde_path_to_error::deserialize(Value::Mapping(merged))
            .map_err(|err| tenant_error(schema_message(&err)))?;
        let mut config = Config {
            partner_center: sections.partner_center,
            auth: entry.auth,
            poll: file.poll.clone(),
            sources: sections.sources,
            customers: sections.customers,
            skus: sections.skus,
            subscriptions: sections.subscriptions,
            state_dir: state_dir.as_ref().map(|dir| dir.join(&entry.name)),
            tenants: Vec::new(),
        };
        config.resolve_paths(base_dir);
        config
            .validate(path)
            .map_err(|err| tenant_error(err.detail()))?;
        tenants.push(TenantConfig {
            name: entry.name,
            config,
        });
    }
    check_refresh_token_files(&tenants, path)?;

    Ok(Config {
        partner_center: file.partner_center,
        auth: AuthConfig::default(),
        poll: file.poll,
        sources: file.sources,
        customers: file.customers,
        skus: file.skus,
        subscriptions: file.subscriptions,
        state_dir,
        tenants,
    })
}

/// `over` on top of `base`: mappings merge key by key, recursively, the
/// keys of `over` winning; any other value of `over` (a list, a scalar,
/// `null`) replaces what `base` has.
fn deep_merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            let mut merged = base.clone();
            for (key, value) in over {
                let value = match merged.get(key) {
                    Some(inherited) => deep_merge(inherited, value),
                    None => value.clone(),
                };
                merged.insert(key.clone(), value);
            }
            Value::Mapping(merged)
        }
        _ => over.clone(),
    }
}

/// The `name` of an entry as written, for messages about it; empty when
/// it has none that is text.
fn raw_name(entry: &Value) -> String {
    entry
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// An error in entry `index`: named after its tenant when `name` is a
/// valid one, else after its position alone (`tenants[1].poll: …`).
fn entry_error(path: &Path, index: usize, name: &str, detail: String) -> ConfigError {
    if is_valid_name(name) {
        ConfigError::Tenant {
            path: path.to_owned(),
            index,
            name: name.to_owned(),
            message: detail,
        }
    } else {
        ConfigError::Schema {
            path: path.to_owned(),
            message: format!("tenants[{index}].{detail}"),
        }
    }
}

/// A schema error, named after its tenant when it lies inside an entry
/// with a usable name (`tenants[1] (contoso-usgov): auth.client_id: …`).
fn tenant_schema_error(
    err: &serde_path_to_error::Error<serde_yaml_ng::Error>,
    entries: &[Value],
    path: &Path,
) -> ConfigError {
    let message = schema_message(err);
    let mut segments = err.path().iter();
    if let (
        Some(serde_path_to_error::Segment::Map { key }),
        Some(serde_path_to_error::Segment::Seq { index }),
    ) = (segments.next(), segments.next())
        && key == "tenants"
        && let Some(name) = entries.get(*index).map(raw_name)
        && is_valid_name(&name)
        && let Some(rest) = message.strip_prefix(&format!("tenants[{index}]"))
    {
        let rest = rest
            .strip_prefix('.')
            .or_else(|| rest.strip_prefix(": "))
            .unwrap_or(rest);
        return entry_error(path, *index, &name, rest.to_owned());
    }
    ConfigError::Schema {
        path: path.to_owned(),
        message,
    }
}

/// Whether `name` can be a `tenant` label value and a directory name:
/// 1 to 63 of `a-z`, `0-9`, `_` and `-`.
fn is_valid_name(name: &str) -> bool {
    (1..=MAX_TENANT_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Every name valid, and none twice.
fn check_names(entries: &[TenantEntry], path: &Path) -> Result<(), ConfigError> {
    for (index, entry) in entries.iter().enumerate() {
        if !is_valid_name(&entry.name) {
            return Err(ConfigError::Schema {
                path: path.to_owned(),
                message: format!(
                    "tenants[{index}].name: {:?} is not a valid tenant name: it is the value of \
                     the `tenant` label and a directory name, so use 1 to {MAX_TENANT_NAME_LEN} \
                     characters of a-z, 0-9, _ and -",
                    entry.name
                ),
            });
        }
        if let Some(first) = entries[..index]
            .iter()
            .position(|earlier| earlier.name == entry.name)
        {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "tenants",
                message: format!(
                    "tenants[{first}] and tenants[{index}] are both named {}; every tenant needs a name of its own",
                    entry.name
                ),
            });
        }
    }
    Ok(())
}

/// No two tenants start from the same refresh token file: a refresh token
/// is one sign-in to one tenant, and the rotations of two tenants' chains
/// would each invalidate the other's.
fn check_refresh_token_files(tenants: &[TenantConfig], path: &Path) -> Result<(), ConfigError> {
    let files: Vec<Option<PathBuf>> = tenants
        .iter()
        .map(|tenant| {
            tenant
                .config
                .auth
                .refresh_token_file
                .as_ref()
                // The same file by another path (a symbolic link, `..`) is
                // still the same file.
                .map(|file| std::fs::canonicalize(file).unwrap_or_else(|_| file.clone()))
        })
        .collect();
    for (index, file) in files.iter().enumerate() {
        let Some(file) = file else { continue };
        if let Some(first) = files[..index]
            .iter()
            .position(|earlier| earlier.as_ref() == Some(file))
        {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "tenants",
                message: format!(
                    "tenants[{first}] ({}) and tenants[{index}] ({}) have the same \
                     auth.refresh_token_file {}; a refresh token belongs to one tenant, \
                     so give each its own file (or sign each in with \
                     `partner-center-exporter login --tenant NAME`)",
                    tenants[first].name,
                    tenants[index].name,
                    file.display()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::AuthMethod;
    use crate::secret::Secret;
    use crate::sources::SourceName;

    const CLIENT_A: &str = "3f2c5e2a-0000-4000-8000-00000000000a";
    const CLIENT_B: &str = "3f2c5e2a-0000-4000-8000-00000000000b";

    /// A directory with a secret and a refresh token file per tenant, and
    /// a bearer token file.
    struct Dir {
        dir: tempfile::TempDir,
    }

    impl Dir {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            for file in ["secret-a", "secret-b", "refresh-a", "refresh-b", "token"] {
                std::fs::write(dir.path().join(file), format!("{file}-value\n")).expect("write");
            }
            Self { dir }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("exporter.yml")
        }

        fn parse(&self, yaml: &str) -> Result<Config, ConfigError> {
            Config::from_yaml(yaml, &self.path())
        }

        fn error(&self, yaml: &str) -> String {
            self.parse(yaml).expect_err("must be refused").to_string()
        }

        /// The message of an error, without the file's name in front.
        fn detail(&self, yaml: &str) -> String {
            let message = self.error(yaml);
            let prefix = format!("{}: ", self.path().display());
            message
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("the message names the file: {message}"))
                .to_owned()
        }
    }

    /// Two App+User tenants, `contoso-eu` and `contoso-usgov`, with
    /// `extra` (top-level keys) in front.
    fn two_tenants(extra: &str) -> String {
        format!(
            "{extra}state_dir: state\n\
             tenants:\n\
             \x20 - name: contoso-eu\n\
             \x20   auth:\n\
             \x20     tenant_id: contoso.onmicrosoft.com\n\
             \x20     client_id: {CLIENT_A}\n\
             \x20     client_secret_file: secret-a\n\
             \x20 - name: contoso-usgov\n\
             \x20   auth:\n\
             \x20     tenant_id: contoso.onmicrosoft.us\n\
             \x20     client_id: {CLIENT_B}\n\
             \x20     client_secret_file: secret-b\n\
             \x20     authority: https://login.microsoftonline.us\n"
        )
    }

    /// `two_tenants` with `lines` (each indented for an entry's keys)
    /// added to the entry of `contoso-usgov`.
    fn with_second_tenant(extra: &str, lines: &str) -> String {
        format!("{}{lines}", two_tenants(extra))
    }

    fn tenant<'a>(config: &'a Config, name: &str) -> &'a Config {
        config
            .tenant_configs()
            .into_iter()
            .find(|(tenant, _)| *tenant == Some(name))
            .map(|(_, config)| config)
            .unwrap_or_else(|| panic!("no tenant {name}"))
    }

    #[test]
    fn a_file_without_tenants_is_its_own_single_tenant() {
        let dir = Dir::new();
        let config = dir
            .parse("auth:\n  bearer_token_file: token\n")
            .expect("valid");
        assert!(!config.is_multi_tenant());
        assert!(config.tenants.is_empty());
        let configs = config.tenant_configs();
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0].0, None);
        assert!(std::ptr::eq(configs[0].1, &config), "the file itself");
    }

    #[test]
    fn tenants_are_read_in_file_order_with_their_own_auth_and_state_dir() {
        let dir = Dir::new();
        let config = dir.parse(&two_tenants("")).expect("valid");
        assert!(config.is_multi_tenant());
        let names: Vec<_> = config
            .tenant_configs()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, [Some("contoso-eu"), Some("contoso-usgov")]);
        assert_eq!(config.state_dir, Some(dir.dir.path().join("state")));
        for (name, client_id, secret, authority) in [
            (
                "contoso-eu",
                CLIENT_A,
                "secret-a",
                "https://login.microsoftonline.com/",
            ),
            (
                "contoso-usgov",
                CLIENT_B,
                "secret-b",
                "https://login.microsoftonline.us/",
            ),
        ] {
            let tenant = tenant(&config, name);
            assert_eq!(
                tenant.state_dir,
                Some(dir.dir.path().join("state").join(name)),
                "{name}: each tenant's state in a directory of its own"
            );
            assert!(tenant.tenants.is_empty(), "{name}");
            let AuthMethod::RefreshToken(settings) = tenant.auth.method().expect("valid") else {
                panic!("{name}: App+User expected");
            };
            assert_eq!(settings.client_id, client_id, "{name}");
            assert_eq!(settings.authority.as_str(), authority, "{name}");
            assert_eq!(
                settings.client_secret,
                crate::config::SecretSource::File(dir.dir.path().join(secret)),
                "{name}: paths resolve against the file's directory"
            );
        }
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    }

    #[test]
    fn overrides_merge_key_by_key_over_the_top_level_sections() {
        let dir = Dir::new();
        let top = "partner_center:\n  max_pages: 7\n  locale: de-DE\n\
                   poll:\n  interval: 20m\n\
                   sources:\n  customer_licenses:\n    interval: 2h\n  license_deployment:\n    enabled: false\n\
                   customers:\n  include: ['Contoso*']\n  page_size: 250\n\
                   skus:\n  exclude: [FLOW_FREE]\n";
        let config = dir
            .parse(&with_second_tenant(
                top,
                "    partner_center:\n      locale: en-US\n      base_url: https://api.partnercenter.microsoft.us\n\
                 \x20   sources:\n      customer_licenses:\n        enabled: true\n\
                 \x20   customers:\n      include: ['Fabrikam*']\n\
                 \x20   skus:\n      max_units: 0\n\
                 \x20   subscriptions:\n      statuses: [active]\n",
            ))
            .expect("valid");
        let eu = tenant(&config, "contoso-eu");
        let usgov = tenant(&config, "contoso-usgov");

        // Inherited as written at the top level.
        assert_eq!(eu.partner_center.locale, "de-DE");
        assert_eq!(eu.partner_center.max_pages, 7);
        assert_eq!(
            eu.partner_center.base_url.as_str(),
            "https://api.partnercenter.microsoft.com/"
        );
        assert!(!eu.sources.get(SourceName::CustomerLicenses).enabled);
        assert_eq!(eu.customers.include, ["Contoso*"]);
        assert_eq!(eu.skus.max_units, 10_000);
        assert_eq!(
            eu.subscriptions.statuses,
            ["active", "suspended", "pending"]
        );

        // The tenant's keys win; the keys it does not set are inherited.
        assert_eq!(usgov.partner_center.locale, "en-US");
        assert_eq!(usgov.partner_center.max_pages, 7);
        assert_eq!(
            usgov.partner_center.base_url.as_str(),
            "https://api.partnercenter.microsoft.us/"
        );
        let licenses = usgov.sources.get(SourceName::CustomerLicenses);
        assert!(licenses.enabled, "the tenant's key");
        assert_eq!(
            licenses.interval,
            Some(Duration::from_secs(2 * 3600)),
            "the top-level interval of the same source"
        );
        assert!(
            !usgov.sources.get(SourceName::LicenseDeployment).enabled,
            "another source's top-level entry"
        );
        assert_eq!(usgov.customers.include, ["Fabrikam*"], "a list replaces");
        assert_eq!(usgov.customers.page_size, 250);
        assert_eq!(usgov.skus.exclude, ["FLOW_FREE"]);
        assert_eq!(usgov.skus.max_units, 0);
        assert_eq!(usgov.subscriptions.statuses, ["active"]);

        // `poll` is shared; the top level keeps the defaults as written.
        for config in [&config, eu, usgov] {
            assert_eq!(config.poll.interval, Duration::from_secs(20 * 60));
        }
        assert_eq!(config.partner_center.locale, "de-DE");
        assert!(config.auth.method().is_err(), "no top-level auth");
    }

    #[test]
    fn without_state_dir_no_tenant_has_one() {
        let dir = Dir::new();
        let config = dir
            .parse(
                "tenants:\n  - name: a\n    auth:\n      bearer_token_file: token\n\
                 \x20 - name: b\n    auth:\n      tenant_id: contoso.onmicrosoft.com\n      client_id: 3f2c5e2a-0000-4000-8000-00000000000b\n      client_secret_file: secret-b\n      refresh_token_file: refresh-b\n",
            )
            .expect("valid");
        assert_eq!(config.state_dir, None);
        for (name, tenant) in config.tenant_configs() {
            assert_eq!(tenant.state_dir, None, "{name:?}");
        }
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "the App+User tenant only: {warnings:?}");
        assert!(
            warnings[0].starts_with("tenant b: state_dir is not set"),
            "{warnings:?}"
        );
    }

    #[test]
    fn shared_warnings_come_once_and_a_tenants_own_name_it() {
        let dir = Dir::new();
        let config = dir
            .parse(&with_second_tenant(
                "poll:\n  interval: 10s\n",
                "    partner_center:\n      base_url: http://proxy.example\n",
            ))
            .expect("valid");
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("poll.interval is 10s"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with(
                "tenant contoso-usgov: partner_center.base_url http://proxy.example/ is plain http"
            ),
            "{warnings:?}"
        );
    }

    #[test]
    fn an_error_in_a_tenant_names_it() {
        let dir = Dir::new();
        assert_eq!(
            dir.detail(&with_second_tenant(
                "",
                "    partner_center:\n      max_pages: 0\n"
            )),
            "tenants[1] (contoso-usgov): partner_center.max_pages: must be at least 1"
        );
        // A top-level default that no tenant overrides fails in each; the
        // first names it.
        assert_eq!(
            dir.detail(&two_tenants("customers:\n  page_size: 0\n")),
            "tenants[0] (contoso-eu): customers.page_size: must be at least 1"
        );
        let message = dir.detail(&two_tenants("").replace("secret-b", "no-such-secret"));
        assert!(
            message.starts_with("tenants[1] (contoso-usgov): auth.client_secret_file: "),
            "{message}"
        );
        assert!(message.contains("no-such-secret"), "{message}");
        let message = dir.detail(&two_tenants("").replace(CLIENT_B, "my-app"));
        assert!(
            message.starts_with(
                "tenants[1] (contoso-usgov): auth.client_id: \"my-app\" is not a GUID"
            ),
            "{message}"
        );
    }

    #[test]
    fn schema_errors_in_a_tenant_name_it_the_key_and_the_line() {
        let dir = Dir::new();
        let message = dir.detail(&with_second_tenant(
            "",
            "    partner_center:\n      max_pages: many\n",
        ));
        assert!(
            message
                .starts_with("tenants[1] (contoso-usgov): partner_center.max_pages: invalid type"),
            "{message}"
        );
        assert!(message.contains("line 15"), "{message}");

        let message = dir.detail(&with_second_tenant(
            "",
            "    sources:\n      customer_licences:\n        enabled: true\n",
        ));
        assert!(
            message.starts_with("tenants[1] (contoso-usgov): sources"),
            "{message}"
        );
        assert!(message.contains("customer_licences"), "{message}");

        let message = dir.detail(&two_tenants("").replace(
            "tenant_id: contoso.onmicrosoft.us",
            "tenant: contoso.onmicrosoft.us",
        ));
        assert!(
            message.starts_with("tenants[1] (contoso-usgov): auth"),
            "{message}"
        );
        assert!(message.contains("unknown field `tenant`"), "{message}");
    }

    #[test]
    fn unknown_keys_in_a_tenant_are_refused_naming_the_key() {
        let dir = Dir::new();
        let message = dir.detail(&with_second_tenant("", "    labels: {team: gov}\n"));
        assert!(
            message.starts_with("tenants[1] (contoso-usgov): "),
            "{message}"
        );
        assert!(message.contains("unknown field `labels`"), "{message}");
        for key in ["poll", "state_dir"] {
            let message = dir.detail(&with_second_tenant("", &format!("    {key}: x\n")));
            assert_eq!(
                message,
                format!(
                    "tenants[1] (contoso-usgov): {key}: is shared by every tenant; set it at the top level, not in a tenant"
                )
            );
        }
        // The top level refuses unknown keys as always.
        let message = dir.detail(&two_tenants("scrape: {}\n"));
        assert!(message.contains("unknown field `scrape`"), "{message}");
    }

    #[test]
    fn a_top_level_auth_or_no_tenant_is_refused() {
        let dir = Dir::new();
        assert_eq!(
            dir.detail(&two_tenants("auth:\n  bearer_token_file: token\n")),
            "auth: is not used with tenants: each tenant has its own auth; move it into the tenants' entries"
        );
        assert_eq!(
            dir.detail("state_dir: state\ntenants: []\n"),
            "tenants: is empty; list at least one tenant, or remove `tenants` and configure a top-level `auth`"
        );
        let message = dir.detail("tenants:\n  - name: a\n");
        assert!(message.contains("missing field `auth`"), "{message}");
    }

    #[test]
    fn names_must_be_label_values_and_unique() {
        let dir = Dir::new();
        for bad in [
            "Contoso-EU",
            "contoso eu",
            "contoso.eu",
            "''",
            "../x",
            &"a".repeat(64),
        ] {
            let message = dir
                .detail(&two_tenants("").replace("name: contoso-usgov", &format!("name: {bad}")));
            assert!(message.starts_with("tenants[1].name: "), "{bad}: {message}");
            assert!(
                message.ends_with("use 1 to 63 characters of a-z, 0-9, _ and -"),
                "{bad}: {message}"
            );
        }
        let longest = "a".repeat(63);
        dir.parse(&two_tenants("").replace("name: contoso-usgov", &format!("name: {longest}")))
            .expect("63 characters are allowed");
        dir.parse(&two_tenants("").replace("name: contoso-usgov", "name: contoso_gov-2"))
            .expect("digits, _ and - are allowed");

        assert_eq!(
            dir.detail(&two_tenants("").replace("name: contoso-usgov", "name: contoso-eu")),
            "tenants: tenants[0] and tenants[1] are both named contoso-eu; every tenant needs a name of its own"
        );
    }

    #[test]
    fn two_tenants_cannot_share_a_refresh_token_file() {
        let dir = Dir::new();
        let yaml = two_tenants("")
            .replace(
                "      client_secret_file: secret-a\n",
                "      client_secret_file: secret-a\n      refresh_token_file: refresh-a\n",
            )
            .replace(
                "      client_secret_file: secret-b\n",
                "      client_secret_file: secret-b\n      refresh_token_file: ./refresh-a\n",
            );
        let message = dir.detail(&yaml);
        assert!(
            message.starts_with(
                "tenants: tenants[0] (contoso-eu) and tenants[1] (contoso-usgov) have the same auth.refresh_token_file "
            ),
            "{message}"
        );
        assert!(message.contains("refresh-a"), "{message}");
        let config = dir
            .parse(&yaml.replace("./refresh-a", "refresh-b"))
            .expect("a file each");
        assert_eq!(
            tenant(&config, "contoso-usgov").auth.refresh_token_file,
            Some(dir.dir.path().join("refresh-b"))
        );
    }

    #[test]
    fn secrets_from_the_environment_are_refused_with_tenants() {
        let dir = Dir::new();
        for (variables, named) in [
            (
                &[CLIENT_SECRET_ENV][..],
                "PARTNER_CENTER_CLIENT_SECRET cannot say which tenant it belongs to",
            ),
            (
                &[REFRESH_TOKEN_ENV],
                "PARTNER_CENTER_REFRESH_TOKEN cannot say which tenant it belongs to",
            ),
            (
                &[CLIENT_SECRET_ENV, REFRESH_TOKEN_ENV],
                "PARTNER_CENTER_CLIENT_SECRET and PARTNER_CENTER_REFRESH_TOKEN cannot say which tenant they belong to",
            ),
        ] {
            let environment = SecretEnvironment::from_lookup(|name| {
                variables
                    .contains(&name)
                    .then(|| "ENV-SECRET-VALUE".to_owned())
            });
            let message =
                Config::from_yaml_with_environment(&two_tenants(""), &dir.path(), environment)
                    .expect_err("refused")
                    .to_string();
            assert!(message.contains(&format!("tenants: {named}")), "{message}");
            assert!(message.contains("client_secret_file"), "{message}");
            assert!(message.contains("refresh_token_file"), "{message}");
            assert!(message.contains("login --tenant"), "{message}");
            assert!(!message.contains("ENV-SECRET-VALUE"), "{message}");
        }
        // The same variables still serve a file without tenants.
        let environment = SecretEnvironment {
            client_secret: Some(Secret::new("x")),
            refresh_token: None,
        };
        Config::from_yaml_with_environment(
            &format!("auth:\n  tenant_id: contoso.onmicrosoft.com\n  client_id: {CLIENT_A}\nstate_dir: state\n"),
            &dir.path(),
            environment,
        )
        .expect("valid without tenants");
    }

    #[test]
    fn merging_replaces_all_but_mappings() {
        let value = |yaml: &str| serde_yaml_ng::from_str::<Value>(yaml).expect("YAML");
        assert_eq!(
            deep_merge(
                &value("{a: 1, b: {c: 2, d: [1, 2]}, e: x}"),
                &value("{b: {d: [3], f: 4}, e: ~, g: 5}"),
            ),
            value("{a: 1, b: {c: 2, d: [3], f: 4}, e: ~, g: 5}")
        );
        assert_eq!(deep_merge(&value("{a: 1}"), &value("[1]")), value("[1]"));
    }
}
