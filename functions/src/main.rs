//! Every Lambda function of the service, in one binary: each function's `Handler` in
//! template.yaml names what it runs (Lambda hands it over as `_HANDLER`). One binary is one
//! build and one link for all of them — the link, with LTO, is most of a build's time.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    auditline::bootstrap::serve(&std::env::var("_HANDLER").unwrap_or_default()).await
}
