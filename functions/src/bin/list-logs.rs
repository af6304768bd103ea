//! `GET /audit/logs`: a tenant's entries, filtered and paged.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_http(auditline::apigw::http::Route::ListLogs).await
}
