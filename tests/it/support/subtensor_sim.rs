//! A **simulated** subtensor node for tests: a WebSocket JSON-RPC server on loopback
//! speaking the legacy Substrate RPC methods subxt uses (chain_*, state_*,
//! author_submitAndWatchExtrinsic), serving the finney runtime metadata from the fixture,
//! a recorded `get_neurons_lite` response (made by bittensor's Python encoder, see
//! tests/fixtures/subtensor/PROVENANCE.md) and storage values encoded against that
//! metadata.
//!
//! It is a loopback test double of a node, not a live chain: it decodes every submitted
//! extrinsic against the metadata and checks its sr25519 signature over the payload a
//! node verifies, but what a real runtime would decide (fees, rate limits, state
//! transitions) is scripted by the test through [`Outcome`]s and storage writes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use neuron::chain::subtensor::{parse_account, ss58};
use neuron::chain::{ChainError, Signer};
use serde_json::{Value as Json, json};
use subxt::dynamic::Value;
use subxt::ext::codec::{Compact, Decode, Encode};
use subxt::ext::scale_encode::EncodeAsType;
use subxt::metadata::Metadata;
use subxt::{OfflineClient, SubstrateConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::compat::TokioAsyncReadCompatExt;

pub const FINNEY: &[u8] = include_bytes!("../../fixtures/subtensor/finney.scale");
pub const NEURONS_LITE: &str = include_str!("../../fixtures/subtensor/neurons_lite_netuid1.hex");
pub const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
pub const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
pub const CHARLIE: &str = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y";
pub const START_BLOCK: u32 = 4_200_000;

/// A test key implementing the chain's `Signer` (sr25519, signing context `substrate`).
pub struct DevKey(subxt_signer::sr25519::Keypair);

impl Signer for DevKey {
    fn ss58(&self) -> String {
        ss58(self.public())
    }
    fn public(&self) -> [u8; 32] {
        self.0.public_key().0
    }
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], ChainError> {
        Ok(self.0.sign(message).0)
    }
}

pub fn dev(name: &str) -> DevKey {
    let uri: subxt_signer::SecretUri = format!("//{name}").parse().unwrap();
    DevKey(subxt_signer::sr25519::Keypair::from_uri(&uri).unwrap())
}

pub fn blake2_256(data: &[u8]) -> [u8; 32] {
    use blake2::Digest;
    blake2::Blake2b::<blake2::digest::consts::U32>::digest(data).into()
}

/// What the simulated runtime does with the next submitted extrinsic.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Included and successful; `then` updates storage (key, value) afterwards.
    Success { then: Vec<(Vec<u8>, Vec<u8>)> },
    /// Included, then `System.ExtrinsicFailed` with this `SubtensorModule` error.
    Fail(&'static str),
    /// Refused by the pool with this JSON-RPC error message.
    Refuse(&'static str),
    /// Accepted into the pool but never included.
    Stall,
}

/// A decoded extrinsic the node received.
#[derive(Clone, Debug)]
pub struct Received {
    pub pallet: String,
    pub call: String,
    pub signer: [u8; 32],
    pub signature_valid: bool,
    pub args: Value,
}

pub struct Block {
    pub hash: [u8; 32],
    pub parent: [u8; 32],
    pub number: u32,
    pub extrinsics: Vec<Vec<u8>>,
    pub events: Vec<u8>,
}

pub struct NodeState {
    pub metadata: Metadata,
    pub storage: BTreeMap<Vec<u8>, Vec<u8>>,
    pub blocks: Vec<Block>,
    pub nonces: HashMap<[u8; 32], u32>,
    pub outcomes: VecDeque<Outcome>,
    pub received: Vec<Received>,
    pub events_key: Vec<u8>,
    pub version: Vec<u8>,
    /// The next request for this JSON-RPC method (or `state_call` runtime API) makes the
    /// node close that connection without answering.
    pub drop_on: Option<String>,
    /// WebSocket connections accepted so far.
    pub connections: u32,
}

pub fn header_hash(parent: [u8; 32], number: u32) -> [u8; 32] {
    let encoded = (
        parent,
        Compact(number),
        [0u8; 32],
        [0u8; 32],
        Vec::<u8>::new(),
    )
        .encode();
    blake2_256(&encoded)
}

pub fn h(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).expect("hex")
}

