//! The operator's filters on per-customer data: which customers are
//! covered (`customers.include`/`exclude`) and which SKUs are left out
//! (`skus.exclude`, `skus.max_units`), compiled once at start.
//!
//! Customers are filtered before any request is made for them, so an
//! excluded customer costs nothing of the tenant's request budget.

use globset::{GlobBuilder, GlobMatcher};

/// One entry of `customers.include` or `customers.exclude`.
#[derive(Debug, Clone)]
enum CustomerPattern {
    /// A customer tenant ID, lower-case.
    TenantId(String),
    /// A glob on the company name, case-insensitive.
    Name(GlobMatcher),
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

/// A case-insensitive glob; `/` is an ordinary character in names.
fn glob(text: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(text)
        .case_insensitive(true)
        .literal_separator(false)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|err| format!("{text:?} is not a usable glob: {}", err.kind()))
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
    sku_exclude: Vec<GlobMatcher>,
    /// 0: off.
    max_units: u64,
}

/// The filters as configured: `customers.include`, `customers.exclude`,
/// `skus.exclude` and `skus.max_units`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterSettings<'a> {
    pub include: &'a [String],
    pub exclude: &'a [String],
    pub sku_exclude: &'a [String],
    pub max_units: u64,
}

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
    fn guids_are_told_from_names() {
        assert!(is_guid(CONTOSO));
        assert!(is_guid("0112A436-B14E-4888-967B-CA4BB2CF1234"));
        assert!(!is_guid("Contoso"));
        assert!(!is_guid("b44bb1fb-c595-45b0-9e09-d657365580b"));
        assert!(!is_guid("b44bb1fbxc595-45b0-9e09-d657365580bf"));
    }
}
