//! What the two commercial analytics sources read alike from a row: the
//! customer and product identifiers (required, published lower-case, as
//! the reports send them upper-case and the other APIs lower-case) and
//! `processedDateTime` (optional: without it, the later row wins).

use chrono::{DateTime, Utc};

use crate::partner_center::collection::{Field, SkipReason};

/// A required identifier, lower-case.
pub fn identifier(field: Field, name: &'static str) -> Result<String, SkipReason> {
    Ok(field.required_text(name)?.trim().to_ascii_lowercase())
}

/// `processedDateTime` when the row has one; an unreadable one skips the row.
pub fn processed(field: Field) -> Result<Option<DateTime<Utc>>, SkipReason> {
    match field {
        Field::Absent => Ok(None),
        field => field.required_processed_date_time().map(Some),
    }
}
