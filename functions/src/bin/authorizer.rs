//! The HTTP API's Lambda authorizer (the same code serves the WebSocket API's `$connect` as `ws-authorizer`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    auditline::bootstrap::serve_authorizer().await
}
