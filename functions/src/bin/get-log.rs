//! `GET /audit/logs/{id}`: one entry.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_http(auditline::apigw::http::Route::GetLog).await
}
