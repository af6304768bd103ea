//! The API Gateway adapter: Lambda handlers as plain async functions of (event, dependencies), over
//! `aws_lambda_events` types. Lambda `main`s, tests and the local gateway all call these.

pub mod authorizer;
pub mod http;
pub mod management;
pub mod stream;
pub mod streams;
pub mod viewer;
pub mod websocket;

pub use authorizer::{AuthorizerContext, authorize, authorize_http, authorize_websocket};
