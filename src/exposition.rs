//! The `/metrics` body as ready bytes: parts rendered once, each kept as
//! plain text and as compressed deflate data, put together per scrape
//! without copying or compressing anything; and the one place where
//! exposition text is formatted (headers, label values, numbers), which
//! every family goes through.
//!
//! A scrape is a handful of [`Part`]s (the exporter's own metrics, the
//! polls' health, each source's families, the process metrics), each
//! rendered when what it shows changes. A source's families are rendered
//! as a header part and a samples part each ([`FamilyParts`]), so that a
//! family held by several slots (a source now; a source and a partner
//! tenant later) is put together with its `# HELP` and `# TYPE` once
//! ([`Exposition::push_families`]). Sent plain, the parts follow each
//! other as they are. Sent gzip-compressed, they make one gzip member, not
//! one member per part: every part's deflate data ends with a sync flush
//! (byte-aligned, not final), so they can follow each other inside one
//! deflate stream, closed by an empty final block; the CRC-32 of the whole
//! text is combined from the parts' own without reading them again. One
//! member is what every client reads: Go's reader (and so Prometheus) also
//! reads several members, but browsers and some HTTP libraries stop after
//! the first.

pub mod metrics;

use std::io::Write as _;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::tenant::TenantLabel;

/// How hard parts are compressed. A part is compressed once and sent many
/// times, but a 100 000-series snapshot is tens of megabytes of text and
/// is compressed on every poll: the fastest level keeps that to a fraction
/// of the poll's decoding, and exposition text, being highly repetitive,
/// still shrinks about tenfold.
const COMPRESSION: flate2::Compression = flate2::Compression::fast();

/// The gzip member header (RFC 1952 §2.3): deflate, no flags, no
/// modification time, no extra flags, unknown operating system.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty final deflate block with fixed codes (RFC 1951 §3.2.6):
/// BFINAL 1, BTYPE 01 and the end-of-block code, seven zero bits.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// One piece of the exposition, rendered and compressed once.
///
/// Cloning copies no data: both encodings are reference-counted.
#[derive(Debug, Clone, Default)]
pub struct Part {
    plain: Bytes,
    /// Raw deflate data ending in a sync flush; `None` when compressing
    /// failed, which sends scrapes plain instead.
    deflated: Option<Bytes>,
    /// CRC-32 of `plain`, for the gzip trailer.
    crc: u32,
}

impl Part {
    /// A part from text in the exposition format, compressed here.
    pub fn new(mut plain: Vec<u8>) -> Self {
        let crc = crc32fast::hash(&plain);
        let deflated = match deflate_segment(&plain) {
            Ok(deflated) => Some(Bytes::from(deflated)),
            Err(err) => {
                tracing::warn!(error = %err, "cannot compress part of /metrics; scrapes are sent plain");
                None
            }
        };
        plain.shrink_to_fit();
        Self {
            plain: Bytes::from(plain),
            deflated,
            crc,
        }
    }

    /// The part's text.
    pub fn plain(&self) -> &[u8] {
        &self.plain
    }

    /// The part's text as a string. The renderers write only UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.plain).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty()
    }
}

/// Compresses `data` into raw deflate data that ends with a sync flush: an
/// empty stored block that byte-aligns the output without ending the
/// stream, so more deflate data may follow it.
fn deflate_segment(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::with_capacity(data.len() / 8 + 64), COMPRESSION);
    encoder.write_all(data)?;
    // flate2's encoders flush with a sync flush.
    encoder.flush()?;
    // Taken before the encoder is dropped: dropping it finishes the stream
    // with a final block, which must only close the whole response.
    let mut out = std::mem::take(encoder.get_mut());
    out.shrink_to_fit();
    Ok(out)
}

/// One metric family of one slot: its `# HELP`/`# TYPE` lines and its
/// samples, rendered apart so a scrape can write the header once for all
/// slots that hold the family.
#[derive(Debug, Clone)]
pub struct FamilyParts {
    pub name: &'static str,
    pub header: Part,
    pub samples: Part,
}

/// The families of one slot, in the order they are written.
#[derive(Debug, Clone, Default)]
pub struct RenderedFamilies(pub Vec<FamilyParts>);

impl RenderedFamilies {
    /// The slot's text, each family with its header; for tests and tools.
    pub fn to_plain(&self) -> Vec<u8> {
        let mut exposition = Exposition::new();
        exposition.push_families(&[self]);
        exposition.to_plain()
    }
}

