//! Reading entries: the seed's filters, paging by offset or by cursor, and the plan that tells a
//! store which single index to read and which filters remain to apply.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::cursor::{self, Continuation};
use super::entry::{AuditAction, AuditLogEntry, EntityType, TenantId};
use super::time::{self, format_timestamp};
use super::validation::{self, ValidationError};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Offsets are read and thrown away by every store, so they are bounded; use `next_token` beyond.
pub const MAX_OFFSET: usize = 10_000;
/// The most bytes of entry JSON one page carries (always at least one entry). A Lambda response is
/// at most 6 MB, and API Gateway's proxy format carries the body as a JSON string, where escaping can
/// double it: 2 MiB stays under the limit whatever the entries hold (each is at most 256 KiB).
pub const PAGE_BYTE_BUDGET: usize = 2 * 1024 * 1024;

/// The seed's filters. Dates are inclusive instants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub action: Option<AuditAction>,
    pub entity_type: Option<EntityType>,
    pub user_id: Option<String>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// Entries of this project only: for an entity's entries (a project's own scope needs none).
    pub project_id: Option<String>,
}

/// Which entries a query is about: the caller's whole tenant, one entity, or one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryScope {
    Tenant,
    Entity(String),
    Project(String),
}

/// Paging: by `offset` (skip that many matches), or by `next_token` from a previous page. A token
/// carries everything needed to continue, so `offset` is ignored when a token is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub offset: usize,
    pub next_token: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest { limit: DEFAULT_LIMIT, offset: 0, next_token: None }
    }
}

