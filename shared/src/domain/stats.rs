//! Statistics: totals by action and entity type, kept as hourly counters so that a stats call reads
//! at most one small record per hour of the range instead of every entry.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, Utc};
use serde::{Deserialize, Serialize};

use super::entry::{AuditAction, AuditLogEntry, EntityType};
use super::time::{HourBucket, serde_millis};
use super::validation::ValidationError;

/// Counts for one set of entries (one hour, or a whole range once summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u64,
    #[serde(deserialize_with = "grown_array")]
    pub by_action: [u64; AuditAction::ALL.len()],
    #[serde(deserialize_with = "grown_array")]
    pub by_entity_type: [u64; EntityType::ALL.len()],
}

/// A stored array of per-value counts, written when there may have been fewer values: the values
/// added since count zero. More values than there are is an error.
fn grown_array<'de, D: serde::Deserializer<'de>, const N: usize>(d: D) -> Result<[u64; N], D::Error> {
    let stored = Vec::<u64>::deserialize(d)?;
    if stored.len() > N {
        return Err(serde::de::Error::invalid_length(stored.len(), &"at most one count per value"));
    }
    let mut out = [0; N];
    out[..stored.len()].copy_from_slice(&stored);
    Ok(out)
}

fn position<T: PartialEq>(all: &[T], value: &T) -> usize {
    all.iter().position(|v| v == value).expect("every variant is listed in ALL")
}

impl Counts {
    /// The counts of a single entry.
    pub fn of(entry: &AuditLogEntry) -> Self {
        let mut c = Counts { total: 1, ..Counts::default() };
        c.by_action[position(AuditAction::ALL, &entry.action)] = 1;
        c.by_entity_type[position(EntityType::ALL, &entry.entity_type)] = 1;
        c
    }

    pub fn add(&mut self, other: &Counts) {
        self.total += other.total;
        self.by_action.iter_mut().zip(other.by_action).for_each(|(a, b)| *a += b);
        self.by_entity_type.iter_mut().zip(other.by_entity_type).for_each(|(a, b)| *a += b);
    }

    pub fn subtract(&mut self, other: &Counts) {
        self.total = self.total.saturating_sub(other.total);
        self.by_action.iter_mut().zip(other.by_action).for_each(|(a, b)| *a = a.saturating_sub(b));
        self.by_entity_type.iter_mut().zip(other.by_entity_type).for_each(|(a, b)| *a = a.saturating_sub(b));
    }

    pub fn count_of_action(&self, action: AuditAction) -> u64 {
        self.by_action[position(AuditAction::ALL, &action)]
    }

    pub fn count_of_type(&self, entity_type: EntityType) -> u64 {
        self.by_entity_type[position(EntityType::ALL, &entity_type)]
    }
}

/// Counts per hour, as the stores keep them.
pub type HourlyCounts = BTreeMap<HourBucket, Counts>;

/// The width of a point of a stats series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatsBucket {
    Hour,
    Day,
}

impl StatsBucket {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        match value {
            "hour" => Ok(StatsBucket::Hour),
            "day" => Ok(StatsBucket::Day),
            _ => Err(ValidationError::UnknownValue { field: "bucket", allowed: "hour, day" }),
        }
    }

    /// The start of the bucket holding `hour`.
    fn start_of(self, hour: HourBucket) -> DateTime<Utc> {
        match self {
            StatsBucket::Hour => hour.start(),
            StatsBucket::Day => hour.start().duration_trunc(chrono::TimeDelta::days(1)).unwrap_or(hour.start()),
        }
    }
}

/// One point of a series: the counts of the bucket starting at `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeriesPoint {
    #[serde(with = "serde_millis")]
    pub start: DateTime<Utc>,
    pub total: u64,
    pub by_action: BTreeMap<AuditAction, u64>,
    pub by_entity_type: BTreeMap<EntityType, u64>,
}