pub fn offline() -> subxt::client::OfflineClientAtBlock<SubstrateConfig> {
    let md = Metadata::decode_from(FINNEY).unwrap();
    let cfg = SubstrateConfig::builder()
        .set_spec_version_for_block_ranges([subxt::config::substrate::SpecVersionForRange {
            block_range: 0..u64::MAX,
            spec_version: 365,
            transaction_version: 1,
        }])
        .set_metadata_for_spec_versions([(365, md.arc())])
        .build();
    OfflineClient::new_with_config(cfg).at_block(0u64).unwrap()
}

/// Storage key and SCALE value of `pallet.entry(keys) = value`, encoded against the
/// fixture metadata.
pub fn storage_item(
    pallet: &str,
    entry: &str,
    keys: Vec<Value>,
    value: Value,
) -> (Vec<u8>, Vec<u8>) {
    let at = offline();
    let addr = subxt::dynamic::storage::<Vec<Value>, Value>(pallet, entry);
    let storage = at.storage();
    let e = storage.entry(addr).unwrap();
    let key = e.fetch_key(keys).unwrap();
    let md = at.metadata();
    let ty = md
        .pallet_by_name(pallet)
        .unwrap()
        .storage()
        .unwrap()
        .entry_by_name(entry)
        .unwrap()
        .value_ty();
    let value = value
        .encode_as_type(ty, md.types())
        .unwrap_or_else(|e| panic!("{pallet}.{entry}: {e}"));
    (key, value)
}

pub fn subnet_item(entry: &str, netuid: u16, value: Value) -> (Vec<u8>, Vec<u8>) {
    storage_item(
        "SubtensorModule",
        entry,
        vec![Value::u128(netuid.into())],
        value,
    )
}

pub fn dispatch_info() -> Value {
    Value::named_composite([
        (
            "weight",
            Value::named_composite([
                ("ref_time", Value::u128(1_000_000)),
                ("proof_size", Value::u128(0)),
            ]),
        ),
        ("class", Value::unnamed_variant("Normal", [])),
        ("pays_fee", Value::unnamed_variant("Yes", [])),
    ])
}

/// `System.Events` for a block whose extrinsic 0 succeeded or failed with `error`.
pub fn events(md: &Metadata, error: Option<&str>) -> Vec<u8> {
    let system_event = match error {
        None => Value::named_variant("ExtrinsicSuccess", [("dispatch_info", dispatch_info())]),
        Some(name) => {
            let pallet = md.pallet_by_name("SubtensorModule").unwrap();
            let index = pallet
                .error_variants()
                .unwrap()
                .iter()
                .find(|v| v.name == name)
                .unwrap_or_else(|| panic!("no SubtensorModule error {name}"))
                .index;
            let module_error = Value::named_composite([
                ("index", Value::u128(pallet.error_index().into())),
                ("error", Value::from_bytes([index, 0, 0, 0])),
            ]);
            Value::named_variant(
                "ExtrinsicFailed",
                [
                    (
                        "dispatch_error",
                        Value::unnamed_variant("Module", [module_error]),
                    ),
                    ("dispatch_info", dispatch_info()),
                ],
            )
        }
    };
    let record = Value::named_composite([
        (
            "phase",
            Value::unnamed_variant("ApplyExtrinsic", [Value::u128(0)]),
        ),
        ("event", Value::unnamed_variant("System", [system_event])),
        ("topics", Value::unnamed_composite([])),
    ]);
    let ty = md
        .pallet_by_name("System")
        .unwrap()
        .storage()
        .unwrap()
        .entry_by_name("Events")
        .unwrap()
        .value_ty();
    Value::unnamed_composite([record])
        .encode_as_type(ty, md.types())
        .expect("encode events")
}

