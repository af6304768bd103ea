//! Time: the wire format of timestamps, parsing of date parameters, UUIDv7 time bounds and the hour
//! buckets that statistics are kept in.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Timelike, Utc};
use std::sync::Mutex;

use uuid::{Timestamp, Uuid};

use super::validation::ValidationError;

/// Timestamps on the wire: RFC 3339, UTC, millisecond precision, e.g. `2026-11-27T10:20:30.123Z`.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serde for timestamps: written as [`format_timestamp`], read as any RFC 3339 date-time.
pub mod serde_millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_timestamp(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s).map(|t| t.to_utc()).map_err(serde::de::Error::custom)
    }
}

/// [`serde_millis`] for optional timestamps (`with = …` alongside `default`).
pub mod serde_millis_option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::format_timestamp(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        s.map(|s| DateTime::parse_from_rfc3339(&s).map(|t| t.to_utc()).map_err(serde::de::Error::custom)).transpose()
    }
}

/// The years a date parameter may name: four digits, as RFC 3339 writes them. Wider than any entry
/// can be (ids hold milliseconds since 1970), and narrow enough that no arithmetic on a date can
/// overflow.
pub const MIN_YEAR: i32 = 1;
pub const MAX_YEAR: i32 = 9999;

/// Parses a date parameter as the seed's clients send it: an RFC 3339 date-time (any offset), a
/// date-time without offset (taken as UTC), or a bare date (midnight UTC). Years outside
/// [`MIN_YEAR`]..=[`MAX_YEAR`] are refused by name.
pub fn parse_date_param(field: &'static str, value: &str) -> Result<DateTime<Utc>, ValidationError> {
    let t = parse_any_date(value.trim()).ok_or(ValidationError::InvalidDateTime { field })?;
    if !(MIN_YEAR..=MAX_YEAR).contains(&t.year()) {
        return Err(ValidationError::DateOutOfRange { field, min_year: MIN_YEAR, max_year: MAX_YEAR });
    }
    Ok(t)
}

fn parse_any_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.to_utc());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, format) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    let midnight = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0)?;
    Some(Utc.from_utc_datetime(&midnight))
}

/// A UUIDv7 for the millisecond of `t`, from the process-wide [`IdSequence`].
pub fn uuid_v7_at(t: DateTime<Utc>) -> Uuid {
    static GLOBAL: IdSequence = IdSequence::new();
    GLOBAL.next(t)
}

/// Makes UUIDv7s whose order within a millisecond is the order they were made: a 42-bit counter,
/// randomly seeded when the millisecond advances, fills the bits after the time; the rest are random.
/// Ids for an earlier millisecond than the latest seen (a backdated or jittering clock) are plain
/// random v7s, so they cannot disturb the current sequence.
pub struct IdSequence(Mutex<(i64, u64)>);

impl IdSequence {
    const COUNTER_BITS: u8 = 42;

    pub const fn new() -> Self {
        IdSequence(Mutex::new((i64::MIN, 0)))
    }

    pub fn next(&self, t: DateTime<Utc>) -> Uuid {
        let millis = t.timestamp_millis().max(0);
        let random = || Uuid::new_v7(Timestamp::from_unix_time(0, 0, 0, 0)).as_u128() as u64;
        let counter = {
            let mut seq = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if millis == seq.0 {
                seq.1 += 1;
                seq.1
            } else if millis > seq.0 {
                // 41 random bits leave head room, so the counter cannot wrap within a millisecond.
                *seq = (millis, random() & ((1 << (Self::COUNTER_BITS - 1)) - 1));
                seq.1
            } else {
                random() & ((1 << Self::COUNTER_BITS) - 1)
            }
        };
        let secs = u64::try_from(millis / 1000).unwrap_or(0);
        let nanos = u32::try_from(millis % 1000).unwrap_or(0) * 1_000_000;
        Uuid::new_v7(Timestamp::from_unix_time(secs, nanos, u128::from(counter), Self::COUNTER_BITS))
    }
}

impl Default for IdSequence {
    fn default() -> Self {
        Self::new()
    }
}

