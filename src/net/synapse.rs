//! Synapses: a schema (name, typed JSON fields, required hash fields) and a value of
//! it, with the SDK's JSON body, headers (`to_headers` / `from_headers`) and body hash.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha3::{Digest, Sha3_256};

use super::NetError;
use super::pyrepr::py_str;

/// Default synapse timeout in seconds (the SDK's `Synapse.timeout`).
pub const DEFAULT_TIMEOUT: f64 = 12.0;

/// The type of a synapse field, as pydantic would validate it. Written in config files
/// as `str`, `int`, `float`, `bool`, `any`, `list[T]`, `dict[T]` (string keys) or
/// `optional[T]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// `str`
    Str,
    /// `int`
    Int,
    /// `float` (a JSON integer becomes a float, so `1` hashes as `1.0`)
    Float,
    /// `bool`
    Bool,
    /// Any JSON value, unvalidated.
    Any,
    /// `List[T]`
    List(Box<FieldType>),
    /// `Dict[str, T]`
    Dict(Box<FieldType>),
    /// `Optional[T]`
    Optional(Box<FieldType>),
}

impl FieldType {
    /// Parses the textual form (`list[str]`, `optional[float]`, …).
    pub fn parse(s: &str) -> Result<Self, NetError> {
        let s = s.trim();
        let inner = |prefix: &str| {
            s.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(']'))
                .map(FieldType::parse)
        };
        Ok(match s {
            "str" => FieldType::Str,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            "any" => FieldType::Any,
            _ => {
                if let Some(t) = inner("list[") {
                    FieldType::List(Box::new(t?))
                } else if let Some(t) = inner("dict[") {
                    FieldType::Dict(Box::new(t?))
                } else if let Some(t) = inner("optional[") {
                    FieldType::Optional(Box::new(t?))
                } else {
                    return Err(NetError::Schema(format!("unknown field type {s:?}")));
                }
            }
        })
    }

    /// `json.dumps(T())`: the empty value the SDK sends in `bt_header_input_obj_*`.
    pub fn empty_value(&self) -> Value {
        match self {
            FieldType::Str => Value::String(String::new()),
            FieldType::Int => Value::from(0),
            FieldType::Float => Value::from(0.0),
            FieldType::Bool => Value::Bool(false),
            FieldType::List(_) => Value::Array(Vec::new()),
            FieldType::Dict(_) | FieldType::Any => Value::Object(Map::new()),
            FieldType::Optional(_) => Value::Null,
        }
    }

    /// Validates `v` in pydantic's lax mode and returns the coerced value.
    pub fn coerce(&self, v: Value) -> Result<Value, String> {
        let wrong = |v: &Value, want: &str| Err(format!("expected {want}, got {v}"));
        match (self, v) {
            (FieldType::Any, v) => Ok(v),
            (FieldType::Optional(_), Value::Null) => Ok(Value::Null),
            (FieldType::Optional(t), v) => t.coerce(v),
            (FieldType::Str, v @ Value::String(_)) => Ok(v),
            (FieldType::Bool, v @ Value::Bool(_)) => Ok(v),
            (FieldType::Bool, Value::Number(n)) if n.as_i64() == Some(0) => Ok(Value::Bool(false)),
            (FieldType::Bool, Value::Number(n)) if n.as_i64() == Some(1) => Ok(Value::Bool(true)),
            (FieldType::Int, Value::Number(n)) => {
                if n.is_i64() || n.is_u64() {
                    Ok(Value::Number(n))
                } else {
                    match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                            Ok(Value::from(f as i64))
                        }
                        _ => Err(format!("expected int, got {n}")),
                    }
                }
            }
            (FieldType::Int, Value::String(s)) => match s.trim().parse::<i64>() {
                Ok(i) => Ok(Value::from(i)),
                Err(_) => Err(format!("expected int, got {s:?}")),
            },
            (FieldType::Float, Value::Number(n)) => {
                let f = n.as_f64().ok_or("number out of range")?;
                Ok(Value::from(f))
            }
            (FieldType::Float, Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::from(f)),
                _ => Err(format!("expected float, got {s:?}")),
            },
            (FieldType::List(t), Value::Array(items)) => items
                .into_iter()
                .map(|i| t.coerce(i))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            (FieldType::Dict(t), Value::Object(map)) => map
                .into_iter()
                .map(|(k, v)| t.coerce(v).map(|v| (k, v)))
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            (t, v) => wrong(&v, &t.to_string()),
        }
    }
}