impl NodeState {
    fn new() -> Self {
        let metadata = Metadata::decode_from(FINNEY).unwrap();
        let version = metadata
            .pallet_by_name("System")
            .unwrap()
            .constant_by_name("Version")
            .unwrap()
            .value()
            .to_vec();
        let events_key = storage_item("System", "Events", vec![], Value::unnamed_composite([])).0;
        let mut blocks = Vec::new();
        let genesis = header_hash([0; 32], 0);
        blocks.push(Block {
            hash: genesis,
            parent: [0; 32],
            number: 0,
            extrinsics: vec![],
            events: vec![0],
        });
        let head = header_hash(genesis, START_BLOCK);
        blocks.push(Block {
            hash: head,
            parent: genesis,
            number: START_BLOCK,
            extrinsics: vec![],
            events: vec![0],
        });
        let mut storage = BTreeMap::new();
        let u = |v: u64| Value::u128(v.into());
        for (entry, netuid, value) in [
            ("NetworksAdded", 1, Value::bool(true)),
            ("NetworksAdded", 2, Value::bool(true)),
            ("CommitRevealWeightsEnabled", 1, Value::bool(false)),
            ("CommitRevealWeightsEnabled", 2, Value::bool(true)),
            ("Tempo", 1, u(99)),
            ("ImmunityPeriod", 1, u(5000)),
            ("MaxAllowedUids", 1, u(256)),
            ("MinAllowedWeights", 1, u(8)),
            ("MaxWeightsLimit", 1, u(65535)),
            ("WeightsSetRateLimit", 1, u(100)),
            ("Kappa", 1, u(32767)),
            ("BondsMovingAverage", 1, u(975_000)),
            ("BondsPenalty", 1, u(0)),
            ("ActivityCutoff", 1, u(5000)),
            ("MaxAllowedValidators", 1, u(64)),
            ("WeightsVersionKey", 1, u(2013)),
            ("Burn", 1, u(1_000_000_000)),
            ("ServingRateLimit", 1, u(50)),
        ] {
            let (k, v) = subnet_item(entry, netuid, value);
            storage.insert(k, v);
        }
        for (uid, (hotkey, block)) in [
            (ALICE, 3_900_000u64),
            (BOB, 3_950_000),
            (CHARLIE, 4_000_000),
        ]
        .into_iter()
        .enumerate()
        {
            let account = Value::from_bytes(parse_account(hotkey).unwrap());
            let (k, v) = storage_item(
                "SubtensorModule",
                "BlockAtRegistration",
                vec![u(1), u(uid as u64)],
                u(block),
            );
            storage.insert(k, v);
            let (k, v) = storage_item(
                "SubtensorModule",
                "Uids",
                vec![u(1), account],
                u(uid as u64),
            );
            storage.insert(k, v);
        }
        // Alice and Charlie committed; an unregistered account's commitment is ignored.
        for (account, data, block) in [
            (ALICE, &b"hf:alice/model@1"[..], 4_100_000u64),
            (CHARLIE, &b"x"[..], 4_100_007),
            (
                "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy",
                &b"orphan"[..],
                4_100_009,
            ),
        ] {
            let info = Value::named_composite([(
                "fields",
                Value::unnamed_composite([Value::unnamed_variant(
                    format!("Raw{}", data.len()),
                    [Value::from_bytes(data)],
                )]),
            )]);
            let (k, v) = storage_item(
                "Commitments",
                "CommitmentOf",
                vec![u(1), Value::from_bytes(parse_account(account).unwrap())],
                Value::named_composite([("deposit", u(0)), ("block", u(block)), ("info", info)]),
            );
            storage.insert(k, v);
        }
        Self {
            metadata,
            storage,
            blocks,
            nonces: HashMap::new(),
            outcomes: VecDeque::new(),
            received: Vec::new(),
            events_key,
            version,
            drop_on: None,
            connections: 0,
        }
    }

    pub fn head(&self) -> &Block {
        self.blocks.last().unwrap()
    }

    fn block(&self, hash: Option<&Json>) -> Option<&Block> {
        match hash.and_then(Json::as_str) {
            None => Some(self.head()),
            Some(s) => {
                let want = unhex(s);
                self.blocks.iter().find(|b| b.hash[..] == want[..])
            }
        }
    }

    fn header_json(b: &Block) -> Json {
        json!({"parentHash": h(&b.parent), "number": format!("0x{:x}", b.number),
               "stateRoot": h(&[0; 32]), "extrinsicsRoot": h(&[0; 32]),
               "digest": {"logs": []}})
    }

