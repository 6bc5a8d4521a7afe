//! The license usage collection as Partner Center sends it, and its lenient decoding.
//!
//! Decoding is item by item: an item that cannot be used is skipped with a
//! reason and the rest of the page is kept, so one odd row never costs a
//! whole poll. It happens in two steps. The envelope is read first, with
//! each element of `items` kept as its raw JSON text; that scan checks the
//! JSON syntax but neither converts numbers nor decodes `\u` escapes, and it
//! skips nested values without recursion, however deep they are. Then each
//! item is decoded on its own, so a number out of range (`1e400`) or a lone
//! surrogate (`"\ud800"`) inside one item skips that item, not the page.
//!
//! Only a body that is not a usable collection at all fails: not UTF-8,
//! not JSON (`NaN` and `Infinity` literals included), not a JSON object, no
//! `items` array, or a `links` that cannot be followed (it is read whole,
//! within serde_json's limit of 128 levels of nesting).

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// One usable `PartnerLicensesUsageInsights` item.
#[derive(Debug, Clone, PartialEq)]
pub struct LicenseUsage {
    /// `workloadName`, e.g. `Exchange`.
    pub workload: String,
    /// `serviceName`, e.g. `o365`.
    pub service: String,
    /// `channel`, e.g. `reseller`.
    pub channel: String,
    /// `proratedLicensesUsagePercent`, as received (the API does not say
    /// whether it is a 0–100 or a 0–1 share).
    pub prorated_percent: f64,
    /// `processedDateTime`: when Partner Center aggregated the figure.
    pub processed_at: DateTime<Utc>,
}

/// Why an item was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The array element is not a JSON object.
    NotAnObject,
    /// A required field is absent, `null`, empty or only white space.
    MissingField(&'static str),
    /// A field has a JSON type that cannot be used.
    WrongType(&'static str),
    /// The percentage is not a finite number.
    InvalidPercent,
    /// `processedDateTime` is not a date-time.
    InvalidDate,
    /// The item is well-formed JSON that cannot be read: a number beyond
    /// the range of a 64-bit float, or a `\u` escape that is no character.
    Malformed,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject => f.write_str("item is not a JSON object"),
            Self::MissingField(field) => write!(f, "{field} is missing or empty"),
            Self::WrongType(field) => write!(f, "{field} has the wrong type"),
            Self::InvalidPercent => {
                f.write_str("proratedLicensesUsagePercent is not a finite number")
            }
            Self::InvalidDate => f.write_str("processedDateTime is not a date-time"),
            Self::Malformed => f.write_str(
                "item is not valid JSON within the exporter's limits \
                 (a number out of range or a \\u escape that is no character)",
            ),
        }
    }
}

/// An item that was left out, by its position in the page's `items` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedItem {
    pub index: usize,
    pub reason: SkipReason,
}

/// A `links.next` continuation: where the rest of the collection is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextLink {
    /// Usually relative to the API root, sometimes without its `/v1`.
    pub uri: String,
    /// Headers to send with it, typically `MS-ContinuationToken`.
    pub headers: Vec<(String, String)>,
}

/// One decoded page of the collection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsagePage {
    pub items: Vec<LicenseUsage>,
    pub skipped: Vec<SkippedItem>,
    pub next: Option<NextLink>,
}