impl std::fmt::Display for FieldType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldType::Str => f.write_str("str"),
            FieldType::Int => f.write_str("int"),
            FieldType::Float => f.write_str("float"),
            FieldType::Bool => f.write_str("bool"),
            FieldType::Any => f.write_str("any"),
            FieldType::List(t) => write!(f, "list[{t}]"),
            FieldType::Dict(t) => write!(f, "dict[{t}]"),
            FieldType::Optional(t) => write!(f, "optional[{t}]"),
        }
    }
}

impl Serialize for FieldType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FieldType::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One field of a synapse subclass.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Field {
    /// Field name (JSON key).
    pub name: String,
    /// Field type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Required (no default): sent as a `bt_header_input_obj_*` header.
    #[serde(default)]
    pub required: bool,
    /// Default for optional fields (`null` means the type's empty value, or `None` for
    /// optional types).
    #[serde(default)]
    pub default: Value,
}

/// A synapse class: its name (the route), fields, and the fields its body hash covers.
/// Definable from config as JSON/YAML:
/// `{name: Dummy, fields: [{name: prompt, type: str, required: true}], hash_fields: [prompt]}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SynapseSchema {
    /// Class name, sent as `name` and used as the route `/{name}`.
    pub name: String,
    /// Subclass fields in declaration order.
    #[serde(default)]
    pub fields: Vec<Field>,
    /// Fields covered by `computed_body_hash`, in hashing order.
    #[serde(default)]
    pub hash_fields: Vec<String>,
    /// Also send `required_hash_fields` as a JSON body field (SN1's early-2024 classes
    /// declared it as an instance field).
    #[serde(default)]
    pub hash_fields_in_body: bool,
    /// Responses are streamed (`text/event-stream`, raw chunks).
    #[serde(default)]
    pub streaming: bool,
}

impl SynapseSchema {
    /// A schema with no fields (the base `Synapse` ping class has name `Synapse`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            fields: Vec::new(),
            hash_fields: Vec::new(),
            hash_fields_in_body: false,
            streaming: false,
        }
    }

    /// Adds a field (builder style).
    pub fn field(mut self, name: &str, ty: FieldType, required: bool) -> Self {
        self.fields.push(Field {
            name: name.into(),
            ty,
            required,
            default: Value::Null,
        });
        self
    }

    /// Sets the hash fields (builder style).
    pub fn hash(mut self, fields: &[&str]) -> Self {
        self.hash_fields = fields.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Checks that the name is a valid route and hash fields are declared fields.
    pub fn validate(&self) -> Result<(), NetError> {
        let ok_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_name {
            return Err(NetError::Schema(format!(
                "invalid synapse name {:?}",
                self.name
            )));
        }
        for h in &self.hash_fields {
            if !self.fields.iter().any(|f| &f.name == h) {
                return Err(NetError::Schema(format!(
                    "{}: hash field {h:?} is not a field",
                    self.name
                )));
            }
        }
        for f in &self.fields {
            if BASE_FIELDS.contains(&f.name.as_str()) {
                return Err(NetError::Schema(format!(
                    "{}: field {:?} is reserved",
                    self.name, f.name
                )));
            }
        }
        Ok(())
    }

    fn default_for(&self, f: &Field) -> Value {
        if f.default.is_null() {
            match f.ty {
                FieldType::Optional(_) => Value::Null,
                _ => f.ty.empty_value(),
            }
        } else {
            f.default.clone()
        }
    }
}

