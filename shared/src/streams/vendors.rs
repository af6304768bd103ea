//! What a delivery sends, per kind of destination: the requests for a batch of entries, cut to the
//! receiver's limits. Every item carries its entry's id, the receiver's deduplication key
//! (deliveries are at least once). Formats follow the vendors' documentation:
//! - webhook: Standard Webhooks headers, the batch as a JSON array or JSON lines;
//! - Splunk HEC: `/services/collector/event`, `Authorization: Splunk <token>`, stacked event objects;
//! - Datadog: logs intake v2, `DD-API-KEY`, a JSON array of logs;
//! - EventBridge: `PutEvents` entries (source, detail type, detail, time), ten at most per call.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::destination::{Destination, Encoding, Format, Secrets, Target};
use super::transport::{BusEvent, BusTarget, HttpRequest};
use super::webhook::{WebhookSecret, headers as webhook_headers};
use crate::domain::AuditLogEntry;
use crate::export::to_ocsf;

/// Largest body of one webhook or HEC request.
pub const MAX_HTTP_BODY: usize = 1024 * 1024;
/// Datadog's logs intake: at most 1,000 logs and 5 MB per request.
pub const DATADOG_MAX_LOGS: usize = 1000;
pub const DATADOG_MAX_BODY: usize = 5 * 1000 * 1000;
/// EventBridge: at most 10 entries per PutEvents, less than 1 MB in all (the PutEvents API
/// reference; older pages said 256 KB).
pub const EVENTBRIDGE_MAX_EVENTS: usize = 10;
pub const EVENTBRIDGE_MAX_BYTES: usize = 1024 * 1024 - 1;
/// Datadog takes logs whose timestamp is at most 18 hours old; a later retry sends the delivery
/// time as the log's time instead (the entry's own time stays in `audit.timestamp`).
const DATADOG_MAX_AGE_HOURS: i64 = 17;

pub const EVENT_SOURCE: &str = "auditline";

/// One request of a delivery, and the entries it carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Http {
        request: HttpRequest,
        entries: Vec<Uuid>,
    },
    /// `entries[i]` is `events[i]`'s entry.
    Events {
        bus: BusTarget,
        events: Vec<BusEvent>,
        entries: Vec<Uuid>,
    },
}

impl Outbound {
    pub fn entries(&self) -> &[Uuid] {
        match self {
            Outbound::Http { entries, .. } | Outbound::Events { entries, .. } => entries,
        }
    }
}

/// A batch cut into requests, and the entries no request can carry (too large on their own).
#[derive(Debug, Default)]
pub struct Planned {
    pub requests: Vec<Outbound>,
    pub oversized: Vec<Uuid>,
}

/// An entry as a stream's format shows it.
pub fn item(format: Format, entry: &AuditLogEntry) -> Value {
    match format {
        Format::Entry => serde_json::to_value(entry).expect("an entry serialises"),
        Format::Ocsf => to_ocsf(entry),
    }
}

/// The Standard Webhooks message id of a request: the same for the same stream and entries, so a
/// receiver sees a retried request under the id it saw first.
pub fn message_id(stream: Uuid, entries: &[Uuid]) -> String {
    let mut hash = Sha256::new();
    hash.update(stream.as_bytes());
    for id in entries {
        hash.update(id.as_bytes());
    }
    format!("msg_{}", URL_SAFE_NO_PAD.encode(&hash.finalize()[..18]))
}

