//! Fuzzes keyfile parsing (`neuron::wallet::parse_keyfile`): plain JSON, bare public
//! keys and Ansible Vault files in full; `$NACL` bodies through the damage check only
//! (each decryption try costs Argon2 with 512 MiB) and Fernet tokens not at all (10^7
//! PBKDF2 rounds per try).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use neuron::wallet::{NACL_PREFIX, Password, nacl_damage, parse_keyfile};

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"gAAAAA") {
        return;
    }
    if let Some(body) = data.strip_prefix(NACL_PREFIX) {
        let _ = nacl_damage(body);
        return;
    }
    let _ = parse_keyfile(data, Path::new("fuzz/keyfile"), &Password::given("pw"));
});
