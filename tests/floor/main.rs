//! The cold-path floor: a `lambda_runtime` function that answers its event, no AWS SDK, no
//! configuration, no logging, built with the functions' release profile. Every function's init is
//! measured against it.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<_, Error>(event.payload) })).await
}