/// A UUIDv7 for the millisecond of `t` whose other bits are fixed by `position` (kept in order:
/// the 12 bits after the time) and `seed` (hashed into the rest). The same inputs give the same id,
/// so a request written again under the same identity meets its first write's key and is refused
/// by the store's conditional put instead of stored twice.
pub fn derived_uuid_v7(t: DateTime<Utc>, position: u16, seed: &[u8]) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(seed);
    let hashed = u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"));
    let counter = (u128::from(position & 0x0FFF) << 62) | u128::from(hashed >> 2);
    let millis = id_millis(t.timestamp_millis());
    let secs = u64::try_from(millis / 1000).unwrap_or(0);
    let nanos = u32::try_from(millis % 1000).unwrap_or(0) * 1_000_000;
    Uuid::new_v7(Timestamp::from_unix_time(secs, nanos, counter, 74))
}

/// The millisecond embedded in a UUIDv7, or `None` for any other version.
pub fn uuid_v7_time(id: &Uuid) -> Option<DateTime<Utc>> {
    if id.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
}

/// The largest millisecond a UUIDv7 can hold (48 bits: the year 10889).
const MAX_ID_MILLIS: i64 = (1 << 48) - 1;

/// `millis` as the 48-bit time of a UUIDv7: dates before 1970 clamp to its epoch, dates after its
/// last millisecond to that. Integer arithmetic only: no date can overflow it.
fn id_millis(millis: i64) -> u128 {
    millis.clamp(0, MAX_ID_MILLIS) as u128
}

/// The smallest id any entry stamped at or after `t` can have.
pub fn lowest_id_at(t: DateTime<Utc>) -> Uuid {
    // Round up to the next whole millisecond: an entry's time is its millisecond.
    let floor = t.timestamp_millis();
    let ceil = if t.timestamp_subsec_nanos().is_multiple_of(1_000_000) { floor } else { floor.saturating_add(1) };
    Uuid::from_u128(id_millis(ceil) << 80)
}

/// The largest id any entry stamped at or before `t` can have.
pub fn highest_id_at(t: DateTime<Utc>) -> Uuid {
    Uuid::from_u128((id_millis(t.timestamp_millis()) << 80) | ((1u128 << 80) - 1))
}

/// An hour of UTC time, the unit statistics are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourBucket(i64);

impl HourBucket {
    pub fn of(t: DateTime<Utc>) -> Self {
        HourBucket(t.timestamp().div_euclid(3600))
    }

