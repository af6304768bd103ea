//! `GET /` and `GET /viewer/{file+}`: the viewer page and its modules, embedded in the binary.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_viewer().await
}
