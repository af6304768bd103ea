//! template.yaml against the code: functions and their binaries, environment variables, tables,
//! routes, the stream mapping and IAM. (cfn-lint and `sam validate --lint` run in scripts/test.sh.)

use std::collections::{BTreeMap, BTreeSet};

use auditline::apigw::http::Route;
use auditline::config::vars;
use auditline::store::dynamo::tables::{self, TableSpec};
use serde_norway::Value;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).expect("template.yaml")).expect("valid YAML")
}

/// A value with CloudFormation's short-form tags rendered as text, e.g. `!Ref EntriesTable`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Tagged(t) => format!("{} {}", t.tag, text(&t.value)),
        Value::Sequence(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => format!("{other:?}"),
    }
}

fn resources(t: &Value) -> BTreeMap<String, Value> {
    t["Resources"].as_mapping().unwrap().iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone())).collect()
}

fn of_type(t: &Value, kind: &str) -> BTreeMap<String, Value> {
    resources(t).into_iter().filter(|(_, r)| r["Type"].as_str() == Some(kind)).collect()
}

/// Function resources by handler (the function the one binary runs for them).
fn functions(t: &Value) -> BTreeMap<String, Value> {
    of_type(t, "AWS::Serverless::Function")
        .into_values()
        .map(|f| (f["Properties"]["Handler"].as_str().expect("every function names its handler").to_owned(), f))
        .collect()
}

fn environment(f: &Value) -> BTreeMap<String, String> {
    f["Properties"]["Environment"]["Variables"]
        .as_mapping()
        .map(|m| m.iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), text(v))).collect())
        .unwrap_or_default()
}

/// (actions, resources) of every policy statement of a function, conditional ones included.
fn statements(f: &Value) -> Vec<(Vec<String>, Vec<String>)> {
    guarded_statements(f).into_iter().map(|(_, actions, resources)| (actions, resources)).collect()
}

/// Every policy statement of a function with the condition it is granted under (`!If [cond, policy,
/// !Ref AWS::NoValue]`), `None` for those granted always.
fn guarded_statements(f: &Value) -> Vec<(Option<String>, Vec<String>, Vec<String>)> {
    let mut all = Vec::new();
    for policy in f["Properties"]["Policies"].as_sequence().into_iter().flatten() {
        let (condition, policy) = match policy {
            Value::Tagged(t) if t.tag == "If" => {
                let branches = t.value.as_sequence().expect("!If [condition, then, else]");
                assert_eq!(text(&branches[2]), "!Ref AWS::NoValue", "a conditional policy grants nothing otherwise");
                (Some(text(&branches[0])), &branches[1])
            }
            other => (None, other),
        };
        for s in policy["Statement"].as_sequence().into_iter().flatten() {
            // Denials narrow what is allowed; `denied` lists them.
            if s["Effect"].as_str() == Some("Deny") {
                continue;
            }
            assert_eq!(s["Effect"].as_str(), Some("Allow"));
            let list = |v: &Value| -> Vec<String> {
                v.as_sequence().map(|s| s.iter().map(text).collect()).unwrap_or_else(|| vec![text(v)])
            };
            all.push((condition.clone(), list(&s["Action"]), list(&s["Resource"])));
        }
    }
    all
}

/// Memory per function, as chosen from the cold-path figures (docs/ARCHITECTURE.md, "Cold path").
#[test]
fn memory_sizes_are_the_ones_the_cold_path_figures_chose() {
    let t = template();
    let default = t["Globals"]["Function"]["MemorySize"].as_u64();
    let memory: BTreeMap<String, Option<u64>> =
        functions(&t).into_iter().map(|(h, f)| (h, f["Properties"]["MemorySize"].as_u64().or(default))).collect();
    for (handler, mb) in [
        ("authorizer", 128),
        ("ws-authorizer", 128),
        ("ingest", 128),
        ("list-logs", 128),
        ("ws-connect", 128),
        ("stream-archive", 256),
        ("stream-fanout", 256),
        ("seal", 256),
    ] {
        assert_eq!(memory[handler], Some(mb), "{handler}");
    }
}

#[test]
fn every_function_runs_the_one_binary_built_once_by_cargo_lambda_for_arm64() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(text(&globals["Architectures"]), "arm64");
    assert_eq!(globals["CodeUri"].as_str(), Some("./functions"));
    let fns = functions(&t);
    let handlers: BTreeSet<String> = auditline::bootstrap::HANDLERS.iter().map(|h| h.to_string()).collect();
    assert_eq!(fns.keys().cloned().collect::<BTreeSet<_>>(), handlers, "one function per handler, and back");
    let metadata: BTreeSet<String> = fns.values().map(|f| format!("{:?}", f["Metadata"])).collect();
    assert_eq!(metadata.len(), 1, "the same build metadata everywhere: SAM then builds the binary once");
    for (binary, f) in &fns {
        assert_eq!(f["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"), "{binary}");
        assert_eq!(f["Metadata"]["BuildProperties"]["Binary"].as_str(), Some("auditline-lambda"), "{binary}");
        let log_group = text(&f["Properties"]["LoggingConfig"]["LogGroup"]);
        let group = log_group.strip_prefix("!Ref ").expect("a log group of its own");
        assert!(
            resources(&t)[group]["Properties"]["RetentionInDays"].as_str().is_some()
                || !resources(&t)[group]["Properties"]["RetentionInDays"].is_null(),
            "{binary}: log retention"
        );
    }
}