    pub fn start(self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.0 * 3600, 0).unwrap_or_default()
    }

    /// The first instant after this hour.
    pub fn end(self) -> DateTime<Utc> {
        DateTime::from_timestamp((self.0 + 1) * 3600, 0).unwrap_or_default()
    }

    /// Hours since the epoch.
    pub fn index(self) -> i64 {
        self.0
    }

    pub fn from_index(index: i64) -> Self {
        HourBucket(index)
    }

    pub fn previous(self) -> Self {
        HourBucket(self.0 - 1)
    }

    pub fn next(self) -> Self {
        HourBucket(self.0 + 1)
    }

    /// Sortable text form, `2026-11-27T10`.
    pub fn label(self) -> String {
        let s = self.start();
        format!("{}T{:02}", s.date_naive(), s.hour())
    }

    /// The hour a [`label`](Self::label) names.
    pub fn from_label(label: &str) -> Option<Self> {
        let t = chrono::NaiveDateTime::parse_from_str(&format!("{label}:00"), "%Y-%m-%dT%H:%M").ok()?;
        Some(HourBucket::of(t.and_utc()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn an_hour_label_reads_back() {
        let hour = HourBucket::of(t("2026-11-27T10:20:30Z"));
        assert_eq!(HourBucket::from_label(&hour.label()), Some(hour));
        assert_eq!(HourBucket::from_label("SEAL"), None);
    }

    #[test]
    fn date_params_accept_the_common_iso_forms() {
        let want = t("2026-11-27T10:20:30Z");
        assert_eq!(parse_date_param("start_date", "2026-11-27T10:20:30Z").unwrap(), want);
        assert_eq!(parse_date_param("start_date", "2026-11-27T11:20:30+01:00").unwrap(), want);
        assert_eq!(parse_date_param("start_date", "2026-11-27T10:20:30").unwrap(), want);
        assert_eq!(parse_date_param("start_date", "2026-11-27").unwrap(), t("2026-11-27T00:00:00Z"));
        let err = parse_date_param("end_date", "yesterday").unwrap_err();
        assert_eq!(err.field(), "end_date");
    }

    #[test]
    fn dates_beyond_four_digit_years_are_refused_by_name() {
        // Once a panic: chrono parses a six-digit year, and rounding it up overflowed.
        for far in ["+262142-12-31T23:59:59.9995", "+10000-01-01", "-0001-01-01T00:00:00Z", "0000-12-31"] {
            let err = parse_date_param("start_date", far).unwrap_err();
            assert_eq!(err.field(), "start_date", "{far}");
        }
        let last = parse_date_param("end_date", "9999-12-31T23:59:59.9995Z").unwrap();
        assert!(lowest_id_at(last) > highest_id_at(t("2026-01-01T00:00:00Z")));
        let first = parse_date_param("start_date", "0001-01-01").unwrap();
        assert_eq!(lowest_id_at(first), Uuid::nil());
        assert_eq!(lowest_id_at(DateTime::<Utc>::MAX_UTC), Uuid::from_u128((MAX_ID_MILLIS as u128) << 80));
        assert_eq!(highest_id_at(DateTime::<Utc>::MIN_UTC), Uuid::from_u128((1u128 << 80) - 1));
    }

    #[test]
    fn id_bounds_bracket_exactly_the_millisecond() {
        let at = t("2026-11-27T10:20:30.123Z");
        let id = uuid_v7_at(at);
        assert_eq!(uuid_v7_time(&id).unwrap(), at);
        assert!(lowest_id_at(at) <= id && id <= highest_id_at(at));
        let next_ms = t("2026-11-27T10:20:30.124Z");
        assert!(highest_id_at(at) < lowest_id_at(next_ms));
        // A bound between two milliseconds excludes the earlier one.
        let between = t("2026-11-27T10:20:30.123500Z");
        assert!(lowest_id_at(between) > id);
        assert!(highest_id_at(between) >= id);
    }

    #[test]
    fn ids_of_one_millisecond_keep_their_order() {
        let at = t("2026-11-27T10:20:30.123Z");
        let sequence = IdSequence::new();
        let ids: Vec<Uuid> = (0..1000).map(|_| sequence.next(at)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|id| uuid_v7_time(id) == Some(at)));
    }

    #[test]
    fn derived_ids_repeat_for_the_same_inputs_and_keep_positions_in_order() {
        let at = t("2026-11-27T10:20:30.123Z");
        let a = derived_uuid_v7(at, 0, b"acme\0alice\0key-1");
        assert_eq!(a, derived_uuid_v7(at, 0, b"acme\0alice\0key-1"));
        assert_ne!(a, derived_uuid_v7(at, 0, b"acme\0bob\0key-1"));
        assert_eq!(uuid_v7_time(&a), Some(at));
        let batch: Vec<Uuid> = (0..100).map(|i| derived_uuid_v7(at, i, b"acme\0alice\0key-2")).collect();
        assert!(batch.windows(2).all(|w| w[0] < w[1]), "a batch keeps its order");
        assert!(batch.iter().all(|id| id.get_version_num() == 7));
    }

    #[test]
    fn hour_buckets_label_and_bound_their_hour() {
        let b = HourBucket::of(t("2026-11-27T10:59:59.999Z"));
        assert_eq!(b.label(), "2026-11-27T10");
        assert_eq!(b.start(), t("2026-11-27T10:00:00Z"));
        assert_eq!(b.end(), t("2026-11-27T11:00:00Z"));
        assert_eq!(format_timestamp(b.start()), "2026-11-27T10:00:00.000Z");
    }
}