/// What one scrape sends: parts in order.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    parts: Vec<Part>,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a part; empty parts are left out.
    pub fn push(&mut self, part: Part) {
        if !part.is_empty() {
            self.parts.push(part);
        }
    }

    /// Appends the families of `slots`, each family once: its header (the
    /// first slot's), then every slot's samples of it. A family without
    /// samples in any slot is left out, header and all.
    pub fn push_families(&mut self, slots: &[&RenderedFamilies]) {
        let mut names: Vec<&'static str> = Vec::new();
        for slot in slots {
            for family in &slot.0 {
                if !names.contains(&family.name) {
                    names.push(family.name);
                }
            }
        }
        for name in names {
            let mut held = slots
                .iter()
                .flat_map(|slot| slot.0.iter())
                .filter(|family| family.name == name && !family.samples.is_empty())
                .peekable();
            let Some(first) = held.peek() else {
                continue;
            };
            self.push(first.header.clone());
            for family in held {
                self.push(family.samples.clone());
            }
        }
    }

    /// The length of the plain text.
    pub fn plain_len(&self) -> usize {
        self.parts.iter().map(|part| part.plain.len()).sum()
    }

    /// The plain text, one frame per part.
    pub fn plain_frames(&self) -> Vec<Bytes> {
        self.parts.iter().map(|part| part.plain.clone()).collect()
    }

    /// The plain text in one buffer (copied; for tests and tools, not scrapes).
    pub fn to_plain(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.plain_len());
        for part in &self.parts {
            out.extend_from_slice(&part.plain);
        }
        out
    }

    /// The text as one gzip member, in frames that share the parts'
    /// compressed data; `None` when a part could not be compressed.
    pub fn gzip_frames(&self) -> Option<Vec<Bytes>> {
        let mut frames = Vec::with_capacity(self.parts.len() + 2);
        frames.push(Bytes::from_static(&GZIP_HEADER));
        let mut crc = crc32fast::Hasher::new();
        let mut length: u64 = 0;
        for part in &self.parts {
            frames.push(part.deflated.clone()?);
            let len = part.plain.len() as u64;
            crc.combine(&crc32fast::Hasher::new_with_initial_len(part.crc, len));
            length += len;
        }
        let mut trailer = Vec::with_capacity(FINAL_BLOCK.len() + 8);
        trailer.extend_from_slice(&FINAL_BLOCK);
        trailer.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1).
        trailer.extend_from_slice(&(length as u32).to_le_bytes());
        frames.push(Bytes::from(trailer));
        Some(frames)
    }
}

/// A time as Unix seconds with millisecond precision, as every
/// `*_timestamp_seconds` gauge here shows it.
pub fn unix_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

/// Writes a family's `# HELP` and `# TYPE` lines.
pub fn write_header(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    // HELP text escapes backslash and line feed (not the double quote).
    for byte in help.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            byte => out.push(byte),
        }
    }
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
}

/// Writes one sample line. The value is formatted as the `prometheus`
/// crate's text encoder formats it (Rust's shortest round-trip form), so
/// both halves of a scrape read alike.
pub fn write_sample(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)], value: f64) {
    write_labelled_sample(out, name, labels.iter().copied(), value);
}

/// Writes one sample line of `tenant`'s: its `tenant` label (if it has
/// one) before `labels`.
pub fn write_tenant_sample(
    out: &mut Vec<u8>,
    tenant: &TenantLabel,
    name: &str,
    labels: &[(&str, &str)],
    value: f64,
) {
    write_labelled_sample(
        out,
        name,
        tenant.pair().into_iter().chain(labels.iter().copied()),
        value,
    );
}

/// As [`write_tenant_sample`], with label names and values given apart,
/// as a source holds them.
pub fn write_tenant_sample_of(
    out: &mut Vec<u8>,
    tenant: &TenantLabel,
    name: &str,
    names: &[&str],
    values: &[&str],
    value: f64,
) {
    write_labelled_sample(
        out,
        name,
        tenant
            .pair()
            .into_iter()
            .chain(names.iter().copied().zip(values.iter().copied())),
        value,
    );
}

fn write_labelled_sample<'a>(
    out: &mut Vec<u8>,
    name: &str,
    labels: impl Iterator<Item = (&'a str, &'a str)>,
    value: f64,
) {
    out.extend_from_slice(name.as_bytes());
    let mut separator = b'{';
    for (label, label_value) in labels {
        out.push(separator);
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(b"=\"");
        write_label_value(out, label_value);
        out.push(b'"');
        separator = b',';
    }
    if separator == b',' {
        out.push(b'}');
    }
    out.push(b' ');
    write_value(out, value);
    out.push(b'\n');
}

