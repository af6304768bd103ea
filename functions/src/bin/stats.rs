//! `GET /audit/stats`: totals by action and entity type.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_http(auditline::apigw::http::Route::Stats).await
}