const BASE_FIELDS: &[&str] = &[
    "name",
    "timeout",
    "total_size",
    "header_size",
    "dendrite",
    "axon",
    "computed_body_hash",
    "required_hash_fields",
];

/// One side's view of a request (`bt.TerminalInfo`): the dendrite or the axon.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TerminalInfo {
    /// HTTP-like status code.
    pub status_code: Option<i64>,
    /// Status message.
    pub status_message: Option<String>,
    /// Processing time in seconds.
    pub process_time: Option<f64>,
    /// IP address.
    pub ip: Option<String>,
    /// Port.
    pub port: Option<i64>,
    /// SDK version as an int (10.5.0 → 10005000).
    pub version: Option<i64>,
    /// Nonce (wall-clock nanoseconds).
    pub nonce: Option<i64>,
    /// Per-dendrite (or per-axon) UUID.
    pub uuid: Option<String>,
    /// SS58 hotkey.
    pub hotkey: Option<String>,
    /// `0x`-hex signature.
    pub signature: Option<String>,
}

impl TerminalInfo {
    fn header_pairs(&self, prefix: &str, out: &mut Vec<(String, String)>) {
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push((format!("{prefix}{k}"), v));
            }
        };
        push("status_code", self.status_code.map(|v| v.to_string()));
        push("status_message", self.status_message.clone());
        push(
            "process_time",
            self.process_time.map(super::pyrepr::float_repr),
        );
        push("ip", self.ip.clone());
        push("port", self.port.map(|v| v.to_string()));
        push("version", self.version.map(|v| v.to_string()));
        push("nonce", self.nonce.map(|v| v.to_string()));
        push("uuid", self.uuid.clone());
        push("hotkey", self.hotkey.clone());
        push("signature", self.signature.clone());
    }

    /// Sets one field from its header string (`key` without prefix).
    fn set_from_header(&mut self, key: &str, v: &str) -> Result<(), String> {
        let int = |v: &str| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| format!("{key}: not an int: {v:?}"))
        };
        match key {
            "status_code" => self.status_code = Some(int(v)?),
            "status_message" => self.status_message = Some(v.to_string()),
            "process_time" => {
                self.process_time = Some(
                    v.trim()
                        .parse()
                        .map_err(|_| format!("process_time: not a float: {v:?}"))?,
                )
            }
            "ip" => self.ip = Some(v.to_string()),
            "port" => self.port = Some(int(v)?),
            "version" => self.version = Some(int(v)?),
            "nonce" => self.nonce = Some(int(v)?),
            "uuid" => self.uuid = Some(v.to_string()),
            "hotkey" => self.hotkey = Some(v.to_string()),
            "signature" => self.signature = Some(v.to_string()),
            _ => {} // unknown TerminalInfo keys are ignored, as pydantic does
        }
        Ok(())
    }

    /// Overwrites this info's fields with every field set in `other`.
    pub fn merge_from(&mut self, other: &TerminalInfo) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(
            status_code,
            status_message,
            process_time,
            ip,
            port,
            version,
            nonce,
            uuid,
            hotkey,
            signature
        );
    }
}

/// A synapse value: a schema plus field values and the base `bt.Synapse` fields.
#[derive(Debug, Clone)]
pub struct Synapse {
    schema: Arc<SynapseSchema>,
    fields: Map<String, Value>,
    /// Timeout in seconds.
    pub timeout: f64,
    /// The SDK's `total_size` (Python object size; informational).
    pub total_size: i64,
    /// The SDK's `header_size` (informational).
    pub header_size: i64,
    /// Dendrite (caller) info.
    pub dendrite: TerminalInfo,
    /// Axon (server) info.
    pub axon: TerminalInfo,
    /// The body hash as carried in the `computed_body_hash` header.
    pub computed_body_hash: String,
}

