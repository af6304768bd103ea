//! API keys in DynamoDB (local DynamoDB API), managed with the admin command line's own code.

use std::sync::Arc;

use auditline::auth::api_keys::{ApiKeyStore, key_id};
use auditline::auth::{AuthOptions, Authenticator};
use auditline::store::dynamo::DynamoApiKeys;
use auditline::store::dynamo::tables::API_KEYS;
use auditline_cli::keys::{KeysCommand as Command, run};
use auditline_tests::{fresh_table, local_client, tenant};
use http::{HeaderMap, HeaderValue};

async fn cli(store: &DynamoApiKeys, command: Command) -> Result<String, String> {
    let mut out = Vec::new();
    run(command, store, chrono::Utc::now(), &mut out).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

fn key_from(output: &str) -> String {
    output.lines().find_map(|l| l.strip_prefix("key:")).expect("the key is printed").trim().to_owned()
}

#[tokio::test]
async fn keys_are_created_listed_checked_in_one_read_and_revoked() {
    let (client, requests) = local_client();
    let table = fresh_table(&client, &API_KEYS, "api-keys").await;
    let store = DynamoApiKeys::new(client, table);
    let create = |scopes: Vec<&str>, days| Command::Create {
        tenant: "acme".into(),
        user: "ingest-bot".into(),
        scopes: scopes.into_iter().map(str::to_owned).collect(),
        name: Some("ingest".into()),
        expires_in_days: days,
    };
    let out = cli(&store, create(vec!["audit:write", "reports:*"], None)).await.unwrap();
    let key = key_from(&out);
    assert!(out.contains("cannot be shown again"));
    let stored = store.find(&key_id(&key)).await.unwrap().expect("the record exists");
    assert_eq!(stored.scopes, ["audit:write", "reports:*"]);
    assert!(!format!("{stored:?}").contains(&key), "only the hash is stored");

    let auth = Authenticator::new(AuthOptions { api_keys: Some(Arc::new(store.clone())), ..AuthOptions::default() });
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_str(&key).unwrap());
    requests.reset();
    let result = auth.authenticate_request(&headers, |_| None).await;
    assert!(result.authenticated);
    assert_eq!(result.tenant_id, tenant("acme"));
    assert_eq!(requests.get(), 1, "an API-key authentication is one GetItem");

    requests.reset();
    let mut garbage = HeaderMap::new();
    garbage.insert("x-api-key", HeaderValue::from_static("not-a-key"));
    assert!(!auth.authenticate_request(&garbage, |_| None).await.is_allowed());
    assert_eq!(requests.get(), 0, "malformed keys are refused without a lookup");

    // Created a day ago for a day: expired now.
    let mut out = Vec::new();
    run(create(vec!["audit:read"], Some(1)), &store, chrono::Utc::now() - chrono::Duration::days(1), &mut out)
        .await
        .unwrap();
    let expired = key_from(&String::from_utf8(out).unwrap());
    let listing = cli(&store, Command::List { tenant: "acme".into() }).await.unwrap();
    assert_eq!(listing.lines().count(), 3, "header and two keys:\n{listing}");
    assert!(listing.contains(&key_id(&key)) && listing.contains("expired") && listing.contains("active"));
    assert!(!listing.contains(&key) && !listing.contains(&expired), "listing never shows a key");
    assert!(cli(&store, Command::List { tenant: "globex".into() }).await.unwrap().lines().count() == 1);

    let revoked = cli(&store, Command::Revoke { key_id: key_id(&key) }).await.unwrap();
    assert!(revoked.starts_with("revoked"));
    let result = auth.authenticate_request(&headers, |_| None).await;
    assert_eq!(result.error.as_deref(), Some("API key is revoked"), "revocation is immediate");
    assert!(cli(&store, Command::Revoke { key_id: "0".repeat(64) }).await.is_err());
    assert!(cli(&store, Command::List { tenant: "bad#tenant".into() }).await.is_err());
}

#[tokio::test]
async fn an_out_of_range_expiry_is_refused_not_a_panic() {
    use auditline_cli::Cli;
    use clap::Parser;
    // Once a panic: `now + Duration::days(4294967295)` overflows the calendar.
    for days in ["0", "3651", "4294967295", "-1", "ten", "1e3"] {
        let parsed = Cli::try_parse_from([
            "auditline",
            "keys",
            "create",
            "--tenant",
            "acme",
            "--user",
            "bot",
            "--scope",
            "audit:read",
            "--expires-in-days",
            days,
        ]);
        let error = parsed.expect_err("refused while parsing").to_string();
        assert!(error.contains("--expires-in-days") || error.contains(days), "{days}: {error}");
    }
    // The library refuses it too, whoever builds the command.
    let store = auditline::auth::api_keys::MemoryApiKeys::new();
    let command = Command::Create {
        tenant: "acme".into(),
        user: "bot".into(),
        scopes: vec!["audit:read".into()],
        name: None,
        expires_in_days: Some(u32::MAX),
    };
    let error = run(command, &store, chrono::Utc::now(), &mut Vec::new()).await.unwrap_err().to_string();
    assert!(error.contains("--expires-in-days must be from 1 to 3650"), "{error}");
    assert!(store.list(&tenant("acme")).await.unwrap().is_empty(), "nothing stored");
}
