//! Helpers on subxt's dynamic values and accounts: unwrapping newtypes to primitives,
//! bytes and named fields, and SS58 addresses to and from 32-byte account ids.

use std::str::FromStr;

use subxt::dynamic::Value;
use subxt::ext::scale_value::{Composite, Primitive, ValueDef};
use subxt::utils::AccountId32;

use crate::chain::ChainError;

/// A decode error naming the storage item and the value found.
pub(super) fn decode_err(what: &str, value: &Value) -> ChainError {
    ChainError::Decode(format!("unexpected value for {what}: {value}"))
}

/// Parses an SS58 address into its 32-byte account id.
pub fn parse_account(ss58: &str) -> Result<[u8; 32], ChainError> {
    AccountId32::from_str(ss58)
        .map(|a| a.0)
        .map_err(|e| ChainError::InvalidInput(format!("bad SS58 address {ss58:?}: {e}")))
}

/// The SS58 address (format 42) of a 32-byte account id.
pub fn ss58(account: [u8; 32]) -> String {
    AccountId32(account).to_string()
}

/// Unwraps single-field composites (`NetUid(u16)`, `TaoCurrency(u64)`, ...) to the
/// primitive inside.
fn unwrap_newtype(value: &Value) -> &Value {
    match &value.value {
        ValueDef::Composite(c) if c.len() == 1 => {
            unwrap_newtype(c.values().next().unwrap_or(value))
        }
        _ => value,
    }
}

pub(super) fn value_u128(value: &Value) -> Option<u128> {
    match &unwrap_newtype(value).value {
        ValueDef::Primitive(Primitive::U128(v)) => Some(*v),
        _ => None,
    }
}

pub(super) fn value_bool(value: &Value) -> Option<bool> {
    match &unwrap_newtype(value).value {
        ValueDef::Primitive(Primitive::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// The items of a sequence, looking through newtype wrappers such as `BoundedVec`.
pub(super) fn seq_items(value: &Value) -> Option<Vec<&Value>> {
    match &value.value {
        ValueDef::Composite(c) => {
            let items: Vec<&Value> = c.values().collect();
            match items.as_slice() {
                [inner] if matches!(inner.value, ValueDef::Composite(_)) => seq_items(inner),
                _ => Some(items),
            }
        }
        _ => None,
    }
}

/// Bytes of a sequence/array of u8 values (possibly newtype-wrapped).
pub(super) fn value_bytes(value: &Value) -> Option<Vec<u8>> {
    seq_items(value)?
        .into_iter()
        .map(|v| match &v.value {
            ValueDef::Primitive(Primitive::U128(b)) => u8::try_from(*b).ok(),
            _ => None,
        })
        .collect()
}

pub(super) fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match &value.value {
        ValueDef::Composite(Composite::Named(fields)) => {
            fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss58_round_trips_and_rejects_garbage() {
        let alice = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
        let id = parse_account(alice).unwrap();
        assert_eq!(ss58(id), alice);
        assert!(matches!(
            parse_account("not-an-address"),
            Err(ChainError::InvalidInput(_))
        ));
    }

    #[test]
    fn newtypes_unwrap_to_primitives() {
        let wrapped = Value::unnamed_composite([Value::u128(42)]);
        assert_eq!(value_u128(&wrapped), Some(42));
        assert_eq!(value_bool(&Value::bool(true)), Some(true));
        assert_eq!(value_bytes(&Value::from_bytes(b"ab")), Some(b"ab".to_vec()));
        // A one-byte array and a BoundedVec-wrapped one keep their bytes.
        assert_eq!(value_bytes(&Value::from_bytes(b"a")), Some(b"a".to_vec()));
        let bounded = Value::unnamed_composite([Value::from_bytes(b"xyz")]);
        assert_eq!(value_bytes(&bounded), Some(b"xyz".to_vec()));
        assert_eq!(value_u128(&Value::bool(true)), None);
    }
}