impl PageRequest {
    pub fn first(limit: usize) -> Self {
        PageRequest { limit, ..Self::default() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditQuery {
    pub scope: QueryScope,
    pub filter: AuditFilter,
    pub page: PageRequest,
}

impl AuditQuery {
    pub fn new(scope: QueryScope) -> Self {
        AuditQuery { scope, filter: AuditFilter::default(), page: PageRequest::default() }
    }

    /// Reads the seed's query parameters (action, entity_type, user_id, start_date, end_date,
    /// limit, offset) and next_token. `get` returns a parameter's raw value; unknown ones are ignored.
    pub fn from_params<'a>(scope: QueryScope, get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, ValidationError> {
        let present = |name: &str| get(name).filter(|v| !v.is_empty());
        let filter = AuditFilter {
            action: present("action").map(str::parse).transpose()?,
            entity_type: present("entity_type").map(str::parse).transpose()?,
            user_id: present("user_id").map(str::to_owned),
            start_date: present("start_date").map(|v| time::parse_date_param("start_date", v)).transpose()?,
            end_date: present("end_date").map(|v| time::parse_date_param("end_date", v)).transpose()?,
            project_id: None,
        };
        let limit = present("limit")
            .map(|v| validation::bounded_integer("limit", v, 1, MAX_LIMIT as u64))
            .transpose()?
            .map_or(DEFAULT_LIMIT, |n| n as usize);
        let offset = present("offset")
            .map(|v| validation::bounded_integer("offset", v, 0, MAX_OFFSET as u64))
            .transpose()?
            .map_or(0, |n| n as usize);
        let page = PageRequest { limit, offset, next_token: present("next_token").map(str::to_owned) };
        Ok(AuditQuery { scope, filter, page })
    }

    /// Checks the query and decides how to run it for `tenant`.
    pub fn plan(&self, tenant: &TenantId) -> Result<QueryPlan, ValidationError> {
        let f = &self.filter;
        match &self.scope {
            QueryScope::Tenant => {}
            QueryScope::Entity(id) => validation::identifier("entity_id", id)?,
            QueryScope::Project(id) => validation::identifier("project_id", id)?,
        }
        if let Some(u) = &f.user_id {
            validation::identifier("user_id", u)?;
        }
        if let Some(p) = &f.project_id {
            validation::identifier("project_id", p)?;
        }
        if !(1..=MAX_LIMIT).contains(&self.page.limit) {
            return Err(ValidationError::OutOfRange { field: "limit", min: 1, max: MAX_LIMIT as u64 });
        }
        if self.page.offset > MAX_OFFSET {
            return Err(ValidationError::OutOfRange { field: "offset", min: 0, max: MAX_OFFSET as u64 });
        }
        if let (Some(s), Some(e)) = (f.start_date, f.end_date)
            && s > e
        {
            return Err(ValidationError::InvertedDateRange);
        }

        let index = choose_index(&self.scope, f);
        let residual = Residual {
            action: f.action.filter(|_| !matches!(index, IndexKey::Action(_))),
            entity_type: f.entity_type.filter(|_| !matches!(index, IndexKey::EntityType(_))),
            user_id: f.user_id.clone().filter(|_| !matches!(index, IndexKey::User(_))),
            project_id: f.project_id.clone().filter(|p| !matches!(&index, IndexKey::Project(id) if id == p)),
        };
        let query_key = self.canonical_key(tenant);
        let lowest = f.start_date.map_or(Uuid::nil(), time::lowest_id_at);
        let mut highest = f.end_date.map_or(Uuid::max(), time::highest_id_at);
        let mut skip = self.page.offset;
        if let Some(token) = &self.page.next_token {
            let at = cursor::decode(token, &query_key)?;
            // The cursor only narrows the id range, inside the caller's own tenant: a crafted one
            // can never reach data the caller could not list anyway.
            highest = highest.min(Uuid::from_u128(at.after.as_u128().saturating_sub(1)));
            skip = (at.skip as usize).min(MAX_OFFSET);
        }
        Ok(QueryPlan {
            tenant: tenant.clone(),
            index,
            residual,
            lowest,
            highest,
            skip,
            take: self.page.limit,
            query_key,
        })
    }

    /// Everything that defines the result set except paging: a cursor is valid only for this.
    fn canonical_key(&self, tenant: &TenantId) -> String {
        let f = &self.filter;
        let (scope, id) = match &self.scope {
            QueryScope::Tenant => ("tenant", ""),
            QueryScope::Entity(id) => ("entity", id.as_str()),
            QueryScope::Project(id) => ("project", id.as_str()),
        };
        // NUL cannot occur in any of the parts (validation rejects control characters).
        [
            tenant.as_str(),
            scope,
            id,
            f.action.map_or("", AuditAction::as_str),
            f.entity_type.map_or("", EntityType::as_str),
            f.user_id.as_deref().unwrap_or(""),
            &f.start_date.map(format_timestamp).unwrap_or_default(),
            &f.end_date.map(format_timestamp).unwrap_or_default(),
        ]
        .into_iter()
        // Only when set: the keys (and the tokens) of queries without it stay as they were.
        .chain(f.project_id.as_deref())
        .collect::<Vec<&str>>()
        .join("\0")
    }
}

/// The one partition a query reads: the tenant's, or one of its index partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IndexKey {
    Tenant,
    Entity(String),
    Project(String),
    User(String),
    Action(AuditAction),
    EntityType(EntityType),
}

impl IndexKey {
    /// The index partitions an entry belongs to (besides its tenant's), as stores maintain them.
    pub fn all_for(e: &AuditLogEntry) -> Vec<IndexKey> {
        let mut keys = vec![
            IndexKey::Entity(e.entity_id.clone()),
            IndexKey::Action(e.action),
            IndexKey::EntityType(e.entity_type),
        ];
        keys.extend(e.project_id.clone().map(IndexKey::Project));
        keys.extend(e.user_id.clone().map(IndexKey::User));
        keys
    }
}

/// Picks the partition that holds the fewest entries beyond those wanted. The scope's own index wins;
/// a tenant-wide query uses its most selective filter (users are many, actions six, types seven).
fn choose_index(scope: &QueryScope, f: &AuditFilter) -> IndexKey {
    match scope {
        QueryScope::Entity(id) => IndexKey::Entity(id.clone()),
        QueryScope::Project(id) => IndexKey::Project(id.clone()),
        QueryScope::Tenant => match (&f.user_id, f.action, f.entity_type) {
            (Some(user), _, _) => IndexKey::User(user.clone()),
            (None, Some(action), _) => IndexKey::Action(action),
            (None, None, Some(t)) => IndexKey::EntityType(t),
            (None, None, None) => IndexKey::Tenant,
        },
    }
}

/// Filters the chosen partition does not already guarantee.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Residual {
    pub action: Option<AuditAction>,
    pub entity_type: Option<EntityType>,
    pub user_id: Option<String>,
    pub project_id: Option<String>,
}

impl Residual {
    pub fn is_empty(&self) -> bool {
        self.action.is_none() && self.entity_type.is_none() && self.user_id.is_none() && self.project_id.is_none()
    }

    pub fn matches(&self, e: &AuditLogEntry) -> bool {
        self.action.is_none_or(|a| e.action == a)
            && self.entity_type.is_none_or(|t| e.entity_type == t)
            && self.user_id.as_deref().is_none_or(|u| e.user_id.as_deref() == Some(u))
            && self.project_id.as_deref().is_none_or(|p| e.project_id.as_deref() == Some(p))
    }
}

/// A checked query, ready for a store: read `index` of `tenant` newest first over ids
/// `lowest..=highest`, keep entries that match `residual` and have not expired, skip `skip`, return
/// `take`, and report the position to continue from if more remain.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPlan {
    pub tenant: TenantId,
    pub index: IndexKey,
    pub residual: Residual,
    pub lowest: Uuid,
    pub highest: Uuid,
    pub skip: usize,
    pub take: usize,
    query_key: String,
}

impl QueryPlan {
    /// True when the id range is empty, so no store needs to be asked.
    pub fn is_empty(&self) -> bool {
        self.lowest > self.highest
    }

    /// The `next_token` that resumes this query at `at`.
    pub fn next_token(&self, at: Continuation) -> String {
        cursor::encode(at, &self.query_key)
    }
}

