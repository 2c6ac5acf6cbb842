//! Our subtensor encodings against the Python encoder of bittensor 10.5.0
//! (async-substrate-interface + cyscale), both fed the finney runtime metadata from
//! `tests/fixtures/subtensor/finney.scale`.
//!
//! The Python encoder cannot read V16 metadata, so this test converts the fixture to V15
//! (same type registry, pallets and runtime APIs) and hands that to Python; our side uses
//! the V16 original through subxt. Checked byte for byte: the call data of every
//! extrinsic we send, the commit-reveal v2 hash, and `Vec<NeuronInfoLite>` in the current
//! and the early-2024 `Vec<u8>`-wrapped form (Python encodes, we decode).

use neuron::chain::AxonServe;
use neuron::chain::subtensor::neurons::{ChainAxonInfo, PrometheusInfo, StakeEntry};
use neuron::chain::subtensor::{
    NeuronInfoLite, NeuronsLiteForm, SubtensorCall, WeightsReveal, decode_neurons_lite,
    parse_account, ss58, weights_commit_hash,
};
use serde_json::{Value as Json, json};
use subxt::ext::codec::{Decode, Encode};
use subxt::ext::frame_metadata::{RuntimeMetadata, RuntimeMetadataPrefixed, v15};
use subxt::metadata::Metadata;

const FINNEY: &[u8] = include_bytes!("../fixtures/subtensor/finney.scale");
const ENCODER: &str = include_str!("../fixtures/subtensor/python_encoder.py");
const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

/// The V16 fixture rewritten as V15: the same registry, pallets and APIs, with the
/// V16-only parts (deprecation info, associated types, view functions, extension
/// versions other than 0) dropped.
fn finney_as_v15() -> Vec<u8> {
    let prefixed = RuntimeMetadataPrefixed::decode(&mut &FINNEY[..]).expect("decode fixture");
    let RuntimeMetadata::V16(m) = prefixed.1 else {
        panic!("fixture is not V16 metadata");
    };
    let types = m.types;
    let pallets = m
        .pallets
        .into_iter()
        .map(|p| v15::PalletMetadata {
            name: p.name,
            storage: p.storage.map(|s| v15::PalletStorageMetadata {
                prefix: s.prefix,
                entries: s
                    .entries
                    .into_iter()
                    .map(|e| v15::StorageEntryMetadata {
                        name: e.name,
                        modifier: e.modifier,
                        ty: e.ty,
                        default: e.default,
                        docs: e.docs,
                    })
                    .collect(),
            }),
            calls: p.calls.map(|c| v15::PalletCallMetadata { ty: c.ty }),
            event: p.event.map(|e| v15::PalletEventMetadata { ty: e.ty }),
            constants: p
                .constants
                .into_iter()
                .map(|c| v15::PalletConstantMetadata {
                    name: c.name,
                    ty: c.ty,
                    value: c.value,
                    docs: c.docs,
                })
                .collect(),
            error: p.error.map(|e| v15::PalletErrorMetadata { ty: e.ty }),
            index: p.index,
            docs: p.docs,
        })
        .collect();
    let ext = m.extrinsic;
    let v0: Vec<usize> = ext
        .transaction_extensions_by_version
        .get(&0)
        .expect("extension version 0")
        .iter()
        .map(|i| i.0 as usize)
        .collect();
    let signed_extensions: Vec<v15::SignedExtensionMetadata<scale_info::form::PortableForm>> = v0
        .iter()
        .map(|&i| {
            let e = &ext.transaction_extensions[i];
            v15::SignedExtensionMetadata {
                identifier: e.identifier.clone(),
                ty: e.ty,
                additional_signed: e.implicit,
            }
        })
        .collect();
    // V15 also names the tuple of extension types and the runtime type; only extrinsic
    // decoding uses them, so any fitting registry entry will do.
    let find = |pred: &dyn Fn(&scale_info::Type<scale_info::form::PortableForm>) -> bool| {
        types
            .types
            .iter()
            .find(|t| pred(&t.ty))
            .map(|t| t.id)
            .expect("type in registry")
    };
    let ext_tys: Vec<u32> = signed_extensions.iter().map(|e| e.ty.id).collect();
    let extra_ty = types
        .types
        .iter()
        .find(|t| match &t.ty.type_def {
            scale_info::TypeDef::Tuple(tuple) => {
                tuple.fields.iter().map(|f| f.id).collect::<Vec<_>>() == ext_tys
            }
            _ => false,
        })
        .map(|t| t.id)
        .unwrap_or_else(|| {
            find(&|t| matches!(&t.type_def, scale_info::TypeDef::Tuple(tu) if tu.fields.is_empty()))
        });
    let runtime_ty = find(&|t| t.path.segments.last().is_some_and(|s| s == "Runtime"));
    let apis = m
        .apis
        .into_iter()
        .map(|a| v15::RuntimeApiMetadata {
            name: a.name,
            methods: a
                .methods
                .into_iter()
                .map(|mm| v15::RuntimeApiMethodMetadata {
                    name: mm.name,
                    inputs: mm.inputs,
                    output: mm.output,
                    docs: mm.docs,
                })
                .collect(),
            docs: a.docs,
        })
        .collect();
    let v15 = v15::RuntimeMetadataV15 {
        types,
        pallets,
        extrinsic: v15::ExtrinsicMetadata {
            version: 4,
            address_ty: ext.address_ty,
            call_ty: ext.call_ty,
            signature_ty: ext.signature_ty,
            extra_ty: extra_ty.into(),
            signed_extensions,
        },
        ty: runtime_ty.into(),
        apis,
        outer_enums: m.outer_enums,
        custom: m.custom,
    };
    RuntimeMetadataPrefixed::from(v15).encode()
}

