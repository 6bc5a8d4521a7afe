//! Every path a demo partner serves about its customers, and the dataset
//! served there: its customer listing, licences and commercial reports
//! ([`super::demo_partner`]) and its customers' subscriptions
//! ([`super::demo_subscriptions`]), drawn from its one table of
//! customers. Its partner-level datasets are [`super::datasets::demo_for`]
//! its [`DemoPartner::figures`].

use super::datasets::Dataset;
use super::demo_partner::{self, DemoPartner};
use super::demo_subscriptions;

/// Every per-customer path of `partner` and the dataset served there.
pub fn datasets(partner: &DemoPartner) -> Vec<(String, Dataset)> {
    let tenants = partner.tenants();
    let mut served = demo_partner::licence_datasets(&tenants);
    served.extend(demo_subscriptions::datasets(&tenants));
    served
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::simulator::demo_partner::{
        COMMERCIAL_DEPLOYMENT_PATH, COMMERCIAL_USAGE_PATH, CUSTOMERS_PATH, GDAP_REFUSAL_BODY,
        subscribed_skus_path,
    };
    use crate::simulator::demo_subscriptions::{provisioning_status_path, subscriptions_path};

    /// Every path of `partner`, each once, checked against its customers
    /// and their subscriptions.
    fn assert_every_customer_is_served(partner: &DemoPartner) -> BTreeSet<String> {
        let served = datasets(partner);
        let paths: BTreeSet<String> = served.iter().map(|(path, _)| path.clone()).collect();
        assert_eq!(paths.len(), served.len());
        let customers = partner.customers();
        let subscriptions = demo_subscriptions::of_tenants(&partner.tenants());
        let statuses: usize = subscriptions.iter().map(Vec::len).sum();
        assert_eq!(served.len(), 2 * customers.len() + statuses + 3);
        for (customer, subscriptions) in customers.iter().zip(&subscriptions) {
            assert!(paths.contains(&subscribed_skus_path(&customer.id)));
            assert!(paths.contains(&subscriptions_path(&customer.id)));
            assert!(!subscriptions.is_empty(), "{}", customer.name);
            for subscription in subscriptions {
                let path = provisioning_status_path(&customer.id, &subscription.id);
                assert!(paths.contains(&path), "{}: {path}", customer.name);
            }
        }
        for path in [
            CUSTOMERS_PATH,
            COMMERCIAL_USAGE_PATH,
            COMMERCIAL_DEPLOYMENT_PATH,
        ] {
            assert!(paths.contains(path), "{path}");
            assert!(!path.starts_with("/partner/"), "{path}");
        }
        paths
    }

    #[test]
    fn every_customer_but_one_is_served_its_licences_and_all_their_subscriptions() {
        assert_every_customer_is_served(&DemoPartner::contoso());
        let refusal: serde_json::Value = serde_json::from_str(GDAP_REFUSAL_BODY).expect("JSON");
        assert_eq!(refusal["code"], 3000);
        assert_eq!(refusal["source"], "PartnerFD");
        assert!(
            refusal["description"]
                .as_str()
                .is_some_and(|d| d.contains("GDAP"))
        );
    }

    #[test]
    fn the_second_partner_serves_its_own_customers_on_the_same_paths() {
        let contoso = assert_every_customer_is_served(&DemoPartner::contoso());
        let fabrikam = assert_every_customer_is_served(&DemoPartner::fabrikam());
        let customers = DemoPartner::fabrikam().customers();
        assert!((5..=8).contains(&customers.len()), "{}", customers.len());
        // The listing and the reports are at the same paths; every path
        // about a customer is its own.
        let shared: Vec<&String> = contoso.intersection(&fabrikam).collect();
        assert_eq!(
            shared,
            [
                COMMERCIAL_DEPLOYMENT_PATH,
                COMMERCIAL_USAGE_PATH,
                CUSTOMERS_PATH
            ]
        );
    }
}
