//! Wallet interop with the real Python SDK (bittensor-wallet 4.1.1 from
//! bittensor 10.5.0): wallets it writes (plain and `$NACL`) load here with the same SS58,
//! ours load there, and signatures verify both ways. Each `$NACL` operation runs
//! Argon2i with 512 MiB, so this test does only four of them.

use neuron::wallet::{Keypair, Password, Wallet, encode_env_password, password_env_var, verify};

const PASSWORD: &str = "interop-pw";

const PY: &str = r#"
import sys, json
from bittensor_wallet import Wallet, Keypair
path, pw, msg, our_sig = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
out = {}
# Python writes: an encrypted coldkey and a plain hotkey.
w = Wallet(name="py", hotkey="hk", path=path)
cold = Keypair.create_from_mnemonic(Keypair.generate_mnemonic(12))
w.coldkey_file.set_keypair(cold, encrypt=True, overwrite=True, password=pw)
w.coldkeypub_file.set_keypair(cold, encrypt=False, overwrite=True)
w.create_hotkey_from_uri("//Dave", use_password=False, overwrite=True, suppress=True)
out["py_cold"] = cold.ss58_address
out["py_hot"] = w.hotkey.ss58_address
out["py_sig"] = "0x" + w.hotkey.sign(msg.encode()).hex()
out["env_var"] = w.coldkey_file.env_var_name()
# Python reads ours.
r = Wallet(name="rs", hotkey="hk", path=path)
out["rs_cold"] = r.coldkey_file.get_keypair(password=pw).ss58_address
out["rs_coldpub"] = r.coldkeypub.ss58_address
out["rs_hot"] = r.hotkey.ss58_address
out["rs_hot_mnemonic_ok"] = r.hotkey_file.is_encrypted() is False
out["our_sig_ok"] = r.hotkey.verify(msg.encode(), bytes.fromhex(our_sig[2:]))
print("RESULT " + json.dumps(out))
"#;

