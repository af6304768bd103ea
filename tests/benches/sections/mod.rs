//! One module per section of BENCHMARKS.md.

mod archive;
mod auth;
mod cold;
mod erasure;
mod export;
mod feed;
mod gateway;
mod http;
mod integrity;
mod isolation;
mod lambda;
mod proofs;
mod sam;
mod soak;
mod sqlite;
mod store;
mod streams;

use std::future::Future;
use std::pin::Pin;

pub type Section = fn(&mut String) -> Pin<Box<dyn Future<Output = ()> + '_>>;

/// Sections a plain `./scripts/bench.sh` leaves out (they take long); name them to run them.
pub const OPT_IN: &[&str] = &["sam", "soak", "cold", "sqlite"];

pub const ALL: &[(&str, Section)] = &[
    ("store", |out| Box::pin(store::run(out))),
    ("auth", |out| Box::pin(auth::run(out))),
    ("http", |out| Box::pin(http::run(out))),
    ("integrity", |out| Box::pin(integrity::run(out))),
    ("proofs", |out| Box::pin(proofs::run(out))),
    ("erasure", |out| Box::pin(erasure::run(out))),
    ("export", |out| Box::pin(export::run(out))),
    ("archive", |out| Box::pin(archive::run(out))),
    ("feed", |out| Box::pin(feed::run(out))),
    ("isolation", |out| Box::pin(isolation::run(out))),
    ("streams", |out| Box::pin(streams::run(out))),
    ("lambda", |out| Box::pin(lambda::run(out))),
    ("gateway", |out| Box::pin(gateway::run(out))),
    ("sqlite", |out| Box::pin(sqlite::run(out))),
    ("sam", |out| Box::pin(sam::run(out))),
    ("cold", |out| Box::pin(cold::run(out))),
    ("soak", |out| Box::pin(soak::run_section(out))),
];
