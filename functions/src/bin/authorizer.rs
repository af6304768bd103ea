//! Lambda authorizer of the HTTP API and of the WebSocket API's `$connect`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    auditline::bootstrap::serve_authorizer().await
}
