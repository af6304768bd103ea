use auditline::store::dynamo::{DynamoApiKeys, client_from_environment};
use auditline_cli::{ArchiveCommand, Cli, Command, archive, backup, export, fetch, keys, verify, witness};
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
        Command::Archive { command: ArchiveCommand::Open(args) } => open_archive(&args, &mut out).await,
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

/// `auditline archive open`, with the keys where the arguments say.
async fn open_archive(
    args: &archive::ArchiveArgs,
    out: &mut dyn std::io::Write,
) -> Result<bool, Box<dyn std::error::Error>> {
    // An empty ARCHIVE_KEYS_TABLE names no table.
    let opened = match (&args.data_dir, args.keys_table.as_deref().filter(|t| !t.trim().is_empty())) {
        (Some(dir), _) => {
            let file = dir.join(auditline::store::sqlite::DATABASE_FILE);
            if !file.is_file() {
                return Err(format!("{}: no gateway database there", file.display()).into());
            }
            let store = auditline::store::SqliteStore::open(&file)?;
            archive::open(args, &store, out).await
        }
        (None, Some(table)) => {
            let client = client_from_environment(auditline::sdk::config().await?, args.endpoint.as_deref());
            // Reading only: how long keys are kept does not matter here.
            let keys = auditline::store::dynamo::DynamoArchiveKeys::new(client, table, 1);
            archive::open(args, &keys, out).await
        }
        (None, None) => return Err("name where the keys are: --data-dir (the local gateway) or --keys-table".into()),
    };
    opened.map(|_| true).map_err(|e| e as _)
}