impl Synapse {
    /// A synapse of `schema` with every field at its default.
    pub fn new(schema: Arc<SynapseSchema>) -> Self {
        let fields = schema
            .fields
            .iter()
            .map(|f| (f.name.clone(), schema.default_for(f)))
            .collect();
        Self {
            schema,
            fields,
            timeout: DEFAULT_TIMEOUT,
            total_size: 0,
            header_size: 0,
            dendrite: TerminalInfo::default(),
            axon: TerminalInfo::default(),
            computed_body_hash: String::new(),
        }
    }

    /// The schema.
    pub fn schema(&self) -> &Arc<SynapseSchema> {
        &self.schema
    }

    /// The class name.
    pub fn name(&self) -> &str {
        &self.schema.name
    }

    /// A field's value.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }

    /// All field values in declaration order.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// Sets a field, validating (and coercing) the value against its declared type.
    pub fn set(&mut self, field: &str, value: Value) -> Result<(), NetError> {
        let f = self
            .schema
            .fields
            .iter()
            .find(|f| f.name == field)
            .ok_or_else(|| {
                NetError::Field(format!("{} has no field {field:?}", self.schema.name))
            })?;
        let v =
            f.ty.coerce(value)
                .map_err(|e| NetError::Field(format!("{field}: {e}")))?;
        self.fields.insert(field.to_string(), v);
        Ok(())
    }

    /// `computed_body_hash` as the SDK computes it: sha3-256 hex of the concatenated
    /// sha3-256 hex digests of `str(value)` for each hash field in order.
    pub fn body_hash(&self) -> String {
        let mut concat = String::with_capacity(64 * self.schema.hash_fields.len());
        for name in &self.schema.hash_fields {
            let value = self.fields.get(name).unwrap_or(&Value::Null);
            concat.push_str(&hex::encode(Sha3_256::digest(py_str(value).as_bytes())));
        }
        hex::encode(Sha3_256::digest(concat.as_bytes()))
    }