#[test]
fn functions_set_only_variables_the_code_reads() {
    let t = template();
    for (binary, f) in functions(&t) {
        for name in environment(&f).keys() {
            assert!(vars::ALL.contains(&name.as_str()), "{binary} sets {name}, which the code never reads");
        }
    }
    let fanout = environment(&functions(&t)["stream-fanout"]);
    assert!(fanout.contains_key(vars::WEBSOCKET_API_ID) && fanout.contains_key(vars::WEBSOCKET_STAGE));
    let authorizer = environment(&functions(&t)["authorizer"]);
    assert!(authorizer.contains_key(vars::JWT_SECRET) && authorizer.contains_key(vars::API_KEYS_TABLE));
    for (binary, f) in functions(&t) {
        if binary != "authorizer" && binary != "ws-authorizer" {
            assert!(!environment(&f).contains_key(vars::JWT_SECRET), "{binary} has no use for the JWT secret");
        }
    }
    let params = &t["Parameters"];
    assert_eq!(params["JwtSecret"]["NoEcho"].as_bool(), Some(true), "the secret is NoEcho");
}

/// The table resource that the variable naming `spec`'s table refers to.
fn table_for(t: &Value, spec: &TableSpec) -> (String, Value) {
    let (variable, _) =
        vars::TABLES.into_iter().find(|(_, s)| std::ptr::eq(*s, spec)).expect("every table has a variable");
    let refs: BTreeSet<String> = functions(t).values().filter_map(|f| environment(f).get(variable).cloned()).collect();
    assert_eq!(refs.len(), 1, "{variable} refers to one table: {refs:?}");
    let name = refs.into_iter().next().unwrap().strip_prefix("!Ref ").expect("a !Ref").to_owned();
    (name.clone(), resources(t)[&name].clone())
}

fn key_schema(v: &Value) -> Vec<(String, String)> {
    v.as_sequence().unwrap().iter().map(|k| (text(&k["AttributeName"]), text(&k["KeyType"]))).collect()
}

