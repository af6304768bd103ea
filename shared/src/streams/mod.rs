//! Log streams: every tenant's entries delivered to its SIEM (issue 26). So far the two parts
//! every destination needs, with no AWS types: how a webhook delivery is signed ([`webhook`], the
//! Standard Webhooks scheme), and which URLs and addresses a delivery may go to ([`outbound`]).

pub mod outbound;
pub mod webhook;