    /// The JSON body (`synapse.model_dump()`): base fields then subclass fields.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), Value::String(self.schema.name.clone()));
        m.insert("timeout".into(), Value::from(self.timeout));
        m.insert("total_size".into(), Value::from(self.total_size));
        m.insert("header_size".into(), Value::from(self.header_size));
        m.insert(
            "dendrite".into(),
            serde_json::to_value(&self.dendrite).expect("terminal info"),
        );
        m.insert(
            "axon".into(),
            serde_json::to_value(&self.axon).expect("terminal info"),
        );
        m.insert(
            "computed_body_hash".into(),
            Value::String(self.computed_body_hash.clone()),
        );
        if self.schema.hash_fields_in_body {
            m.insert(
                "required_hash_fields".into(),
                Value::from(self.schema.hash_fields.clone()),
            );
        }
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    /// Builds a synapse from a JSON body (`Cls(**json)`): required fields must be
    /// present, values are validated; unknown keys are ignored.
    pub fn from_json(schema: Arc<SynapseSchema>, body: &[u8]) -> Result<Self, NetError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| NetError::Parse(format!("invalid JSON: {e}")))?;
        let Value::Object(mut map) = value else {
            return Err(NetError::Parse("body is not a JSON object".into()));
        };
        let mut s = Synapse::new(schema.clone());
        let base_err = |k: &str, e: serde_json::Error| NetError::Parse(format!("{k}: {e}"));
        if let Some(v) = map.remove("timeout").filter(|v| !v.is_null()) {
            s.timeout = FieldType::Float
                .coerce(v)
                .ok()
                .and_then(|v| v.as_f64())
                .ok_or_else(|| NetError::Parse("timeout: expected float".into()))?;
        }
        for (k, slot) in [
            ("total_size", &mut s.total_size),
            ("header_size", &mut s.header_size),
        ] {
            if let Some(v) = map.remove(k).filter(|v| !v.is_null()) {
                *slot = FieldType::Int
                    .coerce(v)
                    .ok()
                    .and_then(|v| v.as_i64())
                    .ok_or_else(|| NetError::Parse(format!("{k}: expected int")))?;
            }
        }
        for (k, slot) in [("dendrite", &mut s.dendrite), ("axon", &mut s.axon)] {
            if let Some(v) = map.remove(k).filter(|v| !v.is_null()) {
                *slot = serde_json::from_value(v).map_err(|e| base_err(k, e))?;
            }
        }
        if let Some(Value::String(h)) = map.remove("computed_body_hash") {
            s.computed_body_hash = h;
        }
        for f in &schema.fields {
            match map.remove(&f.name) {
                Some(v) => {
                    let v =
                        f.ty.coerce(v)
                            .map_err(|e| NetError::Parse(format!("{}: {e}", f.name)))?;
                    s.fields.insert(f.name.clone(), v);
                }
                None if f.required => {
                    return Err(NetError::Parse(format!("{}: field required", f.name)));
                }
                None => {}
            }
        }
        Ok(s)
    }

    /// The request/response headers (`Synapse.to_headers()`), in the SDK's order.
    pub fn to_headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            ("name".to_string(), self.schema.name.clone()),
            (
                "timeout".to_string(),
                super::pyrepr::float_repr(self.timeout),
            ),
        ];
        self.axon.header_pairs("bt_header_axon_", &mut h);
        self.dendrite.header_pairs("bt_header_dendrite_", &mut h);
        for f in self.schema.fields.iter().filter(|f| f.required) {
            let empty = serde_json::to_string(&f.ty.empty_value()).expect("json");
            h.push((
                format!("bt_header_input_obj_{}", f.name),
                STANDARD.encode(empty),
            ));
        }
        h.push(("header_size".into(), self.header_size.to_string()));
        h.push(("total_size".into(), self.total_size.to_string()));
        h.push(("computed_body_hash".into(), self.body_hash()));
        h
    }

    /// Builds the header-only synapse the axon's hooks see (`Cls.from_headers`).
    /// `get` looks a header up by lowercase name. Required fields need their
    /// `bt_header_input_obj_*` header (base64 JSON), as in the SDK. A `timeout` that is
    /// not a finite number (`NaN`, `inf`) is refused. Allocation is linear in the
    /// headers' size (which the HTTP layer bounds).
    pub fn from_headers<'a>(
        schema: Arc<SynapseSchema>,
        headers: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, NetError> {
        let mut s = Synapse::new(schema.clone());
        let mut inputs: HashMap<String, Value> = HashMap::new();
        let perr = |m: String| NetError::Parse(m);
        for (name, value) in headers {
            if let Some(k) = name.strip_prefix("bt_header_axon_") {
                s.axon.set_from_header(k, value).map_err(perr)?;
            } else if let Some(k) = name.strip_prefix("bt_header_dendrite_") {
                s.dendrite.set_from_header(k, value).map_err(perr)?;
            } else if let Some(k) = name.strip_prefix("bt_header_input_obj_") {
                let raw = STANDARD
                    .decode(value.trim())
                    .map_err(|_| perr(format!("{name}: not base64")))?;
                let v: Value =
                    serde_json::from_slice(&raw).map_err(|_| perr(format!("{name}: not JSON")))?;
                inputs.insert(k.to_string(), v);
            } else {
                match name {
                    "timeout" => {
                        s.timeout = value
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|t| t.is_finite())
                            .ok_or_else(|| {
                                perr(format!("timeout: not a finite float: {value:?}"))
                            })?
                    }
                    "header_size" | "total_size" => {
                        let n: i64 = value
                            .trim()
                            .parse()
                            .map_err(|_| perr(format!("{name}: not an int")))?;
                        if name == "header_size" {
                            s.header_size = n
                        } else {
                            s.total_size = n
                        }
                    }
                    "computed_body_hash" => s.computed_body_hash = value.to_string(),
                    _ => {}
                }
            }
        }
        for f in &schema.fields {
            match inputs.remove(&f.name) {
                Some(v) => {
                    let v =
                        f.ty.coerce(v)
                            .map_err(|e| perr(format!("{}: {e}", f.name)))?;
                    s.fields.insert(f.name.clone(), v);
                }
                None if f.required => return Err(perr(format!("{}: field required", f.name))),
                None => {}
            }
        }
        Ok(s)
    }

    /// Copies the field values (not the terminal infos) from `other` of the same schema.
    pub fn copy_fields_from(&mut self, other: &Synapse) {
        self.fields = other.fields.clone();
        self.timeout = other.timeout;
    }
}

