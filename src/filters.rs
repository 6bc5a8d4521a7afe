//! The operator's filters on per-customer data: which customers are
//! covered (`customers.include`/`exclude`) and which SKUs are left out
//! (`skus.exclude`, `skus.max_units`), compiled once at start.
//!
//! Customers are filtered before any request is made for them, so an
//! excluded customer costs nothing of the tenant's request budget.
//!
//! Globs are shell-like and case-insensitive: `*` matches any run of
//! characters, `?` any one, everything else itself. That is all a name or
//! part-number filter needs, and matching them here keeps a regex engine
//! out of the binary.

/// One entry of `customers.include` or `customers.exclude`.
#[derive(Debug, Clone)]
enum CustomerPattern {
    /// A customer tenant ID, lower-case.
    TenantId(String),
    /// A glob on the company name, case-insensitive.
    Name(Glob),
}

impl CustomerPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an entry is empty".to_owned());
        }
        if is_guid(text) {
            return Ok(Self::TenantId(text.to_ascii_lowercase()));
        }
        glob(text).map(Self::Name)
    }

    fn matches(&self, tenant_id: &str, name: &str) -> bool {
        match self {
            Self::TenantId(id) => id.eq_ignore_ascii_case(tenant_id),
            Self::Name(glob) => glob.is_match(name),
        }
    }
}

/// A case-insensitive glob of `*`, `?` and literal characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern, lower-case, as characters.
    pattern: Vec<char>,
}

impl Glob {
    /// Whether `text` matches the whole pattern, whatever its case.
    pub fn is_match(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
        let pattern = &self.pattern;
        // The classic two-cursor wildcard match: on a mismatch after a
        // `*`, the `*` takes one more character. Linear in practice,
        // never exponential.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|c| *c == '*')
    }
}

/// Compiles a glob. Character classes and escapes are not glob syntax
/// here; a pattern that looks like one is refused rather than matched as
/// literal text the operator did not mean.
fn glob(text: &str) -> Result<Glob, String> {
    if let Some(c) = text
        .chars()
        .find(|c| matches!(c, '[' | ']' | '{' | '}' | '\\'))
    {
        return Err(format!(
            "{text:?} is not a usable glob: {c:?} is not supported (only * and ?)"
        ));
    }
    Ok(Glob {
        pattern: text.chars().flat_map(char::to_lowercase).collect(),
    })
}

/// Whether `text` is a GUID such as `b44bb1fb-c595-45b0-9e09-d657365580bf`.
pub fn is_guid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// The compiled filters.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    include: Vec<CustomerPattern>,
    exclude: Vec<CustomerPattern>,
    sku_exclude: Vec<Glob>,
    /// 0: off.
    max_units: u64,
    /// Lower-case; empty: every status.
    subscription_statuses: Vec<String>,
}

/// The filters as configured: `customers.include`, `customers.exclude`,
/// `skus.exclude`, `skus.max_units` and `subscriptions.statuses`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterSettings<'a> {
    pub include: &'a [String],
    pub exclude: &'a [String],
    pub sku_exclude: &'a [String],
    pub max_units: u64,
    pub subscription_statuses: &'a [String],
}

/// The subscription statuses Partner Center documents.
pub const SUBSCRIPTION_STATUSES: [&str; 7] = [
    "none",
    "active",
    "pending",
    "suspended",
    "expired",
    "disabled",
    "deleted",
];

