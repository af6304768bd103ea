//! Lambda authorizer for both APIs. Configuration and clients are set up once per cold start.

use auditline::apigw::authorize;
use auditline::bootstrap;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = auditline::Config::from_env()?;
    let auth = bootstrap::authenticator(&config).await?;
    let auth = &auth;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(authorize(event.payload, auth).await?)
    }))
    .await
}
