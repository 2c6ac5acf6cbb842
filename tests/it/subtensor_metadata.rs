//! The finney metadata fixture and offline encodings that need no Python: provenance,
//! runtime version, the metagraph result form, call indices, and bad input.

use neuron::chain::ChainError;
use neuron::chain::subtensor::neurons::{NeuronInfoLite, decode_neurons_lite};
use neuron::chain::subtensor::{NeuronsLiteForm, SignerRole, SubtensorCall};
use parity_scale_codec::{Compact, Decode, Encode};
use sha2::{Digest, Sha256};
use subxt::metadata::Metadata;

const FINNEY: &[u8] = include_bytes!("../fixtures/subtensor/finney.scale");
const NEURONS_LITE: &str = include_str!("../fixtures/subtensor/neurons_lite_netuid1.hex");

fn finney() -> Metadata {
    Metadata::decode_from(FINNEY).expect("finney metadata decodes")
}

#[test]
fn fixture_is_the_bittensor_rs_finney_metadata() {
    assert_eq!(
        hex::encode(Sha256::digest(FINNEY)),
        "4fcee8d89551a48e96b6b04a4484b445621f8983c170885f670d5130a1182f9f",
        "see tests/fixtures/subtensor/PROVENANCE.md"
    );
    assert_eq!(&FINNEY[..5], b"meta\x10", "V16 metadata");
    #[derive(Decode)]
    struct VersionHead {
        spec_name: String,
        _impl_name: String,
        _authoring_version: u32,
        spec_version: u32,
        _impl_version: u32,
        _apis: Vec<([u8; 8], u32)>,
        transaction_version: u32,
    }
    let md = finney();
    let bytes = md
        .pallet_by_name("System")
        .unwrap()
        .constant_by_name("Version")
        .unwrap()
        .value();
    let v = VersionHead::decode(&mut &bytes[..]).unwrap();
    assert_eq!(
        (v.spec_name.as_str(), v.spec_version, v.transaction_version),
        ("node-subtensor", 365, 1)
    );
    let index = |p: &str| md.pallet_by_name(p).unwrap().call_index();
    assert_eq!(
        (
            index("SubtensorModule"),
            index("Balances"),
            index("Commitments")
        ),
        (7, 5, 18)
    );
    assert_eq!(
        NeuronsLiteForm::from_metadata(&md).unwrap(),
        NeuronsLiteForm::Typed
    );
}

#[test]
fn calls_have_the_documented_indices_and_signers() {
    let md = finney();
    let cases = [
        (
            SubtensorCall::set_weights(1, &[0], &[1], 0),
            [7, 0],
            SignerRole::Hotkey,
        ),
        (
            SubtensorCall::add_stake([1; 32], 1, 5),
            [7, 2],
            SignerRole::Coldkey,
        ),
        (
            SubtensorCall::remove_stake([1; 32], 1, 5),
            [7, 3],
            SignerRole::Coldkey,
        ),
        (
            SubtensorCall::serve_axon(
                1,
                &neuron::chain::AxonServe {
                    version: 1,
                    ip: "127.0.0.1".parse().unwrap(),
                    port: 1,
                    protocol: 4,
                },
            ),
            [7, 4],
            SignerRole::Hotkey,
        ),
        (
            SubtensorCall::burned_register(1, [1; 32]),
            [7, 7],
            SignerRole::Coldkey,
        ),
        (
            SubtensorCall::commit_weights(1, [0; 32]),
            [7, 96],
            SignerRole::Hotkey,
        ),
        (
            SubtensorCall::set_commitment(1, b"").unwrap(),
            [18, 0],
            SignerRole::Hotkey,
        ),
    ];
    for (call, indices, signer) in cases {
        let data = call.call_data(&md).unwrap();
        assert_eq!(data[..2], indices, "{}.{}", call.pallet(), call.name());
        assert_eq!(call.signer(), signer, "{}.{}", call.pallet(), call.name());
    }
    // transfer_keep_alive: Balances, signed by the coldkey.
    let transfer = SubtensorCall::transfer([2; 32], 1);
    assert_eq!(transfer.call_data(&md).unwrap()[0], 5);
    assert_eq!(transfer.signer(), SignerRole::Coldkey);
}

#[test]
fn commitments_longer_than_one_raw_field_are_refused() {
    let md = finney();
    let max = SubtensorCall::set_commitment(1, &[b'a'; 128]).unwrap();
    let data = max.call_data(&md).unwrap();
    // pallet, call, netuid (u16), one field, Raw128 tag (128 + 1), then the bytes.
    assert_eq!(data[..6], [18, 0, 1, 0, 4, 129]);
    assert_eq!(data.len(), 6 + 128);
    let err = SubtensorCall::set_commitment(1, &[b'a'; 129]).unwrap_err();
    assert!(matches!(err, ChainError::InvalidInput(_)), "{err:?}");
    assert!(err.to_string().contains("129"), "{err}");
}

#[test]
fn neurons_lite_decoding_rejects_truncated_and_trailing_bytes() {
    let bytes = hex::decode(NEURONS_LITE.trim()).unwrap();
    let neurons = decode_neurons_lite(&bytes, NeuronsLiteForm::Typed).unwrap();
    assert_eq!(neurons.len(), 3);
    assert_eq!(neurons.iter().map(|n| n.uid).collect::<Vec<_>>(), [0, 1, 2]);

    for bad in [
        &bytes[..bytes.len() - 1],
        &[bytes.as_slice(), &[0]].concat()[..],
        &[][..],
    ] {
        let err = decode_neurons_lite(bad, NeuronsLiteForm::Typed).unwrap_err();
        assert!(matches!(err, ChainError::Decode(_)), "{err:?}");
    }
    // A wrapped result whose inner bytes are cut short.
    let mut wrapped = Compact(bytes.len() as u32 - 10).encode();
    wrapped.extend_from_slice(&bytes[..bytes.len() - 10]);
    let err = decode_neurons_lite(&wrapped, NeuronsLiteForm::Wrapped).unwrap_err();
    assert!(matches!(err, ChainError::Decode(_)), "{err:?}");
    // An empty subnet in either form.
    assert_eq!(
        decode_neurons_lite(&[0], NeuronsLiteForm::Typed).unwrap(),
        Vec::<NeuronInfoLite>::new()
    );
    assert_eq!(
        decode_neurons_lite(&[4, 0], NeuronsLiteForm::Wrapped).unwrap(),
        Vec::<NeuronInfoLite>::new()
    );
}
