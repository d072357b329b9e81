//! Trust anchors: the built-in root keys, zone-file lines (unbound's
//! `trust-anchor:`, `trust-anchor-file:` and the RFC 5011 state file of
//! `auto-trust-anchor-file:`), and names declared insecure.

use signpost_wire::{NameBuf, RecordType, base64_decode, parse_ttl_class_type, tokenize};

use crate::Error;
use crate::records::{Dnskey, Ds};

/// The root zone's anchors as IANA publishes them (root-anchors.xml): KSK-2017 and KSK-2024.
const ROOT_ANCHORS: &str = "\
. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
";

/// The trust anchor of one zone: DS records, DNSKEY records, or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The zone.
    pub name: NameBuf,
    /// DS records pointing at trusted keys.
    pub ds: Vec<Ds>,
    /// Trusted keys.
    pub keys: Vec<Dnskey>,
}

/// Every configured trust anchor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    anchors: Vec<Anchor>,
}

impl TrustAnchors {
    /// No anchors: everything validates as insecure.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in root anchors (KSK-2017, KSK-2024), as unbound's default `root.key`.
    pub fn root() -> Self {
        let mut anchors = Self::empty();
        // The constant is checked by a unit test, so this cannot fail.
        let _ = anchors.add_text(ROOT_ANCHORS, "built-in root anchor");
        anchors
    }

    /// Whether no anchor is configured.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The anchors, one per zone.
    pub fn iter(&self) -> impl Iterator<Item = &Anchor> {
        self.anchors.iter()
    }

    /// Read `path` and add its anchors as [`TrustAnchors::add_text`] does
    /// (configuration time: the validator itself does no I/O).
    pub fn add_file(&mut self, path: &std::path::Path) -> Result<usize, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Read { path: path.to_path_buf(), source: std::sync::Arc::new(source) })?;
        self.add_text(&text, &path.display().to_string())
    }

    /// Add the DS and DNSKEY records of zone-file text, as a
    /// `trust-anchor-file` or `auto-trust-anchor-file` holds them. Records in
    /// an RFC 5011 state other than VALID or MISSING (unbound writes
    /// `;;state=N` after each key) are not trusted. `file` names the source in errors.
    pub fn add_text(&mut self, text: &str, file: &str) -> Result<usize, Error> {
        let mut added = 0;
        for entry in file_entries(text, file)? {
            // unbound's autotrust states: 2 VALID and 3 MISSING are anchors; no state is VALID.
            let trusted = entry.number_after("state=").is_none_or(|state| matches!(state, 2 | 3));
            if trusted {
                self.add_entry(&entry.code, file, entry.line)?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// Add one record in presentation form, as unbound's `trust-anchor:` takes it.
    pub fn add_record(&mut self, text: &str, source: &str, line: usize) -> Result<(), Error> {
        self.add_entry(text, source, line)
    }

    fn add_entry(&mut self, text: &str, file: &str, line: usize) -> Result<(), Error> {
        let (name, _, record) = parse_anchor_record(text, file, line)?;
        self.add_anchor_record(name, record);
        Ok(())
    }

    fn add_anchor_record(&mut self, name: NameBuf, record: AnchorRecord) {
        match record {
            AnchorRecord::Ds(ds) => self.entry(name).ds.push(ds),
            AnchorRecord::Dnskey(key) => self.entry(name).keys.push(key),
        }
    }

    /// Put `anchor` in place of the zone's anchor (RFC 5011 tracking changed
    /// it), or remove the zone's anchor when `anchor` has neither DS nor keys.
    pub fn replace(&mut self, zone: &NameBuf, anchor: Option<Anchor>) {
        self.anchors.retain(|existing| existing.name != *zone);
        if let Some(anchor) = anchor.filter(|anchor| !anchor.ds.is_empty() || !anchor.keys.is_empty()) {
            self.anchors.push(anchor);
        }
    }

    fn entry(&mut self, name: NameBuf) -> &mut Anchor {
        let index = match self.anchors.iter().position(|anchor| anchor.name == name) {
            Some(index) => index,
            None => {
                self.anchors.push(Anchor { name, ds: Vec::new(), keys: Vec::new() });
                self.anchors.len() - 1
            }
        };
        &mut self.anchors[index]
    }

    /// The anchor of the closest zone at or above `name`.
    pub fn closest(&self, name: &NameBuf) -> Option<&Anchor> {
        self.anchors
            .iter()
            .filter(|anchor| name.is_subdomain_of(&anchor.name))
            .max_by_key(|anchor| anchor.name.label_count())
    }
}

/// Decode hex digits (either case).
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |byte: u8| (byte as char).to_digit(16);
    text.as_bytes().chunks(2).map(|pair| Some((digit(*pair.first()?)? * 16 + digit(*pair.get(1)?)?) as u8)).collect()
}

/// A DS or DNSKEY record of a trust anchor file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AnchorRecord {
    Ds(Ds),
    Dnskey(Dnskey),
}

