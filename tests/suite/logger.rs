//! The logger's own behaviour: listeners and health, as in the seed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditline::domain::{EntityType, EntryDetails};
use auditline::store::MemoryStore;
use auditline::{AuditLogger, AuditSettings};
use auditline_tests::tenant;

#[tokio::test]
async fn listeners_hear_every_stored_entry_until_removed() {
    let logger = AuditLogger::new(Arc::new(MemoryStore::new()), AuditSettings::default());
    let t = tenant("acme");
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    let id = logger.add_listener(move |e| sink.lock().unwrap().push(e.id));
    let panics = logger.add_listener(|_| panic!("a broken listener"));
    let counted = Arc::new(AtomicUsize::new(0));
    let counter = counted.clone();
    logger.add_listener(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });

    let first = logger.log_delete(&t, EntityType::File, "f-1", EntryDetails::default()).await.unwrap();
    assert_eq!(*heard.lock().unwrap(), vec![first.entry().unwrap().id]);
    assert_eq!(counted.load(Ordering::SeqCst), 1, "a panicking listener does not silence the others");

    assert!(logger.remove_listener(id));
    assert!(!logger.remove_listener(id), "removing twice reports false");
    assert!(logger.remove_listener(panics));
    logger.log_view(&t, EntityType::File, "f-1", EntryDetails::default()).await.unwrap();
    assert_eq!(heard.lock().unwrap().len(), 1);
    assert_eq!(counted.load(Ordering::SeqCst), 2);

    // Invalid entries are not announced.
    assert!(logger.log_view(&t, EntityType::File, "", EntryDetails::default()).await.is_err());
    assert_eq!(counted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn health_reports_configuration_and_storage() {
    let settings = AuditSettings { enabled: true, retention_days: 30 };
    let logger = AuditLogger::new(Arc::new(MemoryStore::new()), settings);
    logger.add_listener(|_| {});
    let report = logger.health(Duration::from_secs(1)).await;
    assert_eq!(report.status, "healthy");
    assert_eq!((report.enabled, report.retention_days, report.listeners), (true, 30, 1));
    assert_eq!(report.storage.backend, "memory");
    assert!(report.storage.reachable);
}
