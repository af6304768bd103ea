//! The entries table's stream: pushes each new entry to the connections allowed to see it.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    auditline::bootstrap::serve_stream_fanout().await
}