/// One record of an anchor file: where it starts, its text without
/// comments (parentheses joined), and its comments (unbound's `;;state=2`).
pub(crate) struct FileEntry {
    pub(crate) line: usize,
    pub(crate) code: String,
    pub(crate) comments: String,
}

impl FileEntry {
    /// The number after `key` in the comments (`state=` in `;;state=2 [ VALID ]`).
    pub(crate) fn number_after(&self, key: &str) -> Option<u64> {
        let (_, rest) = self.comments.split_once(key)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }
}

/// The records of zone-file text with their comments: lines that are only
/// comments are left out, `$` directives refused.
pub(crate) fn file_entries(text: &str, file: &str) -> Result<Vec<FileEntry>, Error> {
    let mut entries = Vec::new();
    let mut entry = FileEntry { line: 0, code: String::new(), comments: String::new() };
    let mut depth = 0i32;
    for (index, line) in text.lines().enumerate() {
        let (code, comment) = line.split_once(';').unwrap_or((line, ""));
        if depth == 0 {
            entry.line = index + 1;
            if code.trim_start().starts_with('$') {
                return Err(Error::TrustAnchor {
                    file: file.to_owned(),
                    line: index + 1,
                    rule: "directives such as $ORIGIN are not supported in trust anchor files",
                });
            }
        }
        depth += code.matches('(').count() as i32 - code.matches(')').count() as i32;
        entry.code.push_str(code);
        entry.code.push(' ');
        entry.comments.push_str(comment);
        entry.comments.push(' ');
        if depth > 0 {
            continue;
        }
        let done = std::mem::replace(&mut entry, FileEntry { line: 0, code: String::new(), comments: String::new() });
        if !done.code.trim().is_empty() {
            entries.push(done);
        }
        depth = 0;
    }
    if depth > 0 {
        return Err(Error::TrustAnchor { file: file.to_owned(), line: entry.line, rule: "unclosed parenthesis" });
    }
    Ok(entries)
}

