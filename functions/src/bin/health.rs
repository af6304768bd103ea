//! `GET /audit/health`: storage reachability, version, configuration.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_http(auditline::apigw::http::Route::Health).await
}
