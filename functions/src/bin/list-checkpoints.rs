//! `GET /audit/checkpoints`: the tenant's checkpoint chain.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_http(auditline::apigw::http::Route::Checkpoints).await
}