/// Read one DS or DNSKEY record in presentation form: owner (lowercased), TTL if given, record.
pub(crate) fn parse_anchor_record(
    text: &str,
    file: &str,
    line: usize,
) -> Result<(NameBuf, Option<u32>, AnchorRecord), Error> {
    let record_error = |source| Error::TrustAnchorRecord { file: file.to_owned(), line, source };
    let anchor_error = |rule| Error::TrustAnchor { file: file.to_owned(), line, rule };
    let tokens = tokenize(text).map_err(record_error)?;
    let Some((owner, rest)) = tokens.split_first() else {
        return Err(anchor_error("empty trust anchor"));
    };
    let name = NameBuf::from_presentation(owner.text).map_err(record_error)?.to_lowercase();
    let fields = parse_ttl_class_type(rest, text.len()).map_err(record_error)?;
    let words: Vec<&str> = fields.rdata.iter().map(|token| token.text).collect();
    let record = match fields.rtype {
        RecordType::DS => {
            let [tag, algorithm, digest_type, digest @ ..] = words.as_slice() else {
                return Err(anchor_error("DS needs key tag, algorithm, digest type and digest"));
            };
            AnchorRecord::Ds(Ds {
                key_tag: tag.parse().map_err(|_| anchor_error("DS key tag is not a number"))?,
                algorithm: algorithm.parse().map_err(|_| anchor_error("DS algorithm is not a number"))?,
                digest_type: digest_type.parse().map_err(|_| anchor_error("DS digest type is not a number"))?,
                digest: hex_decode(&digest.concat()).ok_or_else(|| anchor_error("DS digest is not hex"))?,
            })
        }
        RecordType::DNSKEY => {
            let [flags, protocol, algorithm, key @ ..] = words.as_slice() else {
                return Err(anchor_error("DNSKEY needs flags, protocol, algorithm and key"));
            };
            let key = Dnskey {
                flags: flags.parse().map_err(|_| anchor_error("DNSKEY flags are not a number"))?,
                protocol: protocol.parse().map_err(|_| anchor_error("DNSKEY protocol is not a number"))?,
                algorithm: algorithm.parse().map_err(|_| anchor_error("DNSKEY algorithm is not a number"))?,
                public_key: base64_decode(&key.concat(), 0).map_err(record_error)?,
            };
            if key.public_key.is_empty() {
                return Err(anchor_error("DNSKEY has no key"));
            }
            AnchorRecord::Dnskey(key)
        }
        _ => return Err(anchor_error("a trust anchor is a DS or DNSKEY record")),
    };
    Ok((name, fields.ttl, record))
}

/// The root KSK-2017 (key tag 20326), for tests.
#[cfg(test)]
pub(crate) fn root_ksk_2017() -> Dnskey {
    let mut anchors = TrustAnchors::empty();
    anchors
        .add_text(
            ". IN DNSKEY 257 3 8 AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU= ; keytag 20326",
            "test",
        )
        .expect("the root key parses");
    anchors.anchors[0].keys[0].clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ds_digest;

    #[test]
    fn built_in_root_anchor_matches_the_root_ksk() {
        let anchors = TrustAnchors::root();
        let root = anchors.closest(&NameBuf::from_presentation("www.example.").expect("name")).expect("root anchor");
        assert!(root.name.is_root());
        assert_eq!(root.ds.len(), 2);
        let key = root_ksk_2017();
        let digest = ds_digest(2, NameBuf::root().as_wire(), &key.to_wire()).expect("SHA-256");
        assert!(root.ds.iter().any(|ds| ds.key_tag == 20326 && ds.digest == digest));
    }

    #[test]
    fn autotrust_file_keeps_only_valid_and_missing_keys() {
        let text = "; autotrust trust anchor file\n;;id: . 1\n;;last_queried: 1700000000 ;;Tue Nov 14\n\
            . 86400 IN DNSKEY 257 3 8 AwEAAQ== ;{id = 1 (ksk), size = 8b} ;;state=2 [  VALID  ] ;;count=0\n\
            . 86400 IN DNSKEY 385 3 8 AwEAAg== ;{id = 2 (ksk), size = 8b} ;;state=4 [ REVOKED ] ;;count=0\n\
            example. 3600 IN DS 1 8 2 ( 00FF\n  AA )\n";
        let mut anchors = TrustAnchors::empty();
        assert_eq!(anchors.add_text(text, "root.key").expect("parses"), 2);
        let root = anchors.closest(&NameBuf::root()).expect("root");
        assert_eq!(root.keys.len(), 1);
        let example = anchors.closest(&NameBuf::from_presentation("a.example.").expect("name")).expect("example");
        assert_eq!(example.ds[0].digest, vec![0x00, 0xff, 0xaa]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let mut anchors = TrustAnchors::empty();
        let error = anchors.add_text("\n\nexample. IN A 192.0.2.1\n", "anchors.txt").expect_err("not an anchor");
        assert_eq!(error.to_string(), "anchors.txt:3: a trust anchor is a DS or DNSKEY record");
        let error = anchors.add_text("example. IN DS 1 8 2 XYZ\n", "anchors.txt").expect_err("bad hex");
        assert!(error.to_string().starts_with("anchors.txt:1:"), "{error}");
        assert!(anchors.add_text("example. IN DS ( 1 8 2 00\n", "f").is_err());
    }
}
