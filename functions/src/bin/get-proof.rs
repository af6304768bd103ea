//! `GET /audit/logs/{id}/proof`: one entry's inclusion proof and its checkpoint.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_http(auditline::apigw::http::Route::Proof).await
}
