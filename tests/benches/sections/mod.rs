//! One module per section of BENCHMARKS.md.

mod auth;
mod feed;
mod http;
mod store;

use std::future::Future;
use std::pin::Pin;

pub type Section = fn(&mut String) -> Pin<Box<dyn Future<Output = ()> + '_>>;

pub const ALL: &[(&str, Section)] = &[
    ("store", |out| Box::pin(store::run(out))),
    ("auth", |out| Box::pin(auth::run(out))),
    ("http", |out| Box::pin(http::run(out))),
    ("feed", |out| Box::pin(feed::run(out))),
];
