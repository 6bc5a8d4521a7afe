//! Every path the demo partner serves, and the dataset served there: its
//! customer listing, licences and commercial reports
//! ([`super::demo_partner`]) and its customers' subscriptions
//! ([`super::demo_subscriptions`]), drawn from one table of customers.

use super::datasets::Dataset;
use super::{demo_partner, demo_subscriptions};

/// Every path of the demo partner and the dataset served there.
pub fn datasets() -> Vec<(String, Dataset)> {
    let tenants = demo_partner::demo_tenants();
    let mut served = demo_partner::licence_datasets(&tenants);
    served.extend(demo_subscriptions::datasets(&tenants));
    served
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::simulator::demo_partner::{
        COMMERCIAL_DEPLOYMENT_PATH, COMMERCIAL_USAGE_PATH, CUSTOMERS_PATH, DEMO_CUSTOMERS,
        GDAP_REFUSAL_BODY, customers, subscribed_skus_path,
    };
    use crate::simulator::demo_subscriptions::{provisioning_status_path, subscriptions_path};

    #[test]
    fn every_customer_but_one_is_served_its_licences_and_all_their_subscriptions() {
        let served = datasets();
        let paths: BTreeSet<&str> = served.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(paths.len(), served.len());
        let subscriptions = demo_subscriptions::of_tenants(&demo_partner::demo_tenants());
        let statuses: usize = subscriptions.iter().map(Vec::len).sum();
        assert_eq!(served.len(), 2 * DEMO_CUSTOMERS.len() + statuses + 3);
        for (customer, subscriptions) in customers().iter().zip(&subscriptions) {
            assert!(paths.contains(subscribed_skus_path(&customer.id).as_str()));
            assert!(paths.contains(subscriptions_path(&customer.id).as_str()));
            assert!(!subscriptions.is_empty(), "{}", customer.name);
            for subscription in subscriptions {
                let path = provisioning_status_path(&customer.id, &subscription.id);
                assert!(paths.contains(path.as_str()), "{}: {path}", customer.name);
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
        let refusal: serde_json::Value = serde_json::from_str(GDAP_REFUSAL_BODY).expect("JSON");
        assert_eq!(refusal["code"], 3000);
        assert_eq!(refusal["source"], "PartnerFD");
        assert!(
            refusal["description"]
                .as_str()
                .is_some_and(|d| d.contains("GDAP"))
        );
    }
}
