//! Partner Center's v1 collections as they arrive, read leniently: the
//! envelope (`items`, `links.next`), and the fields of one item.
//!
//! Decoding is item by item: an item that cannot be used is skipped with a
//! reason and the rest of the page is kept, so one odd row never costs a
//! whole poll. It happens in two steps. The envelope is read first, with
//! each element of `items` kept as its raw JSON text; that scan checks the
//! JSON syntax but neither converts numbers nor decodes `\u` escapes, and it
//! skips nested values without recursion, however deep they are. Then each
//! item is decoded on its own by the source it belongs to (through
//! [`read_fields`]), so a number out of range (`1e400`) or a lone surrogate
//! (`"\ud800"`) inside one item skips that item, not the page.
//!
//! Only a body that is not a usable collection at all fails: not UTF-8,
//! not JSON (`NaN` and `Infinity` literals included), not a JSON object, no
//! `items` array, or a `links` that cannot be followed (it is read whole,
//! within serde_json's limit of 128 levels of nesting).
//!
//! Nothing here knows a dataset: sources name the fields they read and
//! turn them into their items.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why an item was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The array element is not a JSON object.
    NotAnObject,
    /// A required field is absent, `null`, empty or only white space.
    MissingField(&'static str),
    /// A field has a JSON type that cannot be used.
    WrongType(&'static str),
    /// A number field is not a finite number (or not a number at all).
    InvalidNumber(&'static str),
    /// `processedDateTime` is not a date-time.
    InvalidDate,
    /// The item is well-formed JSON that cannot be read: a number beyond
    /// the range of a 64-bit float, or a `\u` escape that is no character.
    Malformed,
    /// A field of an otherwise usable item is missing or unreadable: the
    /// item is published without the series that field feeds.
    PartLeftOut(&'static str),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject => f.write_str("item is not a JSON object"),
            Self::MissingField(field) => write!(f, "{field} is missing or empty"),
            Self::WrongType(field) => write!(f, "{field} has the wrong type"),
            Self::InvalidNumber(field) => write!(f, "{field} is not a finite number"),
            Self::InvalidDate => f.write_str("processedDateTime is not a date-time"),
            Self::Malformed => f.write_str(
                "item is not valid JSON within the exporter's limits \
                 (a number out of range or a \\u escape that is no character)",
            ),
            Self::PartLeftOut(field) => write!(
                f,
                "{field} is missing or unreadable: only the series it feeds is left out"
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

/// One decoded page of a collection, its items already the source's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub skipped: Vec<SkippedItem>,
    pub next: Option<NextLink>,
    /// The rows the whole answer holds, when the page says (the
    /// commercial reports' `TotalCount`).
    pub total_count: Option<u64>,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            skipped: Vec::new(),
            next: None,
            total_count: None,
        }
    }
}

/// How a source turns the raw JSON text of one item into its own item.
pub type ItemDecoder<T> = fn(&RawValue) -> Result<T, SkipReason>;

/// Why a body is not a usable collection.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("response is not valid UTF-8 at byte {0}")]
    NotUtf8(usize),
    #[error("response is not a JSON collection: {0}")]
    Json(#[from] serde_json::Error),
    #[error("response has no `items` array")]
    NoItems,
    #[error("response has no `Value` array")]
    NoValue,

    #[error("links.next cannot be followed: {0}")]
    BadNextLink(&'static str),
    #[error("decoding was cancelled: the exporter is shutting down")]
    Cancelled,
}

/// Decodes one page of a v1 collection, each item with `decode_item`.
pub fn decode_page<T>(body: &[u8], decode_item: ItemDecoder<T>) -> Result<Page<T>, DecodeError> {
    let raw = read_envelope(body)?;
    let items = raw.items.ok_or(DecodeError::NoItems)?;
    let next = match raw.links {
        Some(links) => parse_next_link(links)?,
        None => None,
    };
    Ok(decode_items(items, decode_item, next, None))
}

/// Decodes one page of a commercial analytics report, whose envelope is
/// capitalised unlike v1's: `{ "Value": [...], "@nextLink": …, "TotalCount": n }`.
/// A non-null `@nextLink` is kept as an opaque link, without headers.
pub fn decode_commercial_page<T>(
    body: &[u8],
    decode_item: ItemDecoder<T>,
) -> Result<Page<T>, DecodeError> {
    let raw = read_envelope(body)?;
    let items = raw.value.ok_or(DecodeError::NoValue)?;
    let next = match raw.next_link {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(uri)) if uri.trim().is_empty() => None,
        Some(serde_json::Value::String(uri)) => Some(NextLink {
            uri,
            headers: Vec::new(),
        }),
        Some(_) => return Err(DecodeError::BadNextLink("`@nextLink` is not a string")),
    };
    // Only a hint of how far to page: an unusable one is as good as none.
    let total_count = raw.total_count.as_ref().and_then(serde_json::Value::as_u64);
    Ok(decode_items(items, decode_item, next, total_count))
}

/// Checks the body is UTF-8 and reads its envelope, items still raw.
fn read_envelope(body: &[u8]) -> Result<RawCollection<'_>, DecodeError> {
    // JSON text is UTF-8; checking it first names where a body goes wrong
    // and lets the items borrow their raw text from the body.
    let text = std::str::from_utf8(body).map_err(|err| DecodeError::NotUtf8(err.valid_up_to()))?;
    Ok(serde_json::from_str(text)?)
}

fn decode_items<T>(
    items: Vec<&RawValue>,
    decode_item: ItemDecoder<T>,
    next: Option<NextLink>,
    total_count: Option<u64>,
) -> Page<T> {
    let mut page = Page {
        items: Vec::with_capacity(items.len()),
        skipped: Vec::new(),
        next,
        total_count,
    };
    for (index, item) in items.into_iter().enumerate() {
        match decode_item(item) {
            Ok(item) => page.items.push(item),
            Err(reason) => page.skipped.push(SkippedItem { index, reason }),
        }
    }
    page
}

/// How a field of an item is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A JSON string.
    Text,
    /// A JSON number, or a string holding one.
    Number,
    /// A JSON object, kept as its text for [`Field::object_fields`].
    Object,
    /// A JSON boolean, or a string `"true"` or `"false"` in any case.
    Flag,
}