    fn state_call(&self, method: &str, data: &[u8]) -> Result<Vec<u8>, String> {
        Ok(match method {
            "Core_version" => self.version.clone(),
            "Metadata_metadata_versions" => vec![14u32, 15, 16].encode(),
            "Metadata_metadata_at_version" => {
                assert_eq!(u32::decode(&mut &data[..]).unwrap(), 16);
                Some(FINNEY.to_vec()).encode()
            }
            "AccountNonceApi_account_nonce" => {
                let account = <[u8; 32]>::decode(&mut &data[..]).unwrap();
                self.nonces.get(&account).copied().unwrap_or(0).encode()
            }
            "NeuronInfoRuntimeApi_get_neurons_lite" => match u16::decode(&mut &data[..]).unwrap() {
                1 => unhex(NEURONS_LITE.trim()),
                _ => Vec::<u8>::new().encode(),
            },
            other => return Err(format!("state_call {other} not simulated")),
        })
    }

    /// Decodes and verifies a submitted extrinsic like a node's pool would.
    fn receive(&mut self, bytes: &[u8]) -> Received {
        let md = &self.metadata;
        let xt =
            subxt::ext::frame_decode::extrinsics::decode_extrinsic(&mut &bytes[..], md, md.types())
                .expect("submitted extrinsic decodes against the metadata");
        let sig = xt.signature_payload().expect("signed extrinsic");
        let address = &bytes[sig.address_range()];
        assert_eq!(address[0], 0, "MultiAddress::Id");
        let signer: [u8; 32] = address[1..33].try_into().unwrap();
        let signature = &bytes[sig.signature_range()];
        assert_eq!(signature[0], 1, "MultiSignature::Sr25519");
        let exts = xt.transaction_extension_payload().expect("extensions");
        // The signed payload: call, extension values, then implicit data.
        let mut payload = bytes[xt.call_data_range()].to_vec();
        payload.extend_from_slice(&bytes[exts.range()]);
        let genesis = self.blocks[0].hash;
        for ext in exts.iter() {
            let value = &bytes[ext.range()];
            match ext.name() {
                "CheckSpecVersion" => payload.extend(365u32.encode()),
                "CheckTxVersion" => payload.extend(1u32.encode()),
                "CheckGenesis" => payload.extend(genesis),
                "CheckMortality" | "CheckEra" => {
                    let checkpoint = if value[0] == 0 {
                        genesis
                    } else {
                        let encoded = u16::from_le_bytes([value[0], value[1]]) as u64;
                        let period = 2u64 << (encoded % 16);
                        let phase = (encoded >> 4) * (period >> 12).max(1);
                        let current = u64::from(self.head().number);
                        let birth = (current.max(phase) - phase) / period * period + phase;
                        self.blocks
                            .iter()
                            .find(|b| u64::from(b.number) == birth)
                            .expect("mortality checkpoint block")
                            .hash
                    };
                    payload.extend(checkpoint);
                }
                "CheckMetadataHash" => payload.push(0),
                _ => {}
            }
        }
        if payload.len() > 256 {
            payload = blake2_256(&payload).to_vec();
        }
        let public = schnorrkel::PublicKey::from_bytes(&signer).unwrap();
        let signature_valid = schnorrkel::Signature::from_bytes(&signature[1..65])
            .and_then(|s| public.verify_simple(b"substrate", &payload, &s))
            .is_ok();
        let call_bytes = &bytes[xt.call_data_args_range()];
        let info = md
            .pallet_by_name(xt.pallet_name())
            .unwrap()
            .call_variant_by_name(xt.call_name())
            .unwrap();
        let mut fields = info
            .fields
            .iter()
            .map(|f| subxt::ext::scale_decode::Field::new(f.ty.id, f.name.as_deref()));
        let args = <subxt::ext::scale_value::Composite<()> as subxt::ext::scale_decode::DecodeAsFields>::decode_as_fields(
            &mut &call_bytes[..],
            &mut fields,
            md.types(),
        )
        .expect("call args decode");
        Received {
            pallet: xt.pallet_name().to_string(),
            call: xt.call_name().to_string(),
            signer,
            signature_valid,
            args: Value {
                value: subxt::ext::scale_value::ValueDef::Composite(args),
                context: (),
            },
        }
    }