/// Why a body is not a usable collection.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("response is not valid UTF-8 at byte {0}")]
    NotUtf8(usize),
    #[error("response is not a JSON license usage collection: {0}")]
    Json(#[from] serde_json::Error),
    #[error("response has no `items` array")]
    NoItems,
    #[error("links.next cannot be followed: {0}")]
    BadNextLink(&'static str),
    #[error("decoding was cancelled: the exporter is shutting down")]
    Cancelled,
}

/// Decodes one page of `GET /v1/analytics/licenses/usage`.
pub fn decode_usage_page(body: &[u8]) -> Result<UsagePage, DecodeError> {
    // JSON text is UTF-8; checking it first names where a body goes wrong
    // and lets the items borrow their raw text from the body.
    let text = std::str::from_utf8(body).map_err(|err| DecodeError::NotUtf8(err.valid_up_to()))?;
    let raw: RawCollection<'_> = serde_json::from_str(text)?;
    let items = raw.items.ok_or(DecodeError::NoItems)?;
    let next = match raw.links {
        Some(links) => parse_next_link(links)?,
        None => None,
    };
    let mut page = UsagePage {
        items: Vec::with_capacity(items.len()),
        skipped: Vec::new(),
        next,
    };
    for (index, item) in items.into_iter().enumerate() {
        match decode_item(item) {
            Ok(usage) => page.items.push(usage),
            Err(reason) => page.skipped.push(SkippedItem { index, reason }),
        }
    }
    Ok(page)
}

/// Decodes one element of `items` from its raw JSON text.
fn decode_item(item: &RawValue) -> Result<LicenseUsage, SkipReason> {
    // The envelope's scan has checked the syntax already, so this fails only
    // on what that scan does not look into: numbers and `\u` escapes.
    serde_json::from_str::<RawItem>(item.get())
        .map_err(|_| SkipReason::Malformed)?
        .into_usage()
}

/// Reads `processedDateTime` in any of the forms Partner Center is known to
/// send: RFC 3339 with an offset, or without one (taken as UTC), with or
/// without fractional seconds, or a bare date (midnight UTC).
pub fn parse_processed_date_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.with_timezone(&Utc));
    }
    // Offsets without a colon, such as +0000.
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(parsed) = DateTime::parse_from_str(text, format) {
            return Some(parsed.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(text, format) {
            return Some(parsed.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
}

fn parse_next_link(links: serde_json::Value) -> Result<Option<NextLink>, DecodeError> {
    use serde_json::Value;
    let next = match links {
        Value::Null => return Ok(None),
        Value::Object(mut links) => match links.remove("next") {
            None | Some(Value::Null) => return Ok(None),
            Some(next) => next,
        },
        _ => return Err(DecodeError::BadNextLink("`links` is not an object")),
    };
    let Value::Object(mut next) = next else {
        return Err(DecodeError::BadNextLink("`links.next` is not an object"));
    };
    let uri = match next.remove("uri") {
        Some(Value::String(uri)) if !uri.trim().is_empty() => uri,
        _ => return Err(DecodeError::BadNextLink("`links.next.uri` is not a string")),
    };
    match next.remove("method") {
        None | Some(Value::Null) => {}
        Some(Value::String(method)) if method.eq_ignore_ascii_case("GET") => {}
        Some(_) => return Err(DecodeError::BadNextLink("`links.next.method` is not GET")),
    }
    let headers = match next.remove("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries
            .into_iter()
            .map(|entry| match entry {
                Value::Object(mut entry) => match (entry.remove("key"), entry.remove("value")) {
                    (Some(Value::String(key)), Some(Value::String(value))) => Ok((key, value)),
                    _ => Err(DecodeError::BadNextLink(
                        "a `links.next.headers` entry lacks a string key or value",
                    )),
                },
                _ => Err(DecodeError::BadNextLink(
                    "a `links.next.headers` entry is not an object",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(DecodeError::BadNextLink(
                "`links.next.headers` is not an array",
            ));
        }
    };
    Ok(Some(NextLink { uri, headers }))
}

/// The collection envelope, with `items` still raw. Unknown fields
/// (`totalCount`, `attributes`) are skipped unread.
struct RawCollection<'a> {
    items: Option<Vec<&'a RawValue>>,
    links: Option<serde_json::Value>,
}

/// The envelope fields the exporter reads.
enum CollectionKey {
    Items,
    Links,
    Other,
}

impl<'de> Deserialize<'de> for CollectionKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = CollectionKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<CollectionKey, E> {
                Ok(match key {
                    "items" => CollectionKey::Items,
                    "links" => CollectionKey::Links,
                    _ => CollectionKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawCollection<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CollectionVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for CollectionVisitor<'a> {
            type Value = RawCollection<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with an `items` array")
            }
            // Only an object is a collection: no `visit_seq`, so a top-level
            // array is not read as the envelope's fields in order.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RawCollection<'a>, E> {
                Err(string_instead_of(&self))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawCollection<'a>, A::Error> {
                let mut items = None;
                let mut links = None;
                while let Some(key) = map.next_key::<CollectionKey>()? {
                    match key {
                        // Two `items` would leave it open which page this is.
                        CollectionKey::Items if items.is_some() => {
                            return Err(de::Error::duplicate_field("items"));
                        }
                        CollectionKey::Items => {
                            items = Some(map.next_value::<Option<RawItems<'a>>>()?.map(|i| i.0));
                        }
                        CollectionKey::Links if links.is_some() => {
                            return Err(de::Error::duplicate_field("links"));
                        }
                        CollectionKey::Links => {
                            links = Some(map.next_value::<Option<serde_json::Value>>()?);
                        }
                        CollectionKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(RawCollection {
                    items: items.flatten(),
                    links: links.flatten(),
                })
            }
        }
        // `deserialize_any`, not `deserialize_map`: serde_json would quote
        // a string in its type error whole, however long.
        deserializer.deserialize_any(CollectionVisitor(std::marker::PhantomData))
    }
}

/// The `items` array, each element kept as its raw JSON text.
struct RawItems<'a>(Vec<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for RawItems<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ItemsVisitor<'a> {
            type Value = RawItems<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`items` to be an array")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RawItems<'a>, E> {
                Err(string_instead_of(&self))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawItems<'a>, A::Error> {
                // The hint comes from the input; cap it so a lying length cannot
                // allocate ahead of the data that backs it.
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(item) = seq.next_element::<&'a RawValue>()? {
                    items.push(item);
                }
                Ok(RawItems(items))
            }
        }
        // As for the envelope: a string is not quoted back in the error.
        deserializer.deserialize_any(ItemsVisitor(std::marker::PhantomData))
    }
}

/// The type error for a string where `expected` is wanted, without the
/// string itself: it comes from upstream, may be long, and the message ends
/// up in logs and on the landing page.
fn string_instead_of<E: de::Error>(expected: &dyn de::Expected) -> E {
    E::invalid_type(de::Unexpected::Other("string"), expected)
}

/// A field as found, before deciding whether the item is usable.
#[derive(Debug, Default)]
enum Field<T> {
    #[default]
    Absent,
    Present(T),
    WrongType,
}

/// One element of `items`, with every field kept whatever its JSON type.
#[derive(Default)]
struct RawItem {
    is_object: bool,
    workload: Field<String>,
    service: Field<String>,
    channel: Field<String>,
    percent: Field<f64>,
    processed: Field<String>,
}

impl RawItem {
    fn into_usage(self) -> Result<LicenseUsage, SkipReason> {
        if !self.is_object {
            return Err(SkipReason::NotAnObject);
        }
        let workload = required_label(self.workload, "workloadName")?;
        let service = required_label(self.service, "serviceName")?;
        let channel = required_label(self.channel, "channel")?;
        let prorated_percent = match self.percent {
            Field::Present(value) if value.is_finite() => value,
            Field::Present(_) => return Err(SkipReason::InvalidPercent),
            Field::Absent => return Err(SkipReason::MissingField("proratedLicensesUsagePercent")),
            Field::WrongType => return Err(SkipReason::InvalidPercent),
        };
        let processed_at = match self.processed {
            Field::Present(text) => {
                parse_processed_date_time(&text).ok_or(SkipReason::InvalidDate)?
            }
            Field::Absent => return Err(SkipReason::MissingField("processedDateTime")),
            Field::WrongType => return Err(SkipReason::WrongType("processedDateTime")),
        };
        Ok(LicenseUsage {
            workload,
            service,
            channel,
            prorated_percent,
            processed_at,
        })
    }
}

fn required_label(field: Field<String>, name: &'static str) -> Result<String, SkipReason> {
    match field {
        Field::Present(value) if !value.trim().is_empty() => Ok(value),
        Field::Present(_) | Field::Absent => Err(SkipReason::MissingField(name)),
        Field::WrongType => Err(SkipReason::WrongType(name)),
    }
}

/// The item fields the exporter reads; everything else is skipped unread.
enum ItemKey {
    Workload,
    Service,
    Channel,
    Percent,
    Processed,
    Other,
}

impl<'de> Deserialize<'de> for ItemKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = ItemKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<ItemKey, E> {
                Ok(match key {
                    "workloadName" => ItemKey::Workload,
                    "serviceName" => ItemKey::Service,
                    "channel" => ItemKey::Channel,
                    "proratedLicensesUsagePercent" => ItemKey::Percent,
                    "processedDateTime" => ItemKey::Processed,
                    _ => ItemKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for RawItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = RawItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a license usage item")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawItem, A::Error> {
                // A repeated key overwrites the earlier one, as most JSON readers do.
                let mut item = RawItem {
                    is_object: true,
                    ..RawItem::default()
                };
                while let Some(key) = map.next_key::<ItemKey>()? {
                    match key {
                        ItemKey::Workload => item.workload = map.next_value::<LenientString>()?.0,
                        ItemKey::Service => item.service = map.next_value::<LenientString>()?.0,
                        ItemKey::Channel => item.channel = map.next_value::<LenientString>()?.0,
                        ItemKey::Percent => item.percent = map.next_value::<LenientNumber>()?.0,
                        ItemKey::Processed => {
                            item.processed = map.next_value::<LenientString>()?.0;
                        }
                        ItemKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(item)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawItem, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawItem::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// A string field that records, rather than fails on, any other JSON type.
struct LenientString(Field<String>);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringVisitor;
        impl<'de> Visitor<'de> for StringVisitor {
            type Value = LenientString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<LenientString, E> {
                Ok(LenientString(Field::Present(value.to_owned())))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<LenientString, E> {
                Ok(LenientString(Field::Present(value)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientString, E> {
                Ok(LenientString(Field::Absent))
            }
            fn visit_none<E: de::Error>(self) -> Result<LenientString, E> {
                Ok(LenientString(Field::Absent))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientString, E> {
                Ok(LenientString(Field::WrongType))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<LenientString, E> {
                Ok(LenientString(Field::WrongType))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<LenientString, E> {
                Ok(LenientString(Field::WrongType))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientString, E> {
                Ok(LenientString(Field::WrongType))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LenientString, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientString(Field::WrongType))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientString, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientString(Field::WrongType))
            }
        }
        deserializer.deserialize_any(StringVisitor)
    }
}

/// A number field that takes integers, floats and numeric strings, and
/// records, rather than fails on, any other JSON type.
struct LenientNumber(Field<f64>);

impl<'de> Deserialize<'de> for LenientNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl<'de> Visitor<'de> for NumberVisitor {
            type Value = LenientNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Present(value as f64)))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Present(value as f64)))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Present(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<LenientNumber, E> {
                Ok(LenientNumber(match value.trim().parse::<f64>() {
                    Ok(number) => Field::Present(number),
                    Err(_) => Field::WrongType,
                }))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Absent))
            }
            fn visit_none<E: de::Error>(self) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Absent))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::WrongType))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LenientNumber, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientNumber(Field::WrongType))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientNumber, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientNumber(Field::WrongType))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/partner-licenses-usage.json");

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid date")
    }

    fn item(workload: &str, service: &str, day: u32) -> LicenseUsage {
        LicenseUsage {
            workload: workload.to_owned(),
            service: service.to_owned(),
            channel: "reseller".to_owned(),
            prorated_percent: 0.0,
            processed_at: utc(2017, 3, day, 0, 0, 0),
        }
    }

    #[test]
    fn documented_example_decodes_exactly() {
        let page = decode_usage_page(FIXTURE).expect("decodes");
        assert_eq!(
            page,
            UsagePage {
                items: vec![
                    item("Microsoft Dynamics CRM", "crm", 10),
                    item("SharePoint", "crm", 10),
                    item("Exchange", "o365", 9),
                    item("SharePoint", "o365", 9),
                    item("Skype For Business", "o365", 9),
                ],
                skipped: vec![],
                next: None,
            }
        );
    }

    #[test]
    fn lenient_dates() {
        let cases = [
            ("2017-03-09T00:00:00+00:00", utc(2017, 3, 9, 0, 0, 0)),
            ("2017-03-09T00:00:00Z", utc(2017, 3, 9, 0, 0, 0)),
            ("2018-10-14T00:00:00", utc(2018, 10, 14, 0, 0, 0)),
            ("2018-10-14T02:00:00+02:00", utc(2018, 10, 14, 0, 0, 0)),
            ("2018-10-14T00:00:00+0000", utc(2018, 10, 14, 0, 0, 0)),
            ("2018-10-14 05:06:07", utc(2018, 10, 14, 5, 6, 7)),
            ("2018-10-14", utc(2018, 10, 14, 0, 0, 0)),
            (" 2018-10-14T00:00:00 ", utc(2018, 10, 14, 0, 0, 0)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_processed_date_time(text), Some(expected), "{text}");
        }
        let fractional = parse_processed_date_time("2017-03-14T03:25:16.36+00:00").expect("parses");
        assert_eq!(
            fractional.timestamp_millis(),
            utc(2017, 3, 14, 3, 25, 16).timestamp_millis() + 360
        );
        let fractional_naive = parse_processed_date_time("2017-03-14T03:25:16.5").expect("parses");
        assert_eq!(
            fractional_naive.timestamp_millis(),
            utc(2017, 3, 14, 3, 25, 16).timestamp_millis() + 500
        );
        for bad in [
            "",
            "yesterday",
            "2017-13-01T00:00:00",
            "2017-03-09T25:00:00Z",
            "1488931200",
        ] {
            assert_eq!(parse_processed_date_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_as_integers_floats_and_numeric_strings() {
        let body = br#"{"items":[
            {"workloadName":"A","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":42},
            {"workloadName":"B","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":0.125},
            {"workloadName":"C","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":-3e2},
            {"workloadName":"D","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":" 17.5 "}
        ]}"#;
        let page = decode_usage_page(body).expect("decodes");
        let values: Vec<f64> = page.items.iter().map(|i| i.prorated_percent).collect();
        assert_eq!(values, vec![42.0, 0.125, -300.0, 17.5]);
        assert!(page.skipped.is_empty());
    }

    #[test]
    fn unusable_items_are_skipped_with_reasons_and_the_rest_kept() {
        let body = br#"{"totalCount": 9, "items":[
            {"workloadName":"Good","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":1, "extra": {"nested": [1,2,3]}},
            {"serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":1},
            {"workloadName":" \t","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":1},
            {"workloadName":"A","serviceName":7,"channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":1},
            {"workloadName":"A","serviceName":"s","channel":null,"processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":1},
            {"workloadName":"A","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":"lots"},
            {"workloadName":"A","serviceName":"s","channel":"c","processedDateTime":"never","proratedLicensesUsagePercent":1},
            {"workloadName":"A","serviceName":"s","channel":"c","proratedLicensesUsagePercent":1},
            "not an object",
            {"workloadName":"A","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":"NaN"}
        ]}"#;
        let page = decode_usage_page(body).expect("decodes");
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].workload, "Good");
        let reasons: Vec<(usize, SkipReason)> =
            page.skipped.iter().map(|s| (s.index, s.reason)).collect();
        assert_eq!(
            reasons,
            vec![
                (1, SkipReason::MissingField("workloadName")),
                (2, SkipReason::MissingField("workloadName")),
                (3, SkipReason::WrongType("serviceName")),
                (4, SkipReason::MissingField("channel")),
                (5, SkipReason::InvalidPercent),
                (6, SkipReason::InvalidDate),
                (7, SkipReason::MissingField("processedDateTime")),
                (8, SkipReason::NotAnObject),
                (9, SkipReason::InvalidPercent),
            ]
        );
    }

    #[test]
    fn label_values_are_kept_verbatim() {
        let body = "{\"items\":[{\"workloadName\":\"Sk\\\"ype\\\\ \\n für\",\"serviceName\":\"o365\",\"channel\":\"reseller\",\"processedDateTime\":\"2020-01-01T00:00:00Z\",\"proratedLicensesUsagePercent\":1}]}";
        let page = decode_usage_page(body.as_bytes()).expect("decodes");
        assert_eq!(page.items[0].workload, "Sk\"ype\\ \n für");
    }

    #[test]
    fn next_link_is_read_with_its_headers() {
        let body = br#"{"items":[],"links":{"next":{"uri":"/v1/analytics/licenses/usage?page=2","method":"GET","headers":[{"key":"MS-ContinuationToken","value":"abc"}]}}}"#;
        let page = decode_usage_page(body).expect("decodes");
        assert_eq!(
            page.next,
            Some(NextLink {
                uri: "/v1/analytics/licenses/usage?page=2".to_owned(),
                headers: vec![("MS-ContinuationToken".to_owned(), "abc".to_owned())],
            })
        );
        let without_next = br#"{"items":[],"links":{"self":{"uri":"/v1/x"}}}"#;
        assert_eq!(decode_usage_page(without_next).expect("decodes").next, None);
    }

    #[test]
    fn unusable_collections_fail() {
        let cases: [(&[u8], &str); 20] = [
            (b"<html>Service Unavailable</html>", "not a JSON"),
            (
                b"<!DOCTYPE html>\n<html><body><h1>502 Bad Gateway</h1></body></html>",
                "not a JSON",
            ),
            (b"", "not a JSON"),
            (b" \n", "not a JSON"),
            (b"{\"items\": [", "not a JSON"),
            (b"{\"items\": [{\"workloadName\": \"Exch", "not a JSON"),
            (b"{\"items\": []", "not a JSON"),
            (b"{\"items\": []} {}", "trailing characters"),
            (b"{\"totalCount\": 0}", "no `items`"),
            (b"{\"items\": null}", "no `items`"),
            (b"{\"items\": {\"a\": 1}}", "`items` to be an array"),
            (
                b"{\"items\": \"[]\"}",
                "invalid type: string, expected `items` to be an array",
            ),
            (b"{\"items\": [], \"items\": []}", "duplicate field `items`"),
            // Only an object is a collection, whatever an array holds.
            (b"[[]]", "a JSON object with an `items` array"),
            (b"null", "a JSON object with an `items` array"),
            (
                b"\"items\"",
                "invalid type: string, expected a JSON object with an `items` array",
            ),
            (br#"{"items":[],"links":{"next":{"method":"GET"}}}"#, "uri"),
            (
                br#"{"items":[],"links":{"next":{"uri":"/x","method":"POST"}}}"#,
                "GET",
            ),
            (
                br#"{"items":[],"links":{"next":{"uri":"/x","headers":[{"key":"k"}]}}}"#,
                "headers",
            ),
            (br#"{"items":[],"links":[]}"#, "`links` is not an object"),
        ];
        for (body, expected) in cases {
            let err = decode_usage_page(body).expect_err("must fail");
            assert!(err.to_string().contains(expected), "{err} lacks {expected}");
        }
    }

    #[test]
    fn errors_do_not_quote_strings_from_the_body() {
        let long = "x".repeat(100_000);
        for body in [
            format!(r#""{long}""#),
            format!(r#"{{"items":"{long}"}}"#),
            format!(r#"{{"items":[],"links":"{long}"}}"#),
            format!(r#"{{"items":[],"links":{{"next":{{"uri":"{long}","method":"{long}"}}}}}}"#),
        ] {
            let err = decode_usage_page(body.as_bytes()).expect_err("must fail");
            let message = err.to_string();
            assert!(message.len() < 200, "{message:.300}");
            assert!(!message.contains("xxx"), "{message:.300}");
        }
    }

    /// A usable item with `percent` spliced in as raw JSON text.
    fn with_percent(percent: &str) -> String {
        format!(
            r#"{{"workloadName":"W","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":{percent}}}"#
        )
    }

    /// A page of the given raw items.
    fn page_of(items: &[String]) -> String {
        format!(
            r#"{{"totalCount":{},"items":[{}]}}"#,
            items.len(),
            items.join(",")
        )
    }

    fn reasons(page: &UsagePage) -> Vec<(usize, SkipReason)> {
        page.skipped.iter().map(|s| (s.index, s.reason)).collect()
    }

    /// Runs `test` on a thread with the default 2 MiB stack of test
    /// threads, so that recursion on deep input would overflow here too.
    fn on_small_stack(test: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(test)
            .expect("spawn test thread")
            .join()
            .expect("test thread did not panic");
    }

    #[test]
    fn out_of_range_numbers_and_lone_surrogates_skip_only_their_item() {
        let good = with_percent("12.5");
        let items = [
            good.clone(),
            with_percent("1e400"),
            with_percent("-1e400"),
            good.replace(r#""W""#, r#""\ud800""#),
            good.replace(r#""W""#, r#""x\udfffy""#),
            good.replace(r#""s""#, r#""\ud83d""#),
            good.replace("\"2020", r#""\udbff2020"#),
            // Keys are decoded too: a lone surrogate in one is no character.
            good.replace(r#"{"workloadName""#, r#"{"\ud800":1,"workloadName""#),
            // Top-level values of an item are decoded, and fail the same way.
            "1e400".to_owned(),
            r#""\ud800""#.to_owned(),
            // In a field the exporter does not read, nothing is decoded.
            good.replace('{', r#"{"extra":[1e400,-1e400,"\ud800"],"#),
            // Too small for a float is zero, not an error.
            with_percent("1e-400"),
            good,
        ];
        let page = decode_usage_page(page_of(&items).as_bytes()).expect("the page decodes");
        let percents: Vec<f64> = page.items.iter().map(|i| i.prorated_percent).collect();
        assert_eq!(percents, vec![12.5, 12.5, 0.0, 12.5]);
        let malformed = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(
            reasons(&page),
            malformed
                .iter()
                .map(|&index| (index, SkipReason::Malformed))
                .collect::<Vec<_>>()
        );
        assert!(
            SkipReason::Malformed
                .to_string()
                .contains("number out of range"),
            "{}",
            SkipReason::Malformed
        );
    }

    #[test]
    fn deep_nesting_inside_an_item_costs_at_most_that_item() {
        on_small_stack(|| {
            for depth in [200, 100_000] {
                let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
                let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
                let good = with_percent("1");
                let items = [
                    good.clone(),
                    arrays.clone(),
                    objects.clone(),
                    good.replace(r#""W""#, &arrays),
                    good.replace("1}", &format!("{objects}}}")),
                    // Nested values in fields the exporter does not read are
                    // skipped unread, so the item is used.
                    good.replace('{', &format!(r#"{{"extra":{arrays},"more":{objects},"#)),
                ];
                let page = decode_usage_page(page_of(&items).as_bytes())
                    .unwrap_or_else(|err| panic!("depth {depth}: {err}"));
                assert_eq!(page.items.len(), 2, "depth {depth}");
                assert_eq!(
                    reasons(&page),
                    vec![
                        (1, SkipReason::NotAnObject),
                        (2, SkipReason::MissingField("workloadName")),
                        (3, SkipReason::WrongType("workloadName")),
                        (4, SkipReason::InvalidPercent),
                    ],
                    "depth {depth}"
                );
            }
        });
    }

    #[test]
    fn deep_nesting_outside_items_fails_without_overflowing_the_stack() {
        on_small_stack(|| {
            let depth = 100_000;
            let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
            let failing = [
                (arrays.clone(), "a JSON object with an `items` array"),
                (objects.clone(), "no `items`"),
                ("[".repeat(depth), "a JSON object with an `items` array"),
                ("{\"a\":".repeat(depth), "EOF while parsing"),
                (
                    format!(r#"{{"items":[],"links":{arrays}}}"#),
                    "recursion limit",
                ),
                (
                    format!(r#"{{"items":[],"links":{objects}}}"#),
                    "recursion limit",
                ),
            ];
            for (body, expected) in failing {
                let err = decode_usage_page(body.as_bytes()).expect_err("must fail");
                assert!(err.to_string().contains(expected), "{err} lacks {expected}");
            }
            // Envelope fields the exporter does not read are skipped unread.
            let unread = format!(r#"{{"attributes":{arrays},"items":[],"totalCount":{objects}}}"#);
            let page = decode_usage_page(unread.as_bytes()).expect("decodes");
            assert_eq!(page, UsagePage::default());
        });
    }

    #[test]
    fn a_body_that_is_not_utf8_fails_naming_the_byte() {
        let good = page_of(&[with_percent("1")]);
        let at = good.find("\"W\"").expect("workload") + 2;
        let mut bad_in_a_label = good.clone().into_bytes();
        bad_in_a_label.insert(at, 0xff);
        let mut truncated_sequence = good.clone().into_bytes();
        truncated_sequence.truncate(at);
        truncated_sequence.extend_from_slice(&[0xe2, 0x82]);
        let cases: [(&[u8], usize); 5] = [
            (&bad_in_a_label, at),
            (b"\xff{\"items\":[]}", 0),
            (b"{\"items\":[]}\xc0\x80", 12),
            // An encoded surrogate is not UTF-8 either.
            (b"{\"items\":[\"\xed\xa0\x80\"]}", 11),
            (&truncated_sequence, at),
        ];
        for (body, offset) in cases {
            let err = decode_usage_page(body).expect_err("must fail");
            assert_eq!(
                err.to_string(),
                format!("response is not valid UTF-8 at byte {offset}")
            );
        }
    }

    #[test]
    fn nan_and_infinity_are_no_json_but_as_strings_skip_their_item() {
        for literal in [
            "NaN",
            "Infinity",
            "-Infinity",
            "+1",
            "01",
            "1.",
            ".5",
            "0x10",
        ] {
            let body = page_of(&[with_percent("1"), with_percent(literal)]);
            let err = decode_usage_page(body.as_bytes()).expect_err(literal);
            assert!(err.to_string().contains("not a JSON"), "{literal}: {err}");
        }
        let strings = [
            r#""NaN""#,
            r#""nan""#,
            r#""Infinity""#,
            r#""-inf""#,
            r#""1e400""#,
            r#""""#,
            r#""12%""#,
        ];
        let mut items: Vec<String> = strings.iter().map(|s| with_percent(s)).collect();
        items.push(with_percent(r#""-1e-400""#));
        let page = decode_usage_page(page_of(&items).as_bytes()).expect("decodes");
        assert_eq!(
            reasons(&page),
            (0..strings.len())
                .map(|index| (index, SkipReason::InvalidPercent))
                .collect::<Vec<_>>()
        );
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].prorated_percent, 0.0);
    }

    #[test]
    fn nulls_wrong_types_and_empty_strings_skip_with_the_field_named() {
        let good = with_percent("1");
        let cases: Vec<(String, SkipReason)> = vec![
            (
                good.replace(r#""W""#, "null"),
                SkipReason::MissingField("workloadName"),
            ),
            (
                good.replace(r#""W""#, r#""""#),
                SkipReason::MissingField("workloadName"),
            ),
            (
                good.replace(r#""s""#, r#"" \n\t""#),
                SkipReason::MissingField("serviceName"),
            ),
            (
                good.replace(r#""c""#, "null"),
                SkipReason::MissingField("channel"),
            ),
            (
                good.replace(r#""W""#, "true"),
                SkipReason::WrongType("workloadName"),
            ),
            (
                good.replace(r#""s""#, "[\"s\"]"),
                SkipReason::WrongType("serviceName"),
            ),
            (
                good.replace(r#""c""#, r#"{"name":"c"}"#),
                SkipReason::WrongType("channel"),
            ),
            (
                good.replace(r#""c""#, "-7.5"),
                SkipReason::WrongType("channel"),
            ),
            (
                with_percent("null"),
                SkipReason::MissingField("proratedLicensesUsagePercent"),
            ),
            (with_percent("false"), SkipReason::InvalidPercent),
            (with_percent("[1]"), SkipReason::InvalidPercent),
            (with_percent(r#"{"value":1}"#), SkipReason::InvalidPercent),
            (
                good.replace(r#""2020-01-01T00:00:00Z""#, "null"),
                SkipReason::MissingField("processedDateTime"),
            ),
            (
                good.replace(r#""2020-01-01T00:00:00Z""#, r#""""#),
                SkipReason::InvalidDate,
            ),
            (
                good.replace(r#""2020-01-01T00:00:00Z""#, "1577836800"),
                SkipReason::WrongType("processedDateTime"),
            ),
            ("null".to_owned(), SkipReason::NotAnObject),
            ("[]".to_owned(), SkipReason::NotAnObject),
            ("{}".to_owned(), SkipReason::MissingField("workloadName")),
            ("\"\"".to_owned(), SkipReason::NotAnObject),
            ("0".to_owned(), SkipReason::NotAnObject),
        ];
        let items: Vec<String> = cases.iter().map(|(item, _)| item.clone()).collect();
        let page = decode_usage_page(page_of(&items).as_bytes()).expect("decodes");
        assert!(page.items.is_empty(), "{:?}", page.items);
        assert_eq!(
            reasons(&page),
            cases
                .iter()
                .enumerate()
                .map(|(index, (_, reason))| (index, *reason))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn hostile_label_values_are_kept_exactly_as_received() {
        // JSON string literal as sent → the label value it stands for.
        let labels = [
            (r#""say \"hi\"""#, "say \"hi\""),
            (r#""C:\\temp\\""#, "C:\\temp\\"),
            (r#""two\nlines\r\n""#, "two\nlines\r\n"),
            (r#""tab\tnul\u0000bell\u0007""#, "tab\tnul\u{0}bell\u{7}"),
            (r#""für Grüße""#, "für Grüße"),
            (r#""f\u00fcr""#, "für"),
            (r#""\ud83d\ude00 😀""#, "😀 😀"),
            (r#""مرحبا \u202ertl""#, "مرحبا \u{202e}rtl"),
            (r#"" padded ""#, " padded "),
            (r#""a\/b""#, "a/b"),
            (r#""} 1\n# HELP x""#, "} 1\n# HELP x"),
        ];
        let items: Vec<String> = labels
            .iter()
            .map(|(json, _)| {
                with_percent("1")
                    .replace(r#""W""#, json)
                    .replace(r#""s""#, json)
                    .replace(r#""c""#, json)
            })
            .collect();
        let page = decode_usage_page(page_of(&items).as_bytes()).expect("decodes");
        assert!(page.skipped.is_empty(), "{:?}", page.skipped);
        let received: Vec<(&str, &str, &str)> = page
            .items
            .iter()
            .map(|i| (i.workload.as_str(), i.service.as_str(), i.channel.as_str()))
            .collect();
        let expected: Vec<(&str, &str, &str)> = labels.iter().map(|(_, v)| (*v, *v, *v)).collect();
        assert_eq!(received, expected);
    }

    #[test]
    fn any_finite_percent_is_kept_as_received() {
        let cases = [
            ("-5", -5.0),
            ("-0.0", -0.0),
            ("250", 250.0),
            ("100.0000001", 100.0000001),
            ("1.7976931348623157e308", f64::MAX),
            ("-1.7976931348623157e308", f64::MIN),
            ("5e-324", 5e-324),
            ("18446744073709551616", 18_446_744_073_709_551_616.0),
            ("-9223372036854775809", -9_223_372_036_854_775_809.0),
            (r#""-12.5""#, -12.5),
            (r#""1e3""#, 1000.0),
        ];
        let items: Vec<String> = cases.iter().map(|(json, _)| with_percent(json)).collect();
        let page = decode_usage_page(page_of(&items).as_bytes()).expect("decodes");
        assert!(page.skipped.is_empty(), "{:?}", page.skipped);
        let received: Vec<u64> = page
            .items
            .iter()
            .map(|i| i.prorated_percent.to_bits())
            .collect();
        let expected: Vec<u64> = cases.iter().map(|(_, value)| value.to_bits()).collect();
        assert_eq!(received, expected);
    }

    #[test]
    fn a_repeated_item_field_takes_the_last_value() {
        let item = with_percent("1").replace('{', r#"{"workloadName":"first","#);
        let page = decode_usage_page(page_of(&[item]).as_bytes()).expect("decodes");
        assert_eq!(page.items[0].workload, "W");
    }

    #[test]
    fn a_million_items_decode() {
        const COUNT: usize = 1_000_000;
        const USABLE_EVERY: usize = 20;
        // Small items, mostly ones that are skipped quickly so the test
        // stays fast in a debug build; one in twenty is a whole usable item.
        let tiny = ["{}", "null", "7", "[]", r#"{"channel":null}"#];
        let mut body = String::with_capacity(COUNT * 16);
        body.push_str(r#"{"totalCount":1000000,"items":["#);
        for index in 0..COUNT {
            if index > 0 {
                body.push(',');
            }
            if index % USABLE_EVERY == 0 {
                body.push_str(&format!(
                    r#"{{"workloadName":"w{index}","serviceName":"s","channel":"c","proratedLicensesUsagePercent":{},"processedDateTime":"2020-01-01T00:00:00Z"}}"#,
                    index % 101
                ));
            } else {
                body.push_str(tiny[index % tiny.len()]);
            }
        }
        body.push_str("]}");
        let started = std::time::Instant::now();
        let page = decode_usage_page(body.as_bytes()).expect("decodes");
        let elapsed = started.elapsed();
        assert_eq!(page.items.len(), COUNT / USABLE_EVERY);
        assert_eq!(page.items.len() + page.skipped.len(), COUNT);
        let last = page.items.last().expect("usable items");
        assert_eq!(last.workload, format!("w{}", COUNT - USABLE_EVERY));
        assert_eq!(last.prorated_percent, ((COUNT - USABLE_EVERY) % 101) as f64);
        assert_eq!(
            page.skipped.last(),
            Some(&SkippedItem {
                index: COUNT - 1,
                reason: SkipReason::MissingField("workloadName")
            })
        );
        eprintln!(
            "decoded {COUNT} items ({} bytes) in {elapsed:?}",
            body.len()
        );
    }
}