fn finney() -> Metadata {
    Metadata::decode_from(FINNEY).expect("finney metadata")
}

fn neuron(uid: u16, hotkey: &str, coldkey: &str, serving: bool) -> NeuronInfoLite {
    let coldkey = parse_account(coldkey).unwrap();
    NeuronInfoLite {
        hotkey: parse_account(hotkey).unwrap(),
        coldkey,
        uid,
        netuid: 1,
        active: true,
        axon_info: if serving {
            ChainAxonInfo {
                block: 4_000_123,
                version: 10_005_000,
                ip: u128::from(u32::from(std::net::Ipv4Addr::new(203, 0, 113, 9))),
                port: 8091,
                ip_type: 4,
                protocol: 4,
                placeholder1: 0,
                placeholder2: 0,
            }
        } else {
            ChainAxonInfo::default()
        },
        prometheus_info: PrometheusInfo::default(),
        stake: vec![StakeEntry {
            coldkey,
            amount: 1_234_567_890_123 + u64::from(uid),
        }],
        rank: 0,
        emission: 98_765 * u64::from(uid + 1),
        incentive: 65535 - uid,
        consensus: 40_000,
        trust: 0,
        validator_trust: if uid == 0 { 65535 } else { 0 },
        dividends: 1 << uid,
        last_update: 4_100_000 + u64::from(uid),
        validator_permit: uid == 0,
        pruning_score: u16::MAX,
    }
}

/// A neuron as the Python encoder takes it (SS58 accounts, dicts, lists).
fn neuron_json(n: &NeuronInfoLite) -> Json {
    let axon = |a: &ChainAxonInfo| {
        json!({"block": a.block, "version": a.version, "ip": a.ip, "port": a.port,
               "ip_type": a.ip_type, "protocol": a.protocol,
               "placeholder1": a.placeholder1, "placeholder2": a.placeholder2})
    };
    let p = &n.prometheus_info;
    json!({
        "hotkey": ss58(n.hotkey), "coldkey": ss58(n.coldkey), "uid": n.uid, "netuid": n.netuid,
        "active": n.active, "axon_info": axon(&n.axon_info),
        "prometheus_info": {"block": p.block, "version": p.version, "ip": p.ip, "port": p.port,
                            "ip_type": p.ip_type},
        "stake": n.stake.iter().map(|s| json!([ss58(s.coldkey), s.amount])).collect::<Vec<_>>(),
        "rank": n.rank, "emission": n.emission, "incentive": n.incentive,
        "consensus": n.consensus, "trust": n.trust, "validator_trust": n.validator_trust,
        "dividends": n.dividends, "last_update": n.last_update,
        "validator_permit": n.validator_permit, "pruning_score": n.pruning_score,
    })
}

struct Case {
    call: SubtensorCall,
    module: &'static str,
    function: &'static str,
    params: Json,
}

