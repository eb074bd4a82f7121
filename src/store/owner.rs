//! Who a reel location (`--reels`) belongs to, and how old what lies there is.
//!
//! A location belongs to one store: the first time a store puts a reel there it writes the
//! owner object [`OWNER_OBJECT`] (`{"format":1,"store":ID,"claimed_unix":SECS,"described":URL,
//! "crc32":HEX}` and a newline, in exactly that form). An encode into a location another store
//! owns is refused before anything is written, and `gc` removes nothing from a location that is
//! not its own, so that two stores given one prefix by mistake never collect each other's reels.
//!
//! A store's identity ([`Store::identity`]): for a directory store, a random id kept in
//! `STORE/store-id`, made the first time it is needed.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::registry::Store;
use crate::error::{Error, Result};

/// The owner object's name in a reel location (never a reel name: those have no dot-leading
/// component, so listings never show it and `gc` never removes it).
pub const OWNER_OBJECT: &str = ".weightreel-owner";

/// The file of a directory store holding its identity.
pub const STORE_ID_FILE: &str = "store-id";

const OWNER_FORMAT: u32 = 1;

/// The owner of a reel location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// The owning store's identity.
    pub store: String,
    /// When it claimed the location (seconds since the Unix epoch).
    pub claimed_unix: u64,
    /// Where the owning store was, for messages (`file:///…/store`).
    pub described: String,
}

/// The owner object's fields in their written order, CRC last.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerFile {
    format: u32,
    store: String,
    claimed_unix: u64,
    described: String,
    crc32: String,
}

fn owner_crc(format: u32, owner: &Owner) -> String {
    let body = serde_json::json!([format, owner.store, owner.claimed_unix, owner.described]);
    format!("{:08x}", crc32fast::hash(body.to_string().as_bytes()))
}

impl Owner {
    /// The owner object's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let file = OwnerFile {
            format: OWNER_FORMAT,
            store: self.store.clone(),
            claimed_unix: self.claimed_unix,
            described: self.described.clone(),
            crc32: owner_crc(OWNER_FORMAT, self),
        };
        let mut bytes = serde_json::to_vec(&file).expect("owner serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Read an owner object; any byte changed, missing or added is refused, with what is wrong.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Owner, String> {
        let file: OwnerFile =
            serde_json::from_slice(bytes).map_err(|e| format!("not an owner object ({e})"))?;
        if file.format != OWNER_FORMAT {
            return Err(format!(
                "owner format {} (this build reads format {OWNER_FORMAT})",
                file.format
            ));
        }
        let owner = Owner {
            store: file.store,
            claimed_unix: file.claimed_unix,
            described: file.described,
        };
        if file.crc32 != owner_crc(file.format, &owner) {
            return Err(format!("CRC mismatch (stored {})", file.crc32));
        }
        // Only the one written form is read: a change the CRC does not cover (spacing, a
        // missing newline) is damage too.
        if owner.encode() != bytes {
            return Err("not in the form weightreel writes".into());
        }
        Ok(owner)
    }

    /// `store 3f2a…e9 (file:///…/store, claimed 2026-12-01 22:30 UTC)`.
    pub fn describe(&self) -> String {
        format!(
            "store {} ({}, claimed {})",
            self.store,
            self.described,
            utc_text(self.claimed_unix)
        )
    }
}

/// `YYYY-MM-DD HH:MM UTC`.
fn utc_text(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An S3 `LastModified` (`2026-12-01T22:30:05.000Z`, fraction optional, UTC) as a time.
pub fn parse_utc(text: &str) -> Option<SystemTime> {
    let t = text.trim();
    let t = t.strip_suffix('Z').or_else(|| t.strip_suffix("+00:00"))?;
    let (date, time) = t.split_once('T')?;
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut tp = hms.split(':');
    let h: u64 = tp.next()?.parse().ok()?;
    let mi: u64 = tp.next()?.parse().ok()?;
    let s: u64 = tp.next()?.parse().ok()?;
    if tp.next().is_some() || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + mi * 60 + s))
}

/// `gc`'s grace period when `--min-age` is not given: longer than any upload takes.
pub const DEFAULT_MIN_AGE: &str = "24h";

/// What `gc --min-age` accepts.
pub const MIN_AGE_FORM: &str =
    "0, or a whole number with a unit s, m, h or d, such as 90s, 30m, 24h or 7d";