#[test]
fn wallets_and_signatures_interoperate_with_python_sdk() {
    let python = crate::support::python_venv("bittensor-10.5.0", &["bittensor==10.5.0"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();

    // Our wallet: encrypted coldkey from a fresh mnemonic, plain hotkey.
    let ours = Wallet::new(path, "rs", "hk");
    let cold = Keypair::generate(12).unwrap();
    let hot = Keypair::generate(24).unwrap();
    ours.set_coldkey(&cold, Some(PASSWORD), false).unwrap();
    ours.set_hotkey(&hot, None, false).unwrap();
    let msg = "interop message";
    let our_sig = format!("0x{}", hex::encode(hot.sign(msg.as_bytes())));

    let out = crate::support::run_python(&python, PY, &[path, PASSWORD, msg, &our_sig]);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("python result");
    let r: serde_json::Value = serde_json::from_str(line).unwrap();

    // Python read ours.
    assert_eq!(r["rs_cold"], cold.ss58());
    assert_eq!(r["rs_coldpub"], cold.ss58());
    assert_eq!(r["rs_hot"], hot.ss58());
    assert_eq!(r["our_sig_ok"], true);

    // We read Python's: the $NACL coldkey via the SDK's BT_PW_ variable convention.
    let theirs = Wallet::new(path, "py", "hk");
    let var = password_env_var(theirs.coldkey_file().path());
    assert_eq!(r["env_var"], var, "same BT_PW_ variable name as the SDK");
    let wrong = theirs.coldkey(&Password::given("wrong"));
    assert!(matches!(
        wrong,
        Err(neuron::wallet::WalletError::WrongPassword)
    ));
    let encoded = encode_env_password(&var, PASSWORD);
    // SAFETY: single-threaded test process section; no other thread reads the env.
    unsafe { std::env::set_var(&var, encoded) };
    let py_cold = theirs.coldkey(&Password::Env).unwrap();
    unsafe { std::env::remove_var(&var) };
    assert_eq!(py_cold.ss58(), r["py_cold"].as_str().unwrap());
    assert!(py_cold.secret_seed().is_some());
    assert_eq!(theirs.coldkeypub().unwrap().ss58(), py_cold.ss58());
    let py_hot = theirs.hotkey(&Password::Env).unwrap();
    assert_eq!(py_hot.ss58(), r["py_hot"].as_str().unwrap());
    assert_eq!(py_hot.ss58(), Keypair::from_uri("//Dave").unwrap().ss58());
    assert_eq!(theirs.hotkeypub().unwrap().ss58(), py_hot.ss58());

    // Python's signature verifies here.
    let py_sig = hex::decode(r["py_sig"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    assert!(verify(py_hot.ss58(), msg.as_bytes(), &py_sig));
    assert!(!verify(py_hot.ss58(), b"other message", &py_sig));
}

#[test]
fn golden_sdk_keyfiles_load() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/wire/golden.json")).unwrap();
    let w = &golden["wallet"];
    let dir = tempfile::tempdir().unwrap();
    let wallet = Wallet::new(dir.path(), "w1", "h1");
    std::fs::create_dir_all(wallet.dir()).unwrap();
    std::fs::write(
        wallet.coldkey_file().path(),
        w["coldkey_file"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        wallet.coldkeypub_file().path(),
        w["coldkeypub_file"].as_str().unwrap(),
    )
    .unwrap();
    let cold = wallet.coldkey(&Password::Env).unwrap();
    assert_eq!(cold.ss58(), w["ss58"]);
    assert_eq!(hex::encode(cold.secret_seed().unwrap()), w["secret_seed"]);
    assert_eq!(hex::encode(cold.private_key().unwrap()), w["private_key"]);
    assert_eq!(wallet.coldkeypub().unwrap().ss58(), w["ss58"]);
    let sr = &golden["signed_request"];
    let sig = hex::decode(sr["signature"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    assert!(verify(
        sr["signer"].as_str().unwrap(),
        sr["message"].as_str().unwrap().as_bytes(),
        &sig
    ));
}

/// Writes legacy keyfiles the way bittensor v6 (`keyfile.py`) did: Ansible Vault 1.1
/// (AES-256-CTR, PBKDF2 10,000) and Fernet (PBKDF2-HMAC-SHA256 10,000,000 rounds over the
/// v6 salt), with the standard library and pycryptodome from the SDK's venv.
const PY_LEGACY: &str = r#"
import sys, os, time, hmac, hashlib, base64, binascii
from Crypto.Cipher import AES
from Crypto.Util import Counter
data, pw, out = sys.argv[1].encode(), sys.argv[2].encode(), sys.argv[3]
def pad(b): n = 16 - len(b) % 16; return b + bytes([n]) * n
salt = os.urandom(32)
k = hashlib.pbkdf2_hmac("sha256", pw, salt, 10000, 80)
ct = AES.new(k[:32], AES.MODE_CTR, counter=Counter.new(128, initial_value=int.from_bytes(k[64:80], "big"))).encrypt(pad(data))
inner = binascii.hexlify(salt) + b"\n" + hmac.new(k[32:64], ct, hashlib.sha256).hexdigest().encode() + b"\n" + binascii.hexlify(ct)
hexed = binascii.hexlify(inner)
open(out + "/vault", "wb").write(b"$ANSIBLE_VAULT;1.1;AES256\n" + b"\n".join(hexed[i:i+80] for i in range(0, len(hexed), 80)))
raw = hashlib.pbkdf2_hmac("sha256", pw, b"Iguesscyborgslikemyselfhaveatendencytobeparanoidaboutourorigins", 10000000, 32)
iv = os.urandom(16)
basic = b"\x80" + int(time.time()).to_bytes(8, "big") + iv + AES.new(raw[16:], AES.MODE_CBC, iv).encrypt(pad(data))
open(out + "/fernet", "wb").write(base64.urlsafe_b64encode(basic + hmac.new(raw[:16], basic, hashlib.sha256).digest()))
"#;

#[test]
fn legacy_ansible_vault_and_fernet_keyfiles_decrypt() {
    let python = crate::support::python_venv("bittensor-10.5.0", &["bittensor==10.5.0"]);
    let dir = tempfile::tempdir().unwrap();
    let key = Keypair::from_uri("//Ferdie").unwrap();
    let json =
        serde_json::to_string(&neuron::wallet::KeyfileData::from_keypair(&key, false)).unwrap();
    crate::support::run_python(
        &python,
        PY_LEGACY,
        &[&json, "legacy-pw", dir.path().to_str().unwrap()],
    );
    for name in ["vault", "fernet"] {
        let file = neuron::wallet::Keyfile::new(dir.path().join(name));
        assert!(matches!(
            file.keypair(&Password::given("nope")),
            Err(neuron::wallet::WalletError::WrongPassword)
        ));
        assert_eq!(
            file.keypair(&Password::given("legacy-pw")).unwrap().ss58(),
            key.ss58(),
            "{name}"
        );
    }
}
