use auditline::store::dynamo::{DynamoApiKeys, client_from_environment};
use auditline_keys::{Cli, run};
use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let client = client_from_environment(cli.endpoint.as_deref()).await;
    let store = DynamoApiKeys::new(client, cli.table);
    if let Err(e) = run(cli.command, &store, chrono::Utc::now(), &mut std::io::stdout()).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
