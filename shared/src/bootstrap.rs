//! What a function builds once per cold start, from its configuration: AWS clients, stores, the
//! authenticator. Never per request.

use std::sync::Arc;

use crate::Config;
use crate::auth::jwt::JwtConfigError;
use crate::auth::{AuthMethod, Authenticator};
use crate::store::dynamo::{DynamoApiKeys, client_from_environment};

/// The authenticator of a deployed function: API keys in DynamoDB (only if `api_key` is allowed, so
/// JWT-only deployments need no table and no client).
pub async fn authenticator(config: &Config) -> Result<Authenticator, JwtConfigError> {
    let api_keys = if config.auth.allowed_methods.contains(&AuthMethod::ApiKey) {
        let client = client_from_environment(config.dynamodb_endpoint.as_deref()).await;
        Some(Arc::new(DynamoApiKeys::new(client, &config.api_keys_table)) as _)
    } else {
        None
    };
    Authenticator::from_settings(&config.auth, api_keys)
}