impl Filters {
    /// Compiles the filters; an unusable entry is refused with the key it
    /// is under.
    pub fn new(settings: FilterSettings<'_>) -> Result<Self, (&'static str, String)> {
        let patterns = |key: &'static str, entries: &[String]| {
            entries
                .iter()
                .map(|entry| CustomerPattern::parse(entry).map_err(|message| (key, message)))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            include: patterns("customers.include", settings.include)?,
            exclude: patterns("customers.exclude", settings.exclude)?,
            sku_exclude: settings
                .sku_exclude
                .iter()
                .map(|entry| match entry.trim() {
                    "" => Err(("skus.exclude", "an entry is empty".to_owned())),
                    text => glob(text).map_err(|message| ("skus.exclude", message)),
                })
                .collect::<Result<_, _>>()?,
            max_units: settings.max_units,
            subscription_statuses: settings
                .subscription_statuses
                .iter()
                .map(|status| {
                    let status = status.trim().to_ascii_lowercase();
                    if SUBSCRIPTION_STATUSES.contains(&status.as_str()) {
                        Ok(status)
                    } else {
                        Err((
                            "subscriptions.statuses",
                            format!(
                                "unknown status {status:?}, expected some of {}",
                                SUBSCRIPTION_STATUSES.join(", ")
                            ),
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether the customer is covered: included (or no include list) and
    /// not excluded. `name` is the company name, empty when unknown.
    pub fn admits_customer(&self, tenant_id: &str, name: &str) -> bool {
        (self.include.is_empty()
            || self
                .include
                .iter()
                .any(|pattern| pattern.matches(tenant_id, name)))
            && !self
                .exclude
                .iter()
                .any(|pattern| pattern.matches(tenant_id, name))
    }

    /// Whether a SKU is published: its part number is not excluded and it
    /// has fewer than `skus.max_units` units (active + warning).
    pub fn admits_sku(&self, part_number: &str, units: f64) -> bool {
        !self
            .sku_exclude
            .iter()
            .any(|glob| glob.is_match(part_number))
            && (self.max_units == 0 || units < self.max_units as f64)
    }

    /// Whether a subscription with this (lower-case) status is published.
    pub fn admits_subscription_status(&self, status: &str) -> bool {
        self.subscription_statuses.is_empty()
            || self
                .subscription_statuses
                .iter()
                .any(|known| known == status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| (*e).to_owned()).collect()
    }

    fn filters(include: &[&str], exclude: &[&str], skus: &[&str], max_units: u64) -> Filters {
        Filters::new(FilterSettings {
            include: &list(include),
            exclude: &list(exclude),
            sku_exclude: &list(skus),
            max_units,
            ..Default::default()
        })
        .expect("valid filters")
    }

    const CONTOSO: &str = "b44bb1fb-c595-45b0-9e09-d657365580bf";

    #[test]
    fn no_lists_cover_every_customer() {
        let all = filters(&[], &[], &[], 0);
        assert!(all.admits_customer(CONTOSO, "Contoso"));
        assert!(all.admits_customer("anything", ""));
    }

    #[test]
    fn ids_match_whatever_their_case_and_names_by_glob() {
        let only = filters(
            &["B44BB1FB-C595-45B0-9E09-D657365580BF", "north*"],
            &[],
            &[],
            0,
        );
        assert!(only.admits_customer(CONTOSO, "Contoso"));
        assert!(only.admits_customer("45c44870-ef77-4fdd-b6fe-3dacb075cff2", "Northwind Traders"));
        assert!(!only.admits_customer("45c44870-ef77-4fdd-b6fe-3dacb075cff2", "Fabrikam"));
    }

    #[test]
    fn exclusion_wins_over_inclusion() {
        let some = filters(&["*"], &["*Test*", CONTOSO], &[], 0);
        assert!(!some.admits_customer(CONTOSO, "Contoso"));
        assert!(!some.admits_customer("x", "LARACHOTEST123"));
        assert!(some.admits_customer("x", "Fabrikam / EMEA"));
    }

    #[test]
    fn skus_are_left_out_by_part_number_and_by_size() {
        let skus = filters(&[], &[], &["FLOW_FREE", "stream*"], 10_000);
        assert!(!skus.admits_sku("FLOW_FREE", 5.0));
        assert!(!skus.admits_sku("STREAM", 5.0));
        assert!(!skus.admits_sku("SPE_E3", 10_000.0));
        assert!(skus.admits_sku("SPE_E3", 9_999.0));
        let unlimited = filters(&[], &[], &[], 0);
        assert!(unlimited.admits_sku("FLOW_FREE", 1_000_000.0));
    }

    #[test]
    fn unusable_entries_are_refused_naming_their_key() {
        let refused = |include: &[&str], skus: &[&str]| {
            Filters::new(FilterSettings {
                include: &list(include),
                sku_exclude: &list(skus),
                ..FilterSettings::default()
            })
            .expect_err("refused")
        };
        let (key, message) = refused(&["[unclosed"], &[]);
        assert_eq!(key, "customers.include");
        assert!(message.contains("[unclosed"), "{message}");
        assert_eq!(refused(&[], &[" "]).0, "skus.exclude");
        assert_eq!(refused(&[""], &[]).0, "customers.include");
    }

    #[test]
    fn globs_match_whole_names_with_star_and_question_mark() {
        let matches = |pattern: &str, text: &str| glob(pattern).expect("glob").is_match(text);
        assert!(matches("contoso*", "Contoso Ltd"));
        assert!(matches("*TEST*", "larachotest123"));
        assert!(matches("f?brikam", "Fabrikam"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(matches("a*b*c", "abcbc"));
        assert!(matches("ÉCOLE*", "école du nord"));
        assert!(!matches("contoso", "Contoso Ltd"), "the whole name");
        assert!(!matches("?", ""));
        assert!(!matches("a*b*c", "aXXbYY"));
        // No blow-up on the inputs that make naive matchers exponential.
        let long = "a".repeat(2_000);
        assert!(!matches(&format!("{}b", "*a".repeat(50)), &long));
    }

    #[test]
    fn guids_are_told_from_names() {
        assert!(is_guid(CONTOSO));
        assert!(is_guid("0112A436-B14E-4888-967B-CA4BB2CF1234"));
        assert!(!is_guid("Contoso"));
        assert!(!is_guid("b44bb1fb-c595-45b0-9e09-d657365580b"));
        assert!(!is_guid("b44bb1fbxc595-45b0-9e09-d657365580bf"));
    }

    #[test]
    fn subscription_statuses_are_read_in_any_case_and_unknown_ones_refused() {
        let statuses = list(&["Active", " suspended "]);
        let filters = Filters::new(FilterSettings {
            subscription_statuses: &statuses,
            ..Default::default()
        })
        .expect("valid statuses");
        assert!(filters.admits_subscription_status("active"));
        assert!(filters.admits_subscription_status("suspended"));
        assert!(!filters.admits_subscription_status("expired"));
        assert!(
            Filters::default().admits_subscription_status("expired"),
            "no list: every status"
        );
        let unknown = list(&["active", "cancelled"]);
        let (key, message) = Filters::new(FilterSettings {
            subscription_statuses: &unknown,
            ..Default::default()
        })
        .expect_err("an unknown status");
        assert_eq!(key, "subscriptions.statuses");
        assert!(
            message.contains("\"cancelled\"") && message.contains("suspended"),
            "{message}"
        );
    }
}