/// The base `bt.Synapse` (route `/Synapse`, the ping).
pub fn base_schema() -> SynapseSchema {
    SynapseSchema::new("Synapse")
}

/// SN1's `PromptingSynapse` (early-2024): `roles`, `messages` (required lists of
/// strings), `completion`; body hash over `messages`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptingSynapse {
    /// Chat roles (`user`, `assistant`, `system`).
    pub roles: Vec<String>,
    /// Chat messages, parallel to `roles`.
    pub messages: Vec<String>,
    /// The miner's answer.
    pub completion: String,
}

impl PromptingSynapse {
    /// The schema (name `PromptingSynapse`).
    pub fn schema() -> SynapseSchema {
        let mut s = SynapseSchema::new("PromptingSynapse")
            .field("roles", FieldType::List(Box::new(FieldType::Str)), true)
            .field("messages", FieldType::List(Box::new(FieldType::Str)), true)
            .field("completion", FieldType::Str, false)
            .hash(&["messages"]);
        s.hash_fields_in_body = true;
        s
    }

    /// This value as a generic synapse of `schema` (which must be [`Self::schema`]-shaped).
    pub fn to_synapse(&self, schema: Arc<SynapseSchema>) -> Result<Synapse, NetError> {
        let mut s = Synapse::new(schema);
        s.set("roles", self.roles.clone().into())?;
        s.set("messages", self.messages.clone().into())?;
        s.set("completion", self.completion.clone().into())?;
        Ok(s)
    }

