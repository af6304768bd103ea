//! `GET /audit/logs/entity/{entity_id}`: one entity's entries.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_http(auditline::apigw::http::Route::EntityLogs).await
}