/// Parse `gc --min-age`: `0`, or a whole number followed by `s`, `m`, `h` or `d`.
pub fn parse_min_age(text: &str) -> Result<Duration> {
    let bad = || Error::invalid("--min-age", format!("'{text}'"), MIN_AGE_FORM);
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let unit = match text.as_bytes().last() {
        Some(b's') => 1,
        Some(b'm') => 60,
        Some(b'h') => 3600,
        Some(b'd') => 86_400,
        _ => return Err(bad()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(unit).map(Duration::from_secs).ok_or_else(bad)
}

/// `45s`, `12m`, `5h`, `3d`: an age or a grace period, in its largest whole unit.
pub fn age_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A grace period in its largest exact unit up to hours (`150s`, `90m`, `24h`, `168h`), as
/// `--min-age` takes it.
pub fn grace_text(d: Duration) -> String {
    match d.as_secs() {
        0 => "0".to_string(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// 32 hex digits from the system's random source.
fn random_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("/dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Store {
    /// This store's identity, which owner objects name. A directory store keeps a random id
    /// in `STORE/store-id`, made (atomically: two first encodes agree) the first time it is
    /// needed. (A store whose registry is shared supplies the registry's identity instead.)
    pub fn identity(&self) -> Result<String> {
        if let Some(id) = self.registry().identity()? {
            return Ok(id);
        }
        let path = self.dir().join(STORE_ID_FILE);
        let read = |path: &Path| -> Result<Option<String>> {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let id = text.trim_end_matches('\n');
                    if valid_id(id) {
                        Ok(Some(id.to_string()))
                    } else {
                        Err(Error::store(
                            path,
                            "is not a store id (32 hex digits): restore it from a backup",
                        ))
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(path, e)),
            }
        };
        if let Some(id) = read(&path)? {
            return Ok(id);
        }
        let id = random_id()?;
        let temp = self
            .dir()
            .join(format!("{STORE_ID_FILE}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&temp)?;
            std::io::Write::write_all(&mut f, format!("{id}\n").as_bytes())?;
            f.sync_all()?;
            // A hard link creates the name only if it is free: of two first encodes, one id wins.
            match std::fs::hard_link(&temp, &path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(()),
            }
        };
        let written = write();
        let _ = std::fs::remove_file(&temp);
        written.map_err(|e| Error::io(&path, e))?;
        read(&path)?.ok_or_else(|| Error::store(&path, "vanished right after it was written"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            store: "0123456789abcdef0123456789abcdef".into(),
            claimed_unix: 1_796_160_000,
            described: "file:///home/u/weightreel_store".into(),
        }
    }

    #[test]
    fn an_owner_object_reads_back() {
        let bytes = owner().encode();
        assert_eq!(Owner::decode(&bytes), Ok(owner()));
        assert!(
            bytes.ends_with(b"\"}\n"),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }

    #[test]
    fn every_truncation_of_an_owner_object_is_refused() {
        let bytes = owner().encode();
        for len in 0..bytes.len() {
            assert!(Owner::decode(&bytes[..len]).is_err(), "{len}");
        }
        let mut longer = bytes.clone();
        longer.push(b'\n');
        assert!(Owner::decode(&longer).is_err());
    }

    #[test]
    fn every_flipped_bit_of_an_owner_object_is_refused() {
        let bytes = owner().encode();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                assert!(
                    Owner::decode(&damaged).is_err(),
                    "byte {i} bit {bit}: {}",
                    String::from_utf8_lossy(&damaged)
                );
            }
        }
    }

    #[test]
    fn another_format_is_refused_by_name() {
        let text = String::from_utf8(owner().encode())
            .unwrap()
            .replace("\"format\":1", "\"format\":2");
        let err = Owner::decode(text.as_bytes()).unwrap_err();
        assert!(err.contains("owner format 2"), "{err}");
    }

    #[test]
    fn min_age_takes_zero_and_whole_numbers_with_a_unit() {
        assert_eq!(parse_min_age("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_min_age("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_min_age("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_min_age("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_min_age("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_min_age("0h").unwrap(), Duration::ZERO);
        for bad in [
            "",
            "h",
            "24",
            "-1h",
            "1.5h",
            "24 h",
            " 24h",
            "24H",
            "1w",
            "h24",
            "99999999999999999999d",
            "18446744073709551615d",
        ] {
            let err = parse_min_age(bad).unwrap_err().to_string();
            assert!(err.contains(MIN_AGE_FORM), "{bad}: {err}");
        }
    }

    #[test]
    fn s3_times_parse_as_utc() {
        let t = |s| parse_utc(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2026-12-01T22:30:05.123Z"), Some(1_796_164_205));
        assert_eq!(t("2000-02-29T12:00:00+00:00"), Some(951_825_600));
        for bad in [
            "",
            "2026-12-01",
            "2026-13-01T00:00:00Z",
            "2026-12-01T22:30:05",
            "x",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
        assert_eq!(utc_text(1_796_164_205), "2026-12-01 22:30 UTC");
    }

    #[test]
    fn ages_read_in_their_largest_unit() {
        assert_eq!(age_text(Duration::from_secs(5)), "5s");
        assert_eq!(age_text(Duration::from_secs(600)), "10m");
        assert_eq!(age_text(Duration::from_secs(86_400)), "24h");
        assert_eq!(age_text(Duration::from_secs(3 * 86_400)), "3d");
        assert_eq!(grace_text(Duration::from_secs(150)), "150s");
        assert_eq!(grace_text(Duration::from_secs(5400)), "90m");
        assert_eq!(grace_text(Duration::from_secs(86_400)), "24h");
        assert_eq!(grace_text(Duration::ZERO), "0");
    }
}
