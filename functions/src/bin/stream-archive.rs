//! The entries table's stream: writes each new entry to the S3 archive (gzip'd JSON lines).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    auditline::bootstrap::serve_stream_archive().await
}