/// What a store returns for a plan: the entries, and where to continue if more may remain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredPage {
    pub entries: Vec<AuditLogEntry>,
    pub continuation: Option<Continuation>,
}

impl StoredPage {
    /// Continue after the last entry returned (the usual case: the page is full and more remain).
    pub fn after_last(entries: Vec<AuditLogEntry>, more: bool) -> Self {
        let continuation = more.then(|| entries.last().map(|e| Continuation { after: e.id, skip: 0 })).flatten();
        StoredPage { entries, continuation }
    }

    /// Keeps the leading entries whose JSON fits in `budget` bytes (at least one), continuing after
    /// the last one kept when any were dropped.
    pub fn within_bytes(mut self, budget: usize) -> Self {
        let mut used = 0;
        let fits = self
            .entries
            .iter()
            .position(|e| {
                used += e.json_len() + 1;
                used > budget
            })
            .map(|over| over.max(1));
        if let Some(keep) = fits.filter(|keep| *keep < self.entries.len()) {
            self.entries.truncate(keep);
            self.continuation = self.entries.last().map(|e| Continuation { after: e.id, skip: 0 });
        }
        self
    }
}

/// A page as callers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub entries: Vec<AuditLogEntry>,
    pub limit: usize,
    pub offset: usize,
    pub next_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&'static str, &'static str)]) -> Result<AuditQuery, ValidationError> {
        AuditQuery::from_params(QueryScope::Tenant, |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v))
    }

    #[test]
    fn params_parse_every_seed_filter() {
        let q = params(&[
            ("action", "DELETE"),
            ("entity_type", "REPORT"),
            ("user_id", "user-1"),
            ("start_date", "2026-01-01"),
            ("end_date", "2026-02-01T00:00:00Z"),
            ("limit", "50"),
            ("offset", "10"),
            ("unrelated", "x"),
        ])
        .unwrap();
        assert_eq!(q.filter.action, Some(AuditAction::Delete));
        assert_eq!(q.filter.entity_type, Some(EntityType::Report));
        assert_eq!(q.filter.user_id.as_deref(), Some("user-1"));
        assert_eq!((q.page.limit, q.page.offset), (50, 10));
        assert_eq!(params(&[]).unwrap().page, PageRequest::default());
    }

    #[test]
    fn bad_params_name_themselves() {
        for (pairs, field) in [
            (&[("action", "create")][..], "action"),
            (&[("entity_type", "USER")][..], "entity_type"),
            (&[("limit", "0")][..], "limit"),
            (&[("limit", "1001")][..], "limit"),
            (&[("offset", "-5")][..], "offset"),
            (&[("start_date", "tomorrow")][..], "start_date"),
        ] {
            assert_eq!(params(pairs).unwrap_err().field(), field);
        }
        let inverted = params(&[("start_date", "2026-02-01"), ("end_date", "2026-01-01")]).unwrap();
        assert_eq!(inverted.plan(&TenantId::default()).unwrap_err(), ValidationError::InvertedDateRange);
    }

    #[test]
    fn plans_read_one_index_and_keep_the_rest_as_filters() {
        let tenant = TenantId::default();
        let q = params(&[("action", "DELETE"), ("entity_type", "FILE")]).unwrap();
        let plan = q.plan(&tenant).unwrap();
        assert_eq!(plan.index, IndexKey::Action(AuditAction::Delete));
        assert_eq!(plan.residual, Residual { entity_type: Some(EntityType::File), ..Residual::default() });

        let mut q = AuditQuery::new(QueryScope::Entity("e-1".into()));
        q.filter.user_id = Some("u".into());
        let plan = q.plan(&tenant).unwrap();
        assert_eq!(plan.index, IndexKey::Entity("e-1".into()));
        assert_eq!(plan.residual.user_id.as_deref(), Some("u"));
    }

    #[test]
    fn cursors_continue_only_their_own_query() {
        let tenant = TenantId::parse("acme").unwrap();
        let q = params(&[("action", "VIEW")]).unwrap();
        let plan = q.plan(&tenant).unwrap();
        let position = time::uuid_v7_at(Utc::now());
        let token = plan.next_token(Continuation { after: position, skip: 3 });

        let mut next = q.clone();
        next.page.next_token = Some(token.clone());
        next.page.offset = 50;
        let next_plan = next.plan(&tenant).unwrap();
        assert!(next_plan.highest < position);
        assert_eq!(next_plan.skip, 3, "the token's skip replaces offset");

        let other_tenant = next.plan(&TenantId::parse("globex").unwrap()).unwrap_err();
        assert_eq!(other_tenant.field(), "next_token");
        let mut other_filter = next.clone();
        other_filter.filter.action = Some(AuditAction::Create);
        assert_eq!(other_filter.plan(&tenant).unwrap_err().field(), "next_token");
        for forged in ["!!!", "AAAA", &token[1..], &format!("{token}A")] {
            let mut q = q.clone();
            q.page.next_token = Some(forged.to_owned());
            assert_eq!(q.plan(&tenant).unwrap_err().field(), "next_token", "token {forged:?}");
        }
    }
}