/// The requests that deliver `entries` to `stream` at `now`.
pub fn plan(stream: &Destination, secrets: &Secrets, entries: &[AuditLogEntry], now: DateTime<Utc>) -> Planned {
    match &stream.target {
        Target::Webhook { url, encoding, .. } => {
            let items = encoded(entries, |e| item(stream.format, e).to_string());
            let (framing, per_item) = match encoding {
                Encoding::JsonArray => (2, 1),
                Encoding::Jsonl => (0, 1),
            };
            let (batches, oversized) = cut(items, usize::MAX, MAX_HTTP_BODY, framing, per_item);
            let signing: Vec<WebhookSecret> =
                secrets.signing_at(now).filter_map(|s| WebhookSecret::parse(s).ok()).collect();
            let requests = batches
                .into_iter()
                .map(|batch| {
                    let ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
                    let texts: Vec<&str> = batch.iter().map(|(_, text)| text.as_str()).collect();
                    let (body, content_type) = match encoding {
                        Encoding::JsonArray => (format!("[{}]", texts.join(",")), "application/json"),
                        Encoding::Jsonl => (texts.iter().map(|t| format!("{t}\n")).collect(), "application/x-ndjson"),
                    };
                    let id = message_id(stream.id, &ids);
                    let mut headers = vec![("content-type".to_owned(), content_type.to_owned())];
                    headers.extend(
                        webhook_headers(&signing, &id, now.timestamp(), body.as_bytes())
                            .into_iter()
                            .map(|(name, value)| (name.to_owned(), value)),
                    );
                    headers.extend(secrets.headers.iter().cloned());
                    Outbound::Http {
                        request: HttpRequest { url: url.clone(), headers, body: body.into_bytes() },
                        entries: ids,
                    }
                })
                .collect();
            Planned { requests, oversized }
        }
        Target::SplunkHec { url, index, source, sourcetype } => {
            let items = encoded(entries, |e| {
                let mut event = json!({
                    "time": e.timestamp.timestamp_millis() as f64 / 1000.0,
                    "host": EVENT_SOURCE,
                    "source": source,
                    "sourcetype": sourcetype,
                    "event": item(stream.format, e),
                    "fields": {"auditline_id": e.id.to_string(), "tenant_id": e.tenant_id.as_str()},
                });
                if let Some(index) = index {
                    event["index"] = json!(index);
                }
                event.to_string()
            });
            let (batches, oversized) = cut(items, usize::MAX, MAX_HTTP_BODY, 0, 1);
            let token = secrets.token.clone().unwrap_or_default();
            let requests = batches
                .into_iter()
                .map(|batch| {
                    let ids = batch.iter().map(|(id, _)| *id).collect();
                    let body: String = batch.iter().map(|(_, t)| format!("{t}\n")).collect();
                    let headers = vec![
                        ("content-type".to_owned(), "application/json".to_owned()),
                        ("authorization".to_owned(), format!("Splunk {token}")),
                    ];
                    Outbound::Http {
                        request: HttpRequest { url: url.clone(), headers, body: body.into_bytes() },
                        entries: ids,
                    }
                })
                .collect();
            Planned { requests, oversized }
        }
        Target::Datadog { url, service, tags, .. } => {
            let items = encoded(entries, |e| datadog_log(stream.format, e, service, tags, now).to_string());
            let (batches, oversized) = cut(items, DATADOG_MAX_LOGS, DATADOG_MAX_BODY, 2, 1);
            let key = secrets.token.clone().unwrap_or_default();
            let requests = batches
                .into_iter()
                .map(|batch| {
                    let ids = batch.iter().map(|(id, _)| *id).collect();
                    let texts: Vec<&str> = batch.iter().map(|(_, t)| t.as_str()).collect();
                    let headers = vec![
                        ("content-type".to_owned(), "application/json".to_owned()),
                        ("dd-api-key".to_owned(), key.clone()),
                    ];
                    let body = format!("[{}]", texts.join(","));
                    Outbound::Http {
                        request: HttpRequest { url: url.clone(), headers, body: body.into_bytes() },
                        entries: ids,
                    }
                })
                .collect();
            Planned { requests, oversized }
        }
        Target::Eventbridge { event_bus_arn, role_arn } => {
            let bus = BusTarget::new(&stream.tenant_id, stream.id, event_bus_arn, role_arn);
            let detail_type = match stream.format {
                Format::Entry => "Audit Log Entry",
                Format::Ocsf => "OCSF API Activity",
            };
            let events: Vec<(Uuid, BusEvent)> = entries
                .iter()
                .map(|e| {
                    let event = BusEvent {
                        source: EVENT_SOURCE.to_owned(),
                        detail_type: detail_type.to_owned(),
                        detail: item(stream.format, e).to_string(),
                        time: e.timestamp,
                    };
                    (e.id, event)
                })
                .collect();
            let sized: Vec<(Uuid, BusEvent, usize)> = events
                .into_iter()
                .map(|(id, ev)| {
                    let size = event_size(&ev);
                    (id, ev, size)
                })
                .collect();
            let mut requests = Vec::new();
            let mut oversized = Vec::new();
            let mut batch: (Vec<BusEvent>, Vec<Uuid>, usize) = (Vec::new(), Vec::new(), 0);
            for (id, event, size) in sized {
                if size > EVENTBRIDGE_MAX_BYTES {
                    oversized.push(id);
                    continue;
                }
                if batch.0.len() == EVENTBRIDGE_MAX_EVENTS || batch.2 + size > EVENTBRIDGE_MAX_BYTES {
                    let (events, entries, _) = std::mem::take(&mut batch);
                    requests.push(Outbound::Events { bus: bus.clone(), events, entries });
                }
                batch.0.push(event);
                batch.1.push(id);
                batch.2 += size;
            }
            if !batch.0.is_empty() {
                let (events, entries, _) = batch;
                requests.push(Outbound::Events { bus: bus.clone(), events, entries });
            }
            Planned { requests, oversized }
        }
    }
}