    /// Reads the fields back from a generic synapse.
    pub fn from_synapse(s: &Synapse) -> Result<Self, NetError> {
        let strings = |k: &str| -> Result<Vec<String>, NetError> {
            serde_json::from_value(s.get(k).cloned().unwrap_or(Value::Null))
                .map_err(|e| NetError::Field(format!("{k}: {e}")))
        };
        Ok(Self {
            roles: strings("roles")?,
            messages: strings("messages")?,
            completion: s
                .get("completion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }
}

/// SN1's `StreamPromptingSynapse` (2024): the same fields as [`PromptingSynapse`], the
/// completion streamed back as raw text chunks.
pub struct StreamPromptingSynapse;

impl StreamPromptingSynapse {
    /// The schema (name `StreamPromptingSynapse`, streaming).
    pub fn schema() -> SynapseSchema {
        let mut s = PromptingSynapse::schema();
        s.name = "StreamPromptingSynapse".into();
        s.streaming = true;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dummy() -> Arc<SynapseSchema> {
        Arc::new(
            SynapseSchema::new("Dummy")
                .field("prompt", FieldType::Str, true)
                .field("values", FieldType::List(Box::new(FieldType::Float)), false)
                .field(
                    "completion",
                    FieldType::Optional(Box::new(FieldType::Str)),
                    false,
                )
                .hash(&["prompt", "values"]),
        )
    }

    #[test]
    fn golden_dummy_hash_and_int_to_float() {
        let mut s = Synapse::new(dummy());
        s.set("prompt", json!("hi")).unwrap();
        s.set("values", json!([1, 0.5])).unwrap();
        assert_eq!(s.get("values").unwrap(), &json!([1.0, 0.5]));
        assert_eq!(
            s.body_hash(),
            "dd862baae1085689ff836815b72c36f8ac87979d4ce477a1e7359a65acc9f00e"
        );
        let empty = Synapse::new(Arc::new(base_schema()));
        assert_eq!(
            empty.body_hash(),
            "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
        );
    }

    #[test]
    fn headers_roundtrip() {
        let mut s = Synapse::new(dummy());
        s.set("prompt", json!("hi")).unwrap();
        s.dendrite.nonce = Some(17);
        s.dendrite.hotkey = Some("5Grw".into());
        s.axon.port = Some(8091);
        let h = s.to_headers();
        assert_eq!(h[0], ("name".into(), "Dummy".into()));
        assert!(h.contains(&("bt_header_input_obj_prompt".into(), "IiI=".into())));
        assert!(h.iter().all(|(k, _)| k != "bt_header_input_obj_values"));
        let back = Synapse::from_headers(dummy(), h.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .unwrap();
        assert_eq!(back.dendrite, s.dendrite);
        assert_eq!(back.axon, s.axon);
        assert_eq!(back.computed_body_hash, s.body_hash());
        assert_eq!(back.get("prompt").unwrap(), &json!(""));
        let missing = h.iter().filter(|(k, _)| k != "bt_header_input_obj_prompt");
        assert!(
            Synapse::from_headers(dummy(), missing.map(|(k, v)| (k.as_str(), v.as_str()))).is_err()
        );
        let bad = [("bt_header_dendrite_nonce", "abc")];
        assert!(Synapse::from_headers(dummy(), bad.into_iter()).is_err());
    }

    #[test]
    fn json_roundtrip_and_validation() {
        let mut s = Synapse::new(dummy());
        s.set("prompt", json!("hi")).unwrap();
        let body = serde_json::to_vec(&s.to_json()).unwrap();
        let back = Synapse::from_json(dummy(), &body).unwrap();
        assert_eq!(back.fields(), s.fields());
        assert!(Synapse::from_json(dummy(), b"{").is_err());
        assert!(Synapse::from_json(dummy(), b"[]").is_err());
        assert!(Synapse::from_json(dummy(), br#"{"values": []}"#).is_err());
        assert!(Synapse::from_json(dummy(), br#"{"prompt": 3}"#).is_err());
        assert!(Synapse::from_json(dummy(), br#"{"prompt": "x", "values": ["a"]}"#).is_err());
        assert!(s.set("nope", json!(1)).is_err());
    }

    #[test]
    fn schema_parsing_and_validation() {
        let schema: SynapseSchema = serde_json::from_value(json!({
            "name": "Qa", "fields": [{"name": "q", "type": "list[optional[dict[float]]]", "required": true}],
            "hash_fields": ["q"]
        }))
        .unwrap();
        schema.validate().unwrap();
        assert_eq!(
            schema.fields[0].ty.to_string(),
            "list[optional[dict[float]]]"
        );
        assert!(FieldType::parse("list[str").is_err());
        assert!(SynapseSchema::new("a/b").validate().is_err());
        assert!(
            SynapseSchema::new("X")
                .hash(&["missing"])
                .validate()
                .is_err()
        );
        assert!(
            SynapseSchema::new("X")
                .field("axon", FieldType::Str, false)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn prompting_synapse_golden() {
        let schema = Arc::new(PromptingSynapse::schema());
        let p = PromptingSynapse {
            roles: vec!["user".into()],
            messages: vec!["hello".into()],
            completion: String::new(),
        };
        let s = p.to_synapse(schema).unwrap();
        assert_eq!(
            s.body_hash(),
            "e2375691e17272625698e44c2322ea1d64374d5ad46f61f55698aaf0428b8550"
        );
        assert_eq!(PromptingSynapse::from_synapse(&s).unwrap(), p);
        assert_eq!(s.to_json()["required_hash_fields"], json!(["messages"]));
    }
}