#[test]
fn tables_match_their_definitions_in_code() {
    let t = template();
    for spec in tables::ALL {
        let (name, table) = table_for(&t, spec);
        let p = &table["Properties"];
        assert_eq!(p["BillingMode"].as_str(), Some("PAY_PER_REQUEST"), "{name}");
        let mut keys = vec![(spec.partition_key.to_owned(), "HASH".to_owned())];
        keys.extend(spec.sort_key.map(|s| (s.to_owned(), "RANGE".to_owned())));
        assert_eq!(key_schema(&p["KeySchema"]), keys, "{name} keys");
        let indexes: BTreeMap<String, (Vec<(String, String)>, String)> = p["GlobalSecondaryIndexes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|i| (text(&i["IndexName"]), (key_schema(&i["KeySchema"]), text(&i["Projection"]["ProjectionType"]))))
            .collect();
        let want: BTreeMap<String, (Vec<(String, String)>, String)> = spec
            .indexes
            .iter()
            .map(|i| {
                let keys =
                    vec![(i.partition_key.to_owned(), "HASH".to_owned()), (i.sort_key.to_owned(), "RANGE".to_owned())];
                let projection = if i.keys_only { "KEYS_ONLY" } else { "ALL" };
                (i.name.to_owned(), (keys, projection.to_owned()))
            })
            .collect();
        assert_eq!(indexes, want, "{name} indexes");
        let defined: BTreeSet<(String, String)> = p["AttributeDefinitions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| (text(&a["AttributeName"]), text(&a["AttributeType"])))
            .collect();
        let mut used: BTreeSet<(String, String)> = keys.iter().map(|(k, _)| (k.clone(), "S".to_owned())).collect();
        used.extend(
            spec.indexes.iter().flat_map(|i| [i.partition_key, i.sort_key]).map(|k| (k.to_owned(), "S".to_owned())),
        );
        assert_eq!(defined, used, "{name} attribute definitions");
        match spec.ttl_attribute {
            Some(attr) => {
                assert_eq!(text(&p["TimeToLiveSpecification"]["AttributeName"]), attr, "{name} TTL");
                assert_eq!(p["TimeToLiveSpecification"]["Enabled"].as_bool(), Some(true), "{name} TTL");
            }
            None => assert!(p["TimeToLiveSpecification"].is_null(), "{name} has no TTL"),
        }
        let stream = p["StreamSpecification"]["StreamViewType"].as_str();
        assert_eq!(stream == Some("NEW_IMAGE"), spec.stream_new_image, "{name} stream");
    }
    let (_, entries) = table_for(&t, &tables::ENTRIES);
    assert_eq!(
        entries["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(entries["DeletionPolicy"].as_str(), Some("Retain"), "audit entries outlive the stack");
}

#[test]
fn every_route_has_its_function_and_goes_through_the_authorizer() {
    let t = template();
    let fns = functions(&t);
    let mut routes = BTreeSet::new();
    for (binary, f) in &fns {
        for event in f["Properties"]["Events"].as_mapping().into_iter().flat_map(|m| m.values()) {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let p = &event["Properties"];
            assert_eq!(text(&p["ApiId"]), "!Ref HttpApi");
            let key = format!("{} {}", text(&p["Method"]), text(&p["Path"]));
            if binary == "viewer" {
                // The page holds no data: public, and the API behind it checks every call.
                assert!(["GET /", "GET /viewer/{file+}"].contains(&key.as_str()), "{key}");
                assert_eq!(text(&p["Auth"]["Authorizer"]), "NONE", "{key}");
                continue;
            }
            let route =
                Route::ALL.into_iter().find(|r| r.route_key() == key).unwrap_or_else(|| panic!("{key} is not a route"));
            assert_eq!(route.function(), binary, "{key} is served by its own function");
            // The health check too: it lets callers without credentials in and tells audit:read more.
            assert!(p["Auth"]["Authorizer"].is_null(), "{key} uses the default authorizer");
            routes.insert(route.route_key());
        }
    }
    assert_eq!(routes, Route::ALL.iter().map(|r| r.route_key()).collect(), "every route is deployed");
    let auth = &resources(&t)["HttpApi"]["Properties"]["Auth"];
    assert_eq!(text(&auth["DefaultAuthorizer"]), "LambdaAuthorizer");
    let authorizer = &auth["Authorizers"]["LambdaAuthorizer"];
    assert_eq!(text(&authorizer["FunctionArn"]), "!GetAtt AuthorizerFunction.Arn");
    assert_eq!(text(&authorizer["AuthorizerPayloadFormatVersion"]), "2.0");
    assert_eq!(authorizer["EnableSimpleResponses"].as_bool(), Some(true));
    assert_eq!(text(&authorizer["Identity"]["ReauthorizeEvery"]), "0", "no caching: credentials have several homes");
}

#[test]
fn the_websocket_api_has_an_authorized_connect_and_a_disconnect() {
    let t = template();
    let r = resources(&t);
    assert_eq!(r["WebSocketApi"]["Properties"]["ProtocolType"].as_str(), Some("WEBSOCKET"));
    let connect = &r["ConnectRoute"]["Properties"];
    assert_eq!(
        (text(&connect["RouteKey"]).as_str(), text(&connect["AuthorizationType"]).as_str()),
        ("$connect", "CUSTOM")
    );
    assert_eq!(text(&connect["AuthorizerId"]), "!Ref WebSocketAuthorizer");
    assert_eq!(text(&r["WebSocketAuthorizer"]["Properties"]["AuthorizerType"]), "REQUEST");
    assert!(text(&r["WebSocketAuthorizer"]["Properties"]["AuthorizerUri"]).contains("AuthorizerFunction.Arn"));
    assert_eq!(text(&r["DisconnectRoute"]["Properties"]["RouteKey"]), "$disconnect");
    for (integration, function) in
        [("ConnectIntegration", "WsConnectFunction"), ("DisconnectIntegration", "WsDisconnectFunction")]
    {
        assert!(text(&r[integration]["Properties"]["IntegrationUri"]).contains(&format!("{function}.Arn")));
    }
    let permissions = of_type(&t, "AWS::Lambda::Permission");
    for function in ["WsAuthorizerFunction", "WsConnectFunction", "WsDisconnectFunction"] {
        let p = permissions
            .values()
            .find(|p| text(&p["Properties"]["FunctionName"]) == format!("!Ref {function}"))
            .expect("a permission");
        assert!(text(&p["Properties"]["SourceArn"]).contains("${WebSocketApi}"), "{function}: scoped by SourceArn");
    }
    assert!(r.contains_key("WebSocketStage") && r.contains_key("WebSocketDeployment"));
    let outputs = &t["Outputs"];
    assert!(text(&outputs["HttpApiUrl"]["Value"]).contains("${HttpApi}"));
    assert!(text(&outputs["WebSocketUrl"]["Value"]).starts_with("!Sub wss://"));
}

#[test]
fn the_stream_mapping_reports_failures_bisects_and_keeps_poison_batches() {
    let t = template();
    let fanout = &functions(&t)["stream-fanout"];
    let events: Vec<&Value> = fanout["Properties"]["Events"].as_mapping().unwrap().values().collect();
    assert_eq!(events.len(), 1);
    let p = &events[0]["Properties"];
    assert_eq!(events[0]["Type"].as_str(), Some("DynamoDB"));
    assert_eq!(text(&p["Stream"]), "!GetAtt EntriesTable.StreamArn");
    assert_eq!(text(&p["FunctionResponseTypes"]), "ReportBatchItemFailures");
    assert_eq!(p["BisectBatchOnFunctionError"].as_bool(), Some(true));
    let retries: i64 = text(&p["MaximumRetryAttempts"]).parse().unwrap();
    assert!((0..=100).contains(&retries), "bounded retries, not -1 (forever)");
    let age: i64 = text(&p["MaximumRecordAgeInSeconds"]).parse().unwrap();
    assert!((60..=86_400).contains(&age), "bounded record age");
    assert_eq!(text(&p["DestinationConfig"]["OnFailure"]["Destination"]), "!GetAtt FanoutFailureQueue.Arn");
    assert!(text(&p["FilterCriteria"]["Filters"][0]["Pattern"]).contains("INSERT"));
}

#[test]
fn iam_is_least_privilege_per_function() {
    let t = template();
    let readers = Route::ALL
        .into_iter()
        .filter(|r| r.reads_the_trail() || [Route::Health, Route::Keys].contains(r))
        .map(Route::function)
        .collect::<Vec<_>>();
    assert_eq!(readers.len(), 11);
    for (binary, f) in functions(&t) {
        let all = guarded_statements(&f);
        if binary == "viewer" {
            assert!(f["Properties"]["Policies"].is_null(), "the viewer serves files it carries: no permission");
            continue;
        }
        if binary == "list-keys" {
            assert!(
                f["Properties"]["Policies"].is_null(),
                "list-keys reads public keys through their key policies only"
            );
            continue;
        }
        assert!(!all.is_empty(), "{binary} has its own policy");
        for (condition, actions, resources) in &all {
            for action in actions {
                assert!(!action.contains('*'), "{binary}: no wildcard actions ({action})");
                assert_ne!(action, "dynamodb:Scan", "{binary}: every read is a Query or a GetItem, never a Scan");
                if readers.contains(&binary.as_str()) {
                    let reads = ["dynamodb:Query", "dynamodb:GetItem", "dynamodb:BatchGetItem"];
                    // Recording reads (AUDIT_LOG_READS) is the one write a reader may do, and only when on.
                    let records = match action.as_str() {
                        "dynamodb:PutItem" => resources == &["!GetAtt EntriesTable.Arn"],
                        "dynamodb:UpdateItem" | "dynamodb:ConditionCheckItem" => {
                            resources == &["!GetAtt CountersTable.Arn"]
                        }
                        _ => false,
                    };
                    assert!(
                        reads.contains(&action.as_str()) || (records && condition.as_deref() == Some("LogReads")),
                        "{binary} only reads, and records reads only when AuditLogReads is on: {action} ({condition:?})"
                    );
                }
                if action == "execute-api:ManageConnections" {
                    assert!(
                        ["stream-fanout", "seal"].contains(&binary.as_str()),
                        "only the fan-out (entries) and the seal (checkpoint frames) post to connections"
                    );
                }
                let on_entries = resources.iter().any(|r| r.contains("EntriesTable"));
                if on_entries {
                    assert_ne!(action, "dynamodb:DeleteItem", "{binary}: entries are never deleted");
                    assert!(
                        action != "dynamodb:UpdateItem"
                            || ["erase", "erase-subject", "place-hold", "release-hold"].contains(&binary.as_str()),
                        "{binary}: only erasure and legal holds change entries"
                    );
                }
            }
            for resource in resources {
                assert!(resource != "*" && !resource.ends_with(":*"), "{binary}: no wildcard resources ({resource})");
            }
        }
    }
    // The functions that record reads are told to, and name the tables they write.
    for route in Route::ALL.into_iter().filter(|r| r.reads_the_trail()) {
        let env = environment(&functions(&t)[route.function()]);
        assert_eq!(env.get(vars::AUDIT_LOG_READS).map(String::as_str), Some("!Ref AuditLogReads"), "{route:?}");
        for variable in [vars::ENTRIES_TABLE, vars::COUNTERS_TABLE, vars::COUNTER_SHARDS, vars::AUDIT_ENABLED] {
            assert!(env.contains_key(variable), "{route:?} records reads: {variable}");
        }
        let grants = guarded_statements(&functions(&t)[route.function()]);
        assert!(
            grants.iter().any(|(c, a, _)| c.as_deref() == Some("LogReads") && a == &["dynamodb:PutItem"]),
            "{route:?} may write its VIEW entries when AuditLogReads is on"
        );
    }
    // The changes an entry may undergo, each on named attributes only and returning nothing: an
    // erasure (the erasable fields, the user index's key, the salts) and a hold's expiry.
    let erasable = ["pk", "id", "expires_at", "integrity", "user_id", "user_key", "changes", "ip_address", "metadata"];
    for (binary, allowed) in [
        ("erase", &erasable[..]),
        ("place-hold", &["pk", "id", "expires_at"]),
        ("release-hold", &["pk", "id", "expires_at"]),
    ] {
        let f = &functions(&t)[binary];
        let updates: Vec<&Value> = f["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|p| p["Statement"].as_sequence().into_iter().flatten())
            .filter(|s| text(&s["Resource"]).contains("EntriesTable") && text(&s["Action"]).contains("UpdateItem"))
            .collect();
        assert_eq!(updates.len(), 1, "{binary}");
        let condition = &updates[0]["Condition"];
        let attributes: BTreeSet<String> = condition["ForAllValues:StringEquals"]["dynamodb:Attributes"]
            .as_sequence()
            .expect("UpdateItem on entries is limited to named attributes")
            .iter()
            .map(text)
            .collect();
        assert_eq!(attributes, allowed.iter().map(|a| (*a).to_owned()).collect(), "{binary}");
        assert_eq!(text(&condition["StringEqualsIfExists"]["dynamodb:ReturnValues"]), "NONE", "{binary}");
    }
    let manage: Vec<String> = functions(&t)
        .into_iter()
        .filter(|(_, f)| statements(f).iter().any(|(a, _)| a.iter().any(|a| a.starts_with("execute-api"))))
        .map(|(b, _)| b)
        .collect();
    assert_eq!(manage, ["seal", "stream-fanout"]);
}

/// A function's timeout in seconds (its own, or the Globals').
fn timeout_of(t: &Value, f: &Value) -> u64 {
    let own = &f["Properties"]["Timeout"];
    let value = if own.is_null() { &t["Globals"]["Function"]["Timeout"] } else { own };
    text(value).parse().expect("a timeout in seconds")
}

#[test]
fn sdk_time_limits_end_before_any_function_is_killed() {
    use auditline::realtime::fanout::FanoutSettings;
    let t = template();
    let dynamodb = auditline::store::dynamo::client::OPERATION_TIMEOUT.as_secs();
    let post = auditline::apigw::management::OPERATION_TIMEOUT.as_secs();
    for (binary, f) in functions(&t) {
        let timeout = timeout_of(&t, &f);
        // Room for one whole DynamoDB operation (retries included) and the reply after it.
        assert!(timeout >= dynamodb + 2, "{binary}: {timeout} s leaves no room for a {dynamodb} s DynamoDB call");
        if binary == "stream-fanout" {
            let budget = FanoutSettings::DEFAULT_BUDGET.as_secs();
            assert!(
                timeout >= budget + post + 2 * dynamodb,
                "stream-fanout: {timeout} s must cover the {budget} s budget, a last post, the connection reads and strikes"
            );
        }
    }
}

#[test]
fn floods_are_cut_at_the_stage_and_cannot_starve_ingest_or_the_feed() {
    let t = template();
    let r = resources(&t);
    let stage = &r["HttpApi"]["Properties"]["DefaultRouteSettings"];
    assert_eq!(text(&stage["ThrottlingRateLimit"]), "!Ref HttpThrottlingRateLimit");
    assert_eq!(text(&stage["ThrottlingBurstLimit"]), "!Ref HttpThrottlingBurstLimit");
    let ws = &r["WebSocketStage"]["Properties"]["DefaultRouteSettings"];
    assert!(!ws["ThrottlingRateLimit"].is_null() && !ws["ThrottlingBurstLimit"].is_null(), "the WebSocket stage too");
    let fns = functions(&t);
    for (binary, parameter, condition) in [
        ("authorizer", "AuthorizerMaxConcurrency", "CapAuthorizer"),
        ("ingest", "IngestReservedConcurrency", "ReserveIngest"),
        ("stream-fanout", "FanoutReservedConcurrency", "ReserveFanout"),
    ] {
        let reserved = text(&fns[binary]["Properties"]["ReservedConcurrentExecutions"]);
        assert!(reserved.contains(condition) && reserved.contains(parameter), "{binary}: {reserved}");
        assert!(!t["Conditions"][condition].is_null(), "{condition} is defined");
        let default: u64 = text(&t["Parameters"][parameter]["Default"]).parse().unwrap();
        assert!(default > 0, "{parameter} reserves by default");
    }
    let readers = ["list-logs", "get-log", "entity-logs", "project-logs", "stats", "health", "ws-connect"];
    for binary in readers {
        assert!(fns[binary]["Properties"]["ReservedConcurrentExecutions"].is_null(), "{binary} shares the pool");
    }
}

#[test]
fn the_entries_stream_has_two_consumers_each_reporting_failures_with_bounded_retries() {
    let t = template();
    let consumers: Vec<(String, Value)> = functions(&t)
        .into_iter()
        .flat_map(|(binary, f)| {
            let events: Vec<Value> =
                f["Properties"]["Events"].as_mapping().map_or(vec![], |m| m.values().cloned().collect());
            events
                .into_iter()
                .filter(|e| text(&e["Properties"]["Stream"]) == "!GetAtt EntriesTable.StreamArn")
                .map(move |e| (binary.clone(), e))
        })
        .collect();
    let names: Vec<&str> = consumers.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(names, ["stream-archive", "stream-fanout"], "a stream shard serves at most two readers");
    for (binary, event) in &consumers {
        let p = &event["Properties"];
        assert_eq!(text(&p["FunctionResponseTypes"]), "ReportBatchItemFailures", "{binary}");
        assert_eq!(p["BisectBatchOnFunctionError"].as_bool(), Some(true), "{binary}");
        let retries: i64 = text(&p["MaximumRetryAttempts"]).parse().unwrap();
        assert!((0..=100).contains(&retries), "{binary}: bounded retries");
        assert!(text(&p["DestinationConfig"]["OnFailure"]["Destination"]).ends_with("FailureQueue.Arn"), "{binary}");
    }
    let archive = &consumers[0].1["Properties"];
    assert_eq!(text(&archive["StartingPosition"]), "TRIM_HORIZON", "the archive misses nothing the stream holds");
}

#[test]
fn the_archive_bucket_is_private_encrypted_versioned_tls_only_and_expires_after_retention() {
    let t = template();
    let r = resources(&t);
    let bucket = &r["ArchiveBucket"];
    assert_eq!(bucket["DeletionPolicy"].as_str(), Some("Retain"));
    let p = &bucket["Properties"];
    assert_eq!(p["VersioningConfiguration"]["Status"].as_str(), Some("Enabled"));
    let sse = &p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"];
    assert!(["AES256", "aws:kms"].contains(&text(&sse["SSEAlgorithm"]).as_str()));
    let block = &p["PublicAccessBlockConfiguration"];
    for setting in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
        assert_eq!(block[setting].as_bool(), Some(true), "{setting}");
    }
    let rule = &p["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(text(&rule["ExpirationInDays"]), "!Ref AuditArchiveRetentionDays");
    assert_eq!(text(&t["Parameters"]["AuditArchiveRetentionDays"]["Default"]), "2557", "seven years by default");
    assert_eq!(text(&rule["Transitions"][0]["StorageClass"]), "GLACIER_IR", "an archive class Athena still reads");
    let lock = text(&p["ObjectLockConfiguration"]);
    assert!(lock.contains("COMPLIANCE") && lock.contains("LockArchive"), "optional Object Lock: {lock}");
    let policy = &r["ArchiveBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Effect"].as_str(), Some("Deny"));
    assert_eq!(text(&policy["Condition"]["Bool"]["aws:SecureTransport"]), "false");
    // Only the archive function writes there, and only objects under the partitions.
    let writers: Vec<String> = functions(&t)
        .into_iter()
        .filter(|(_, f)| statements(f).iter().any(|(a, _)| a.iter().any(|a| a == "s3:PutObject")))
        .map(|(b, _)| b)
        .collect();
    assert_eq!(writers, ["seal", "stream-archive"], "the seal writes checkpoints, elsewhere");
    let archive = &functions(&t)["stream-archive"];
    assert_eq!(
        statements(archive),
        [
            (vec!["s3:PutObject".to_owned()], vec!["!Sub ${ArchiveBucket.Arn}/tenant=*".to_owned()]),
            (vec!["dynamodb:UpdateItem".to_owned()], vec!["!GetAtt ArchiveKeysTable.Arn".to_owned()])
        ]
    );
    // The archive's keys: issued by the archive, destroyed by the two erasure functions, each
    // limited to the key item's attributes; nothing may delete one (TTL does), and no backup keeps
    // a destroyed key.
    let key_writers: Vec<String> = functions(&t)
        .into_iter()
        .filter(|(_, f)| text(&f["Properties"]["Policies"]).contains("ArchiveKeysTable"))
        .map(|(b, _)| b)
        .collect();
    assert_eq!(key_writers, ["erase", "erase-subject", "stream-archive"]);
    for writer in &key_writers {
        let policies = text(&functions(&t)[writer]["Properties"]["Policies"]);
        assert!(!policies.contains("DeleteItem") && policies.contains("dynamodb:Attributes"), "{writer}: {policies}");
    }
    let keys_table = &r["ArchiveKeysTable"]["Properties"];
    assert!(keys_table["PointInTimeRecoverySpecification"].is_null(), "no backup keeps a destroyed key");
}

#[test]
fn checkpoints_are_published_to_a_bucket_locked_in_compliance_mode() {
    let t = template();
    let r = resources(&t);
    let p = &r["CheckpointBucket"]["Properties"];
    assert_eq!(p["VersioningConfiguration"]["Status"].as_str(), Some("Enabled"), "Object Lock needs versioning");
    assert_eq!(p["ObjectLockEnabled"].as_bool(), Some(true), "locked from creation, not optional");
    let retention = &p["ObjectLockConfiguration"]["Rule"]["DefaultRetention"];
    assert_eq!(text(&retention["Mode"]), "COMPLIANCE", "not GOVERNANCE: no one can lift it");
    assert_eq!(text(&retention["Days"]), "!Ref CheckpointObjectLockDays");
    for setting in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
        assert_eq!(p["PublicAccessBlockConfiguration"][setting].as_bool(), Some(true), "{setting}");
    }
    assert_eq!(text(&r["CheckpointBucket"]["DeletionPolicy"]), "Retain");
    let policy = &r["CheckpointBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(text(&policy["Condition"]["Bool"]["aws:SecureTransport"]), "false");
    // The seal writes new objects under checkpoints/ and nothing else there.
    let seal = &functions(&t)["seal"];
    let s3: Vec<_> = statements(seal).into_iter().filter(|(a, _)| a.iter().any(|a| a.starts_with("s3:"))).collect();
    assert_eq!(
        s3,
        [
            (
                vec!["s3:PutObject".to_owned(), "s3:GetObject".to_owned()],
                vec!["!Sub ${CheckpointBucket.Arn}/checkpoints/*".to_owned()]
            ),
            (vec!["s3:ListBucket".to_owned()], vec!["!GetAtt CheckpointBucket.Arn".to_owned()]),
        ],
        "it writes (never over an object: Object Lock) and reads back what it published, nothing else"
    );
    let env = environment(seal);
    assert_eq!(env.get(vars::CHECKPOINT_BUCKET).map(String::as_str), Some("!Ref CheckpointBucket"));
    assert_eq!(env.get(vars::AUDIT_WITNESSES).map(String::as_str), Some("!Ref Witnesses"));
    // What verifiers are told about the schedule is the schedule.
    assert_eq!(env.get(vars::AUDIT_SEAL_SCHEDULE_SECONDS).map(String::as_str), Some("300"));
    let schedule = text(&seal["Properties"]["Events"]["Schedule"]["Properties"]["ScheduleExpression"]);
    assert_eq!(schedule, "rate(5 minutes)");
    for f in ["list-checkpoints", "latest-checkpoint"] {
        assert_eq!(
            environment(&functions(&t)[f]).get(vars::AUDIT_SEAL_SCHEDULE_SECONDS).map(String::as_str),
            Some("300"),
            "{f}"
        );
    }
}

#[test]
fn the_glue_table_reads_the_archive_layout_and_every_entry_field() {
    let t = template();
    let table = &resources(&t)["ArchiveTable"]["Properties"]["TableInput"];
    let columns: Vec<String> = table["StorageDescriptor"]["Columns"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["Name"].as_str().unwrap().to_owned())
        .collect();
    // The fields of an entry as the archive writes it (the API's JSON, its erasable values sealed).
    let now = chrono::Utc::now();
    let entry = auditline::domain::NewEntry {
        tenant_id: auditline_tests::tenant("acme"),
        action: auditline::domain::AuditAction::Create,
        entity_type: auditline::domain::EntityType::File,
        entity_id: "f".into(),
        details: auditline::domain::EntryDetails { user_id: Some("alice".into()), ..Default::default() },
    }
    .validate()
    .unwrap()
    .stamp(now, 90)
    .unwrap();
    let keys = auditline::archive::shred::EntryKeys::from([(
        "user_id".to_owned(),
        auditline::archive::shred::KeySlot::Key(auditline::archive::shred::FieldKey::random()),
    )]);
    let line = auditline::archive::shred::seal(&entry, &keys).unwrap();
    let fields: Vec<String> = serde_json::to_value(&line).unwrap().as_object().unwrap().keys().cloned().collect();
    assert_eq!(columns.iter().cloned().collect::<BTreeSet<_>>(), fields.into_iter().collect::<BTreeSet<_>>());
    let partitions: Vec<&str> =
        table["PartitionKeys"].as_sequence().unwrap().iter().map(|c| c["Name"].as_str().unwrap()).collect();
    assert_eq!(partitions, ["tenant", "date", "hour"]);
    let parameters = &table["Parameters"];
    assert_eq!(parameters["projection.enabled"].as_str(), Some("true"), "partition projection: no crawler");
    let location = text(&parameters["storage.location.template"]);
    assert!(location.ends_with("/tenant=${!tenant}/date=${!date}/hour=${!hour}/"), "{location}");
    // The key layout the archive writes.
    let key = auditline::archive::partition(&entry);
    assert_eq!(key, format!("tenant=acme/date={}/hour={}", now.format("%Y-%m-%d"), now.format("%H")));
}

#[test]
fn only_the_seal_function_may_sign_and_the_grant_makes_no_cycle() {
    let t = template();
    let key = &resources(&t)["SealKey"]["Properties"];
    assert_eq!(text(&key["KeySpec"]), "ECC_NIST_P256");
    assert_eq!(text(&key["KeyUsage"]), "SIGN_VERIFY");
    let policy = key["KeyPolicy"]["Statement"].as_sequence().unwrap();
    let signers: Vec<String> = policy
        .iter()
        .filter(|s| text(&s["Action"]).contains("kms:Sign"))
        .map(|s| text(&s["Principal"]["AWS"]))
        .collect();
    assert_eq!(
        signers,
        ["!GetAtt SealFunctionRole.Arn"],
        "the key's policy lets the seal function's role sign, and no one else"
    );
    let granted = policy.iter().any(|s| {
        let actions = text(&s["Action"]);
        actions.contains("kms:CreateGrant") || actions.contains("kms:Create*") || actions.contains("kms:*")
    });
    assert!(!granted, "no statement allows grants, which would let someone sign unnamed");
    // The role's own policy must not name the key: key → role → key is a cycle CloudFormation
    // refuses (scripts/lib/cfn_emulate.py creates the whole stack to catch others).
    let seal = &functions(&t)["seal"];
    for (actions, resources) in statements(seal) {
        assert!(!resources.iter().any(|r| r.contains("SealKey")), "seal's role names the key: {actions:?}");
    }
    for (binary, f) in functions(&t) {
        for (actions, _) in statements(&f) {
            assert!(!actions.iter().any(|a| a.starts_with("kms:")), "{binary} gets no KMS rights from IAM");
        }
    }
    // GET /audit/keys answers from the key itself: its role may read the public half, nothing else.
    let readers: Vec<(String, String)> = policy
        .iter()
        .filter(|s| text(&s["Principal"]["AWS"]).contains("ListKeysFunctionRole"))
        .map(|s| (text(&s["Principal"]["AWS"]), text(&s["Action"])))
        .collect();
    assert_eq!(readers, [("!GetAtt ListKeysFunctionRole.Arn".to_owned(), "kms:GetPublicKey".to_owned())]);
    let env = environment(&functions(&t)["list-keys"]);
    assert_eq!(env.get(vars::SEAL_KMS_KEY_ID).map(String::as_str), Some("!Ref SealKey"));
    assert!(!env.contains_key(vars::CHECKPOINTS_TABLE), "never from the table");
}

#[test]
fn cors_is_an_explicit_list_shared_with_the_feeds_origin_check() {
    use auditline::auth::origins;
    let t = template();
    assert_eq!(t["Parameters"]["CorsAllowedOrigins"]["Default"].as_str(), Some(""), "nobody by default");
    let cors = &resources(&t)["HttpApi"]["Properties"]["CorsConfiguration"];
    let Value::Tagged(tagged) = cors else { panic!("CorsConfiguration is !If [HasCors, …]") };
    let branches = tagged.value.as_sequence().unwrap();
    assert_eq!((text(&branches[0]).as_str(), text(&branches[2]).as_str()), ("HasCors", "!Ref AWS::NoValue"));
    let c = &branches[1];
    assert_eq!(text(&c["AllowOrigins"]), "!Split ,,!Ref CorsAllowedOrigins", "the list, never a wildcard");
    assert_eq!(c["AllowCredentials"].as_bool(), Some(false));
    let list = |v: &Value| v.as_sequence().unwrap().iter().map(text).collect::<Vec<_>>();
    assert_eq!(list(&c["AllowMethods"]), origins::ALLOWED_METHODS, "as the local gateway answers");
    assert_eq!(list(&c["AllowHeaders"]), origins::ALLOWED_HEADERS);
    assert_eq!(list(&c["ExposeHeaders"]), origins::EXPOSED_HEADERS);
    assert_eq!(text(&c["MaxAge"]), origins::MAX_AGE_SECONDS.to_string());
    // The feed's authorizer checks Origin against the same list, plus the viewer's own origin: the
    // HTTP API's (it may name it: it is not the HTTP API's authorizer), or a custom domain.
    let ws = environment(&functions(&t)["ws-authorizer"]);
    assert_eq!(ws.get(vars::CORS_ALLOWED_ORIGINS).map(String::as_str), Some("!Ref CorsAllowedOrigins"));
    let viewer = &ws[vars::VIEWER_ORIGIN];
    assert!(
        viewer.starts_with("!If HasViewerOrigin,!Ref ViewerOrigin,!Sub https://${HttpApi}.execute-api."),
        "{viewer}"
    );
    let connect = &resources(&t)["WebSocketAuthorizer"]["Properties"]["AuthorizerUri"];
    assert!(text(connect).contains("${WsAuthorizerFunction.Arn}"), "{}", text(connect));
    let http = environment(&functions(&t)["authorizer"]);
    assert!(!http.contains_key(vars::VIEWER_ORIGIN), "CORS of the HTTP API is API Gateway's");
}

/// Every statement of a function as the template has it (conditional policies included).
fn raw_statements(f: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for policy in f["Properties"]["Policies"].as_sequence().into_iter().flatten() {
        let policy = match policy {
            Value::Tagged(t) if t.tag == "If" => t.value.as_sequence().expect("!If")[1].clone(),
            other => other.clone(),
        };
        all.extend(policy["Statement"].as_sequence().into_iter().flatten().cloned());
    }
    all
}

/// A tenant's policy (retention, legal holds) is an item in the counters table, beside the hourly
/// counters every writer moves: only the settings and hold functions (and the seal, whose item is
/// there too) may write any attribute of it; every other writer may update counter attributes only.
#[test]
fn only_the_settings_and_hold_functions_can_write_a_tenants_policy() {
    let t = template();
    let counters = "!GetAtt CountersTable.Arn";
    let owners = ["put-settings", "place-hold", "release-hold"];
    let mut updaters = Vec::new();
    for (binary, f) in functions(&t) {
        for s in raw_statements(&f) {
            let list = |v: &Value| -> Vec<String> {
                v.as_sequence().map(|s| s.iter().map(text).collect()).unwrap_or_else(|| vec![text(v)])
            };
            let (actions, resources) = (list(&s["Action"]), list(&s["Resource"]));
            if !resources.iter().any(|r| r == counters) {
                continue;
            }
            if actions.iter().any(|a| a == "dynamodb:PutItem") {
                assert!(owners.contains(&binary.as_str()) || binary == "seal", "{binary} may put the policy item");
            }
            if actions.iter().any(|a| a == "dynamodb:UpdateItem") && binary != "seal" {
                updaters.push(binary.clone());
                assert_eq!(actions, ["dynamodb:UpdateItem"], "{binary}: the counter update stands alone");
                let allowed: Vec<String> = list(&s["Condition"]["ForAllValues:StringLike"]["dynamodb:Attributes"]);
                assert_eq!(
                    allowed,
                    ["pk", "sk", "hour", "total", "expires_at", "action_*", "type_*"],
                    "{binary}: counter attributes only, never the policy's body or version"
                );
            }
        }
    }
    for writer in ["ingest", "export", "erase", "erase-subject", "list-logs", "put-settings", "place-hold"] {
        assert!(updaters.iter().any(|u| u == writer), "{writer} moves counters");
    }
}

/// A function's Deny statements: (actions, resources).
fn denied(f: &Value) -> Vec<(Vec<String>, Vec<String>)> {
    let list = |v: &Value| -> Vec<String> {
        v.as_sequence().map(|s| s.iter().map(text).collect()).unwrap_or_else(|| vec![text(v)])
    };
    f["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|p| p["Statement"].as_sequence().into_iter().flatten())
        .filter(|s| s["Effect"].as_str() == Some("Deny"))
        .map(|s| (list(&s["Action"]), list(&s["Resource"])))
        .collect()
}

#[test]
fn functions_that_put_events_for_tenants_do_so_only_as_roles_of_other_accounts() {
    let t = template();
    // No function puts events as itself: a bus that trusted the deployment would take any tenant's.
    for (binary, f) in functions(&t) {
        assert!(
            !statements(&f).iter().any(|(a, _)| a.iter().any(|a| a.starts_with("events:"))),
            "{binary} may not call EventBridge as itself"
        );
    }
    let assuming: Vec<String> = functions(&t)
        .into_iter()
        .filter(|(_, f)| statements(f).iter().any(|(a, _)| a.iter().any(|a| a == "sts:AssumeRole")))
        .map(|(b, _)| b)
        .collect();
    assert_eq!(assuming, ["stream-deliver", "test-stream"]);
    for binary in assuming {
        let f = &functions(&t)[&binary];
        let own = "!Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*";
        assert!(
            denied(f).iter().any(|(a, r)| a == &["sts:AssumeRole"] && r.iter().any(|r| r == own)),
            "{binary} denies assuming this account's roles: {:?}",
            denied(f)
        );
        let raw = f["Properties"]["Policies"].as_sequence().into_iter().flatten();
        let mut raw = raw.flat_map(|p| p["Statement"].as_sequence().into_iter().flatten());
        let without_our_id = raw.any(|s| {
            s["Effect"].as_str() == Some("Deny")
                && s["Condition"]["StringNotLike"]["sts:ExternalId"].as_str() == Some("auditline:*")
        });
        assert!(without_our_id, "{binary} denies assuming a role without an external id of the service's form");
    }
    // No other function is denied anything: denials are for this case alone.
    for (binary, f) in functions(&t) {
        if !["stream-deliver", "test-stream"].contains(&binary.as_str()) {
            assert!(denied(&f).is_empty(), "{binary}");
        }
    }
    // The roles tenants' trust policies name are an output of the stack.
    assert!(t["Outputs"]["StreamDeliveryRoleArns"].is_mapping());
}
