//! Which partner tenant a series belongs to: the `tenant` label that every
//! series of a `tenants` configuration carries, and that a single-tenant
//! configuration leaves out, so its series stay as they always were.

use std::sync::Arc;

/// The name of the label that tells partner tenants apart.
pub const TENANT_LABEL: &str = "tenant";

/// A partner tenant's label value, or none for the one tenant of a
/// configuration without `tenants`. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantLabel(Option<Arc<str>>);

impl TenantLabel {
    /// The tenant of a configuration without `tenants`: no label.
    pub const NONE: Self = Self(None);

    /// A named tenant of a `tenants` configuration.
    pub fn named(name: &str) -> Self {
        Self(Some(Arc::from(name)))
    }

    /// The tenant's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The label pair a series of this tenant starts with, if any.
    pub fn pair(&self) -> Option<(&'static str, &str)> {
        self.name().map(|name| (TENANT_LABEL, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_named_tenant_has_a_label() {
        assert_eq!(TenantLabel::NONE.pair(), None);
        assert_eq!(TenantLabel::default(), TenantLabel::NONE);
        let named = TenantLabel::named("contoso-eu");
        assert_eq!(named.pair(), Some(("tenant", "contoso-eu")));
        assert_eq!(named.name(), Some("contoso-eu"));
    }
}
