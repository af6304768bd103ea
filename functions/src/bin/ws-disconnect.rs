//! WebSocket `$disconnect`: forgets the connection.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    auditline::bootstrap::serve_ws_disconnect().await
}