#[test]
fn calls_hashes_and_neurons_match_the_python_encoder() {
    let md = finney();
    let alice = parse_account(ALICE).unwrap();
    let bob = parse_account(BOB).unwrap();
    let reveal = WeightsReveal {
        netuid: 3,
        mechid: 0,
        uids: vec![0, 4, 9],
        values: vec![65535, 21845, 7],
        salt: vec![11, 22, 33, 44, 55, 66, 77, 88],
        version_key: 10_005_000,
    };
    let commit_hash = reveal.commit_hash(alice);
    let mech_reveal = WeightsReveal {
        mechid: 1,
        ..reveal.clone()
    };
    // A timelocked commit as `chain::weights` makes it (any bytes encode the same way).
    let timelocked = neuron::chain::timelock::Beacon::quicknet()
        .encrypt(1_234_567, b"weights payload")
        .unwrap();
    let commitment = b"hf:neuron-org/sn9-model@0123abcd";
    let v4 = AxonServe {
        version: 10_005_000,
        ip: "203.0.113.9".parse().unwrap(),
        port: 8091,
        protocol: 4,
    };
    let v6 = AxonServe {
        ip: "2001:db8::42".parse().unwrap(),
        ..v4.clone()
    };
    let serve_params = |a: &AxonServe| {
        // Python converts the address with the SDK's own helpers (see below).
        json!({"netuid": 1, "version": a.version, "ip": a.ip.to_string(), "port": a.port,
               "protocol": a.protocol, "placeholder1": 0, "placeholder2": 0})
    };
    let cases = vec![
        Case {
            call: SubtensorCall::set_weights(1, &[0, 5, 17], &[65535, 32768, 1], 10_005_000),
            module: "SubtensorModule",
            function: "set_weights",
            params: json!({"netuid": 1, "dests": [0, 5, 17], "weights": [65535, 32768, 1],
                           "version_key": 10_005_000}),
        },
        Case {
            call: SubtensorCall::serve_axon(1, &v4),
            module: "SubtensorModule",
            function: "serve_axon",
            params: serve_params(&v4),
        },
        Case {
            call: SubtensorCall::serve_axon(1, &v6),
            module: "SubtensorModule",
            function: "serve_axon",
            params: serve_params(&v6),
        },
        Case {
            call: SubtensorCall::burned_register(1, bob),
            module: "SubtensorModule",
            function: "burned_register",
            params: json!({"netuid": 1, "hotkey": BOB}),
        },
        Case {
            call: SubtensorCall::add_stake(bob, 1, 1_500_000_000),
            module: "SubtensorModule",
            function: "add_stake",
            params: json!({"hotkey": BOB, "netuid": 1, "amount_staked": 1_500_000_000u64}),
        },
        Case {
            call: SubtensorCall::remove_stake(bob, 1, 7_000_000),
            module: "SubtensorModule",
            function: "remove_stake",
            params: json!({"hotkey": BOB, "netuid": 1, "amount_unstaked": 7_000_000u64}),
        },
        Case {
            call: SubtensorCall::transfer(bob, 2_000_000_000),
            module: "Balances",
            function: "transfer_keep_alive",
            params: json!({"dest": BOB, "value": 2_000_000_000u64}),
        },
        Case {
            call: SubtensorCall::set_commitment(2, commitment).unwrap(),
            module: "Commitments",
            function: "set_commitment",
            params: json!({"netuid": 2, "info": {"fields": [[
                {format!("Raw{}", commitment.len()): hex::encode(commitment)}
            ]]}}),
        },
        Case {
            call: SubtensorCall::commit_weights(3, commit_hash),
            module: "SubtensorModule",
            function: "commit_weights",
            params: json!({"netuid": 3, "commit_hash": hex::encode(commit_hash)}),
        },
        Case {
            call: SubtensorCall::reveal_weights(&reveal),
            module: "SubtensorModule",
            function: "reveal_weights",
            params: json!({"netuid": 3, "uids": reveal.uids, "values": reveal.values,
                           "salt": reveal.salt, "version_key": reveal.version_key}),
        },
        Case {
            call: SubtensorCall::set_mechanism_weights(3, 1, &[0, 4], &[65535, 9], 7),
            module: "SubtensorModule",
            function: "set_mechanism_weights",
            params: json!({"netuid": 3, "mecid": 1, "dests": [0, 4], "weights": [65535, 9],
                           "version_key": 7}),
        },
        Case {
            call: SubtensorCall::commit_mechanism_weights(3, 1, commit_hash),
            module: "SubtensorModule",
            function: "commit_mechanism_weights",
            params: json!({"netuid": 3, "mecid": 1, "commit_hash": format!("0x{}", hex::encode(commit_hash))}),
        },
        Case {
            call: SubtensorCall::reveal_weights(&mech_reveal),
            module: "SubtensorModule",
            function: "reveal_mechanism_weights",
            params: json!({"netuid": 3, "mecid": 1, "uids": mech_reveal.uids,
                           "values": mech_reveal.values, "salt": mech_reveal.salt,
                           "version_key": mech_reveal.version_key}),
        },
        Case {
            call: SubtensorCall::commit_timelocked_mechanism_weights(3, 0, &timelocked, 1_234_567),
            module: "SubtensorModule",
            function: "commit_timelocked_mechanism_weights",
            params: json!({"netuid": 3, "mecid": 0, "commit": format!("0x{}", hex::encode(&timelocked)),
                           "reveal_round": 1_234_567u64, "commit_reveal_version": 4}),
        },
    ];
    let hashes = [
        (ALICE, &reveal),
        (
            BOB,
            &WeightsReveal {
                netuid: 4097, // mechanism 1 of subnet 1: netuid_index = 4096 + 1
                mechid: 0,
                uids: vec![],
                values: vec![],
                salt: vec![1],
                version_key: 0,
            },
        ),
    ];
    let neurons = vec![
        neuron(0, ALICE, BOB, true),
        neuron(1, BOB, BOB, false),
        neuron(
            2,
            "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y",
            ALICE,
            true,
        ),
    ];

    let request = json!({
        "calls": cases.iter().map(|c| json!({"module": c.module, "function": c.function,
                                             "params": c.params})).collect::<Vec<_>>(),
        "hashes": hashes.iter().map(|(addr, r)| json!({"address": addr, "netuid": r.netuid,
            "uids": r.uids, "values": r.values, "salt": r.salt, "version_key": r.version_key}))
            .collect::<Vec<_>>(),
        "neurons": neurons.iter().map(neuron_json).collect::<Vec<_>>(),
    });
    let dir = tempfile::tempdir().unwrap();
    let md_path = dir.path().join("finney_v15.scale");
    let req_path = dir.path().join("request.json");
    std::fs::write(&md_path, finney_as_v15()).unwrap();
    std::fs::write(&req_path, request.to_string()).unwrap();
    let python = crate::support::python_venv("bittensor-10.5.0", &["bittensor==10.5.0"]);
    let out = crate::support::run_python(
        &python,
        ENCODER,
        &[md_path.to_str().unwrap(), req_path.to_str().unwrap()],
    );
    let out: Json = serde_json::from_str(&out).expect("python output is JSON");

    for (case, py) in cases.iter().zip(out["calls"].as_array().unwrap()) {
        let ours = hex::encode(case.call.call_data(&md).unwrap());
        assert_eq!(
            ours,
            py.as_str().unwrap(),
            "{}.{} call data differs from the Python encoder",
            case.module,
            case.function
        );
    }
    assert_eq!(out["calls"].as_array().unwrap().len(), cases.len());

    for ((addr, r), py) in hashes.iter().zip(out["hashes"].as_array().unwrap()) {
        let ours = weights_commit_hash(
            parse_account(addr).unwrap(),
            r.netuid,
            &r.uids,
            &r.values,
            &r.salt,
            r.version_key,
        );
        assert_eq!(
            hex::encode(ours),
            py.as_str().unwrap(),
            "commit hash for {addr}"
        );
    }

    let typed = hex::decode(out["neurons_typed"].as_str().unwrap()).unwrap();
    let wrapped = hex::decode(out["neurons_wrapped"].as_str().unwrap()).unwrap();
    assert_eq!(
        NeuronsLiteForm::from_metadata(&md).unwrap(),
        NeuronsLiteForm::Typed
    );
    assert_eq!(
        decode_neurons_lite(&typed, NeuronsLiteForm::Typed).unwrap(),
        neurons
    );
    assert_eq!(
        decode_neurons_lite(&wrapped, NeuronsLiteForm::Wrapped).unwrap(),
        neurons
    );
    assert_eq!(
        neurons.encode(),
        typed,
        "our SCALE layout equals the metadata's"
    );
    // The simulated node in tests/subtensor_rpc.rs serves exactly these bytes.
    assert_eq!(
        include_str!("../fixtures/subtensor/neurons_lite_netuid1.hex").trim(),
        hex::encode(&typed),
        "recorded get_neurons_lite response is the Python encoder's output"
    );
    // The two forms are not interchangeable: each fails cleanly on the other's bytes.
    assert!(decode_neurons_lite(&typed, NeuronsLiteForm::Wrapped).is_err());
    assert!(decode_neurons_lite(&wrapped, NeuronsLiteForm::Typed).is_err());
}

#[test]
fn v15_conversion_keeps_what_subxt_reads() {
    let v15 = Metadata::decode_from(&finney_as_v15()).expect("converted metadata loads");
    let v16 = finney();
    for call in [
        SubtensorCall::set_weights(1, &[1, 2], &[3, 4], 5),
        SubtensorCall::burned_register(1, [7; 32]),
        SubtensorCall::set_commitment(1, b"x").unwrap(),
    ] {
        assert_eq!(call.call_data(&v15).unwrap(), call.call_data(&v16).unwrap());
    }
    assert_eq!(
        NeuronsLiteForm::from_metadata(&v15).unwrap(),
        NeuronsLiteForm::Typed
    );
}