    fn new_block(&mut self, xt: Vec<u8>, error: Option<&str>) -> [u8; 32] {
        let (parent, number) = (self.head().hash, self.head().number + 1);
        let hash = header_hash(parent, number);
        let events = events(&self.metadata, error);
        self.blocks.push(Block {
            hash,
            parent,
            number,
            extrinsics: vec![xt],
            events,
        });
        hash
    }
}

/// The simulated node: state shared across (re)starts, a listener and its connections.
pub struct SimNode {
    pub state: Arc<Mutex<NodeState>>,
    pub addr: SocketAddr,
    pub tasks: JoinSet<()>,
}

impl SimNode {
    /// Starts a node on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(NodeState::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut node = Self {
            state,
            addr,
            tasks: JoinSet::new(),
        };
        node.serve(listener);
        node
    }

    /// The node's WebSocket URL.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = self.state.clone();
        self.tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                conns.spawn(connection(socket, state.clone()));
            }
        });
    }

    /// Drops the listener and every open connection, like a node going down.
    pub async fn stop(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Listens again on the same address.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// What the runtime does with the next submitted extrinsic (default: success).
    pub fn push_outcome(&self, outcome: Outcome) {
        self.state.lock().unwrap().outcomes.push_back(outcome);
    }

    /// Every extrinsic accepted so far, decoded.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The best (and finalized) block number.
    pub fn head(&self) -> u32 {
        self.state.lock().unwrap().head().number
    }

    /// Makes the node close the connection that next asks for `method` (a JSON-RPC
    /// method or a runtime API of `state_call`) without answering: a disconnect in the
    /// middle of a call.
    pub fn drop_connection_on(&self, method: &str) {
        self.state.lock().unwrap().drop_on = Some(method.to_string());
    }

    /// Produces `blocks` empty blocks.
    pub fn advance(&self, blocks: u32) {
        let mut s = self.state.lock().unwrap();
        for _ in 0..blocks {
            let (parent, number) = (s.head().hash, s.head().number + 1);
            s.blocks.push(Block {
                hash: header_hash(parent, number),
                parent,
                number,
                extrinsics: vec![],
                events: vec![0],
            });
        }
    }

    /// WebSocket connections accepted so far.
    pub fn connections(&self) -> u32 {
        self.state.lock().unwrap().connections
    }

    /// Sets a storage value (key and SCALE value, e.g. from [`subnet_item`]).
    pub fn set_storage(&self, (key, value): (Vec<u8>, Vec<u8>)) {
        self.state.lock().unwrap().storage.insert(key, value);
    }
}

