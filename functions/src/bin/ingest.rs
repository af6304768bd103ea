//! `POST /audit/logs`: write one entry or a batch.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_http(auditline::apigw::http::Route::Ingest).await
}