/// A field as found, before the source decides whether the item is usable.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Field {
    /// Not in the item, or `null`.
    #[default]
    Absent,
    Text(String),
    Number(f64),
    /// A JSON object's raw text.
    Object(String),
    Flag(bool),
    /// Present with a JSON type its [`FieldKind`] cannot read.
    WrongType,
}

impl Field {
    /// A label value: a string that is not empty or only white space.
    pub fn required_text(self, name: &'static str) -> Result<String, SkipReason> {
        match self {
            Self::Text(value) if !value.trim().is_empty() => Ok(value),
            Self::Text(_) | Self::Absent => Err(SkipReason::MissingField(name)),
            Self::Number(_) | Self::Object(_) | Self::Flag(_) | Self::WrongType => {
                Err(SkipReason::WrongType(name))
            }
        }
    }

    /// A string, or `None` when absent, empty or of another type: for
    /// fields that only label an `_info` series.
    pub fn optional_text(self) -> Option<String> {
        match self {
            Self::Text(value) if !value.trim().is_empty() => Some(value),
            _ => None,
        }
    }

    /// The fields of a nested object, read as [`read_fields`] reads an item's.
    pub fn object_fields<const N: usize>(
        self,
        name: &'static str,
        spec: &[(&'static str, FieldKind); N],
    ) -> Result<[Field; N], SkipReason> {
        match self {
            Self::Object(text) => {
                let raw = RawValue::from_string(text).map_err(|_| SkipReason::Malformed)?;
                read_fields(&raw, spec)
            }
            Self::Absent => Err(SkipReason::MissingField(name)),
            Self::Text(_) | Self::Number(_) | Self::Flag(_) | Self::WrongType => {
                Err(SkipReason::WrongType(name))
            }
        }
    }

    /// A finite number.
    pub fn required_number(self, name: &'static str) -> Result<f64, SkipReason> {
        match self {
            Self::Number(value) if value.is_finite() => Ok(value),
            Self::Absent => Err(SkipReason::MissingField(name)),
            Self::Number(_) | Self::Text(_) | Self::Object(_) | Self::Flag(_) | Self::WrongType => {
                Err(SkipReason::InvalidNumber(name))
            }
        }
    }

    /// `processedDateTime`, in any of the forms Partner Center sends
    /// (see [`parse_processed_date_time`]).
    pub fn required_processed_date_time(self) -> Result<DateTime<Utc>, SkipReason> {
        match self {
            Self::Text(text) => parse_processed_date_time(&text).ok_or(SkipReason::InvalidDate),
            Self::Absent => Err(SkipReason::MissingField("processedDateTime")),
            Self::Number(_) | Self::Object(_) | Self::Flag(_) | Self::WrongType => {
                Err(SkipReason::WrongType("processedDateTime"))
            }
        }
    }
}

/// A [`FieldKind::Flag`] field from its raw JSON text.
fn flag(raw: &str) -> Field {
    let text = raw.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|quoted| quoted.strip_suffix('"'))
        .unwrap_or(text)
        .trim();
    if text.eq_ignore_ascii_case("true") {
        Field::Flag(true)
    } else if text.eq_ignore_ascii_case("false") {
        Field::Flag(false)
    } else if text == "null" {
        Field::Absent
    } else {
        Field::WrongType
    }
}

/// Reads the fields named in `spec` from the raw JSON text of one item, in
/// the order of `spec`; every other field is skipped unread. A repeated
/// key overwrites the earlier one, as most JSON readers do.
pub fn read_fields<const N: usize>(
    item: &RawValue,
    spec: &[(&'static str, FieldKind); N],
) -> Result<[Field; N], SkipReason> {
    let mut deserializer = serde_json::Deserializer::from_str(item.get());
    // The envelope's scan has checked the syntax already, so this fails only
    // on what that scan does not look into: numbers and `\u` escapes.
    let fields = ItemSeed { spec }
        .deserialize(&mut deserializer)
        .map_err(|_| SkipReason::Malformed)?;
    fields.ok_or(SkipReason::NotAnObject)
}

/// Reads one item: `Some` fields for an object, `None` for anything else.
struct ItemSeed<'s, const N: usize> {
    spec: &'s [(&'static str, FieldKind); N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for ItemSeed<'_, N> {
    type Value = Option<[Field; N]>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for ItemSeed<'_, N> {
    type Value = Option<[Field; N]>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an item")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: [Field; N] = std::array::from_fn(|_| Field::Absent);
        while let Some(index) = map.next_key_seed(KeySeed { spec: self.spec })? {
            match index {
                Some(index) => {
                    fields[index] = match self.spec[index].1 {
                        FieldKind::Text => map.next_value::<LenientString>()?.0,
                        FieldKind::Number => map.next_value::<LenientNumber>()?.0,
                        FieldKind::Object => {
                            let raw = map.next_value::<&RawValue>()?;
                            if raw.get().trim_start().starts_with('{') {
                                Field::Object(raw.get().to_owned())
                            } else if raw.get().trim() == "null" {
                                Field::Absent
                            } else {
                                Field::WrongType
                            }
                        }
                        FieldKind::Flag => flag(map.next_value::<&RawValue>()?.get()),
                    };
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(fields))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads a key of an item: the index of the field in the spec, or `None`
/// for a field nobody reads.
struct KeySeed<'s, const N: usize> {
    spec: &'s [(&'static str, FieldKind); N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for KeySeed<'_, N> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<const N: usize> Visitor<'_> for KeySeed<'_, N> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.spec.iter().position(|(name, _)| *name == key))
    }
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

/// The collection envelope, with `items` (or the commercial reports'
/// `Value`) still raw. Unknown fields (`totalCount`, `attributes`) are
/// skipped unread.
struct RawCollection<'a> {
    items: Option<Vec<&'a RawValue>>,
    links: Option<serde_json::Value>,
    value: Option<Vec<&'a RawValue>>,
    next_link: Option<serde_json::Value>,
    total_count: Option<serde_json::Value>,
}

/// The envelope fields the exporter reads.
enum CollectionKey {
    Items,
    Links,
    Value,
    NextLink,
    TotalCount,
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
                    "Value" => CollectionKey::Value,
                    "@nextLink" => CollectionKey::NextLink,
                    "TotalCount" => CollectionKey::TotalCount,
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
                let mut value = None;
                let mut next_link = None;
                let mut total_count = None;
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
                        CollectionKey::Value if value.is_some() => {
                            return Err(de::Error::duplicate_field("Value"));
                        }
                        CollectionKey::Value => {
                            value = Some(map.next_value::<Option<RawItems<'a>>>()?.map(|i| i.0));
                        }
                        CollectionKey::NextLink if next_link.is_some() => {
                            return Err(de::Error::duplicate_field("@nextLink"));
                        }
                        CollectionKey::NextLink => {
                            next_link = Some(map.next_value::<serde_json::Value>()?);
                        }
                        CollectionKey::TotalCount => {
                            total_count = Some(map.next_value::<serde_json::Value>()?);
                        }
                        CollectionKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(RawCollection {
                    items: items.flatten(),
                    links: links.flatten(),
                    value: value.flatten(),
                    next_link,
                    total_count,
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

/// A string field that records, rather than fails on, any other JSON type.
struct LenientString(Field);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringVisitor;
        impl<'de> Visitor<'de> for StringVisitor {
            type Value = LenientString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<LenientString, E> {
                Ok(LenientString(Field::Text(value.to_owned())))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<LenientString, E> {
                Ok(LenientString(Field::Text(value)))
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
struct LenientNumber(Field);

impl<'de> Deserialize<'de> for LenientNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl<'de> Visitor<'de> for NumberVisitor {
            type Value = LenientNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Number(value as f64)))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Number(value as f64)))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Number(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<LenientNumber, E> {
                Ok(LenientNumber(match value.trim().parse::<f64>() {
                    Ok(number) => Field::Number(number),
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
