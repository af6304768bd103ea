//! `GET /audit/export`: the trail in JSON lines, CSV or OCSF, page by page.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    auditline::bootstrap::serve_http(auditline::apigw::http::Route::Export).await
}
