//! All integration tests, in one binary (one link step keeps the test run lean).

mod dynamo_store;
mod logger;
mod memory_store;
mod store_contract;
