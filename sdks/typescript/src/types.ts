// Wire types of the auditline HTTP and WebSocket APIs, as docs/openapi.json declares them.
// Entries keep the service's field names (snake_case): what the SDK hands out is exactly what the
// service sent. Options and filters of the SDK's own calls are camelCase.

/** What was done (`AuditLogEntry.action`). */
export type Action = "CREATE" | "UPDATE" | "DELETE" | "LINK" | "UNLINK" | "VIEW";

/** Entity types an application may write (`NewEntry.entity_type`). */
export type EntityType = "PROJECT" | "ENTITY" | "RELATIONSHIP" | "FILE" | "REPORT" | "TEMPLATE" | "SCHEDULE";

/** The service's own records (erasures, retention changes, legal holds): read, never written. */
export type ServiceEntityType = "AUDIT_ENTRY" | "AUDIT_SETTINGS" | "LEGAL_HOLD" | "LOG_STREAM";

/** Every entity type an entry read back may carry. */
export type AnyEntityType = EntityType | ServiceEntityType;

export const ACTIONS: readonly Action[] = ["CREATE", "UPDATE", "DELETE", "LINK", "UNLINK", "VIEW"];
export const ENTITY_TYPES: readonly EntityType[] = [
  "PROJECT",
  "ENTITY",
  "RELATIONSHIP",
  "FILE",
  "REPORT",
  "TEMPLATE",
  "SCHEDULE",
];
export const SERVICE_ENTITY_TYPES: readonly ServiceEntityType[] = ["AUDIT_ENTRY", "AUDIT_SETTINGS", "LEGAL_HOLD", "LOG_STREAM"];

/** A JSON object (`changes`, `metadata`). */
export type JsonObject = { [key: string]: unknown };

/** What proves an entry (`Integrity`): keep `leaf_hash` as a receipt. */
export interface Integrity {
  format: "auditline-leaf/1";
  leaf_hash: string;
  seed?: string;
  salts?: Record<string, string>;
  erased?: Record<string, string>;
  erased_by?: Record<string, string>;
}

/** A stored entry (`AuditLogEntry`). */
export interface AuditLogEntry {
  /** UUIDv7: ids sort in time order. */
  id: string;
  /** UTC, millisecond precision (ISO 8601). */
  timestamp: string;
  action: Action;
  entity_type: AnyEntityType;
  entity_id: string;
  project_id: string | null;
  user_id: string | null;
  changes: JsonObject | null;
  ip_address: string | null;
  metadata: JsonObject | null;
  tenant_id: string;
  /** End of retention, epoch seconds. */
  expires_at: number;
  integrity: Integrity;
}

/** What a client sends for one entry (`NewEntry`); the server sets everything else. */
export interface NewEntry {
  action: Action;
  entity_type: EntityType;
  entity_id: string;
  project_id?: string | null;
  changes?: JsonObject | null;
  metadata?: JsonObject | null;
}

/** The service's error envelope body (`ErrorBody`). */
export interface ErrorBody {
  code: string;
  message: string;
  parameter?: string;
  request_id: string;
}

/** `{"error": ErrorBody}` (`Error`). */
export interface ErrorEnvelope {
  error: ErrorBody;
}

/** One list page (`Page`). */
export interface Page {
  entries: AuditLogEntry[];
  count: number;
  limit: number;
  offset: number;
  next_token: string | null;
}

/** One result of a batch write (`BatchItem`). */
export interface BatchItem {
  index: number;
  status: number;
  entry?: AuditLogEntry;
  error?: ErrorBody;
}

/** A batch write's answer (`BatchResult`). */
export interface BatchResult {
  results: BatchItem[];
  stored: number;
  rejected: number;
}

/** `202` when logging is disabled on the service (`Disabled`). */
export interface Disabled {
  status: string;
  message: string;
}

export type ActionCounts = Record<Action, number>;
export type EntityTypeCounts = Record<AnyEntityType, number>;

/** One point of a statistics series. */
export interface StatsPoint {
  start: string;
  total: number;
  by_action: ActionCounts;
  by_entity_type: EntityTypeCounts;
}

/** `GET /audit/stats` (`Stats`). */
export interface Stats {
  total_entries: number;
  by_action: ActionCounts;
  by_entity_type: EntityTypeCounts;
  from: string | null;
  until: string | null;
  bucket?: "hour" | "day";
  series?: StatsPoint[];
}

export interface HealthStorage {
  backend: string;
  reachable: boolean;
  latency_ms: number;
  error?: string;
}

export interface HealthWitness {
  witness: string;
  state: "ok" | "failing" | "unknown";
  last_success?: string;
  last_failure?: string;
  last_error?: string;
}

/** A log stream of the caller's tenant that gave up on a delivery. */
export interface FailingStream {
  id: string;
  name: string;
  since: string;
  reason: string;
}

/** The caller's tenant's log streams: how many, and which are failing. */
export interface StreamsHealth {
  streams: number;
  failing: FailingStream[];
}

/** `GET /audit/health` (`Health`): only `status` for callers without `audit:read`. */
export interface Health {
  status: "healthy" | "degraded" | "disabled";
  enabled?: boolean;
  retention_days?: number;
  listeners?: number;
  storage?: HealthStorage;
  version?: string;
  auth_methods?: string[];
  witnesses?: HealthWitness[];
  log_streams?: StreamsHealth;
}

/** A live-feed message carrying an entry. */
export interface EntryMessage {
  type: "audit_entry";
  entry: AuditLogEntry;
}

/** An entry too large for one WebSocket message: only its identifying fields. */
export interface EntryNoticeMessage {
  type: "audit_entry_notice";
  reason: string;
  entry: Pick<
    AuditLogEntry,
    "id" | "timestamp" | "action" | "entity_type" | "entity_id" | "project_id" | "user_id" | "tenant_id"
  >;
}

/** Fields were erased from entries: drop or blank your copies. */
export interface ErasureNotice {
  type: "erasure";
  /** The id of the erasure record (an entry of the trail). */
  record: string;
  /** The entries whose fields were erased. */
  entries: string[];
  /** The fields erased. */
  fields: string[];
}

/** A new signed checkpoint of the tenant's trail. */
export interface CheckpointMessage {
  type: "checkpoint";
  checkpoint: JsonObject;
  note: string;
}

export type FeedMessage = EntryMessage | EntryNoticeMessage | ErasureNotice | CheckpointMessage;

/** Export formats of `GET /audit/export`. */
export type ExportFormat = "jsonl" | "csv" | "ocsf";