/// A Datadog log: the entry (or OCSF event) as an attribute, Datadog's standard attributes for
/// who and from where, and the write time as the log's time.
fn datadog_log(format: Format, e: &AuditLogEntry, service: &str, tags: &[String], now: DateTime<Utc>) -> Value {
    let mut ddtags = vec![format!("tenant_id:{}", e.tenant_id.as_str())];
    ddtags.extend(tags.iter().cloned());
    let mut log = json!({
        "ddsource": EVENT_SOURCE,
        "ddtags": ddtags.join(","),
        "hostname": EVENT_SOURCE,
        "service": service,
        "message": format!("{} {} {}", e.action.as_str(), e.entity_type.as_str(), e.entity_id),
        "timestamp": if now - e.timestamp < chrono::Duration::hours(DATADOG_MAX_AGE_HOURS) {
            e.timestamp.timestamp_millis()
        } else {
            now.timestamp_millis()
        },
        "evt": {"name": e.action.as_str(), "id": e.id.to_string()},
        "audit": item(format, e),
    });
    if let Some(user) = &e.user_id {
        log["usr"] = json!({"id": user});
    }
    if let Some(ip) = e.ip_address {
        log["network"] = json!({"client": {"ip": ip.to_string()}});
    }
    log
}

/// EventBridge's size of an entry: the UTF-8 bytes of source, detail type and detail, plus 14
/// for the time.
fn event_size(event: &BusEvent) -> usize {
    event.source.len() + event.detail_type.len() + event.detail.len() + 14
}

fn encoded(entries: &[AuditLogEntry], text: impl Fn(&AuditLogEntry) -> String) -> Vec<(Uuid, String)> {
    entries.iter().map(|e| (e.id, text(e))).collect()
}

/// Cuts items into batches of at most `max_items` and `max_bytes` (with `framing` bytes per batch
/// and `per_item` per item); an item too large alone is set aside.
fn cut(
    items: Vec<(Uuid, String)>,
    max_items: usize,
    max_bytes: usize,
    framing: usize,
    per_item: usize,
) -> (Vec<Vec<(Uuid, String)>>, Vec<Uuid>) {
    let mut batches = Vec::new();
    let mut oversized = Vec::new();
    let mut batch: Vec<(Uuid, String)> = Vec::new();
    let mut bytes = framing;
    for (id, text) in items {
        let size = text.len() + per_item;
        if framing + size > max_bytes {
            oversized.push(id);
            continue;
        }
        if !batch.is_empty() && (batch.len() == max_items || bytes + size > max_bytes) {
            batches.push(std::mem::take(&mut batch));
            bytes = framing;
        }
        bytes += size;
        batch.push((id, text));
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    (batches, oversized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_to_their_limits_and_set_aside_what_cannot_fit() {
        let items: Vec<(Uuid, String)> = (0..25).map(|i| (Uuid::from_u128(i), "x".repeat(10))).collect();
        let (batches, oversized) = cut(items.clone(), 10, usize::MAX, 2, 1);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        assert!(oversized.is_empty());
        let (batches, _) = cut(items, usize::MAX, 2 + 11 * 4, 2, 1);
        assert!(
            batches.iter().all(|b| b.len() == 4 || b.len() == 1),
            "{:?}",
            batches.iter().map(Vec::len).collect::<Vec<_>>()
        );
        let big = vec![(Uuid::from_u128(1), "y".repeat(100)), (Uuid::from_u128(2), "z".into())];
        let (batches, oversized) = cut(big, 10, 50, 2, 1);
        assert_eq!(oversized, [Uuid::from_u128(1)]);
        assert_eq!(batches.len(), 1);
    }

    #[test]
    fn a_message_id_is_stable_for_the_same_entries() {
        let stream = Uuid::from_u128(7);
        let ids = [Uuid::from_u128(1), Uuid::from_u128(2)];
        assert_eq!(message_id(stream, &ids), message_id(stream, &ids));
        assert_ne!(message_id(stream, &ids), message_id(stream, &ids[..1]));
        assert_ne!(message_id(stream, &ids), message_id(Uuid::from_u128(8), &ids));
        assert!(message_id(stream, &ids).starts_with("msg_"));
    }
}
