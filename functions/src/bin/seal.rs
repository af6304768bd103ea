//! The sealer, on a schedule: closes each tenant's finished periods into signed checkpoints.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    auditline::bootstrap::serve_seal().await
}
