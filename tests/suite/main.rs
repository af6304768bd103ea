//! All integration tests, in one binary (one link step keeps the test run lean).

mod api_keys;
mod architecture;
mod auth;
mod authorizer;
mod cli;
mod dynamo_faults;
mod dynamo_store;
mod events;
mod export;
mod feed;
mod feed_isolation;
mod fuzz;
mod gateway;
mod http_api;
mod idempotent_writes;
mod integrity;
mod lambda_binaries;
mod logger;
mod memory_store;
mod openapi;
mod paging;
mod seal;
mod signing;
mod store_contract;
mod tamper;
mod template;