/// Writes a label value escaped for the text format: backslash, double
/// quote and line feed.
fn write_label_value(out: &mut Vec<u8>, value: &str) {
    if !value
        .bytes()
        .any(|byte| matches!(byte, b'\\' | b'"' | b'\n'))
    {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            byte => out.push(byte),
        }
    }
}

fn write_value(out: &mut Vec<u8>, value: f64) {
    // Writing to a Vec cannot fail.
    //
    // Whole numbers where f64 is exact print as integers, exactly as
    // `Display` prints them, but without its float machinery: most values
    // here are timestamps and counts.
    if value.fract() == 0.0 && value.abs() < 1e15 && !(value == 0.0 && value.is_sign_negative()) {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip_single(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("one valid gzip member");
        out
    }

    fn gunzip_multi(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    fn exposition_of(texts: &[&[u8]]) -> Exposition {
        let mut exposition = Exposition::new();
        for text in texts {
            exposition.push(Part::new(text.to_vec()));
        }
        exposition
    }

    #[test]
    fn parts_make_one_gzip_member_equal_to_the_plain_text() {
        let big: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("metric_{}{{a=\"{i}\"}} {i}\n", i % 7).into_bytes())
            .collect();
        let exposition = exposition_of(&[b"a 1\n", &big, b"", b"# HELP b x\nb 2\n"]);
        let plain = exposition.to_plain();
        assert_eq!(plain.len(), exposition.plain_len());
        assert_eq!(plain, exposition.plain_frames().concat());
        let gzip = exposition.gzip_frames().expect("compressed").concat();
        assert_eq!(
            gunzip_single(&gzip),
            plain,
            "a reader of single members sees everything"
        );
        assert_eq!(gunzip_multi(&gzip), plain);
        assert!(
            gzip.len() < plain.len() / 4,
            "{} of {}",
            gzip.len(),
            plain.len()
        );
        // Nothing follows the member: a multi-member reader finds no second one.
        let mut decoder = flate2::bufread::GzDecoder::new(&gzip[..]);
        std::io::copy(&mut decoder, &mut std::io::sink()).expect("decoded");
        assert!(decoder.into_inner().is_empty(), "bytes after the member");
    }

    #[test]
    fn an_empty_exposition_is_a_valid_empty_gzip_member() {
        let exposition = exposition_of(&[b""]);
        assert_eq!(exposition.plain_len(), 0);
        let gzip = exposition.gzip_frames().expect("compressed").concat();
        assert!(gunzip_single(&gzip).is_empty());
    }

    #[test]
    fn samples_escape_label_values_and_format_values_like_the_prometheus_crate() {
        let mut out = Vec::new();
        write_header(&mut out, "m", "a \\ help\nline", "gauge");
        write_sample(&mut out, "m", &[("a", "x\"y\\z\nw"), ("b", "plain")], 12.5);
        write_sample(&mut out, "m", &[], 1_489_017_600.0);
        write_sample(&mut out, "m", &[], -0.0);
        write_sample(&mut out, "m", &[], f64::NAN);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "# HELP m a \\\\ help\\nline\n# TYPE m gauge\n\
             m{a=\"x\\\"y\\\\z\\nw\",b=\"plain\"} 12.5\n\
             m 1489017600\n\
             m -0\n\
             m NaN\n"
        );
        for value in [0.1, 1.0, 3.0, -7.0, 1e15, 1e300, 123_456.789, f64::INFINITY] {
            let mut out = Vec::new();
            write_value(&mut out, value);
            assert_eq!(String::from_utf8(out).expect("utf-8"), value.to_string());
        }
    }

    #[test]
    fn a_named_tenant_leads_its_samples_labels_and_the_unnamed_one_adds_none() {
        let contoso = TenantLabel::named("contoso-eu");
        let mut out = Vec::new();
        write_tenant_sample(&mut out, &contoso, "m", &[("source", "s")], 1.0);
        write_tenant_sample(&mut out, &contoso, "m", &[], 2.0);
        write_tenant_sample(&mut out, &TenantLabel::NONE, "m", &[("source", "s")], 3.0);
        write_tenant_sample(&mut out, &TenantLabel::NONE, "m", &[], 4.0);
        write_tenant_sample_of(&mut out, &contoso, "m", &["a", "b"], &["x", "y"], 5.0);
        write_tenant_sample_of(&mut out, &TenantLabel::NONE, "m", &["a"], &["x"], 6.0);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "m{tenant=\"contoso-eu\",source=\"s\"} 1\n\
             m{tenant=\"contoso-eu\"} 2\n\
             m{source=\"s\"} 3\n\
             m 4\n\
             m{tenant=\"contoso-eu\",a=\"x\",b=\"y\"} 5\n\
             m{a=\"x\"} 6\n"
        );
    }
}
