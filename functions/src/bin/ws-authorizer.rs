//! The WebSocket API's `$connect` authorizer: the same authorizer as the HTTP API's, deployed on its
//! own so that it can know the viewer's origin (the HTTP API's URL) without a dependency cycle.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    auditline::bootstrap::serve_authorizer().await
}
