//! `chain::normalize_weights` against the SDK's `convert_weights_and_uids_for_emit`
//! (bittensor 10.5.0, in the shared test venv) on random and edge-case float weights.

use neuron::chain::normalize_weights;
use rand::{Rng, SeedableRng, rngs::StdRng};

const SCRIPT: &str = r#"
import json, sys
import numpy as np
from bittensor.utils.weight_utils import convert_weights_and_uids_for_emit
out = []
for uids, weights in json.loads(sys.stdin.read()):
    u, w = convert_weights_and_uids_for_emit(np.array(uids, dtype=np.int64), np.array(weights, dtype=np.float32))
    out.append([list(map(int, u)), list(map(int, w))])
print(json.dumps(out))
"#;

#[test]
fn normalize_weights_matches_the_sdk() {
    let python = crate::support::python_venv("bittensor-10.5.0", &["bittensor==10.5.0"]);
    let mut rng = StdRng::seed_from_u64(7);
    let mut cases: Vec<(Vec<u16>, Vec<f32>)> = vec![
        (vec![0, 1, 2, 3], vec![0.5, 1.0, 0.0, 0.25]),
        (vec![7, 8], vec![1.0, 131_070.0]),
        (vec![7, 8], vec![3.0, 131_070.0]),
        (vec![1, 2, 3], vec![1e-9, 1.0, 0.5]),
        (vec![5], vec![0.3]),
    ];
    for _ in 0..200 {
        let n = rng.random_range(1..64);
        let uids: Vec<u16> = (0..n).map(|_| rng.random_range(0..4096)).collect();
        let weights: Vec<f32> = (0..n)
            .map(|_| match rng.random_range(0..4) {
                0 => 0.0,
                1 => rng.random_range(0.0..1e-4),
                _ => rng.random::<f32>(),
            })
            .collect();
        cases.push((uids, weights));
    }
    let input = serde_json::to_string(&cases).unwrap();
    let mut child = std::process::Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn python");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python failed");
    let expected: Vec<(Vec<u16>, Vec<u16>)> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(expected.len(), cases.len());
    for ((uids, weights), want) in cases.iter().zip(expected) {
        let got = normalize_weights(uids, weights).unwrap();
        assert_eq!(got, want, "weights {weights:?}");
    }
}