async fn connection(socket: tokio::net::TcpStream, state: Arc<Mutex<NodeState>>) {
    let mut server = soketto::handshake::Server::new(socket.compat());
    let Ok(req) = server.receive_request().await else {
        return;
    };
    let key = req.key();
    let accept = soketto::handshake::server::Response::Accept {
        key,
        protocol: None,
    };
    if server.send_response(&accept).await.is_err() {
        return;
    }
    let (mut tx, mut rx) = server.into_builder().finish();
    state.lock().unwrap().connections += 1;
    let mut next_sub = 0u64;
    loop {
        let mut data = Vec::new();
        if rx.receive_data(&mut data).await.is_err() {
            return;
        }
        let req: Json = serde_json::from_slice(&data).expect("JSON-RPC request");
        let id = req["id"].clone();
        let method = req["method"].as_str().unwrap_or_default().to_string();
        let params = req["params"].as_array().cloned().unwrap_or_default();
        {
            let mut s = state.lock().unwrap();
            let api = params.first().and_then(Json::as_str);
            if s.drop_on
                .as_deref()
                .is_some_and(|m| m == method || (method == "state_call" && api == Some(m)))
            {
                s.drop_on = None;
                return;
            }
        }
        let mut notifications = Vec::new();
        let result: Result<Json, String> = {
            let mut s = state.lock().unwrap();
            match method.as_str() {
                "rpc_methods" => Ok(json!({"methods": [
                    "chain_getBlockHash", "chain_getHeader", "chain_getBlock",
                    "chain_getFinalizedHead", "state_call", "state_getStorage",
                    "state_getKeysPaged", "state_queryStorageAt",
                    "author_submitAndWatchExtrinsic", "author_unwatchExtrinsic"]})),
                "chain_getBlockHash" => Ok(match params.first().and_then(Json::as_u64) {
                    None => json!(h(&s.head().hash)),
                    Some(n) => s
                        .blocks
                        .iter()
                        .find(|b| u64::from(b.number) == n)
                        .map_or(Json::Null, |b| json!(h(&b.hash))),
                }),
                "chain_getFinalizedHead" => Ok(json!(h(&s.head().hash))),
                "chain_getHeader" => Ok(s.block(params.first()).map_or(Json::Null, NodeState::header_json)),
                "chain_getBlock" => Ok(s.block(params.first()).map_or(Json::Null, |b| {
                    json!({"block": {"header": NodeState::header_json(b),
                                     "extrinsics": b.extrinsics.iter().map(|x| h(x)).collect::<Vec<_>>()},
                           "justifications": null})
                })),
                "state_call" => {
                    let data = unhex(params[1].as_str().unwrap_or("0x"));
                    s.state_call(params[0].as_str().unwrap(), &data).map(|v| json!(h(&v)))
                }
                "state_getStorage" => {
                    let key = unhex(params[0].as_str().unwrap());
                    if key == s.events_key {
                        Ok(json!(h(&s.block(params.get(1)).unwrap().events)))
                    } else {
                        Ok(s.storage.get(&key).map_or(Json::Null, |v| json!(h(v))))
                    }
                }
                "state_getKeysPaged" => {
                    let prefix = unhex(params[0].as_str().unwrap());
                    let count = params[1].as_u64().unwrap() as usize;
                    let start = params.get(2).and_then(Json::as_str).map(unhex);
                    let keys: Vec<Json> = s
                        .storage
                        .keys()
                        .filter(|k| k.starts_with(&prefix))
                        .filter(|k| start.as_ref().is_none_or(|st| *k > st))
                        .take(count)
                        .map(|k| json!(h(k)))
                        .collect();
                    Ok(json!(keys))
                }
                "state_queryStorageAt" => {
                    let changes: Vec<Json> = params[0]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|k| {
                            let key = unhex(k.as_str().unwrap());
                            json!([h(&key), s.storage.get(&key).map_or(Json::Null, |v| json!(h(v)))])
                        })
                        .collect();
                    Ok(json!([{"block": h(&s.head().hash), "changes": changes}]))
                }
                "author_submitAndWatchExtrinsic" => {
                    let xt = unhex(params[0].as_str().unwrap());
                    let received = s.receive(&xt);
                    let outcome = s.outcomes.pop_front().unwrap_or(Outcome::Success { then: vec![] });
                    if let Outcome::Refuse(message) = outcome {
                        Err(message.to_string())
                    } else {
                        *s.nonces.entry(received.signer).or_default() += 1;
                        s.received.push(received);
                        next_sub += 1;
                        notifications.push(json!("ready"));
                        match outcome {
                            Outcome::Stall => {}
                            Outcome::Success { then } => {
                                let hash = s.new_block(xt, None);
                                s.storage.extend(then);
                                notifications.push(json!({"inBlock": h(&hash)}));
                                notifications.push(json!({"finalized": h(&hash)}));
                            }
                            Outcome::Fail(error) => {
                                let hash = s.new_block(xt, Some(error));
                                notifications.push(json!({"inBlock": h(&hash)}));
                                notifications.push(json!({"finalized": h(&hash)}));
                            }
                            Outcome::Refuse(_) => unreachable!(),
                        }
                        Ok(json!(format!("sub{next_sub}")))
                    }
                }
                "author_unwatchExtrinsic" => Ok(json!(true)),
                other => Err(format!("method {other} not simulated")),
            }
        };
        let response = match result {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(message) => json!({"jsonrpc": "2.0", "id": id,
                                   "error": {"code": 1010, "message": message}}),
        };
        let sub_id = response["result"].as_str().map(str::to_string);
        if tx.send_text(response.to_string()).await.is_err() {
            return;
        }
        if method == "author_submitAndWatchExtrinsic" {
            for n in notifications {
                let note = json!({"jsonrpc": "2.0", "method": "author_extrinsicUpdate",
                                  "params": {"subscription": sub_id, "result": n}});
                if tx.send_text(note.to_string()).await.is_err() {
                    return;
                }
            }
        }
        if tx.flush().await.is_err() {
            return;
        }
    }
}
