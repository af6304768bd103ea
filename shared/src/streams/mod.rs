//! Log streams: every tenant's entries delivered to its SIEM (webhooks, Splunk HEC, Datadog,
//! EventBridge). No AWS types here; the adapters (DynamoDB, SQS, EventBridge, KMS) live with the
//! others.
//!
//! - [`destination`]: a stream's settings, the requests that make or change one, their checks;
//! - [`admin`]: managing streams, each change a record in the trail;
//! - [`secrets`]: secrets sealed at rest (the [`secrets::SecretBox`] port);
//! - [`store`]: the [`store::StreamStore`] port and the delivery figures;
//! - [`route`]: new entries become jobs; [`queue`]: where jobs wait, and the local worker;
//! - [`delivery`]: one attempt at a job, retries, dead letters, failing and recovered;
//! - [`vendors`]: the requests each kind of destination takes; [`transport`]: how they leave;
//! - [`trail`]: the port to the trail (entries read again, records written), the logger its adapter;
//! - [`webhook`]: Standard Webhooks signatures; [`outbound`]: which addresses a delivery may reach.

pub mod admin;
pub mod delivery;
pub mod destination;
pub mod outbound;
pub mod queue;
pub mod route;
pub mod secrets;
pub mod store;
pub mod trail;
pub mod transport;
pub mod vendors;
pub mod webhook;
