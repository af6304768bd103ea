//! WebSocket `$connect`: records the connection, its identity and filters.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    auditline::bootstrap::serve_ws_connect().await
}