/// The buckets that hold entries, oldest first (buckets without entries are left out).
pub fn series(hourly: &HourlyCounts, bucket: StatsBucket) -> Vec<SeriesPoint> {
    let mut by_start: BTreeMap<DateTime<Utc>, Counts> = BTreeMap::new();
    for (hour, counts) in hourly {
        by_start.entry(bucket.start_of(*hour)).or_default().add(counts);
    }
    by_start
        .into_iter()
        .filter(|(_, c)| c.total > 0)
        .map(|(start, c)| SeriesPoint {
            start,
            total: c.total,
            by_action: AuditAction::ALL.iter().map(|a| (*a, c.count_of_action(*a))).collect(),
            by_entity_type: EntityType::ALL.iter().map(|t| (*t, c.count_of_type(*t))).collect(),
        })
        .collect()
}

/// The hours a stats call covers. Counters are hourly, so the requested dates widen to whole hours;
/// the answer states the exact period it counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsRange {
    pub first: Option<HourBucket>,
    pub last: Option<HourBucket>,
}

impl StatsRange {
    pub fn new(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Result<Self, ValidationError> {
        if let (Some(s), Some(e)) = (start, end)
            && s > e
        {
            return Err(ValidationError::InvertedDateRange);
        }
        Ok(StatsRange { first: start.map(HourBucket::of), last: end.map(HourBucket::of) })
    }

    pub fn contains(&self, bucket: HourBucket) -> bool {
        self.first.is_none_or(|f| bucket >= f) && self.last.is_none_or(|l| bucket <= l)
    }
}

/// The statistics a caller sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditStats {
    pub total_entries: u64,
    pub by_action: BTreeMap<AuditAction, u64>,
    pub by_entity_type: BTreeMap<EntityType, u64>,
    /// Start of the counted period (inclusive), or null for "since the oldest retained entry".
    #[serde(serialize_with = "optional_timestamp")]
    pub from: Option<DateTime<Utc>>,
    /// End of the counted period (exclusive), or null for "up to now".
    #[serde(serialize_with = "optional_timestamp")]
    pub until: Option<DateTime<Utc>>,
    /// With `bucket`: the width of the series' points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<StatsBucket>,
    /// With `bucket`: the counts per bucket, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Vec<SeriesPoint>>,
}

fn optional_timestamp<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serde_millis::serialize(t, s),
        None => s.serialize_none(),
    }
}

impl AuditStats {
    /// Totals of `hourly` over `range`, and its series by `bucket` if asked for.
    pub fn of_hours(hourly: &HourlyCounts, range: &StatsRange, bucket: Option<StatsBucket>) -> Self {
        let mut total = Counts::default();
        hourly.values().for_each(|c| total.add(c));
        AuditStats { bucket, series: bucket.map(|b| series(hourly, b)), ..AuditStats::new(&total, range) }
    }

    pub fn new(counts: &Counts, range: &StatsRange) -> Self {
        AuditStats {
            bucket: None,
            series: None,
            total_entries: counts.total,
            by_action: AuditAction::ALL.iter().map(|a| (*a, counts.count_of_action(*a))).collect(),
            by_entity_type: EntityType::ALL.iter().map(|t| (*t, counts.count_of_type(*t))).collect(),
            from: range.first.map(HourBucket::start),
            until: range.last.map(HourBucket::end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_written_before_an_entity_type_was_added_read_it_as_zero() {
        let stored = r#"{"total":3,"by_action":[1,2,0,0,0,0],"by_entity_type":[0,0,0,0,3,0,0]}"#;
        let counts: Counts = serde_json::from_str(stored).unwrap();
        assert_eq!(counts.total, 3);
        assert_eq!(counts.count_of_type(EntityType::Report), 3);
        assert_eq!(counts.count_of_type(EntityType::LegalHold), 0);
        let too_many = format!(r#"{{"total":0,"by_action":[0,0,0,0,0,0],"by_entity_type":[{}]}}"#, ["0"; 12].join(","));
        assert!(serde_json::from_str::<Counts>(&too_many).is_err());
    }
}
