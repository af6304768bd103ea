//! `GET /audit/keys`: the public keys checkpoints are signed with.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_http(auditline::apigw::http::Route::Keys).await
}
