//! `GET /audit/logs/project/{project_id}`: one project's entries.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_http(auditline::apigw::http::Route::ProjectLogs).await
}
