use auditline::store::dynamo::{DynamoApiKeys, client_from_environment};
use auditline_cli::{Cli, Command, backup, export, fetch, keys, verify, witness};
use clap::Parser;

/// Exit codes: 0 done (or verified), 1 not verified, 2 could not be done (bad input, I/O, network).
#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let mut out = std::io::stdout();
    let result: Result<bool, Box<dyn std::error::Error>> = match cli.command {
        Command::Keys(args) => match auditline::sdk::config().await {
            Ok(sdk) => {
                let store = DynamoApiKeys::new(client_from_environment(sdk, args.endpoint.as_deref()), args.table);
                keys::run(args.command, &store, chrono::Utc::now(), &mut out).await.map(|()| true)
            }
            Err(e) => Err(e.into()),
        },
        Command::Export(args) => export::run(&args, &mut out).await.map(|_| true).map_err(|e| e as _),
        Command::Fetch(args) => fetch::run(&args, &mut out).await.map(|_| true).map_err(|e| e as _),
        Command::Verify(args) => verify::run(&args, &mut out).map_err(|e| e as _),
        Command::Witness(args) => witness::run(&args, &mut out).await.map(|()| true).map_err(|e| e as _),
        Command::Fingerprint(args) => keys::fingerprint(&args, &mut out).map(|()| true).map_err(|e| e as _),
        Command::Backup(args) => backup::run(&args, &mut out).map(|()| true).map_err(|e| e as _),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
